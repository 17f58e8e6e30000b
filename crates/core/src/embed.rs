//! The seam for text embedders: memory retrieval, nearest-neighbour
//! capability estimates and out-of-distribution scores all go through it.

/// Why an embedding could not be computed.
#[derive(Debug, thiserror::Error)]
#[error("embedding failed: {0}")]
pub struct EmbedError(pub String);

/// Turns texts into L2-normalised vectors of a fixed dimension, so that a
/// dot product is the cosine similarity.
pub trait Embedder: Send + Sync {
    /// A name that identifies the vector space (vectors of different
    /// embedders are not comparable).
    fn name(&self) -> &str;
    /// The dimension of every vector.
    fn dim(&self) -> usize;
    /// One normalised vector per text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// One normalised vector.
    fn embed_one(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        Ok(self.embed(&[text])?.pop().unwrap_or_default())
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Dot product (the cosine similarity of normalised vectors).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

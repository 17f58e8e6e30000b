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

/// An embedder that answers texts it has already been given vectors for
/// and passes the others to the embedder behind it: a reading that took
/// minutes (a language model's states of a labelled set) is made once and
/// reused. Same name and dimension as the embedder behind it, so what it
/// returns is that embedder's vector for the text.
pub struct Remembered<E> {
    inner: E,
    known: std::collections::HashMap<String, Vec<f32>>,
}

impl<E: Embedder> Remembered<E> {
    /// `inner`, knowing `texts[i]` reads as `vectors[i]`.
    pub fn new(inner: E, texts: &[&str], vectors: Vec<Vec<f32>>) -> Self {
        Self {
            inner,
            known: texts.iter().map(|t| t.to_string()).zip(vectors).collect(),
        }
    }

    /// The embedder behind it.
    pub fn inner(&self) -> &E {
        &self.inner
    }
}

impl<E: Embedder> Embedder for Remembered<E> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let unknown: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.known.contains_key(*t))
            .collect();
        let mut fresh = if unknown.is_empty() {
            Vec::new()
        } else {
            self.inner.embed(&unknown)?
        }
        .into_iter();
        texts
            .iter()
            .map(|t| match self.known.get(*t) {
                Some(v) => Ok(v.clone()),
                None => fresh
                    .next()
                    .ok_or_else(|| EmbedError("the embedder returned too few vectors".into())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A text's length as its vector; counts the texts it was asked for.
    struct Lengths(AtomicUsize);
    impl Embedder for Lengths {
        fn name(&self) -> &str {
            "lengths"
        }
        fn dim(&self) -> usize {
            1
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
        }
    }

    #[test]
    fn a_remembered_embedder_answers_known_texts_and_asks_for_the_rest_in_order() {
        let r = Remembered::new(
            Lengths(AtomicUsize::new(0)),
            &["a", "bb"],
            vec![vec![10.0], vec![20.0]],
        );
        assert_eq!(r.name(), "lengths");
        let v = r.embed(&["bb", "cccc", "a", "ddddd", "cccc"]).unwrap();
        assert_eq!(
            v,
            vec![vec![20.0], vec![4.0], vec![10.0], vec![5.0], vec![4.0]]
        );
        // Only the three unknown texts reached the embedder behind it.
        assert_eq!(r.inner().0.load(Ordering::SeqCst), 3);
        assert_eq!(r.embed(&["a"]).unwrap(), vec![vec![10.0]]);
        assert_eq!(r.inner().0.load(Ordering::SeqCst), 3);
    }
}

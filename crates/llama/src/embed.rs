//! The language model's own embeddings: the fallback embedder when the
//! MiniLM files are absent. Mean-pooled last hidden states of a separate,
//! small embedding context on the same GGUF file, L2-normalised.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use metareason_core::embed::normalize;
use metareason_core::{EmbedError, Embedder, ModelError};

/// Longest text embedded, in tokens (the rest is cut).
const MAX_TOKENS: usize = 512;

/// Embeddings from a GGUF language model.
pub struct LlamaEmbedder {
    model: Mutex<LlamaModel>,
    threads: i32,
    name: String,
    dim: usize,
}

impl LlamaEmbedder {
    /// Loads the model at `path` for embedding (the weights are
    /// memory-mapped, so a generation engine on the same file shares them).
    pub fn load(path: &Path, threads: Option<u32>) -> Result<Self, ModelError> {
        crate::check_gguf_file(path)?;
        let backend = crate::worker::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        let dim = model.n_embd() as usize;
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32))
            as i32;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            model: Mutex::new(model),
            threads,
            name: format!("llama-mean:{stem}"),
            dim,
        })
    }
}

impl Embedder for LlamaEmbedder {
    fn name(&self) -> &str {
        &self.name
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let err = |e: &dyn std::fmt::Display| EmbedError(e.to_string());
        let backend = crate::worker::backend().map_err(|e| err(&e))?;
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(MAX_TOKENS as u32 + 8))
            .with_n_batch(MAX_TOKENS as u32 + 8)
            .with_n_ubatch(MAX_TOKENS as u32 + 8)
            .with_n_seq_max(1)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = model.new_context(backend, params).map_err(|e| err(&e))?;
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
            tokens.truncate(MAX_TOKENS);
            if tokens.is_empty() {
                out.push(vec![0.0; self.dim]);
                continue;
            }
            ctx.clear_kv_cache();
            let mut batch = LlamaBatch::new(tokens.len(), 1);
            for (i, t) in tokens.iter().enumerate() {
                batch.add(*t, i as i32, &[0], true).map_err(|e| err(&e))?;
            }
            ctx.decode(&mut batch).map_err(|e| err(&e))?;
            let mut v = ctx.embeddings_seq_ith(0).map_err(|e| err(&e))?.to_vec();
            normalize(&mut v);
            out.push(v);
        }
        Ok(out)
    }
}

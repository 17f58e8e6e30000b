//! The language model's own embeddings, read from a separate, small
//! embedding context on the same GGUF file, L2-normalised. Two readings:
//! the mean of the last hidden states over the text (the fallback embedder
//! for memory search when the MiniLM files are absent), and the last hidden
//! state of the text put to the model as a user turn of its chat, at the
//! point where its reply would begin ([`Reading::ReplyState`]): the state
//! from which the model decides how to answer, refusals included, which a
//! probe reads (the harm classifier over the model's own states).

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use metareason_core::embed::normalize;
use metareason_core::{EmbedError, Embedder, ModelError};

/// Longest text embedded, in tokens (the rest is cut).
const MAX_TOKENS: usize = 512;
/// Longest chat read for its reply state, in tokens: the end is kept (the
/// request closes a role-play preamble; the reply opens after it).
const MAX_CHAT_TOKENS: usize = 1024;

/// How a text is read into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The mean of the last hidden states over the text.
    Mean,
    /// The last hidden state of the text sent as a user message through the
    /// model's chat template, with the assistant's turn opened.
    ReplyState,
}

/// Embeddings from a GGUF language model.
pub struct LlamaEmbedder {
    model: Mutex<LlamaModel>,
    threads: i32,
    name: String,
    dim: usize,
    reading: Reading,
}

impl LlamaEmbedder {
    /// Loads the model at `path` for embedding (the weights are
    /// memory-mapped, so a generation engine on the same file shares them).
    pub fn load(path: &Path, threads: Option<u32>) -> Result<Self, ModelError> {
        Self::load_reading(path, threads, Reading::Mean)
    }

    /// Loads the model at `path` to read texts the way `reading` says.
    /// The name says the reading and the file (`llama-mean:STEM`,
    /// `llama-reply-state:STEM`), so a classifier fitted on one reading of
    /// one model is never fed another's vectors.
    pub fn load_reading(
        path: &Path,
        threads: Option<u32>,
        reading: Reading,
    ) -> Result<Self, ModelError> {
        crate::check_gguf_file(path)?;
        let backend = crate::worker::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        let dim = model.n_embd() as usize;
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get() as u32))
            as i32;
        Ok(Self {
            model: Mutex::new(model),
            threads,
            name: reading.embedder_name(path),
            dim,
            reading,
        })
    }
}

impl Reading {
    /// The [`Embedder::name`] of this reading of the model at `path`
    /// (`llama-mean:STEM`, `llama-reply-state:STEM`): known without loading
    /// it, so a caller can tell whether a classifier would read it.
    pub fn embedder_name(self, path: &Path) -> String {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = match self {
            Reading::Mean => "llama-mean",
            Reading::ReplyState => "llama-reply-state",
        };
        format!("{kind}:{stem}")
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
        let (max, pooling) = match self.reading {
            Reading::Mean => (MAX_TOKENS, LlamaPoolingType::Mean),
            Reading::ReplyState => (MAX_CHAT_TOKENS, LlamaPoolingType::Last),
        };
        let template = match self.reading {
            Reading::Mean => None,
            Reading::ReplyState => Some(model.chat_template(None).map_err(|e| {
                err(&format!(
                    "the model has no chat template to read a reply state with: {e}"
                ))
            })?),
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(max as u32 + 8))
            .with_n_batch(max as u32 + 8)
            .with_n_ubatch(max as u32 + 8)
            .with_n_seq_max(1)
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let mut ctx = model.new_context(backend, params).map_err(|e| err(&e))?;
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let tokens = match &template {
                None => {
                    let mut t = model.vocab().tokenize(text.as_bytes(), true, false);
                    t.truncate(max);
                    t
                }
                Some(template) => {
                    let user = LlamaChatMessage::new("user".into(), (*text).to_string())
                        .map_err(|e| err(&format!("a text holds a NUL byte: {e}")))?;
                    let chat = model
                        .apply_chat_template(template, &[user], true)
                        .map_err(|e| err(&e))?;
                    // The template's special tokens must parse as such.
                    let t = model.vocab().tokenize(chat.as_bytes(), true, true);
                    t[t.len().saturating_sub(max)..].to_vec()
                }
            };
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

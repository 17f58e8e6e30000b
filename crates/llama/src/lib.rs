//! # metareason-llama
//!
//! The embedded engine: GGUF models run in process through llama.cpp (the
//! `llama-cpp-2` crate), behind the [`LanguageModel`] trait.
//!
//! What it adds over a plain generate call:
//! - **a multi-sequence prefix cache**: the KV cache holds several sequences
//!   ("slots"); a request starts from the slot that shares the longest token
//!   prefix with its prompt and evaluates only the rest, so step-wise search
//!   never re-encodes a prefix it has already seen;
//! - **shared prompts**: `n` samples of one prompt evaluate it once and copy
//!   its cache cells to the other sequences, then decode all of them in one
//!   batch per step;
//! - **log-probabilities and top-k alternatives** for every token, computed
//!   from the raw logits;
//! - **continuous batching across requests**: the sequences of every
//!   request in flight (from any number of threads) are decoded together,
//!   one token each per step, and a new request joins between two steps as
//!   soon as a slot is free, so concurrent callers (the server's clients)
//!   share each decode instead of queueing behind one another.
//!
//! The llama.cpp context is not thread-safe, so it lives on one worker
//! thread that schedules the requests; [`LlamaEngine`] is a cheap,
//! `Send + Sync` handle to it.
//!
//! ```no_run
//! use metareason_core::{LanguageModel, Prompt, SamplingParams};
//! use metareason_llama::{LlamaConfig, LlamaEngine};
//!
//! let engine = LlamaEngine::load(LlamaConfig::new("model.gguf"))?;
//! let (seq, usage) = engine.generate_one(&Prompt::user("2+2?"), &SamplingParams::greedy(16))?;
//! println!("{} ({} tokens)", seq.text, usage.generated_tokens);
//! # Ok::<(), metareason_core::ModelError>(())
//! ```
#![deny(missing_docs)]

mod embed;
mod logits;
mod worker;

pub use embed::{LlamaEmbedder, Reading, ReplyStateView, ReplyStates};

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;

use metareason_core::{
    GenerateRequest, Generation, LanguageModel, ModelError, ModelInfo, ScoreRequest, Scored,
};

/// How to load a model and size its context.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    /// Path of the GGUF file.
    pub model_path: PathBuf,
    /// Name shown in traces; defaults to the file stem.
    pub name: Option<String>,
    /// Context window per sequence, in tokens (capped at the model's training
    /// context).
    pub context_per_sequence: u32,
    /// Sequences the KV cache holds at once: the most samples decoded in one
    /// batch and the number of cached prefixes kept for re-use.
    pub sequences: u32,
    /// CPU threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Tokens evaluated per batch when reading a prompt.
    pub batch_size: u32,
    /// Forward llama.cpp's own log lines to `tracing` (they are dropped otherwise).
    pub engine_logs: bool,
}

impl LlamaConfig {
    /// Defaults for a model file: 4096 tokens per sequence, 8 sequences.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            name: None,
            context_per_sequence: 4096,
            sequences: 8,
            threads: None,
            batch_size: 512,
            engine_logs: false,
        }
    }
}

/// A handle to a model loaded in process. Cloning is not offered: share it
/// behind an `Arc`.
pub struct LlamaEngine {
    jobs: Mutex<Option<mpsc::Sender<worker::Job>>>,
    worker: Option<JoinHandle<()>>,
    info: ModelInfo,
    sequences: u32,
}

impl LlamaEngine {
    /// Loads a GGUF model and starts its worker thread.
    ///
    /// Fails with [`ModelError::Load`] when the file is missing, is not GGUF,
    /// is truncated or corrupt, or when the context cannot be created.
    pub fn load(config: LlamaConfig) -> Result<Self, ModelError> {
        check_gguf_file(&config.model_path)?;
        if config.sequences == 0 || config.context_per_sequence < 16 {
            return Err(ModelError::InvalidRequest(
                "the context needs at least 1 sequence of at least 16 tokens".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let sequences = config.sequences;
        let handle = std::thread::Builder::new()
            .name("llama-worker".into())
            .spawn(move || worker::run(config, rx, ready_tx))
            .map_err(|e| ModelError::Engine(format!("cannot start the engine thread: {e}")))?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(ModelError::Engine(
                    "the engine thread stopped while loading the model".into(),
                ));
            }
        };
        Ok(Self {
            jobs: Mutex::new(Some(tx)),
            worker: Some(handle),
            info,
            sequences,
        })
    }

    /// Number of sequences the cache holds at once.
    pub fn sequences(&self) -> u32 {
        self.sequences
    }

    /// Forgets every cached prefix (benchmarks use this to time cold prompts).
    pub fn clear_cache(&self) -> Result<(), ModelError> {
        self.call(worker::Job::ClearCache)
    }

    /// Number of tokens of a text under the model's tokenizer (no special
    /// tokens added).
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        let text = text.to_string();
        self.call(|reply| worker::Job::CountTokens(text, reply))
    }

    fn call<T>(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<T, ModelError>>) -> worker::Job,
    ) -> Result<T, ModelError> {
        let (tx, rx) = mpsc::channel();
        {
            let guard = self
                .jobs
                .lock()
                .map_err(|_| ModelError::Engine("the engine handle is poisoned".into()))?;
            let sender = guard
                .as_ref()
                .ok_or_else(|| ModelError::Engine("the engine is shut down".into()))?;
            sender
                .send(make(tx))
                .map_err(|_| ModelError::Engine("the engine thread has stopped".into()))?;
        }
        rx.recv().map_err(|_| {
            ModelError::Engine("the engine thread stopped while serving the request".into())
        })?
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        if let Ok(mut g) = self.jobs.lock() {
            g.take();
        }
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

impl LanguageModel for LlamaEngine {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn generate(&self, request: &GenerateRequest) -> Result<Generation, ModelError> {
        request.validate()?;
        let request = request.clone();
        self.call(|reply| worker::Job::Generate(request, reply))
    }

    fn score(&self, request: &ScoreRequest) -> Result<Scored, ModelError> {
        request.prompt.validate()?;
        if request.continuation.is_empty() {
            return Err(ModelError::InvalidRequest(
                "the continuation to score is empty".into(),
            ));
        }
        let request = request.clone();
        self.call(|reply| worker::Job::Score(request, reply))
    }
}

/// Checks that a path is a readable GGUF file before llama.cpp sees it, so
/// the common mistakes get a precise message.
pub fn check_gguf_file(path: &Path) -> Result<(), ModelError> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| {
        ModelError::Load(format!(
            "{}: {e}; give a GGUF file with --model, or fetch a known model with \
             `metareason models fetch NAME`",
            path.display()
        ))
    })?;
    if !meta.is_file() {
        return Err(ModelError::Load(format!(
            "{} is not a file; give the path of a .gguf model",
            path.display()
        )));
    }
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    if read.is_err() || &magic != b"GGUF" {
        return Err(ModelError::Load(format!(
            "{} is not a GGUF model file (it does not start with the GGUF magic bytes)",
            path.display()
        )));
    }
    Ok(())
}

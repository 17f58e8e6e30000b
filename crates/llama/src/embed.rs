//! The language model's own embeddings, read from a separate, small
//! embedding context on the same GGUF file, L2-normalised. Two readings:
//! the mean of the last hidden states over the text (the fallback embedder
//! for memory search when the MiniLM files are absent), and the last hidden
//! state of the text put to the model as a user turn of its chat, at the
//! point where its reply would begin ([`Reading::ReplyState`]): the state
//! from which the model decides how to answer, refusals included, which a
//! probe reads (the harm classifier over the model's own states). The same
//! point can be read at an inner layer ([`Reading::ReplyStateAt`]): the
//! residual stream after block L, read through llama.cpp's evaluation
//! callback, where linear probes of what a request asks for usually read
//! best (the last layer, after the final norm, is shaped for the next
//! token).

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
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
    /// The same point as [`Reading::ReplyState`], read at the output of
    /// block `L` (counted from 0) instead of the last layer; not
    /// normalised (a classifier standardises it).
    ReplyStateAt(u32),
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
        // llama.cpp's own log stays quiet unless an engine already asked
        // for it (a context per read would otherwise print its set-up).
        crate::worker::init_logs(false);
        let backend = crate::worker::backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| ModelError::Load(format!("{}: {e}", path.display())))?;
        let dim = model.n_embd() as usize;
        if let Reading::ReplyStateAt(layer) = reading {
            if layer >= model.n_layer() {
                return Err(ModelError::Load(format!(
                    "{} has {} layers (0 to {}); layer {layer} does not exist",
                    path.display(),
                    model.n_layer(),
                    model.n_layer().saturating_sub(1)
                )));
            }
        }
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
        match self {
            Reading::Mean => format!("llama-mean:{stem}"),
            Reading::ReplyState => format!("llama-reply-state:{stem}"),
            Reading::ReplyStateAt(layer) => format!("llama-reply-state@{layer}:{stem}"),
        }
    }

    /// The reading of the model at `path` that [`Embedder::name`] `name`
    /// stands for, if it is one of this model's.
    pub fn from_embedder_name(name: &str, path: &Path) -> Option<Reading> {
        [Reading::Mean, Reading::ReplyState]
            .into_iter()
            .find(|r| r.embedder_name(path) == name)
            .or_else(|| {
                let layer = name.strip_prefix("llama-reply-state@")?.split(':').next()?;
                let r = Reading::ReplyStateAt(layer.parse().ok()?);
                (r.embedder_name(path) == name).then_some(r)
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
        if let Reading::ReplyStateAt(layer) = self.reading {
            return Ok(self
                .reply_states_at(texts, &[layer])?
                .into_iter()
                .map(|mut by_layer| by_layer.remove(0))
                .collect());
        }
        let err = |e: &dyn std::fmt::Display| EmbedError(e.to_string());
        let backend = crate::worker::backend().map_err(|e| err(&e))?;
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let (max, pooling) = match self.reading {
            Reading::Mean => (MAX_TOKENS, LlamaPoolingType::Mean),
            _ => (MAX_CHAT_TOKENS, LlamaPoolingType::Last),
        };
        let template = match self.reading {
            Reading::Mean => None,
            _ => Some(chat_template(&model)?),
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
                Some(template) => chat_tokens(&model, template, text)?,
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

fn chat_template(model: &LlamaModel) -> Result<LlamaChatTemplate, EmbedError> {
    model.chat_template(None).map_err(|e| {
        EmbedError(format!(
            "the model has no chat template to read a reply state with: {e}"
        ))
    })
}

/// The tokens of `text` sent as a user turn with the assistant's turn
/// opened, the last [`MAX_CHAT_TOKENS`] of them.
fn chat_tokens(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    text: &str,
) -> Result<Vec<LlamaToken>, EmbedError> {
    let user = LlamaChatMessage::new("user".into(), text.to_string())
        .map_err(|e| EmbedError(format!("a text holds a NUL byte: {e}")))?;
    let chat = model
        .apply_chat_template(template, &[user], true)
        .map_err(|e| EmbedError(e.to_string()))?;
    // The template's special tokens must parse as such.
    let t = model.vocab().tokenize(chat.as_bytes(), true, true);
    Ok(t[t.len().saturating_sub(MAX_CHAT_TOKENS)..].to_vec())
}

impl LlamaEmbedder {
    /// The reply state of each text at each of `layers` (outputs of those
    /// blocks, counted from 0), read in one pass over the text: `out[i][k]`
    /// is text i at `layers[k]`. One pass serves any number of layers, so
    /// a probe can choose its layer without reading the data again.
    pub fn reply_states_at(
        &self,
        texts: &[&str],
        layers: &[u32],
    ) -> Result<Vec<Vec<Vec<f32>>>, EmbedError> {
        let err = |e: &dyn std::fmt::Display| EmbedError(e.to_string());
        // llama.cpp's backend must be up before a context is made.
        crate::worker::backend().map_err(|e| err(&e))?;
        let model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = layers.iter().find(|l| **l >= model.n_layer()) {
            return Err(EmbedError(format!(
                "the model has {} layers; layer {l} does not exist",
                model.n_layer()
            )));
        }
        let template = chat_template(&model)?;
        let mut capture = Capture {
            names: layers.iter().map(|l| format!("l_out-{l}")).collect(),
            states: vec![None; layers.len()],
            fault: None,
        };
        let context = RawContext::new(&model, self.threads, &mut capture)?;
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let mut tokens: Vec<i32> = chat_tokens(&model, &template, text)?
                .into_iter()
                .map(|t| t.0)
                .collect();
            // SAFETY: the capture outlives the context (dropped at the end
            // of this function, after it); the callback is the only other
            // user, and only during `decode`.
            unsafe { (*context.capture).states.iter_mut().for_each(|s| *s = None) };
            context.decode(&mut tokens)?;
            // SAFETY: as above; decode has returned.
            let capture = unsafe { &mut *context.capture };
            if let Some(fault) = capture.fault.take() {
                return Err(EmbedError(fault));
            }
            let mut by_layer = Vec::with_capacity(layers.len());
            for (state, layer) in capture.states.iter_mut().zip(layers) {
                by_layer.push(state.take().ok_or_else(|| {
                    EmbedError(format!(
                        "llama.cpp computed no output of layer {layer} (tensor l_out-{layer}); this model's graph names its layers otherwise"
                    ))
                })?);
            }
            out.push(by_layer);
        }
        Ok(out)
    }
}

/// What the evaluation callback collects: the last token's column of each
/// named tensor.
struct Capture {
    names: Vec<String>,
    states: Vec<Option<Vec<f32>>>,
    fault: Option<String>,
}

/// Called by llama.cpp for every tensor of the graph: first to ask whether
/// its data is wanted (`ask`), then, for those that are, once computed.
unsafe extern "C" fn capture_states(
    t: *mut llama_cpp_sys_2::ggml_tensor,
    ask: bool,
    user_data: *mut std::ffi::c_void,
) -> bool {
    // SAFETY: llama.cpp passes a valid tensor and the pointer we gave it,
    // which points at a live Capture for the whole decode.
    let (tensor, capture) = unsafe { (&*t, &mut *user_data.cast::<Capture>()) };
    // SAFETY: ggml names are NUL-terminated within their 64 bytes.
    let name = unsafe { std::ffi::CStr::from_ptr(tensor.name.as_ptr()) };
    let Some(k) = capture
        .names
        .iter()
        .position(|n| n.as_bytes() == name.to_bytes())
    else {
        // Not wanted; when asked after computing (never for these), go on.
        return !ask;
    };
    if ask {
        return true;
    }
    let (rows, columns) = (tensor.ne[0], tensor.ne[1]);
    if tensor.type_ != llama_cpp_sys_2::GGML_TYPE_F32
        || tensor.nb[0] != std::mem::size_of::<f32>()
        || rows <= 0
        || columns <= 0
    {
        capture.fault = Some(format!(
            "layer output {} is not a dense f32 matrix (type {}), so it cannot be read",
            name.to_string_lossy(),
            tensor.type_
        ));
        return true;
    }
    let mut column = vec![0.0f32; rows as usize];
    // SAFETY: the last column lies inside the tensor (checked shape, dense
    // rows), and `column` holds exactly one column.
    unsafe {
        llama_cpp_sys_2::ggml_backend_tensor_get(
            t,
            column.as_mut_ptr().cast(),
            (columns as usize - 1) * tensor.nb[1],
            rows as usize * std::mem::size_of::<f32>(),
        );
    }
    capture.states[k] = Some(column);
    true
}

/// A llama.cpp context made through the raw API, because the safe one
/// does not let a caller set the evaluation callback.
struct RawContext {
    ctx: *mut llama_cpp_sys_2::llama_context,
    capture: *mut Capture,
}

impl RawContext {
    fn new(model: &LlamaModel, threads: i32, capture: &mut Capture) -> Result<Self, EmbedError> {
        let n = MAX_CHAT_TOKENS as u32 + 8;
        // SAFETY: plain defaults.
        let mut params = unsafe { llama_cpp_sys_2::llama_context_default_params() };
        params.n_ctx = n;
        params.n_batch = n;
        // One micro-batch per text, so the last column of the last call is
        // the last token.
        params.n_ubatch = n;
        params.n_seq_max = 1;
        params.n_threads = threads;
        params.n_threads_batch = threads;
        params.embeddings = false;
        params.cb_eval = Some(capture_states);
        let capture: *mut Capture = capture;
        params.cb_eval_user_data = capture.cast();
        // SAFETY: `LlamaModel` is `#[repr(transparent)]` over a non-null
        // pointer to the loaded model (through `Ptr` and `NonNull`, both
        // transparent), which outlives this context (the caller holds it
        // locked for the whole read).
        let raw_model =
            unsafe { *(model as *const LlamaModel).cast::<*mut llama_cpp_sys_2::llama_model>() };
        // SAFETY: a valid model and parameters.
        let ctx = unsafe { llama_cpp_sys_2::llama_init_from_model(raw_model, params) };
        if ctx.is_null() {
            return Err(EmbedError(
                "llama.cpp could not make a context to read layer states (out of memory?)".into(),
            ));
        }
        Ok(Self { ctx, capture })
    }

    /// Reads `tokens` from an empty cache.
    fn decode(&self, tokens: &mut [i32]) -> Result<(), EmbedError> {
        if tokens.is_empty() {
            return Err(EmbedError("an empty text has no reply state".into()));
        }
        // SAFETY: a live context; the batch borrows `tokens` for the call.
        let status = unsafe {
            llama_cpp_sys_2::llama_memory_clear(llama_cpp_sys_2::llama_get_memory(self.ctx), true);
            let batch =
                llama_cpp_sys_2::llama_batch_get_one(tokens.as_mut_ptr(), tokens.len() as i32);
            llama_cpp_sys_2::llama_decode(self.ctx, batch)
        };
        if status != 0 {
            return Err(EmbedError(format!(
                "llama.cpp failed to read a text of {} tokens (status {status})",
                tokens.len()
            )));
        }
        Ok(())
    }
}

impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: made by llama_init_from_model, freed once.
        unsafe { llama_cpp_sys_2::llama_free(self.ctx) };
    }
}

/// How many texts [`ReplyStates`] remembers (a request and its views, read
/// by the policy's classifiers and then by the answerability probe).
const RECENT_TEXTS: usize = 32;

/// The model's reply state at several blocks, read once per text for all of
/// them: one pass captures every block, and the last texts read are
/// remembered, so the classifiers that read different blocks of the same
/// request (the harm probe, the answerability probe) pay for one read.
/// Each block is served by its own [`ReplyStateView`], an [`Embedder`]
/// named like a [`Reading::ReplyStateAt`] reader of that block.
#[derive(Clone)]
pub struct ReplyStates {
    shared: std::sync::Arc<SharedStates>,
}

struct SharedStates {
    reader: LlamaEmbedder,
    layers: Vec<u32>,
    names: Vec<String>,
    /// The last texts read, each with its state at every block.
    recent: Mutex<std::collections::VecDeque<(String, Vec<Vec<f32>>)>>,
    /// Texts read through the model so far.
    passes: std::sync::atomic::AtomicUsize,
}

impl ReplyStates {
    /// Loads the model at `path` to read the reply state at `layers`
    /// (blocks counted from 0; repeats are read once).
    pub fn load(path: &Path, threads: Option<u32>, layers: &[u32]) -> Result<Self, ModelError> {
        let mut unique: Vec<u32> = Vec::with_capacity(layers.len());
        for l in layers {
            if !unique.contains(l) {
                unique.push(*l);
            }
        }
        let Some(first) = unique.first() else {
            return Err(ModelError::Load(
                "name at least one layer to read the reply state at".into(),
            ));
        };
        let reader = LlamaEmbedder::load_reading(path, threads, Reading::ReplyStateAt(*first))?;
        let n_layer = reader
            .model
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .n_layer();
        if let Some(l) = unique.iter().find(|l| **l >= n_layer) {
            return Err(ModelError::Load(format!(
                "{} has {n_layer} layers (0 to {}); layer {l} does not exist",
                path.display(),
                n_layer.saturating_sub(1)
            )));
        }
        Ok(Self {
            shared: std::sync::Arc::new(SharedStates {
                names: unique
                    .iter()
                    .map(|l| Reading::ReplyStateAt(*l).embedder_name(path))
                    .collect(),
                layers: unique,
                reader,
                recent: Mutex::new(std::collections::VecDeque::new()),
                passes: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// How many texts were read through the model so far (a text asked
    /// for again while remembered, at any block, is not read again).
    pub fn texts_read(&self) -> usize {
        self.shared
            .passes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One embedder per block, in the order of the layers loaded.
    pub fn views(&self) -> Vec<ReplyStateView> {
        (0..self.shared.layers.len())
            .map(|k| ReplyStateView {
                shared: self.shared.clone(),
                k,
            })
            .collect()
    }
}

/// The reply state at one block of a [`ReplyStates`].
#[derive(Clone)]
pub struct ReplyStateView {
    shared: std::sync::Arc<SharedStates>,
    k: usize,
}

impl ReplyStateView {
    /// The block it reads.
    pub fn layer(&self) -> u32 {
        self.shared.layers[self.k]
    }
}

impl Embedder for ReplyStateView {
    fn name(&self) -> &str {
        &self.shared.names[self.k]
    }

    fn dim(&self) -> usize {
        self.shared.reader.dim
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let s = &self.shared;
        // Held through the read: a second caller with the same text waits
        // and finds it read (the model is locked for a read anyway).
        let mut recent = s.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut unread: Vec<&str> = Vec::new();
        for t in texts {
            if !recent.iter().any(|(r, _)| r == t) && !unread.contains(t) {
                unread.push(t);
            }
        }
        let fresh = if unread.is_empty() {
            Vec::new()
        } else {
            let states = s.reader.reply_states_at(&unread, &s.layers)?;
            s.passes
                .fetch_add(unread.len(), std::sync::atomic::Ordering::Relaxed);
            states
        };
        let out = texts
            .iter()
            .map(|t| {
                let known = recent.iter().find(|(r, _)| r == t).map(|(_, v)| v);
                let read = || {
                    unread
                        .iter()
                        .position(|u| u == t)
                        .and_then(|i| fresh.get(i))
                };
                known
                    .or_else(read)
                    .map(|v| v[self.k].clone())
                    .ok_or_else(|| EmbedError("the reader returned too few states".into()))
            })
            .collect();
        for (t, v) in unread.iter().zip(fresh) {
            recent.push_back((t.to_string(), v));
        }
        while recent.len() > RECENT_TEXTS {
            recent.pop_front();
        }
        out
    }
}

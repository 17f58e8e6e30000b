//! The engine thread: owns the llama.cpp context and its cached sequences.

use std::num::NonZeroU32;
use std::sync::{mpsc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use metareason_core::{
    FinishReason, GenerateRequest, Generation, Message, ModelError, ModelInfo, Prompt, Role,
    ScoreRequest, Scored, Sequence, TokenLogprob, TopToken, Usage,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::logits::{pick, Distribution, SamplerSettings};
use crate::LlamaConfig;

type Reply<T> = mpsc::Sender<Result<T, ModelError>>;

/// Work the engine thread does, each with the channel its answer goes to.
pub(crate) enum Job {
    Generate(GenerateRequest, Reply<Generation>),
    Score(ScoreRequest, Reply<Scored>),
    ClearCache(Reply<()>),
    CountTokens(String, Reply<usize>),
}

/// Default system messages that chat templates add when a chat has none
/// (matched against the template text).
const DEFAULT_SYSTEM_PROMPTS: &[&str] =
    &["You are Qwen, created by Alibaba Cloud. You are a helpful assistant."];

/// llama.cpp's backend may be initialised once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend, ModelError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| LlamaBackend::init().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ModelError::Engine(format!("cannot start llama.cpp: {e}")))
}

fn init_logs(enabled: bool) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(enabled),
        );
    });
}

/// Entry point of the engine thread.
pub(crate) fn run(
    config: LlamaConfig,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<ModelInfo, ModelError>>,
) {
    init_logs(config.engine_logs);
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let model =
        match LlamaModel::load_from_file(backend, &config.model_path, &LlamaModelParams::default())
        {
            Ok(m) => m,
            Err(e) => {
                let _ = ready.send(Err(ModelError::Load(format!(
                    "llama.cpp could not load {} ({e}): the file is truncated, corrupt, or of an \
                 architecture this llama.cpp does not know; fetch it again \
                 (`metareason models fetch NAME`) or check it (`metareason models verify NAME`)",
                    config.model_path.display()
                ))));
                return;
            }
        };
    let mut engine = match Engine::new(&model, backend, &config) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let name = config.name.clone().unwrap_or_else(|| {
        config
            .model_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gguf".into())
    });
    let info = ModelInfo {
        name,
        backend: "llama.cpp".into(),
        context_length: Some(engine.ctx_per_seq as u32),
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    for job in jobs {
        match job {
            Job::Generate(req, reply) => {
                let _ = reply.send(engine.generate(&req));
            }
            Job::Score(req, reply) => {
                let _ = reply.send(engine.score(&req));
            }
            Job::ClearCache(reply) => {
                engine.clear();
                let _ = reply.send(Ok(()));
            }
            Job::CountTokens(text, reply) => {
                let n = engine.model.str_to_token_count(&text);
                let _ = reply.send(Ok(n));
            }
        }
    }
}

/// A sequence of the KV cache and the tokens it holds.
struct Slot {
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

struct Engine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    /// The system message the model's template adds when none is given; the
    /// template call does not run Jinja, so it is added here.
    default_system: Option<&'static str>,
    slots: Vec<Slot>,
    clock: u64,
    ctx_per_seq: usize,
    batch_size: usize,
    /// Threads the engine may use (for per-token work between decodes).
    cpu_threads: usize,
}

/// Small helpers on the model that the engine needs in several places.
trait ModelExt {
    fn str_to_token_count(&self, text: &str) -> usize;
    fn piece(&self, token: LlamaToken) -> Vec<u8>;
}

impl ModelExt for LlamaModel {
    fn str_to_token_count(&self, text: &str) -> usize {
        self.vocab().tokenize(text.as_bytes(), false, false).len()
    }
    fn piece(&self, token: LlamaToken) -> Vec<u8> {
        self.vocab().token_to_piece(token, false, None)
    }
}

fn lcp(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn engine_err(what: &str, e: impl std::fmt::Display) -> ModelError {
    ModelError::Engine(format!("{what}: {e}"))
}

/// A sequence being generated.
struct Active {
    /// Index into the request's sample list.
    sample: usize,
    slot: usize,
    rng: ChaCha8Rng,
    bytes: Vec<u8>,
    /// Byte offset in `bytes` where each token starts.
    starts: Vec<usize>,
    tokens: Vec<TokenLogprob>,
    /// The token chosen but not yet decoded.
    pending: LlamaToken,
    done: Option<FinishReason>,
    /// Byte length of the text kept when a stop string cut it.
    cut: Option<usize>,
    /// The stop string that cut it.
    stopped_by: Option<String>,
}

impl<'m> Engine<'m> {
    fn new(
        model: &'m LlamaModel,
        backend: &LlamaBackend,
        config: &LlamaConfig,
    ) -> Result<Self, ModelError> {
        let train = model.n_ctx_train() as usize;
        let per_seq = (config.context_per_sequence as usize).min(train.max(16));
        let n_seq = config.sequences as usize;
        let total = per_seq * n_seq;
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            as i32;
        let batch = config.batch_size.max(n_seq as u32);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(total as u32))
            .with_n_batch(batch)
            .with_n_ubatch(batch)
            .with_n_seq_max(n_seq as u32)
            .with_kv_unified(true)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = model.new_context(backend, params).map_err(|e| {
            ModelError::Load(format!(
                "cannot create a context of {total} tokens ({e}); lower --ctx-size"
            ))
        })?;
        let template = model
            .chat_template(None)
            .ok()
            .or_else(|| LlamaChatTemplate::new("chatml").ok())
            .ok_or_else(|| ModelError::Load("no usable chat template".into()))?;
        let template_text = template.to_string().unwrap_or_default();
        let default_system = DEFAULT_SYSTEM_PROMPTS
            .iter()
            .find(|s| template_text.contains(*s))
            .copied();
        Ok(Self {
            model,
            ctx,
            template,
            default_system,
            slots: (0..n_seq)
                .map(|_| Slot {
                    tokens: Vec::new(),
                    last_used: 0,
                })
                .collect(),
            clock: 0,
            ctx_per_seq: per_seq,
            batch_size: batch as usize,
            cpu_threads: threads as usize,
        })
    }

    fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        for s in &mut self.slots {
            s.tokens.clear();
        }
    }

    /// The prompt as text: the chat through the model's template, then the
    /// partial assistant reply.
    fn render(&self, prompt: &Prompt) -> Result<String, ModelError> {
        let has_system = prompt.messages.iter().any(|m| m.role == Role::System);
        let default = self
            .default_system
            .filter(|_| !has_system)
            .map(Message::system);
        let chat = default
            .iter()
            .chain(&prompt.messages)
            .map(|m| LlamaChatMessage::new(m.role.as_str().into(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::InvalidRequest(format!("a message holds a NUL byte: {e}")))?;
        let mut text = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| engine_err("cannot apply the chat template", e))?;
        text.push_str(&prompt.assistant_prefix);
        Ok(text)
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        // Special tokens in the rendered template must parse as such.
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    fn check_fits(&self, n: usize) -> Result<(), ModelError> {
        if n >= self.ctx_per_seq {
            return Err(ModelError::ContextOverflow {
                prompt_tokens: n,
                context_length: self.ctx_per_seq,
            });
        }
        Ok(())
    }

    /// Picks the slot sharing the longest prefix with `tokens` (most recently
    /// used on ties). Returns the slot and the shared length.
    fn best_slot(&self, tokens: &[LlamaToken]) -> (usize, usize) {
        let mut best = (0, 0, 0u64);
        for (i, s) in self.slots.iter().enumerate() {
            let l = lcp(&s.tokens, tokens);
            if (l, s.last_used) > (best.1, best.2) {
                best = (i, l, s.last_used);
            }
        }
        (best.0, best.1)
    }

    fn touch(&mut self, slot: usize) {
        self.clock += 1;
        self.slots[slot].last_used = self.clock;
    }

    /// Makes `slot` hold exactly `tokens`, re-using its cached prefix but at
    /// most `max_reuse` tokens of it, and evaluating the rest. Logits are
    /// requested for positions in `want_logits` (absolute positions); `visit`
    /// is called with (position, logits) for each, in order. Returns the
    /// number of tokens re-used.
    fn fill_slot(
        &mut self,
        slot: usize,
        tokens: &[LlamaToken],
        max_reuse: usize,
        want_logits: std::ops::Range<usize>,
        mut visit: impl FnMut(&Self, usize, &[f32]),
    ) -> Result<usize, ModelError> {
        let reuse = lcp(&self.slots[slot].tokens, tokens).min(max_reuse);
        self.ctx
            .clear_kv_cache_seq(Some(slot as u32), Some(reuse as u32), None)
            .map_err(|e| engine_err("cannot trim the cache", e))?;
        self.slots[slot].tokens.truncate(reuse);
        let mut batch = LlamaBatch::new(self.batch_size, 1);
        let mut pos = reuse;
        while pos < tokens.len() {
            let end = (pos + self.batch_size).min(tokens.len());
            batch.clear();
            for (p, &t) in tokens.iter().enumerate().take(end).skip(pos) {
                batch
                    .add(t, p as i32, &[slot as i32], want_logits.contains(&p))
                    .map_err(|e| engine_err("cannot build a batch", e))?;
            }
            self.decode(&mut batch, &[slot])?;
            self.slots[slot].tokens.extend_from_slice(&tokens[pos..end]);
            for p in pos..end {
                if want_logits.contains(&p) {
                    let logits = self.ctx.get_logits_ith((p - pos) as i32);
                    visit(self, p, logits);
                }
            }
            pos = end;
        }
        self.touch(slot);
        Ok(reuse)
    }

    /// Decodes a batch; when the cache is full, drops every cached sequence
    /// not in `keep` and tries once more.
    fn decode(&mut self, batch: &mut LlamaBatch, keep: &[usize]) -> Result<(), ModelError> {
        match self.ctx.decode(batch) {
            Ok(()) => Ok(()),
            Err(DecodeError::NoKvCacheSlot) => {
                for i in 0..self.slots.len() {
                    if !keep.contains(&i) && !self.slots[i].tokens.is_empty() {
                        let _ = self.ctx.clear_kv_cache_seq(Some(i as u32), None, None);
                        self.slots[i].tokens.clear();
                    }
                }
                self.ctx
                    .decode(batch)
                    .map_err(|e| engine_err("the KV cache is full; lower n or raise --ctx-size", e))
            }
            Err(e) => Err(engine_err("decoding failed", e)),
        }
    }

    fn token_info(
        &self,
        dist: &Distribution,
        logits: &[f32],
        token: u32,
        k: usize,
    ) -> TokenLogprob {
        let bytes = self.model.piece(LlamaToken(token as i32));
        TokenLogprob {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            logprob: dist.logprob(logits[token as usize]),
            bytes,
            top: dist
                .top
                .iter()
                .take(k)
                .map(|&(id, l)| TopToken {
                    text: String::from_utf8_lossy(&self.model.piece(LlamaToken(id as i32)))
                        .into_owned(),
                    logprob: dist.logprob(l),
                })
                .collect(),
        }
    }

    fn generate(&mut self, req: &GenerateRequest) -> Result<Generation, ModelError> {
        let started = Instant::now();
        let prompt = self.tokenize(&self.render(&req.prompt)?);
        self.check_fits(prompt.len())?;
        let mut usage = Usage::default();
        let mut sequences: Vec<Option<Sequence>> = vec![None; req.n];
        let per_round = self.slots.len();
        let mut next_sample = 0;
        while next_sample < req.n {
            let count = per_round.min(req.n - next_sample);
            let round = self.generate_round(req, &prompt, next_sample, count, &mut usage)?;
            for (i, s) in round {
                sequences[i] = Some(s);
            }
            next_sample += count;
        }
        usage.wall_time = started.elapsed();
        Ok(Generation {
            sequences: sequences
                .into_iter()
                .map(|s| s.expect("every sample ran"))
                .collect(),
            usage,
        })
    }

    /// Generates samples `first..first+count` in parallel sequences.
    fn generate_round(
        &mut self,
        req: &GenerateRequest,
        prompt: &[LlamaToken],
        first: usize,
        count: usize,
        usage: &mut Usage,
    ) -> Result<Vec<(usize, Sequence)>, ModelError> {
        let p = &req.params;
        let k_top = usize::from(p.top_logprobs);
        let k_cand = if p.temperature <= 0.0 {
            k_top.max(1)
        } else if p.top_k == 0 {
            0
        } else {
            (p.top_k as usize).max(k_top)
        };
        let settings = SamplerSettings {
            temperature: p.temperature,
            top_p: p.top_p,
        };
        let (source, _) = self.best_slot(prompt);
        let last = prompt.len() - 1;
        // The last prompt token is always evaluated: its logits start generation.
        let mut first_dist = None;
        let reused = self.fill_slot(source, prompt, last, last..prompt.len(), |_, _, logits| {
            // Kept whole: the first token of every sample is drawn from it.
            first_dist = Some((Distribution::new(logits, k_cand), logits.to_vec()));
        })?;
        usage.cached_prompt_tokens += reused as u64;
        usage.prompt_tokens += (prompt.len() - reused) as u64;
        let (dist0, logits0) = first_dist.expect("the last prompt token has logits");

        // Other samples take the least recently used slots and share the prompt's cells.
        let mut order: Vec<usize> = (0..self.slots.len()).filter(|&s| s != source).collect();
        order.sort_by_key(|&s| self.slots[s].last_used);
        let mut slots = vec![source];
        for &t in order.iter().take(count - 1) {
            self.ctx
                .clear_kv_cache_seq(Some(t as u32), None, None)
                .map_err(|e| engine_err("cannot clear a sequence", e))?;
            self.ctx
                .copy_kv_cache_seq(source as i32, t as i32, None, Some(prompt.len() as u32))
                .map_err(|e| engine_err("cannot share the prompt", e))?;
            self.slots[t].tokens = prompt.to_vec();
            self.touch(t);
            slots.push(t);
        }

        let mut active: Vec<Active> = slots
            .iter()
            .enumerate()
            .map(|(j, &slot)| {
                let sample = first + j;
                let mut rng = ChaCha8Rng::seed_from_u64(
                    p.seed ^ (sample as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let tok = pick(&dist0, settings, &mut rng);
                let mut a = Active {
                    sample,
                    slot,
                    rng,
                    bytes: Vec::new(),
                    starts: Vec::new(),
                    tokens: Vec::new(),
                    pending: LlamaToken(tok as i32),
                    done: None,
                    cut: None,
                    stopped_by: None,
                };
                self.accept(&mut a, &dist0, &logits0, tok, k_top, req);
                a
            })
            .collect();

        let mut batch = LlamaBatch::new(active.len().max(1), 1);
        loop {
            batch.clear();
            let mut live = Vec::new();
            for (j, a) in active.iter().enumerate() {
                if a.done.is_some() {
                    continue;
                }
                let pos = self.slots[a.slot].tokens.len();
                batch
                    .add(a.pending, pos as i32, &[a.slot as i32], true)
                    .map_err(|e| engine_err("cannot build a batch", e))?;
                live.push(j);
            }
            if live.is_empty() {
                break;
            }
            let keep: Vec<usize> = live.iter().map(|&j| active[j].slot).collect();
            self.decode(&mut batch, &keep)?;
            for &j in &live {
                let a = &active[j];
                self.slots[a.slot].tokens.push(a.pending);
            }
            let rows: Vec<&[f32]> = (0..live.len())
                .map(|bi| self.ctx.get_logits_ith(bi as i32))
                .collect();
            let dists = distributions(&rows, k_cand, self.cpu_threads);
            for ((&j, logits), dist) in live.iter().zip(rows).zip(dists) {
                let a = &mut active[j];
                let tok = pick(&dist, settings, &mut a.rng);
                a.pending = LlamaToken(tok as i32);
                self.accept(a, &dist, logits, tok, k_top, req);
            }
        }
        for a in &active {
            self.touch(a.slot);
        }
        usage.generated_tokens += active.iter().map(|a| a.tokens.len() as u64).sum::<u64>();
        Ok(active
            .into_iter()
            .map(|a| {
                let keep = a.cut.unwrap_or(a.bytes.len());
                let n_tokens = a.starts.iter().take_while(|&&s| s < keep).count();
                let mut tokens = a.tokens;
                tokens.truncate(n_tokens);
                (
                    a.sample,
                    Sequence {
                        text: String::from_utf8_lossy(&a.bytes[..keep]).into_owned(),
                        tokens,
                        finish_reason: a.done.unwrap_or(FinishReason::Length),
                        stop_sequence: a.stopped_by,
                    },
                )
            })
            .collect())
    }

    /// Records a chosen token and decides whether its sequence ends.
    fn accept(
        &self,
        a: &mut Active,
        dist: &Distribution,
        logits: &[f32],
        tok: u32,
        k_top: usize,
        req: &GenerateRequest,
    ) {
        let token = LlamaToken(tok as i32);
        if self.model.vocab().is_eog(token) && !req.params.ignore_eos {
            a.done = Some(FinishReason::Stop);
            return;
        }
        let info = self.token_info(dist, logits, tok, k_top);
        let search_from = a
            .bytes
            .len()
            .saturating_sub(req.params.stop.iter().map(String::len).max().unwrap_or(0));
        a.starts.push(a.bytes.len());
        a.bytes.extend_from_slice(&info.bytes);
        a.tokens.push(info);
        // DeepConf's online cut: the mean confidence of the last window.
        if req
            .params
            .confidence_floor
            .is_some_and(|f| f.breached_by(&a.tokens))
        {
            a.done = Some(FinishReason::LowConfidence);
            return;
        }
        for stop in &req.params.stop {
            if let Some(at) = find(&a.bytes[search_from..], stop.as_bytes()) {
                let cut = search_from + at;
                if a.cut.is_none_or(|c| cut < c) {
                    a.cut = Some(cut);
                    a.stopped_by = Some(stop.clone());
                }
                a.done = Some(FinishReason::Stop);
            }
        }
        if a.done.is_some() {
            return;
        }
        // The pending token still has to be decoded: it needs a place.
        let in_cache = self.slots[a.slot].tokens.len();
        if a.tokens.len() >= req.params.max_tokens as usize || in_cache + 1 >= self.ctx_per_seq {
            a.done = Some(FinishReason::Length);
        }
    }

    fn score(&mut self, req: &ScoreRequest) -> Result<Scored, ModelError> {
        let started = Instant::now();
        let context_text = self.render(&req.prompt)?;
        let context = self.tokenize(&context_text);
        let full = self.tokenize(&format!("{context_text}{}", req.continuation));
        self.check_fits(full.len())?;
        // Tokens may merge across the boundary; forced tokens start where the
        // two tokenisations part.
        let start = lcp(&context, &full).max(1);
        if start >= full.len() {
            return Err(ModelError::InvalidRequest(
                "the continuation adds no tokens to the prompt".into(),
            ));
        }
        let (slot, _) = self.best_slot(&full);
        let k = usize::from(req.top_logprobs);
        let mut tokens = Vec::with_capacity(full.len() - start);
        let reused = self.fill_slot(
            slot,
            &full,
            start - 1,
            start - 1..full.len() - 1,
            |me, p, logits| {
                let dist = Distribution::new(logits, k.max(1));
                let forced = full[p + 1].0 as u32;
                tokens.push(me.token_info(&dist, logits, forced, k));
            },
        )?;
        Ok(Scored {
            tokens,
            usage: Usage {
                prompt_tokens: (full.len() - reused) as u64,
                cached_prompt_tokens: reused as u64,
                generated_tokens: 0,
                wall_time: started.elapsed(),
            },
        })
    }
}

/// The distributions of several logits rows. Between two decodes the CPU is
/// otherwise idle, so with several sequences the rows are split across
/// threads (each row is a few passes over the whole vocabulary).
fn distributions(rows: &[&[f32]], k: usize, threads: usize) -> Vec<Distribution> {
    if rows.len() < 2 || threads < 2 {
        return rows.iter().map(|r| Distribution::new(r, k)).collect();
    }
    let per = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|r| Distribution::new(r, k))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a distribution thread panicked"))
            .collect()
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcp_counts_shared_prefix() {
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        assert_eq!(lcp(&t(&[1, 2, 3]), &t(&[1, 2, 4])), 2);
        assert_eq!(lcp(&t(&[]), &t(&[1])), 0);
        assert_eq!(lcp(&t(&[1, 2]), &t(&[1, 2, 3])), 2);
    }

    #[test]
    fn find_locates_stop_bytes() {
        assert_eq!(find(b"abc\n\nQ:", b"\n\n"), Some(3));
        assert_eq!(find(b"abc", b"abcd"), None);
    }
}

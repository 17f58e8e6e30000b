//! The engine thread: owns the llama.cpp context and its cached sequences.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

pub(crate) fn init_logs(enabled: bool) {
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
    Scheduler::default().run(&mut engine, &jobs);
}

/// Continuous batching: the sequences of every generate request in flight
/// are decoded together, one token each per step, and a new request joins
/// between two steps as soon as a sequence slot is free, instead of waiting
/// for the requests before it to finish. Scoring and the other jobs run
/// between steps on a free slot.
#[derive(Default)]
struct Scheduler {
    /// Generate requests not finished, by id.
    open: BTreeMap<u64, GenJob>,
    /// Requests with samples not started yet, first come first served.
    waiting: VecDeque<u64>,
    /// Jobs that need a free slot (scoring) or an idle engine (clearing).
    deferred: VecDeque<Job>,
    active: Vec<Active>,
    next_id: u64,
}

impl Scheduler {
    fn run(&mut self, engine: &mut Engine<'_>, jobs: &mpsc::Receiver<Job>) {
        let mut closed = false;
        loop {
            let idle = self.active.is_empty() && self.waiting.is_empty();
            if idle && self.deferred.is_empty() {
                if closed {
                    return;
                }
                // Nothing to do: wait for work.
                match jobs.recv() {
                    Ok(job) => self.take(engine, job),
                    Err(_) => return,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => self.take(engine, job),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            self.run_deferred(engine);
            self.admit(engine);
            if !self.active.is_empty() {
                if let Err(e) = engine.step(&mut self.active, &mut self.open) {
                    self.fail_active(engine, e);
                }
                self.finish(engine);
            }
        }
    }

    /// Accepts a job: a generate request is prepared and queued; other jobs
    /// run now or wait for a free slot.
    fn take(&mut self, engine: &mut Engine<'_>, job: Job) {
        match job {
            Job::Generate(req, reply) => match engine.prepare(req, reply.clone()) {
                Ok(g) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.open.insert(id, g);
                    self.waiting.push_back(id);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Job::CountTokens(text, reply) => {
                let n = engine.model.str_to_token_count(&text);
                let _ = reply.send(Ok(n));
            }
            other => {
                self.deferred.push_back(other);
                self.run_deferred(engine);
            }
        }
    }

    fn run_deferred(&mut self, engine: &mut Engine<'_>) {
        let mut keep = VecDeque::new();
        while let Some(job) = self.deferred.pop_front() {
            match job {
                Job::Score(req, reply) if engine.free_slots().next().is_some() => {
                    let _ = reply.send(engine.score(&req));
                }
                Job::ClearCache(reply) if self.active.is_empty() => {
                    engine.clear();
                    let _ = reply.send(Ok(()));
                }
                other => keep.push_back(other),
            }
        }
        self.deferred = keep;
    }

    /// Starts waiting samples on free slots, oldest request first.
    fn admit(&mut self, engine: &mut Engine<'_>) {
        while let Some(&id) = self.waiting.front() {
            let free = engine.free_slots().count();
            if free == 0 {
                return;
            }
            let job = self.open.get_mut(&id).expect("waiting jobs are open");
            let count = free.min(job.req.n - job.next_sample);
            match engine.start_samples(id, job, count) {
                Ok(started) => {
                    job.next_sample += count;
                    job.running += count;
                    self.active.extend(started);
                }
                Err(e) => {
                    self.fail_job(engine, id, e);
                    continue;
                }
            }
            if job.next_sample == job.req.n {
                self.waiting.pop_front();
            }
        }
    }

    /// Hands finished sequences to their requests and answers the requests
    /// whose every sample is done.
    fn finish(&mut self, engine: &mut Engine<'_>) {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].done.is_none() {
                i += 1;
                continue;
            }
            let a = self.active.swap_remove(i);
            engine.release(a.slot);
            let id = a.job;
            let Some(job) = self.open.get_mut(&id) else {
                continue;
            };
            job.running -= 1;
            job.usage.generated_tokens += a.tokens.len() as u64;
            let sample = a.sample;
            job.sequences[sample] = Some(a.into_sequence());
            if job.running == 0 && job.next_sample == job.req.n {
                self.open.remove(&id).expect("the job is open").complete();
            }
        }
    }

    fn fail_job(&mut self, engine: &mut Engine<'_>, id: u64, e: ModelError) {
        self.waiting.retain(|&w| w != id);
        self.active.retain(|a| {
            if a.job == id {
                engine.release(a.slot);
                false
            } else {
                true
            }
        });
        if let Some(job) = self.open.remove(&id) {
            let _ = job.reply.send(Err(e));
        }
    }

    /// A decode failed: every request with a running sequence fails with it.
    fn fail_active(&mut self, engine: &mut Engine<'_>, e: ModelError) {
        let ids: BTreeSet<u64> = self.active.iter().map(|a| a.job).collect();
        let message = e.to_string();
        for id in ids {
            self.fail_job(engine, id, ModelError::Engine(message.clone()));
        }
    }
}

/// A sequence of the KV cache and the tokens it holds.
struct Slot {
    tokens: Vec<LlamaToken>,
    last_used: u64,
    /// A sample is being generated in it.
    busy: bool,
}

/// A generate request in flight.
struct GenJob {
    req: GenerateRequest,
    prompt: Vec<LlamaToken>,
    reply: Reply<Generation>,
    started: Instant,
    usage: Usage,
    sequences: Vec<Option<Sequence>>,
    /// Samples started so far (the next sample's index).
    next_sample: usize,
    /// Samples running now.
    running: usize,
    k_top: usize,
    k_cand: usize,
    settings: SamplerSettings,
}

impl GenJob {
    fn complete(mut self) {
        self.usage.wall_time = self.started.elapsed();
        let sequences = self
            .sequences
            .into_iter()
            .map(|s| s.expect("every sample ran"))
            .collect();
        let _ = self.reply.send(Ok(Generation {
            sequences,
            usage: self.usage,
        }));
    }
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
    /// The request it belongs to.
    job: u64,
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

impl Active {
    fn into_sequence(self) -> Sequence {
        let keep = self.cut.unwrap_or(self.bytes.len());
        let n_tokens = self.starts.iter().take_while(|&&s| s < keep).count();
        let mut tokens = self.tokens;
        tokens.truncate(n_tokens);
        Sequence {
            text: String::from_utf8_lossy(&self.bytes[..keep]).into_owned(),
            tokens,
            finish_reason: self.done.unwrap_or(FinishReason::Length),
            stop_sequence: self.stopped_by,
        }
    }
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
                    busy: false,
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

    /// Slots no sample is being generated in.
    fn free_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.busy)
            .map(|(i, _)| i)
    }

    fn release(&mut self, slot: usize) {
        self.slots[slot].busy = false;
        self.touch(slot);
    }

    /// Slots whose cache must survive a full cache: the busy ones and `also`.
    fn keep_with(&self, also: usize) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.busy || i == also)
            .map(|(i, _)| i)
            .collect()
    }

    /// Picks the free slot sharing the longest prefix with `tokens` (most
    /// recently used on ties). Returns the slot and the shared length.
    /// Callers make sure one slot is free.
    fn best_slot(&self, tokens: &[LlamaToken]) -> (usize, usize) {
        let mut best: Option<(usize, usize, u64)> = None;
        for i in self.free_slots() {
            let s = &self.slots[i];
            let l = lcp(&s.tokens, tokens);
            if best.is_none_or(|b| (l, s.last_used) > (b.1, b.2)) {
                best = Some((i, l, s.last_used));
            }
        }
        let b = best.expect("a free slot");
        (b.0, b.1)
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
            let keep = self.keep_with(slot);
            self.decode(&mut batch, &keep)?;
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

    /// Checks and tokenises a generate request.
    fn prepare(
        &self,
        req: GenerateRequest,
        reply: Reply<Generation>,
    ) -> Result<GenJob, ModelError> {
        let prompt = self.tokenize(&self.render(&req.prompt)?);
        self.check_fits(prompt.len())?;
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
        Ok(GenJob {
            sequences: vec![None; req.n],
            req,
            prompt,
            reply,
            started: Instant::now(),
            usage: Usage::default(),
            next_sample: 0,
            running: 0,
            k_top,
            k_cand,
            settings,
        })
    }

    /// Starts `count` samples of request `id` (from its next sample on) on
    /// free slots: the prompt is evaluated once, on the free slot sharing
    /// its longest cached prefix, and its cells are copied to the others.
    fn start_samples(
        &mut self,
        id: u64,
        job: &mut GenJob,
        count: usize,
    ) -> Result<Vec<Active>, ModelError> {
        let prompt = &job.prompt;
        let (source, _) = self.best_slot(prompt);
        let last = prompt.len() - 1;
        // The last prompt token is always evaluated: its logits start generation.
        let k_cand = job.k_cand;
        let mut first_dist = None;
        let reused = self.fill_slot(source, prompt, last, last..prompt.len(), |_, _, logits| {
            // Kept whole: the first token of every sample is drawn from it.
            first_dist = Some((Distribution::new(logits, k_cand), logits.to_vec()));
        })?;
        job.usage.cached_prompt_tokens += reused as u64;
        job.usage.prompt_tokens += (prompt.len() - reused) as u64;
        let (dist0, logits0) = first_dist.expect("the last prompt token has logits");

        // Other samples take the least recently used free slots and share
        // the prompt's cells.
        let mut order: Vec<usize> = self.free_slots().filter(|&t| t != source).collect();
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
        for &t in &slots {
            self.slots[t].busy = true;
        }
        let p = &job.req.params;
        Ok(slots
            .iter()
            .enumerate()
            .map(|(j, &slot)| {
                let sample = job.next_sample + j;
                let mut rng = ChaCha8Rng::seed_from_u64(
                    p.seed ^ (sample as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                let tok = pick(&dist0, job.settings, &mut rng);
                let mut a = Active {
                    job: id,
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
                self.accept(&mut a, &dist0, &logits0, tok, job.k_top, &job.req);
                a
            })
            .collect())
    }

    /// One decoding step: the pending token of every running sequence, of
    /// whichever request, in one batch; then each draws its next token.
    fn step(
        &mut self,
        active: &mut [Active],
        open: &mut BTreeMap<u64, GenJob>,
    ) -> Result<(), ModelError> {
        let live: Vec<usize> = (0..active.len())
            .filter(|&j| active[j].done.is_none())
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        let mut batch = LlamaBatch::new(live.len(), 1);
        for &j in &live {
            let a = &active[j];
            let pos = self.slots[a.slot].tokens.len();
            batch
                .add(a.pending, pos as i32, &[a.slot as i32], true)
                .map_err(|e| engine_err("cannot build a batch", e))?;
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
        let ks: Vec<usize> = live
            .iter()
            .map(|&j| open.get(&active[j].job).map_or(1, |g| g.k_cand))
            .collect();
        let dists = distributions(&rows, &ks, self.cpu_threads);
        for ((&j, logits), dist) in live.iter().zip(rows).zip(dists) {
            let a = &mut active[j];
            let Some(job) = open.get(&a.job) else {
                continue;
            };
            let tok = pick(&dist, job.settings, &mut a.rng);
            a.pending = LlamaToken(tok as i32);
            self.accept(a, &dist, logits, tok, job.k_top, &job.req);
        }
        Ok(())
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
fn distributions(rows: &[&[f32]], ks: &[usize], threads: usize) -> Vec<Distribution> {
    if rows.len() < 2 || threads < 2 {
        return rows
            .iter()
            .zip(ks)
            .map(|(r, &k)| Distribution::new(r, k))
            .collect();
    }
    let per = rows.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(per)
            .zip(ks.chunks(per))
            .map(|(chunk, ks)| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .zip(ks)
                        .map(|(r, &k)| Distribution::new(r, k))
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

//! What runs one episode for a request: the shared model, the shared memory
//! file, the policy, and the limits that stop a request's loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metareason_awareness::Policy;
use metareason_core::{
    Embedder, GenerateRequest, Generation, LanguageModel, ModelError, ModelInfo, ScoreRequest,
    Scored, Usage,
};
use metareason_memory::Memory;
use metareason_reasoner::{
    EpisodeReport, Feedback, FeedbackReport, Reasoner, ReasonerConfig, ReasonerError, TraceObserver,
};

/// Everything the requests share.
pub struct Engine {
    /// The model every loop runs on.
    pub model: Arc<dyn LanguageModel>,
    /// Places tasks in memory (optional).
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Readings of the model's own reply state, for the policy classifiers
    /// and the answerability probe fitted on them (may be empty).
    pub state_readers: Vec<Arc<dyn Embedder>>,
    /// The memory file (None: nothing is stored, no feedback).
    pub memory_path: Option<PathBuf>,
    /// The mission policy.
    pub policy: Policy,
}

/// Why a request's loop stopped early.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The loop may not start a model call after this.
    pub deadline: Option<Instant>,
    /// Nor once this many tokens were generated.
    pub max_tokens: Option<u64>,
    /// Set when the client went away.
    pub cancelled: Arc<AtomicBool>,
}

impl Limits {
    /// Limits of `time` and `tokens` from now.
    pub fn new(time: Option<Duration>, tokens: Option<u64>) -> Self {
        Self {
            deadline: time.map(|t| Instant::now() + t),
            max_tokens: tokens,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The shared model behind a request's limits: every call first checks the
/// deadline, the token allowance and whether the client is still there, so
/// a loop stops at its next model call once any of them runs out.
struct LimitedModel {
    inner: Arc<dyn LanguageModel>,
    limits: Limits,
    generated: AtomicU64,
}

impl LimitedModel {
    fn check(&self) -> Result<(), ModelError> {
        if self.limits.cancelled.load(Ordering::Relaxed) {
            return Err(ModelError::Cancelled("the client went away".into()));
        }
        if let Some(d) = self.limits.deadline {
            if Instant::now() >= d {
                return Err(ModelError::Cancelled(
                    "the request's time limit ran out (raise --request-timeout)".into(),
                ));
            }
        }
        if let Some(max) = self.limits.max_tokens {
            let used = self.generated.load(Ordering::Relaxed);
            if used >= max {
                return Err(ModelError::Cancelled(format!(
                    "the request's token limit ran out ({used} of {max} tokens generated; \
                     raise --request-tokens)"
                )));
            }
        }
        Ok(())
    }

    fn count(&self, u: &Usage) {
        self.generated
            .fetch_add(u.generated_tokens, Ordering::Relaxed);
    }
}

impl LanguageModel for LimitedModel {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    fn generate(&self, request: &GenerateRequest) -> Result<Generation, ModelError> {
        self.check()?;
        let mut request = request.clone();
        // A reply may not run past the token allowance either.
        if let Some(max) = self.limits.max_tokens {
            let left = max.saturating_sub(self.generated.load(Ordering::Relaxed));
            let per_sequence = left / request.n.max(1) as u64;
            request.params.max_tokens = request
                .params
                .max_tokens
                .min(u32::try_from(per_sequence.max(1)).unwrap_or(u32::MAX));
        }
        let g = self.inner.generate(&request)?;
        self.count(&g.usage);
        Ok(g)
    }

    fn score(&self, request: &ScoreRequest) -> Result<Scored, ModelError> {
        self.check()?;
        self.inner.score(request)
    }
}

impl Engine {
    fn memory(&self) -> Result<Option<Memory>, ReasonerError> {
        self.memory_path
            .as_ref()
            .map(Memory::open)
            .transpose()
            .map_err(ReasonerError::from)
    }

    /// Runs the loop on `task` under `config` and `limits`, telling
    /// `observer` of every phase; stores the episode when there is memory.
    /// Blocking: call it from a blocking thread.
    pub fn run(
        &self,
        task: &str,
        config: &ReasonerConfig,
        limits: Limits,
        observer: Option<&dyn TraceObserver>,
    ) -> Result<EpisodeReport, ReasonerError> {
        let model = LimitedModel {
            inner: self.model.clone(),
            limits,
            generated: AtomicU64::new(0),
        };
        let memory = self.memory()?;
        // The embedder places tasks in memory and feeds the policy's classifiers.
        let mut reasoner = Reasoner::new(
            &model,
            self.embedder.as_deref(),
            memory,
            self.policy.clone(),
        )?;
        if let Some(o) = observer {
            reasoner = reasoner.with_observer(o);
        }
        for r in &self.state_readers {
            reasoner = reasoner.with_state_reader(r.as_ref());
        }
        reasoner.run(task, config)
    }

    /// Applies feedback to episode `id`. Blocking; callers apply feedback
    /// one at a time (learning reads, updates and writes the parameters).
    pub fn feedback(&self, id: i64, feedback: &Feedback) -> Result<FeedbackReport, ReasonerError> {
        let memory = self.memory()?.ok_or_else(|| {
            ReasonerError::Feedback(
                "this server runs without memory (--no-memory): there is nothing to give \
                 feedback on"
                    .into(),
            )
        })?;
        let mut reasoner = Reasoner::new(
            self.model.as_ref(),
            self.embedder.as_deref(),
            Some(memory),
            self.policy.clone(),
        )?;
        reasoner.feedback(id, feedback)
    }

    /// The stored episode `id` as JSON: its record and its whole trace.
    pub fn episode(&self, id: i64) -> Result<Option<serde_json::Value>, ReasonerError> {
        let Some(memory) = self.memory()? else {
            return Ok(None);
        };
        match memory.episode(id) {
            Ok(e) => Ok(Some(serde_json::to_value(&e).map_err(|e| {
                ReasonerError::Feedback(format!("the stored episode does not serialise: {e}"))
            })?)),
            Err(metareason_memory::MemoryError::NoEpisode(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

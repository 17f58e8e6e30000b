//! # metareason-reasoner
//!
//! The whole loop of docs/design.md around one language model:
//! self-awareness before the task (policy, capability, probes, strategy
//! choice, answer/abstain/refuse), the task level in between (the solver's
//! monitored search, verification and regulation, plus an optional
//! cross-check by a second strategy), calibrated confidence of the answer,
//! and meta-reflection after it (the episode stored whole in memory; on
//! feedback, the calibration, solvability and step-reward models updated
//! and the episode distilled into a template or an error note).
//!
//! ```no_run
//! use metareason_awareness::Policy;
//! use metareason_memory::Memory;
//! use metareason_reasoner::{Feedback, Reasoner, ReasonerConfig};
//! use metareason_scripted::{Reply, ScriptedModel, When};
//!
//! let model = ScriptedModel::new().on(When::Always, [Reply::text("6 * 7 = 42\nThe answer is 42.")]);
//! let mut r = Reasoner::new(&model, None, Some(Memory::in_memory()?), Policy::default_policy())?;
//! let report = r.run("What is 6 * 7?", &ReasonerConfig::default())?;
//! r.feedback(report.episode_id.unwrap(), &Feedback::Correct)?;
//! # Ok::<(), metareason_reasoner::ReasonerError>(())
//! ```
#![deny(missing_docs)]

pub mod decide;
pub mod escalate;
pub mod events;
pub mod preset;
mod prompts;

pub use decide::{decide, grounds_of_assessment, Decided, Found};
pub use escalate::{EscalationBeliefs, EscalationConfig, EscalationReport};
use events::OptionEvent;
pub use events::{Phase, TraceEvent, TraceObserver};
pub use metareason_core::Grounds;
use metareason_strategy::answer::Extract;
use metareason_strategy::Definition;
pub use preset::{Ablations, Module, Preset};

use std::collections::BTreeMap;
use std::time::Instant;

use metareason_awareness::{
    choose_answer_kind, default_solvability, solvability_features, AnswerabilityModel,
    AssessRequest, Assessment, Awareness, AwarenessError, AwarenessSettings, KindChoice, Policy,
    PolicyContext, StrategyOption,
};
use metareason_bayes::{seeded, LogisticRegression};
use metareason_core::{EmbedError, Embedder, LanguageModel, ModelError, Usage};
use metareason_memory::{
    Decision, EpisodeRecord, FindingRecord, Memory, MemoryError, MetaEntry, MetaKind, StepRecord,
};
use metareason_monitor::{RewardWeights, SearchPolicy, StepJudge};
use metareason_reflection::{
    distill_error_note, distill_template, solution_text, BaselineConfidences, CalibrationFeatures,
    Calibrator, RewardLearner,
};
use metareason_solver::{AttemptEvidence, AttemptScorer, SolveConfig, SolveError, Solver, Trace};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::{strategies_for, StrategyKind};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The schema identifier of an episode report. Bump on breaking changes.
pub const EPISODE_SCHEMA: &str = "metareason.episode/1";

/// Answers by which the model itself declines (compared after text
/// normalisation, as whole phrases).
pub const DECLINING_ANSWERS: &[&str] = &[
    "unknown",
    "unanswerable",
    "not known",
    "cannot be answered",
    "cannot be determined",
    "can not be determined",
    "i don t know",
    "no one knows",
    "nobody knows",
    "false premise",
];

/// Whether a (normalised) answer declines to answer.
pub fn declines(answer: &str) -> bool {
    let a = format!(" {} ", answer.to_lowercase().replace(['\'', '.', ','], " "));
    let a = a.split_whitespace().collect::<Vec<_>>().join(" ");
    let a = format!(" {a} ");
    DECLINING_ANSWERS
        .iter()
        .any(|d| a.contains(&format!(" {d} ")))
}

/// Names of the learned parameters in memory.
pub mod param_names {
    /// The calibration model of numeric answers.
    pub const CALIBRATION: &str = "calibration";
    /// The calibration model of short answers (yes/no, choice, short text).
    pub const CALIBRATION_SHORT_ANSWERS: &str = "calibration_short_answers";
    /// The calibration model of free-text replies.
    pub const CALIBRATION_FREE_TEXT: &str = "calibration_free_text";
    /// The solvability model.
    pub const SOLVABILITY: &str = "solvability";
    /// The step-reward learner.
    pub const REWARD: &str = "reward_weights";
    /// The answerability model (not learned online: set it from a fit).
    pub const ANSWERABILITY: &str = "answerability";
    /// What escalation does to answers.
    pub const ESCALATION: &str = "escalation";
}

/// Why the loop failed.
#[derive(Debug, thiserror::Error)]
pub enum ReasonerError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Solving failed.
    #[error(transparent)]
    Solve(#[from] SolveError),
    /// Self-awareness failed.
    #[error(transparent)]
    Awareness(#[from] AwarenessError),
    /// The episode cannot take this feedback.
    #[error("{0}")]
    Feedback(String),
}

impl ReasonerError {
    /// The model's error underneath, wherever in the loop it surfaced.
    pub fn model_error(&self) -> Option<&ModelError> {
        match self {
            ReasonerError::Model(m)
            | ReasonerError::Solve(SolveError::Model(m))
            | ReasonerError::Awareness(AwarenessError::Model(m)) => Some(m),
            _ => None,
        }
    }
}

/// When a second strategy checks the answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossCheck {
    /// Never.
    Never,
    /// Always.
    Always,
    /// When the confidence without it lies in [low, high]: where a second
    /// opinion can change the decision.
    WhenUnsure {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
}

/// How to run the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReasonerConfig {
    /// The task-level configuration; its strategy is replaced by the one
    /// self-awareness chooses, and its answer kind by the inferred one
    /// unless `infer_answer_kind` is off.
    pub solve: SolveConfig,
    /// Infer the answer kind from the task (rules, then the model when they
    /// are unsure); off, `solve.answer_kind` is used as given.
    pub infer_answer_kind: bool,
    /// The strategies F is chosen from; of these, the ones that suit the
    /// task's answer kind are offered (all of them when none suits, as
    /// when the caller forces one). Example-guided only counts when memory
    /// has templates for the task.
    pub strategies: Vec<StrategyKind>,
    /// Stop after self-awareness: the decision says whether the task would
    /// be attempted; nothing is solved (for measuring the assessment and
    /// collecting its features).
    pub assess_only: bool,
    /// Self-awareness settings.
    pub awareness: AwarenessSettings,
    /// When to cross-check with a second strategy (only when escalation
    /// is off: escalation draws from the second strategy itself).
    pub cross_check: CrossCheck,
    /// Compute by difficulty: whether and how to draw more replies after
    /// the first attempt.
    pub escalation: EscalationConfig,
    /// Withhold an answer whose calibrated confidence is below the policy's
    /// answer threshold.
    pub abstain_after: bool,
    /// Distill templates and error notes on feedback.
    pub distill: bool,
    /// Templates and error notes retrieved per task.
    pub retrieve: usize,
    /// Least similarity of a retrieved template or note.
    pub retrieve_min_similarity: f32,
    /// Update the learned parameters on feedback.
    pub learn: bool,
    /// A label of the task's family, stored with the episode.
    pub family: Option<String>,
    /// The user's profile for the policy.
    pub profile: BTreeMap<String, String>,
    /// Seed of the choices (Thompson draws) and sampling.
    pub seed: u64,
    /// Also compute the baseline confidences (verbalised, P(True), mean
    /// log-probability) of the answer, for comparison; two short model
    /// calls, not counted in the episode's usage.
    pub baselines: bool,
}

impl Default for ReasonerConfig {
    fn default() -> Self {
        Self {
            solve: SolveConfig::default(),
            infer_answer_kind: true,
            strategies: StrategyKind::ALL.to_vec(),
            assess_only: false,
            awareness: AwarenessSettings::default(),
            cross_check: CrossCheck::WhenUnsure {
                low: 0.2,
                high: 0.9,
            },
            escalation: EscalationConfig::default(),
            abstain_after: true,
            distill: true,
            retrieve: 2,
            retrieve_min_similarity: 0.5,
            learn: true,
            family: None,
            profile: BTreeMap::new(),
            seed: 0,
            baselines: false,
        }
    }
}

/// What was retrieved from the meta-buffer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// Thought templates: (entry id, similarity, text).
    pub templates: Vec<(i64, f32, String)>,
    /// Error notes: (entry id, similarity, text).
    pub notes: Vec<(i64, f32, String)>,
}

/// The cross-check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossCheckResult {
    /// The second strategy.
    pub strategy: StrategyKind,
    /// Its answer.
    pub answer: Option<String>,
    /// Whether it agrees with the main answer.
    pub agrees: Option<bool>,
    /// Its cost.
    pub usage: Usage,
}

/// Everything about one episode: the record stored in memory and shown to
/// the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeReport {
    /// [`EPISODE_SCHEMA`].
    pub schema: String,
    /// The episode's id in memory (None without memory).
    pub episode_id: Option<i64>,
    /// The task.
    pub task: String,
    /// Answer, abstain or refuse.
    pub decision: Decision,
    /// On what grounds (None in episodes stored before grounds were kept).
    #[serde(default)]
    pub grounds: Option<Grounds>,
    /// The answer kind the task was solved under, and how it was chosen.
    #[serde(default = "given_number")]
    pub answer_kind: KindChoice,
    /// The answer given (None when declining).
    pub answer: Option<String>,
    /// The answer found, also when it was withheld.
    pub candidate_answer: Option<String>,
    /// Calibrated P(correct) of the candidate answer.
    pub confidence: Option<f64>,
    /// What to tell the user.
    pub reply: String,
    /// Why this decision, in words and numbers.
    pub reason: String,
    /// Self-awareness before the task.
    pub assessment: Assessment,
    /// Templates and notes handed to the task level.
    pub retrieved: Retrieved,
    /// The task-level trace, when the task was attempted.
    pub solve: Option<Trace>,
    /// The cross-check, when it ran.
    pub cross_check: Option<CrossCheckResult>,
    /// The escalation after the first attempt, when it was considered.
    #[serde(default)]
    pub escalation: Option<EscalationReport>,
    /// The calibration features.
    pub features: Option<CalibrationFeatures>,
    /// The solvability features of the chosen strategy.
    pub solvability_features: Option<Vec<f64>>,
    /// Baseline confidences of the answer found, when asked for.
    #[serde(default)]
    pub baselines: Option<BaselineConfidences>,
    /// The embedder that placed the task in memory.
    pub embedder: Option<String>,
    /// Total model usage.
    pub usage: Usage,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Time and model usage per phase, in order.
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// Measures the phases of a run: each ends where the next begins.
struct Phases {
    since: Instant,
    done: Vec<Phase>,
}

impl Default for Phases {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            done: Vec::new(),
        }
    }
}

impl Phases {
    fn end(&mut self, name: &str, usage: Usage) {
        let now = Instant::now();
        self.done.push(Phase {
            name: name.to_string(),
            seconds: now.duration_since(self.since).as_secs_f64(),
            usage,
        });
        self.since = now;
    }
}

fn given_number() -> KindChoice {
    KindChoice::given(AnswerKind::Number)
}

/// The outcome of an episode, told afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// The answer was right.
    Correct,
    /// The answer was wrong.
    Wrong,
    /// The right answer is this (compared after normalisation).
    Answer(String),
}

/// What feedback changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackReport {
    /// The episode.
    pub episode_id: i64,
    /// Whether its answer was right.
    pub correct: bool,
    /// Parameters updated.
    pub updated: Vec<String>,
    /// A template or note distilled from it.
    pub distilled: Option<(MetaKind, String)>,
    /// What else to know (a repeated verdict, a changed one).
    #[serde(default)]
    pub note: Option<String>,
}

/// The learned parameters of I and E.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaParams {
    /// P(correct) of numeric answers.
    pub calibration: Calibrator,
    /// P(correct) of short answers (yes/no, choices, short text). A model
    /// of its own since numbers were refitted on the escalating loop's
    /// episodes; a memory from before the split starts it from the shipped
    /// model.
    #[serde(default = "Calibrator::shipped_short_answers")]
    pub calibration_short_answers: Calibrator,
    /// P(correct) of free-text replies: a prior of its own until feedback
    /// arrives (the shipped calibration was fitted on arithmetic and says
    /// nothing about prose).
    #[serde(default = "free_text_prior")]
    pub calibration_free_text: Calibrator,
    /// P(success) before the task.
    pub solvability: LogisticRegression,
    /// Step-reward weights.
    pub reward: RewardLearner,
    /// P(answerable) before the task.
    pub answerability: AnswerabilityModel,
    /// What escalating does to an answer.
    #[serde(default)]
    pub escalation: EscalationBeliefs,
}

impl Default for MetaParams {
    fn default() -> Self {
        Self {
            calibration: Calibrator::shipped(),
            calibration_short_answers: Calibrator::shipped_short_answers(),
            calibration_free_text: free_text_prior(),
            solvability: default_solvability(),
            reward: RewardLearner::from_weights(&RewardWeights::default(), 0.25),
            answerability: AnswerabilityModel::shipped().clone(),
            escalation: EscalationBeliefs::default(),
        }
    }
}

/// Which calibrator answers of a kind belong to (the one place that says).
enum CalibrationOf {
    Numbers,
    ShortAnswers,
    FreeText,
}

impl CalibrationOf {
    fn kind(kind: &AnswerKind) -> Self {
        match kind {
            AnswerKind::Number => Self::Numbers,
            AnswerKind::YesNo | AnswerKind::Choice { .. } | AnswerKind::Text => Self::ShortAnswers,
            AnswerKind::FreeText => Self::FreeText,
        }
    }
}

/// The prior calibration of free-text replies: the strategy's prior
/// P(success) and the reply's mean token log-probability carry it; an
/// empty reply or a failed check pulls it down. About 0.7 for a fluent reply
/// of a strategy with prior 0.75; feedback moves it.
fn free_text_prior() -> Calibrator {
    use metareason_reflection::FEATURE_NAMES;
    let mut w = vec![0.0; FEATURE_NAMES.len()];
    let mut set = |name: &str, v: f64| {
        let i = FEATURE_NAMES
            .iter()
            .position(|n| *n == name)
            .expect("a calibration feature");
        w[i] = v;
    };
    set("bias", 0.6);
    set("mean_logprob", 1.0);
    set("logit_prior", 1.0);
    set("verifier_fails", -1.5);
    set("no_answer", -4.0);
    Calibrator::with_prior(w, 0.1)
}

impl MetaParams {
    /// The calibration model for answers of `kind`.
    pub fn calibration_for(&self, kind: &AnswerKind) -> &Calibrator {
        match CalibrationOf::kind(kind) {
            CalibrationOf::Numbers => &self.calibration,
            CalibrationOf::ShortAnswers => &self.calibration_short_answers,
            CalibrationOf::FreeText => &self.calibration_free_text,
        }
    }

    /// [`Self::calibration_for`], to learn in, with the name feedback
    /// reports it by.
    fn calibration_for_mut(&mut self, kind: &AnswerKind) -> (&mut Calibrator, &'static str) {
        match CalibrationOf::kind(kind) {
            CalibrationOf::Numbers => (&mut self.calibration, "calibration"),
            CalibrationOf::ShortAnswers => (
                &mut self.calibration_short_answers,
                "short-answer calibration",
            ),
            CalibrationOf::FreeText => (&mut self.calibration_free_text, "free-text calibration"),
        }
    }

    /// The stored parameters, or the shipped ones where none (or stale ones)
    /// are stored.
    pub fn load(memory: &Memory) -> Result<Self, MemoryError> {
        let d = Self::default();
        Ok(Self {
            calibration: memory
                .parameter::<Calibrator>(param_names::CALIBRATION)?
                .filter(Calibrator::is_current)
                .unwrap_or(d.calibration),
            calibration_short_answers: memory
                .parameter::<Calibrator>(param_names::CALIBRATION_SHORT_ANSWERS)?
                .filter(Calibrator::is_current)
                .unwrap_or(d.calibration_short_answers),
            calibration_free_text: memory
                .parameter::<Calibrator>(param_names::CALIBRATION_FREE_TEXT)?
                .filter(Calibrator::is_current)
                .unwrap_or(d.calibration_free_text),
            solvability: memory
                .parameter::<LogisticRegression>(param_names::SOLVABILITY)?
                .filter(|m| m.dim() == d.solvability.dim())
                .unwrap_or(d.solvability),
            reward: memory
                .parameter::<RewardLearner>(param_names::REWARD)?
                .filter(|m| m.model.dim() == d.reward.model.dim())
                .unwrap_or(d.reward),
            answerability: memory
                .parameter::<AnswerabilityModel>(param_names::ANSWERABILITY)?
                .filter(AnswerabilityModel::is_current)
                .unwrap_or(d.answerability),
            escalation: memory
                .parameter::<EscalationBeliefs>(param_names::ESCALATION)?
                .unwrap_or(d.escalation),
        })
    }

    /// Stores them.
    pub fn save(&self, memory: &Memory) -> Result<(), MemoryError> {
        memory.set_parameter(param_names::CALIBRATION, &self.calibration)?;
        memory.set_parameter(
            param_names::CALIBRATION_SHORT_ANSWERS,
            &self.calibration_short_answers,
        )?;
        memory.set_parameter(
            param_names::CALIBRATION_FREE_TEXT,
            &self.calibration_free_text,
        )?;
        memory.set_parameter(param_names::SOLVABILITY, &self.solvability)?;
        memory.set_parameter(param_names::REWARD, &self.reward)?;
        memory.set_parameter(param_names::ESCALATION, &self.escalation)?;
        Ok(())
    }
}

/// The meta-reasoning loop around one model.
pub struct Reasoner<'a> {
    model: &'a dyn LanguageModel,
    embedder: Option<&'a dyn Embedder>,
    /// Readings of the model's own states, for the policy's classifiers
    /// and the answerability probe fitted on them.
    state_readers: Vec<&'a dyn Embedder>,
    step_judge: Option<&'a dyn StepJudge>,
    memory: Option<Memory>,
    policy: Policy,
    /// The learned parameters in use.
    pub params: MetaParams,
    rng: Option<ChaCha8Rng>,
    observer: Option<&'a dyn TraceObserver>,
}

/// Features stored with an episode, read back by feedback.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredFeatures {
    calibration: Option<CalibrationFeatures>,
    solvability: Option<Vec<f64>>,
    answer_kind: AnswerKind,
    reason: String,
}

impl<'a> Reasoner<'a> {
    /// A loop on `model`, placing tasks with `embedder` in `memory` (both
    /// optional), under `policy`.
    pub fn new(
        model: &'a dyn LanguageModel,
        embedder: Option<&'a dyn Embedder>,
        memory: Option<Memory>,
        policy: Policy,
    ) -> Result<Self, ReasonerError> {
        let params = match &memory {
            Some(m) => MetaParams::load(m)?,
            None => MetaParams::default(),
        };
        Ok(Self {
            model,
            embedder,
            state_readers: Vec::new(),
            step_judge: None,
            memory,
            policy,
            params,
            rng: None,
            observer: None,
        })
    }

    /// Reports every phase of [`Reasoner::run`] to `observer` as it ends.
    pub fn with_observer(mut self, observer: &'a dyn TraceObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    fn emit(&self, event: TraceEvent) {
        if let Some(o) = self.observer {
            o.on_event(&event);
        }
    }

    /// Lets self-awareness also read `reader`: a reading of the model's own
    /// state where its reply would begin, for the policy's classifiers and
    /// the answerability probe fitted on it (`bench fit-harm --features
    /// model-state`, `bench fit-probe`). May be called once per reading.
    pub fn with_state_reader(mut self, reader: &'a dyn Embedder) -> Self {
        self.state_readers.push(reader);
        self
    }

    /// Judges every step of the main solve with `judge` (a process reward
    /// model behind a server, say); the cross-check stays unjudged.
    pub fn with_step_judge(mut self, judge: &'a dyn StepJudge) -> Self {
        self.step_judge = Some(judge);
        self
    }

    /// Reads the learned parameters again from memory: for loops that share
    /// one memory file, so that each sees what the others learned.
    pub fn reload_params(&mut self) -> Result<(), ReasonerError> {
        if let Some(m) = &self.memory {
            self.params = MetaParams::load(m)?;
        }
        Ok(())
    }

    /// The memory, when there is one.
    pub fn memory(&self) -> Option<&Memory> {
        self.memory.as_ref()
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn embed(&self, task: &str) -> Option<Vec<f32>> {
        let e = self.embedder?;
        match e.embed_one(task) {
            Ok(v) if v.iter().any(|x| *x != 0.0) => Some(v),
            Ok(_) => None,
            Err(EmbedError(msg)) => {
                tracing::warn!("embedding failed, continuing without memory search: {msg}");
                None
            }
        }
    }

    fn retrieve(&self, embedding: Option<&[f32]>, config: &ReasonerConfig) -> Retrieved {
        let (Some(m), Some(e)) = (&self.memory, embedding) else {
            return Retrieved::default();
        };
        let get = |kind| {
            m.nearest_meta(kind, e, config.retrieve, config.retrieve_min_similarity)
                .map(|v| {
                    v.into_iter()
                        .map(|(entry, s)| (entry.id, s, entry.text))
                        .collect()
                })
                .unwrap_or_default()
        };
        Retrieved {
            templates: get(MetaKind::Template),
            notes: get(MetaKind::ErrorNote),
        }
    }

    /// Runs the loop on `task` and stores the episode: [`Reasoner::assess`]
    /// (answer kind and self-awareness), then, when it says answer,
    /// [`Reasoner::attempt`] (solving, escalation or cross-check) and
    /// [`decide`] (answer or withhold, and on what grounds).
    pub fn run(
        &mut self,
        task: &str,
        config: &ReasonerConfig,
    ) -> Result<EpisodeReport, ReasonerError> {
        let started = Instant::now();
        self.emit(TraceEvent::Started {
            task: task.to_string(),
        });
        let rng = self.rng.get_or_insert_with(|| seeded(config.seed));
        let mut rng = rng.clone();
        let mut phases = Phases::default();
        let embedding = self.embed(task);
        let retrieved = self.retrieve(embedding.as_deref(), config);
        phases.end("retrieval", Usage::default());
        let (kind, assessment) = self.assess(
            task,
            embedding.as_deref(),
            !retrieved.templates.is_empty(),
            config,
            &mut rng,
            &mut phases,
        )?;
        let mut usage = assessment.usage;
        usage += kind.usage;
        let mut report = EpisodeReport {
            schema: EPISODE_SCHEMA.to_string(),
            episode_id: None,
            task: task.to_string(),
            decision: assessment.decision,
            grounds: Some(grounds_of_assessment(&assessment)),
            answer_kind: kind.clone(),
            answer: None,
            candidate_answer: None,
            confidence: None,
            reply: String::new(),
            reason: assessment.reason.clone(),
            usage,
            assessment,
            retrieved,
            solve: None,
            cross_check: None,
            escalation: None,
            features: None,
            solvability_features: None,
            baselines: None,
            embedder: self.embedder.map(|e| e.name().to_string()),
            seconds: 0.0,
            phases: Vec::new(),
        };
        if report.decision != Decision::Answer {
            report.reply = report
                .assessment
                .reply
                .clone()
                .unwrap_or_else(|| prompts::NOT_LIKELY.into());
        } else if config.assess_only {
            report.reason = format!("{} (assessment only: not attempted)", report.reason);
        } else {
            let attempted = self.attempt(task, config, &report, &mut phases)?;
            self.conclude(&mut report, attempted, config, &mut phases)?;
        }
        self.rng = Some(rng);
        report.phases = phases.done;
        self.finish(report, embedding, config, started)
    }

    /// Self-awareness before the task: the answer kind (given or inferred),
    /// then the assessment (policy, probes, answerability, strategy choice
    /// and the decision whether to attempt).
    fn assess(
        &self,
        task: &str,
        embedding: Option<&[f32]>,
        has_templates: bool,
        config: &ReasonerConfig,
        rng: &mut ChaCha8Rng,
        phases: &mut Phases,
    ) -> Result<(KindChoice, Assessment), ReasonerError> {
        let kind = if config.infer_answer_kind {
            choose_answer_kind(self.model, task)?
        } else {
            KindChoice::given(config.solve.answer_kind.clone())
        };
        phases.end("answer_kind", kind.usage);
        self.emit(TraceEvent::AnswerKind {
            kind: kind.kind.to_string(),
            how: kind.how.clone(),
        });
        let offered = offered_strategies(&config.strategies, &kind.kind);
        let options: Vec<StrategyOption> = offered
            .iter()
            .filter(|k| **k != StrategyKind::ExampleGuided || has_templates)
            .map(|k| StrategyOption {
                strategy: *k,
                expected_tokens: u64::from(k.strategy().expected_tokens),
                prior: k.strategy().prior_for(&kind.kind).unwrap_or(0.5),
            })
            .collect();
        let mut settings = config.awareness.clone();
        // Withholding later is only an option when the loop may do it.
        settings.abstain_later &= config.abstain_after;
        let embedders: Vec<&dyn Embedder> = self
            .state_readers
            .iter()
            .copied()
            .chain(self.embedder)
            .collect();
        let awareness = Awareness {
            model: self.model,
            policy: &self.policy,
            settings,
            answerability: &self.params.answerability,
            embedders: &embedders,
        };
        let context = PolicyContext {
            profile: config.profile.clone(),
            ..PolicyContext::default()
        };
        let assessment = awareness.assess(
            &AssessRequest {
                task,
                embedding,
                memory: self.memory.as_ref(),
                answer_kind: &kind.kind,
                options: &options,
                context: &context,
                solvability: &self.params.solvability,
            },
            rng,
        )?;
        phases.end("assessment", assessment.usage);
        self.emit(TraceEvent::Assessed {
            decision: assessment.decision,
            reason: assessment.reason.clone(),
            rule: assessment.policy.fired.as_ref().map(|f| f.0.clone()),
            p_answerable: assessment.answerability.as_ref().map(|a| a.p_answerable),
            options: assessment
                .options
                .iter()
                .map(|o| OptionEvent {
                    strategy: o.strategy,
                    p_success: o.p_success,
                })
                .collect(),
            strategy: assessment.strategy,
            usage: assessment.usage,
        });
        Ok((kind, assessment))
    }

    /// The task level: solves with the strategy self-awareness chose, then
    /// either escalates (more replies while they are expected to pay) or
    /// cross-checks with a second strategy; returns what was found with
    /// its calibration features.
    fn attempt(
        &self,
        task: &str,
        config: &ReasonerConfig,
        report: &EpisodeReport,
        phases: &mut Phases,
    ) -> Result<Attempted, ReasonerError> {
        let assessment = &report.assessment;
        let kind = &report.answer_kind.kind;
        // Awareness chooses among the offered strategies; with none offered
        // (an empty list) the configured first strategy runs.
        let chosen = assessment.strategy.unwrap_or(config.solve.strategy);
        let mut solve = config.solve.clone();
        solve.strategy = chosen;
        solve.answer_kind = kind.clone();
        // Fallbacks that suit the task; a factual question does not fall
        // back to a program.
        solve.fallbacks = fallbacks_for(&config.solve.fallbacks, chosen, kind);
        solve.weights = self.params.reward.weights();
        solve.settings.seed = solve.settings.seed.wrapping_add(config.seed);
        solve.examples = report
            .retrieved
            .templates
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect();
        solve.notes = report
            .retrieved
            .notes
            .iter()
            .map(|(_, _, t)| t.clone())
            .collect();
        let p_true = assessment.probes.p_true.unwrap_or(0.5);
        let priors: BTreeMap<StrategyKind, f64> = assessment
            .options
            .iter()
            .map(|o| (o.strategy, o.p_success))
            .collect();
        let calibration = self.params.calibration_for(kind).clone();
        // Attempts are compared, and revisions accepted, on the calibrated
        // scale that decides abstention.
        let scorer = CalibratedScorer {
            calibration: &calibration,
            priors: &priors,
            p_true,
        };
        let solver = Solver::new(self.model).with_scorer(&scorer);
        let solver = match self.step_judge {
            Some(j) => solver.with_step_judge(j),
            None => solver,
        };
        let trace = solver.solve(task, &solve)?;
        let mut usage = trace.usage;
        phases.end("solve", trace.usage);
        for a in &trace.attempts {
            self.emit(TraceEvent::attempt("solve", a));
        }
        for r in &trace.revisions {
            self.emit(TraceEvent::Revision {
                round: r.round,
                from_step: r.from_step,
                accepted: r.accepted,
                confidence_before: r.confidence_before,
                confidence_after: r.confidence_after,
            });
        }
        let belief = priors.get(&chosen).copied().unwrap_or(0.5);
        let mut features = CalibrationFeatures::from_trace(&trace, None, belief, p_true);
        let first_confidence = calibration.confidence(&features);
        self.emit(TraceEvent::FirstAnswer {
            answer: trace.answer.clone(),
            confidence: first_confidence,
        });
        let second = second_opinion(chosen, kind);
        let mut out = Attempted {
            chosen,
            answer: trace.answer.clone(),
            raw_answer: None,
            features: features.clone(),
            calibration: calibration.clone(),
            escalation: None,
            cross_check: None,
            usage,
            trace,
        };
        let escalate = config.escalation.enabled
            && *kind != AnswerKind::FreeText
            && !out.trace.answer.as_deref().is_some_and(declines);
        if escalate {
            let mixture: Vec<StrategyKind> = std::iter::once(chosen).chain(second).collect();
            let e = escalate::run(
                &solver,
                task,
                &out.trace,
                &solve,
                &mixture,
                &config.escalation,
                &escalate::Judgement {
                    model: self.model,
                    calibration: &calibration,
                    priors: &priors,
                    p_true,
                    costs: &self.policy.costs,
                    beliefs: &self.params.escalation,
                    observer: self.observer,
                },
                first_confidence,
            )?;
            usage += e.usage;
            phases.end("escalation", e.usage);
            out.features = e.features;
            out.answer = e.report.answer.clone();
            out.raw_answer = e.raw_answer;
            out.escalation = Some(e.report);
        } else {
            let check = match config.cross_check {
                CrossCheck::Never => false,
                CrossCheck::Always => true,
                CrossCheck::WhenUnsure { low, high } => (low..=high).contains(&first_confidence),
            };
            if let (true, true, Some(second)) = (check, out.trace.answer.is_some(), second) {
                let cfg = SolveConfig {
                    strategy: second,
                    fallbacks: Vec::new(),
                    policy: SearchPolicy::Greedy,
                    max_revisions: 0,
                    backtrack_samples: 0,
                    critique: false,
                    judge_steps: false,
                    ..solve.clone()
                };
                let other = Solver::new(self.model).solve(task, &cfg)?;
                usage += other.usage;
                phases.end("cross_check", other.usage);
                let agrees = other.answer.as_ref().map(|a| {
                    out.trace
                        .answer
                        .as_ref()
                        .is_some_and(|b| kind.same_meaning(a, b))
                });
                features.cross_check = match agrees {
                    Some(true) => 1.0,
                    Some(false) => -1.0,
                    None => 0.0,
                };
                if agrees.is_some() {
                    // A second reply with an answer now backs (or
                    // contradicts) the first.
                    features.single_reply = 0.0;
                }
                out.features = features;
                self.emit(TraceEvent::CrossCheck {
                    strategy: second,
                    answer: other.answer.clone(),
                    agrees,
                });
                out.cross_check = Some(CrossCheckResult {
                    strategy: second,
                    answer: other.answer.clone(),
                    agrees,
                    usage: other.usage,
                });
            }
        }
        out.usage = usage;
        Ok(out)
    }

    /// After the attempt: the calibrated confidence of what was found, the
    /// baselines when asked for, and the decision ([`decide`]) written into
    /// the report.
    fn conclude(
        &self,
        report: &mut EpisodeReport,
        attempted: Attempted,
        config: &ReasonerConfig,
        phases: &mut Phases,
    ) -> Result<(), ReasonerError> {
        let confidence = attempted.calibration.confidence(&attempted.features);
        let answer = attempted.answer;
        report.usage += attempted.usage;
        report.candidate_answer = answer.clone();
        report.confidence = Some(confidence);
        report.cross_check = attempted.cross_check;
        report.escalation = attempted.escalation;
        report.solvability_features = Some(solvability_features(
            report
                .assessment
                .beliefs
                .iter()
                .find(|b| b.strategy == attempted.chosen)
                .map(|b| b.posterior.mean())
                .unwrap_or(0.5),
            &report.assessment.probes,
        ));
        if let (true, Some(found)) = (config.baselines, answer.as_deref()) {
            let baselines = BaselineConfidences::compute(
                self.model,
                &report.task,
                found,
                Some(attempted.features.mean_logprob),
            )?;
            phases.end("baselines", baselines.usage);
            report.baselines = Some(baselines);
        }
        report.features = Some(attempted.features);
        let decided = decide(
            &Found {
                answer: answer.as_deref(),
                confidence,
            },
            &self.policy.costs,
            config.abstain_after,
        );
        report.decision = decided.decision;
        report.grounds = Some(decided.grounds);
        report.reason = format!("{}; {}", report.assessment.reason, decided.reason);
        report.reply = match decided.reply {
            Some(reply) => reply,
            None => {
                report.answer = answer.clone();
                // The answer as the model wrote it ("William Shakespeare",
                // not the normalised "william shakespeare").
                let trace = &attempted.trace;
                attempted
                    .raw_answer
                    .or_else(|| {
                        trace.attempts[trace.final_attempt]
                            .outcome
                            .best()
                            .answer
                            .as_ref()
                            .map(|a| a.raw.trim().to_string())
                    })
                    .filter(|r| !r.is_empty())
                    .or(answer)
                    .unwrap_or_default()
            }
        };
        report.solve = Some(attempted.trace);
        Ok(())
    }

    fn finish(
        &mut self,
        mut report: EpisodeReport,
        embedding: Option<Vec<f32>>,
        config: &ReasonerConfig,
        started: Instant,
    ) -> Result<EpisodeReport, ReasonerError> {
        report.seconds = started.elapsed().as_secs_f64();
        self.emit(TraceEvent::Decided {
            decision: report.decision,
            grounds: report.grounds,
            answer: report.answer.clone(),
            confidence: report.confidence,
            reason: report.reason.clone(),
        });
        let Some(memory) = self.memory.as_mut() else {
            return Ok(report);
        };
        let storing = Instant::now();
        let trace = report.solve.as_ref();
        let attempt = trace.map(|t| &t.attempts[t.final_attempt]);
        let record = EpisodeRecord {
            task: report.task.clone(),
            family: config.family.clone(),
            embedding,
            embedder: report.embedder.clone(),
            strategy: report.assessment.strategy,
            search: config.solve.policy.name().to_string(),
            decision: report.decision,
            answer: report.candidate_answer.clone(),
            confidence: report.confidence,
            features: Some(
                serde_json::to_value(StoredFeatures {
                    calibration: report.features.clone(),
                    solvability: report.solvability_features.clone(),
                    answer_kind: report.answer_kind.kind.clone(),
                    reason: report.reason.clone(),
                })
                .expect("features serialise"),
            ),
            outcome: None,
            reference: None,
            generated_tokens: report.usage.generated_tokens,
            prompt_tokens: report.usage.prompt_tokens,
            cached_prompt_tokens: report.usage.cached_prompt_tokens,
            seconds: report.seconds,
            steps: attempt
                .map(|a| {
                    a.outcome
                        .best()
                        .steps
                        .iter()
                        .map(|s| StepRecord {
                            text: s.text.clone(),
                            reward: s.reward,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            findings: attempt
                .map(|a| {
                    a.findings
                        .iter()
                        .map(|f| FindingRecord {
                            verifier: f.verifier,
                            verdict: f.verdict,
                            step: f.step,
                            message: f.message.clone(),
                            confidence: f.confidence,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            trace: Some(serde_json::to_value(&report).expect("report serialises")),
        };
        let id = memory.record(&record)?;
        report.episode_id = Some(id);
        report.phases.push(Phase {
            name: "memory".into(),
            seconds: storing.elapsed().as_secs_f64(),
            usage: Usage::default(),
        });
        self.emit(TraceEvent::Stored { episode_id: id });
        Ok(report)
    }

    /// Records the outcome of episode `id` and learns from it: the strategy
    /// posteriors (through the stored outcome), the calibration, solvability
    /// and step-reward models, and a distilled template or error note.
    pub fn feedback(
        &mut self,
        id: i64,
        feedback: &Feedback,
    ) -> Result<FeedbackReport, ReasonerError> {
        self.feedback_with(id, feedback, true, true)
    }

    /// [`Reasoner::feedback`] choosing whether to learn and to distill.
    pub fn feedback_with(
        &mut self,
        id: i64,
        feedback: &Feedback,
        learn: bool,
        distill: bool,
    ) -> Result<FeedbackReport, ReasonerError> {
        let memory = self.memory.as_ref().ok_or_else(|| {
            ReasonerError::Feedback("feedback needs memory; run without --no-memory".into())
        })?;
        let episode = memory.episode(id)?;
        let stored = stored_features(&episode);
        let (correct, reference) = match feedback {
            Feedback::Correct => (true, None),
            Feedback::Wrong => (false, None),
            Feedback::Answer(a) => {
                let kind = stored
                    .as_ref()
                    .map(|s| s.answer_kind.clone())
                    .unwrap_or(AnswerKind::Text);
                let want = kind.normalize_reference(a);
                let ok = want.is_some() && want == episode.record.answer;
                (ok, Some(want.unwrap_or_else(|| a.clone())))
            }
        };
        if episode.record.decision == Decision::Refuse {
            return Err(ReasonerError::Feedback(format!(
                "episode {id} was refused by policy; there is no answer to judge"
            )));
        }
        if episode.record.answer.is_none() {
            return Err(ReasonerError::Feedback(format!(
                "episode {id} found no answer; there is nothing to judge"
            )));
        }
        // The same verdict again changes nothing: feedback is idempotent.
        let previous = episode.record.outcome;
        if previous == Some(correct)
            && (reference.is_none() || reference == episode.record.reference)
        {
            return Ok(FeedbackReport {
                episode_id: id,
                correct,
                updated: Vec::new(),
                distilled: None,
                note: Some(format!(
                    "episode {id} was already graded {}; nothing changed",
                    if correct { "correct" } else { "wrong" }
                )),
            });
        }
        let changed = previous.is_some_and(|p| p != correct);
        memory.set_outcome(id, correct, reference.as_deref())?;
        let mut note = None;
        if changed {
            // What was distilled from the old verdict goes with it.
            memory.delete_meta_of_episode(id)?;
        }
        let mut updated = vec!["strategy posteriors".to_string()];
        if learn {
            if previous.is_some() {
                // A changed (or re-referenced) verdict: the learned models
                // are replayed from their priors over every graded episode
                // in order, so the state is exactly as if this verdict had
                // been given the first time.
                let n = self.relearn()?;
                updated.extend(
                    [
                        "calibration",
                        "solvability",
                        "escalation",
                        "step-reward weights",
                    ]
                    .map(String::from),
                );
                note = Some(format!(
                    "episode {id} was graded {} before; the learned models were replayed over \
                     the {n} graded episodes with the new verdict",
                    if correct { "wrong" } else { "correct" }
                ));
            } else {
                updated.extend(self.params.learn_from(
                    &episode,
                    stored.as_ref(),
                    correct,
                    reference.as_deref(),
                ));
            }
            let memory = self.memory.as_ref().expect("checked above");
            self.params.save(memory)?;
        }
        let memory = self.memory.as_ref().expect("checked above");
        let report: Option<EpisodeReport> = episode
            .record
            .trace
            .clone()
            .and_then(|t| serde_json::from_value(t).ok());
        let mut distilled = None;
        if distill {
            if let Some(trace) = report.as_ref().and_then(|r| r.solve.as_ref()) {
                let solution = solution_text(trace);
                let (kind, (text, _)) = if correct {
                    (
                        MetaKind::Template,
                        distill_template(self.model, &episode.record.task, &solution)?,
                    )
                } else {
                    (
                        MetaKind::ErrorNote,
                        distill_error_note(
                            self.model,
                            &episode.record.task,
                            &solution,
                            reference.as_deref(),
                        )?,
                    )
                };
                if !text.is_empty() {
                    memory.add_meta(&MetaEntry {
                        id: 0,
                        kind,
                        episode_id: Some(id),
                        task: episode.record.task.clone(),
                        text: text.clone(),
                        embedding: episode.record.embedding.clone(),
                        uses: 0,
                    })?;
                    distilled = Some((kind, text));
                }
            }
        }
        Ok(FeedbackReport {
            episode_id: id,
            correct,
            updated,
            distilled,
            note,
        })
    }

    /// Replays the models that feedback teaches (calibration, solvability,
    /// escalation, step rewards) from their priors over every graded
    /// episode in memory, in the order stored. Returns how many.
    fn relearn(&mut self) -> Result<usize, ReasonerError> {
        let memory = self.memory.as_ref().ok_or_else(|| {
            ReasonerError::Feedback("feedback needs memory; run without --no-memory".into())
        })?;
        let d = MetaParams::default();
        self.params.calibration = d.calibration;
        self.params.calibration_short_answers = d.calibration_short_answers;
        self.params.calibration_free_text = d.calibration_free_text;
        self.params.solvability = d.solvability;
        self.params.escalation = d.escalation;
        self.params.reward = d.reward;
        let graded = memory.episodes(true)?;
        for e in &graded {
            let Some(correct) = e.record.outcome else {
                continue;
            };
            let stored = stored_features(e);
            self.params
                .learn_from(e, stored.as_ref(), correct, e.record.reference.as_deref());
        }
        Ok(graded.len())
    }
}

/// The features stored with an episode, when readable.
fn stored_features(episode: &metareason_memory::Episode) -> Option<StoredFeatures> {
    episode
        .record
        .features
        .clone()
        .and_then(|f| serde_json::from_value(f).ok())
}

impl MetaParams {
    /// Learns from one graded episode: the calibration, solvability,
    /// escalation and step-reward models. Returns the names of those
    /// updated.
    fn learn_from(
        &mut self,
        episode: &metareason_memory::Episode,
        stored: Option<&StoredFeatures>,
        correct: bool,
        reference: Option<&str>,
    ) -> Vec<String> {
        let mut updated = Vec::new();
        let report: Option<EpisodeReport> = episode
            .record
            .trace
            .clone()
            .and_then(|t| serde_json::from_value(t).ok());
        if let Some((s, f)) = stored.and_then(|s| Some((s, s.calibration.as_ref()?))) {
            let (model, name) = self.calibration_for_mut(&s.answer_kind);
            model.observe(f, correct);
            updated.push(name.into());
        }
        if let Some(x) = stored.and_then(|s| s.solvability.as_ref()) {
            if x.len() == self.solvability.dim() {
                self.solvability.observe(x, correct, 1.0);
                updated.push("solvability".into());
            }
        }
        // What escalating did: the first answer's fate is known when it is
        // the final one, when a reference was given, or when the final
        // answer differs and is right (then the first was wrong).
        let escalation = report
            .as_ref()
            .and_then(|r| r.escalation.as_ref())
            .filter(|e| e.escalated());
        if let Some(e) = escalation {
            let kind = stored
                .map(|s| s.answer_kind.clone())
                .unwrap_or(AnswerKind::Number);
            let same = match (&e.first_answer, &episode.record.answer) {
                (Some(a), Some(b)) => kind.same_meaning(a, b),
                _ => false,
            };
            let first_right = if same {
                Some(correct)
            } else if let (Some(r), Some(first)) = (reference, &e.first_answer) {
                Some(kind.same_meaning(r, first))
            } else if correct {
                Some(false)
            } else {
                None
            };
            self.escalation.observe(first_right, correct);
            updated.push("escalation".into());
            // The first answer was judged on its own features (one reply)
            // before escalation: the calibrator learns that state too,
            // where the first answer's fate is known.
            if let (Some(right), Some(f)) = (first_right, e.first_features.as_ref()) {
                let (model, _) = self.calibration_for_mut(&kind);
                model.observe(f, right);
            }
        }
        // The step rewards are those of the first attempt: they learn from
        // its answer's fate, known unless escalation changed it.
        let first_fate = match escalation {
            Some(e) if e.first_answer != episode.record.answer => None,
            _ => Some(correct),
        };
        if let (Some(trace), Some(right)) =
            (report.as_ref().and_then(|r| r.solve.as_ref()), first_fate)
        {
            self.reward.observe(trace, right);
            updated.push("step-reward weights".into());
        }
        updated
    }
}

/// The calibrated P(correct) of an attempt, as the solver asks for it.
/// What [`Reasoner::attempt`] found.
struct Attempted {
    /// The strategy that solved.
    chosen: StrategyKind,
    /// The answer found (normalised), after escalation when it ran.
    answer: Option<String>,
    /// That answer as the model wrote it, when escalation chose it.
    raw_answer: Option<String>,
    /// The calibration features of the answer.
    features: CalibrationFeatures,
    /// The calibration model of the answer kind.
    calibration: Calibrator,
    /// The escalation, when it ran.
    escalation: Option<EscalationReport>,
    /// The cross-check, when it ran.
    cross_check: Option<CrossCheckResult>,
    /// Model usage of the attempt, escalation and cross-check.
    usage: Usage,
    /// The solver's trace of the first attempt.
    trace: Trace,
}

struct CalibratedScorer<'c> {
    calibration: &'c Calibrator,
    priors: &'c BTreeMap<StrategyKind, f64>,
    p_true: f64,
}

impl AttemptScorer for CalibratedScorer<'_> {
    fn p_correct(&self, e: &AttemptEvidence<'_>) -> f64 {
        let prior = self.priors.get(&e.strategy).copied().unwrap_or(0.5);
        let mut f = CalibrationFeatures::from_reply(
            e.candidate,
            e.agreement,
            e.findings,
            prior,
            self.p_true,
        );
        f.single_reply = if e.replies <= 1 { 1.0 } else { 0.0 };
        self.calibration.confidence(&f)
    }
}

/// The strategies of `configured` that suit `kind`, or all of them when none
/// does (the caller forced a strategy).
fn offered_strategies(configured: &[StrategyKind], kind: &AnswerKind) -> Vec<StrategyKind> {
    let suited = strategies_for(kind);
    let offered: Vec<StrategyKind> = configured
        .iter()
        .copied()
        .filter(|k| suited.contains(k))
        .collect();
    if offered.is_empty() {
        configured.to_vec()
    } else {
        offered
    }
}

/// The fallbacks of `configured` that suit `kind`; when none does, the next
/// suited strategy after `chosen` (not example-guided, which needs
/// templates).
fn fallbacks_for(
    configured: &[StrategyKind],
    chosen: StrategyKind,
    kind: &AnswerKind,
) -> Vec<StrategyKind> {
    let suited = strategies_for(kind);
    let kept: Vec<StrategyKind> = configured
        .iter()
        .copied()
        .filter(|k| *k != chosen && suited.contains(k))
        .collect();
    if !kept.is_empty() || configured.is_empty() {
        return kept;
    }
    suited
        .into_iter()
        .filter(|k| *k != chosen && *k != StrategyKind::ExampleGuided)
        .take(1)
        .collect()
}

/// The strategy that cross-checks an answer found by `chosen`: a program
/// for numbers, step-by-step reasoning for short answers found directly
/// (and the reverse); none for free text, where two replies do not agree
/// or disagree as answers.
fn second_opinion(chosen: StrategyKind, kind: &AnswerKind) -> Option<StrategyKind> {
    match kind {
        AnswerKind::FreeText => None,
        AnswerKind::Number => Some(if chosen == StrategyKind::ProgramAided {
            StrategyKind::ChainOfThought
        } else {
            StrategyKind::ProgramAided
        }),
        _ => Some(if chosen == StrategyKind::ChainOfThought {
            StrategyKind::Direct
        } else {
            StrategyKind::ChainOfThought
        }),
    }
}

/// A one-paragraph human summary of a report.
pub fn summary(r: &EpisodeReport) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "decision: {}{} — {}",
        r.decision,
        r.grounds.map(|g| format!(" ({g})")).unwrap_or_default(),
        r.reason
    ));
    out.push(format!(
        "answer kind: {} ({})",
        r.answer_kind.kind, r.answer_kind.how
    ));
    let a = &r.assessment;
    if let Some(v) = &a.answerability {
        out.push(format!(
            "answerable: P {:.2} (decline below {:.2}); P(false premise) {}, P(unknowable) {}, \
             P(context suffices) {}, P(\"unknown\") {}, state probe's P(decline) {}",
            v.p_answerable,
            v.threshold,
            fmt_p(a.probes.p_false_premise),
            fmt_p(a.probes.p_unknowable),
            fmt_p(a.probes.p_context_suffices),
            fmt_p(a.probes.p_unknown_reply),
            fmt_p(a.probes.state_p_decline),
        ));
    }
    if let Some(p) = a.probes.p_true {
        out.push(format!(
            "self-awareness: P(True) {p:.2}, question log-prob/token {:.2}, {} neighbours in memory, OOD {:.2}",
            a.probes.question_logprob.unwrap_or(0.0),
            a.neighbours,
            a.ood
        ));
    }
    for o in &a.options {
        let b = a.beliefs.iter().find(|b| b.strategy == o.strategy);
        out.push(format!(
            "  {:<17} P(success) {:.2}{} capability {} expected tokens {:>4} utility {:+.3}",
            o.strategy,
            o.p_success,
            o.p_sampled
                .map(|s| format!(" (draw {s:.2})"))
                .unwrap_or_default(),
            b.map(|b| format!(
                "{:.2} [{:.2}, {:.2}] from {} neighbours",
                b.posterior.mean(),
                b.posterior.quantile(0.05),
                b.posterior.quantile(0.95),
                b.neighbours
            ))
            .unwrap_or_default(),
            o.expected_tokens,
            o.utility
        ));
    }
    if !r.retrieved.templates.is_empty() || !r.retrieved.notes.is_empty() {
        out.push(format!(
            "memory: {} template(s), {} error note(s) handed to the task",
            r.retrieved.templates.len(),
            r.retrieved.notes.len()
        ));
    }
    if let Some(e) = &r.escalation {
        out.push(format!(
            "escalation: first answer {} at P(correct) {:.2}; {} more repl{} drawn",
            e.first_answer.as_deref().unwrap_or("none"),
            e.first_confidence,
            e.drawn,
            if e.drawn == 1 { "y" } else { "ies" }
        ));
        for (i, round) in e.rounds.iter().enumerate() {
            let v = &round.value;
            let replies = round
                .replies
                .iter()
                .map(|x| {
                    format!(
                        "{} {} (weight {:.2})",
                        x.strategy.name(),
                        x.answer.as_deref().unwrap_or("no answer"),
                        x.weight
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            out.push(format!(
                "  round {}: P(correct) {:.2}, expected gain {:+.3} worth {:.4} vs cost {:.4}, \
                 P(majority) {:.2}: {}{}",
                i + 1,
                v.p_correct,
                v.expected_gain,
                v.worth,
                v.cost,
                round.majority_posterior,
                round.decision,
                if replies.is_empty() {
                    String::new()
                } else {
                    format!(
                        " -> {replies}; leader {}",
                        round.leader.as_deref().unwrap_or("none")
                    )
                }
            ));
        }
    }
    if let Some(c) = &r.cross_check {
        out.push(format!(
            "cross-check by {}: {} ({})",
            c.strategy.name(),
            c.answer.as_deref().unwrap_or("no answer"),
            match c.agrees {
                Some(true) => "agrees",
                Some(false) => "disagrees",
                None => "no verdict",
            }
        ));
    }
    if let Some(t) = &r.solve {
        out.push(t.summary());
    }
    out.join("\n")
}

fn fmt_p(p: Option<f64>) -> String {
    p.map_or("–".into(), |p| format!("{p:.2}"))
}

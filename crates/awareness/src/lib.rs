//! Self-awareness, the meta level before a task (docs/design.md):
//!
//! 1. mission-aware solvability: the [`policy`] says whether the task is
//!    allowed for this user and budget (a refusal names its rule);
//! 2. capability-aware solvability: for each strategy, a Beta posterior from
//!    similar past episodes with partial pooling ([`capability`]), refined
//!    by cheap probes — the model's P(True) that the question can be
//!    answered and the question's perplexity — through a logistic
//!    solvability model learned from outcomes;
//! 3. an out-of-distribution score from embedding distance;
//! 4. whether the question can be answered at all ([`answerability`]): a
//!    posterior from probes, and a decline before any attempt when it is
//!    confidently low under the policy's costs;
//! 5. the strategy F by expected utility (P(success) × value − token cost),
//!    by Thompson sampling while exploring or by the posterior mean; then
//!    answer, abstain (unable) or refuse (not allowed).
//!
//! Every number behind the decision is in the [`Assessment`].
#![deny(missing_docs)]

pub mod answerability;
pub mod capability;
pub mod classifier;
pub mod kind;
pub mod normalize;
pub mod policy;
pub mod prompts;

use metareason_bayes::{sigmoid, LogisticRegression};
use metareason_core::{
    AnswerKind, Embedder, GenerateRequest, LanguageModel, ModelError, Prompt, SamplingParams,
    ScoreRequest, Usage,
};
use metareason_memory::{Decision, Memory, MemoryError};
use metareason_strategy::answer::Extract;
use metareason_strategy::StrategyKind;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use answerability::{AnswerabilityModel, AnswerabilityVerdict, Suspect};
pub use capability::{beliefs, ood_score, CapabilitySettings, StrategyBelief};
pub use classifier::{EmbeddingClassifier, Standardize};
pub use kind::{choose_answer_kind, KindChoice};
pub use policy::{Action, Costs, Policy, PolicyContext, PolicyError, PolicyVerdict};

/// Why an assessment failed.
#[derive(Debug, thiserror::Error)]
pub enum AwarenessError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A strategy the task could be solved with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyOption {
    /// The strategy.
    pub strategy: StrategyKind,
    /// Tokens it is expected to generate.
    pub expected_tokens: u64,
    /// Its P(success) before any experience on tasks of this kind.
    pub prior: f64,
}

/// What the cheap probes measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// The model's P(Yes) that the question can be answered correctly.
    pub p_true: Option<f64>,
    /// Mean token log-probability of the question (its log-perplexity,
    /// negated).
    pub question_logprob: Option<f64>,
    /// The model's P(Yes) that the question rests on a false premise.
    #[serde(default)]
    pub p_false_premise: Option<f64>,
    /// The model's P(Yes) that the question asks what nobody knows.
    #[serde(default)]
    pub p_unknowable: Option<f64>,
    /// The model's P(Yes) that the context given with the question holds
    /// the answer (only for tasks that carry a context).
    #[serde(default)]
    pub p_context_suffices: Option<f64>,
    /// The model's own P("unknown") as its answer, when allowed to say so.
    #[serde(default)]
    pub p_unknown_reply: Option<f64>,
    /// P(should be declined) by the answerability model's probe of the
    /// model's own state (only where that state can be read).
    #[serde(default)]
    pub state_p_decline: Option<f64>,
    /// How often sampled short answers agree: the share of the samples in
    /// the largest group of answers that mean the same (a discrete form of
    /// semantic entropy; only for short-text questions, and only when
    /// [`AwarenessSettings::agreement_samples`] asks for samples).
    #[serde(default)]
    pub sample_agreement: Option<f64>,
    /// Cost of the probes.
    pub usage: Usage,
}

/// The solvability model's features: [1, logit(capability), logit(P(True)),
/// scaled question log-probability].
pub fn solvability_features(capability: f64, probes: &Probes) -> Vec<f64> {
    let logit = |p: f64| metareason_bayes::logit(p, 1e-4);
    vec![
        1.0,
        logit(capability),
        probes.p_true.map_or(0.0, logit),
        probes
            .question_logprob
            .map_or(0.0, |lp| ((lp + 3.0) / 2.0).clamp(-3.0, 3.0)),
    ]
}

/// The shipped prior of the solvability model: capability and P(True)
/// each count one logit; perplexity starts at zero weight.
pub fn default_solvability() -> LogisticRegression {
    LogisticRegression::new(vec![0.0, 1.0, 1.0, 0.0], 0.5)
}

/// One strategy's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionScore {
    /// The strategy.
    pub strategy: StrategyKind,
    /// P(success) at the posterior mean of its capability.
    pub p_success: f64,
    /// P(success) at a Thompson draw (when exploring).
    pub p_sampled: Option<f64>,
    /// Expected tokens.
    pub expected_tokens: u64,
    /// Expected utility of answering with it (at the mean).
    pub utility: f64,
    /// The utility the choice used (the draw's when exploring).
    pub utility_used: f64,
}

/// How to assess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AwarenessSettings {
    /// Neighbour weighting and pooling.
    pub capability: CapabilitySettings,
    /// Choose the strategy by Thompson sampling (explore) instead of the
    /// best posterior mean.
    pub explore: bool,
    /// Run the P(True) and perplexity probes.
    pub probes: bool,
    /// Allow abstaining before the task when answering is expected to lose.
    pub allow_abstain: bool,
    /// The answer can still be withheld after the attempt (when its
    /// calibrated confidence is low), so a wrong attempt costs at most an
    /// abstention plus its tokens: attempting is worth P·v − (1 − P)·a −
    /// token cost instead of P·v − (1 − P)·w − token cost. Pre-task
    /// abstention then happens only where even that option does not pay.
    pub abstain_later: bool,
    /// How many short answers to sample for the agreement probe of a
    /// short-text question (0 or 1: the probe is off, its feature reads
    /// "no evidence").
    pub agreement_samples: usize,
}

/// Samples the agreement probe draws by default. Off: the probe was
/// measured on the development sets and did not earn its tokens (see the
/// README, "Any question").
pub const AGREEMENT_SAMPLES: usize = 0;

/// Sampling of the agreement probe: the model's own distribution
/// (temperature 1), one short line, seeded so that a run repeats.
fn agreement_params() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        max_tokens: 32,
        stop: vec!["\n".into()],
        top_logprobs: 0,
        seed: 0x5eed,
        ..SamplingParams::default()
    }
}

/// The share of `answers` in the largest group of short-text answers that
/// mean the same ([`Extract::meaning_groups`]); an answer that could not be
/// read (None) is a group of its own. 0 for no answers.
pub fn agreement_share(answers: &[Option<String>]) -> f64 {
    if answers.is_empty() {
        return 0.0;
    }
    let read: Vec<&str> = answers.iter().flatten().map(String::as_str).collect();
    let mut sizes = vec![0usize; read.len()];
    for g in AnswerKind::Text.meaning_groups(&read) {
        sizes[g] += 1;
    }
    // With nothing read, every answer is a group of one.
    let largest = sizes.into_iter().max().unwrap_or(0).max(1);
    largest as f64 / answers.len() as f64
}

impl Default for AwarenessSettings {
    fn default() -> Self {
        Self {
            capability: CapabilitySettings::default(),
            explore: false,
            probes: true,
            allow_abstain: true,
            abstain_later: true,
            agreement_samples: AGREEMENT_SAMPLES,
        }
    }
}

/// Everything self-awareness concluded about a task, with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The policy's verdict.
    pub policy: PolicyVerdict,
    /// What the probes measured.
    pub probes: Probes,
    /// Out-of-distribution score.
    pub ood: f64,
    /// Neighbours found in memory.
    pub neighbours: usize,
    /// Per-strategy beliefs from experience.
    pub beliefs: Vec<StrategyBelief>,
    /// Per-strategy scores.
    pub options: Vec<OptionScore>,
    /// The chosen strategy (also when abstaining: the best one).
    pub strategy: Option<StrategyKind>,
    /// Answer, abstain or refuse.
    pub decision: Decision,
    /// Why, in words and numbers.
    pub reason: String,
    /// The costs weighed.
    pub costs: Costs,
    /// The policy rule's reply when refusing or abstaining by rule.
    pub reply: Option<String>,
    /// Whether the strategy was chosen by Thompson sampling.
    pub explored: bool,
    /// Whether the question can be answered at all (None without probes).
    #[serde(default)]
    pub answerability: Option<AnswerabilityVerdict>,
    /// Model calls made.
    pub usage: Usage,
}

/// What self-awareness is asked to assess: the task and what it is
/// weighed against.
#[derive(Clone, Copy)]
pub struct AssessRequest<'a> {
    /// The task.
    pub task: &'a str,
    /// Its embedding, which finds neighbours in `memory` (both optional:
    /// without them every strategy has its pooled prior).
    pub embedding: Option<&'a [f32]>,
    /// The memory of past episodes.
    pub memory: Option<&'a Memory>,
    /// The kind of answer the task asks for (inferred or given).
    pub answer_kind: &'a AnswerKind,
    /// The strategies offered, with their expected cost and prior.
    pub options: &'a [StrategyOption],
    /// The policy's context (the user's profile).
    pub context: &'a PolicyContext,
    /// Maps capability and probes to P(success).
    pub solvability: &'a LogisticRegression,
}

/// The self-awareness module: self-awareness before the task, over one
/// model and one policy.
pub struct Awareness<'a> {
    /// The model probed and asked.
    pub model: &'a dyn LanguageModel,
    /// The mission policy.
    pub policy: &'a Policy,
    /// Settings.
    pub settings: AwarenessSettings,
    /// P(answerable | probes).
    pub answerability: &'a AnswerabilityModel,
    /// The embedders the policy's classifiers read (each classifier reads
    /// the one it was fitted on; without it, the classifier is off).
    pub embedders: &'a [&'a dyn Embedder],
}

impl Awareness<'_> {
    /// Runs the probes on `task`: the yes/no questions about it (sharing
    /// one prompt prefix), the model's own P("unknown"), perplexity, the
    /// agreement of sampled answers (short-text questions, when the
    /// settings ask for samples), and the answerability model's probe of
    /// the model's state where one of the embedders reads that state.
    pub fn probe(&self, task: &str, answer_kind: &AnswerKind) -> Result<Probes, ModelError> {
        let mut usage = Usage::default();
        let mut ask = |probe: &str| -> Result<f64, ModelError> {
            let prompt = Prompt::user(prompts::fill(
                prompts::PROBE_USER,
                &[("task", task), ("probe", probe)],
            ))
            .with_system(prompts::PROBE_SYSTEM);
            let (p, u) = self.model.choice_probabilities(&prompt, &["Yes", "No"])?;
            usage += u;
            Ok(p[0])
        };
        let p_true = ask(prompts::PROBE_ANSWERABLE)?;
        let p_false_premise = ask(prompts::PROBE_FALSE_PREMISE)?;
        let p_unknowable = ask(prompts::PROBE_UNKNOWABLE)?;
        let p_context_suffices = if has_context(task) {
            Some(ask(prompts::PROBE_CONTEXT)?)
        } else {
            None
        };
        let unknown = self.model.score(&ScoreRequest {
            prompt: Prompt {
                assistant_prefix: prompts::UNKNOWN_PREFIX.to_string(),
                ..Prompt::user(prompts::fill(prompts::UNKNOWN_USER, &[("task", task)]))
                    .with_system(prompts::UNKNOWN_SYSTEM)
            },
            continuation: " unknown".to_string(),
            top_logprobs: 0,
        })?;
        usage += unknown.usage;
        let scored = self.model.score(&ScoreRequest {
            prompt: Prompt::user(prompts::PERPLEXITY_USER),
            continuation: task.to_string(),
            top_logprobs: 0,
        })?;
        usage += scored.usage;
        let n = scored.tokens.len().max(1) as f64;
        let sample_agreement = self.sample_agreement(task, answer_kind, &mut usage)?;
        Ok(Probes {
            p_true: Some(p_true),
            question_logprob: Some(scored.total_logprob() / n),
            p_false_premise: Some(p_false_premise),
            p_unknowable: Some(p_unknowable),
            p_context_suffices,
            p_unknown_reply: Some(unknown.total_logprob().exp().clamp(0.0, 1.0)),
            state_p_decline: self.state_p_decline(task),
            sample_agreement,
            usage,
        })
    }

    /// The agreement probe: the model's short answer sampled
    /// `agreement_samples` times (one prompt, shared by the samples), read
    /// as short text and grouped by meaning. Only short-text questions: a
    /// number usually needs working that a one-line answer skips, and
    /// prose is not voted on.
    fn sample_agreement(
        &self,
        task: &str,
        answer_kind: &AnswerKind,
        usage: &mut Usage,
    ) -> Result<Option<f64>, ModelError> {
        let k = self.settings.agreement_samples;
        if k < 2 || !matches!(answer_kind, AnswerKind::Text) {
            return Ok(None);
        }
        let prompt = Prompt {
            assistant_prefix: prompts::UNKNOWN_PREFIX.to_string(),
            ..Prompt::user(prompts::fill(prompts::AGREEMENT_USER, &[("task", task)]))
                .with_system(prompts::UNKNOWN_SYSTEM)
        };
        let generation = self
            .model
            .generate(&GenerateRequest::new(prompt, agreement_params()).with_n(k))?;
        *usage += generation.usage;
        let answers: Vec<Option<String>> = generation
            .sequences
            .iter()
            .map(|s| {
                AnswerKind::Text
                    .extract(&format!("{} {}", prompts::UNKNOWN_PREFIX, s.text.trim()))
                    .map(|a| a.normalized)
            })
            .collect();
        Ok(Some(agreement_share(&answers)))
    }

    /// The answerability model's state probe on `task`, when one of the
    /// embedders reads the state it was fitted on. A failed read is
    /// warned about and leaves the feature out (the other probes still
    /// speak), as a policy classifier's does.
    fn state_p_decline(&self, task: &str) -> Option<f64> {
        let probe = self.answerability.state_probe.as_ref()?;
        let reader = self.embedders.iter().find(|e| probe.reads(**e))?;
        match probe.judge(*reader, &[task.to_string()]) {
            Ok(p) => Some(p),
            Err(err) => {
                tracing::warn!("{err}; the answerability state probe is off for this question");
                None
            }
        }
    }

    /// Assesses a task before solving it ([`AssessRequest`]); `rng` draws
    /// the Thompson samples when the settings explore.
    pub fn assess<R: Rng + ?Sized>(
        &self,
        request: &AssessRequest<'_>,
        rng: &mut R,
    ) -> Result<Assessment, AwarenessError> {
        let AssessRequest {
            task,
            embedding,
            memory,
            answer_kind,
            options,
            context,
            solvability,
        } = *request;
        let costs = self.policy.costs;
        let mut context = context.clone();
        context.expected_tokens = options.iter().map(|o| o.expected_tokens).min().unwrap_or(0);
        let verdict = self
            .policy
            .evaluate(task, &context, self.model, self.embedders)?;
        let mut usage = verdict.usage;
        let mut out = Assessment {
            policy: verdict.clone(),
            probes: Probes::default(),
            ood: 1.0,
            neighbours: 0,
            beliefs: Vec::new(),
            options: Vec::new(),
            strategy: None,
            decision: Decision::Answer,
            reason: String::new(),
            costs,
            reply: None,
            explored: false,
            answerability: None,
            usage,
        };
        if let Some((rule, action, reply)) = verdict.fired {
            let p = verdict
                .evaluations
                .last()
                .map(|e| e.probability)
                .unwrap_or(1.0);
            out.decision = match action {
                Action::Refuse => Decision::Refuse,
                Action::Abstain => Decision::Abstain,
            };
            out.reason = format!(
                "policy rule \"{rule}\" fired (probability {p:.2} >= threshold {:.2})",
                verdict
                    .evaluations
                    .last()
                    .map(|e| e.threshold)
                    .unwrap_or(0.5)
            );
            // The reply names the rule, so that a user can tell a policy
            // from a failure (and an operator can find the rule).
            out.reply = Some(format!("{reply} (policy: {rule})"));
            return Ok(out);
        }
        let (neighbours, counts) = match (embedding, memory) {
            (Some(e), Some(m)) => (
                m.nearest(e, self.settings.capability.neighbours)?,
                m.strategy_counts()?,
            ),
            (None, Some(m)) => (Vec::new(), m.strategy_counts()?),
            _ => (Vec::new(), Vec::new()),
        };
        out.ood = ood_score(&neighbours, 5);
        out.neighbours = neighbours.len();
        let kinds: Vec<StrategyKind> = options.iter().map(|o| o.strategy).collect();
        let priors: Vec<f64> = options.iter().map(|o| o.prior).collect();
        out.beliefs = beliefs(
            &neighbours,
            &counts,
            &kinds,
            &priors,
            &self.settings.capability,
        );
        if self.settings.probes {
            out.probes = self.probe(task, answer_kind)?;
            usage += out.probes.usage;
        }
        let per_token = costs.cost_per_1k_tokens / 1000.0;
        let downside = if self.settings.abstain_later {
            costs.cost_abstain.min(costs.cost_wrong)
        } else {
            costs.cost_wrong
        };
        let utility = |p: f64, tokens: u64| {
            p * costs.value_correct - (1.0 - p) * downside - per_token * tokens as f64
        };
        for (o, b) in options.iter().zip(&out.beliefs) {
            let p = solvability.predict(&solvability_features(b.posterior.mean(), &out.probes));
            let sampled = self.settings.explore.then(|| {
                let cap = b.posterior.sample(rng);
                let w = solvability.sample(rng);
                let x = solvability_features(cap, &out.probes);
                sigmoid(w.iter().zip(&x).map(|(a, b)| a * b).sum())
            });
            let u = utility(p, o.expected_tokens);
            out.options.push(OptionScore {
                strategy: o.strategy,
                p_success: p,
                p_sampled: sampled,
                expected_tokens: o.expected_tokens,
                utility: u,
                utility_used: sampled.map_or(u, |s| utility(s, o.expected_tokens)),
            });
        }
        out.explored = self.settings.explore;
        out.usage = usage;
        let Some(best) = out
            .options
            .iter()
            .max_by(|a, b| a.utility_used.total_cmp(&b.utility_used))
            .cloned()
        else {
            out.decision = Decision::Abstain;
            out.reason = "no strategy is available".into();
            return Ok(out);
        };
        out.strategy = Some(best.strategy);
        let abstain = -costs.cost_abstain;
        let best_mean = out
            .options
            .iter()
            .map(|o| o.utility)
            .fold(f64::NEG_INFINITY, f64::max);
        if self.settings.probes {
            let x = answerability::features(&out.probes, out.ood);
            let p = self.answerability.p_answerable(&x);
            let threshold = answerability::decline_threshold(&costs, best_mean);
            // Outside the kinds the model was fitted on, its P(answerable)
            // is an extrapolation: it is reported, but declines nothing.
            let covered = answerability::covers(answer_kind);
            let verdict = AnswerabilityVerdict {
                p_answerable: p,
                threshold,
                declined: self.settings.allow_abstain && covered && p < threshold,
                suspect: Suspect::of(&out.probes),
                features: x,
            };
            let declined = verdict.declined;
            out.answerability = Some(verdict.clone());
            if declined {
                out.decision = Decision::Abstain;
                out.reason = format!(
                    "the question looks unanswerable ({}): P(answerable) {p:.2} < {threshold:.2}, \
                     where declining (a claim that can be wrong, like an answer) beats \
                     attempting (best strategy's utility {best_mean:.3}); P(True) {}, P(false \
                     premise) {}, P(unknowable) {}, P(\"unknown\") {}, state probe's \
                     P(decline) {}, sampled answers agreeing {}",
                    verdict.suspect.name(),
                    fmt_p(out.probes.p_true),
                    fmt_p(out.probes.p_false_premise),
                    fmt_p(out.probes.p_unknowable),
                    fmt_p(out.probes.p_unknown_reply),
                    fmt_p(out.probes.state_p_decline),
                    fmt_p(out.probes.sample_agreement),
                );
                out.reply = Some(verdict.suspect.reply().to_string());
                return Ok(out);
            }
        }
        if self.settings.allow_abstain && best_mean < abstain {
            out.decision = Decision::Abstain;
            out.reason = format!(
                "best expected utility of answering {best_mean:.3} < {abstain:.3} of abstaining \
                 (P(success) {:.2}, P(True) {}, {} neighbours, OOD {:.2})",
                best.p_success,
                out.probes
                    .p_true
                    .map_or("not probed".into(), |p| format!("{p:.2}")),
                out.neighbours,
                out.ood
            );
        } else {
            out.reason = format!(
                "{} by {}: P(success) {:.2}, expected tokens {}, utility {:.3} (abstaining: {abstain:.3})",
                best.strategy,
                if out.explored {
                    "Thompson sampling"
                } else {
                    "posterior mean"
                },
                best.p_success,
                best.expected_tokens,
                best.utility_used
            );
        }
        Ok(out)
    }
}

fn fmt_p(p: Option<f64>) -> String {
    p.map_or("not probed".into(), |p| format!("{p:.2}"))
}

/// Whether the task carries a context of its own to answer from (a
/// `Context:` section or a passage before the question).
pub fn has_context(task: &str) -> bool {
    let lower = task.to_lowercase();
    lower.contains("context:") || lower.contains("passage:") || lower.contains("text:")
}

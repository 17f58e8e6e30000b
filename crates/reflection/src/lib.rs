//! Meta-reflection, the meta level after a task (docs/design.md):
//!
//! - [`Calibrator`]: P(correct) of a final answer from the signals of its
//!   episode (answer agreement, log-probabilities, step rewards, verifier
//!   verdicts, prior solvability, P(True)) by Bayesian logistic regression;
//!   default weights are fit on development data and shipped (numbers:
//!   `calibration.json`; yes/no, choices and short text:
//!   `calibration-short-answers.json`), then updated online from observed
//!   outcomes;
//! - [`RewardLearner`]: the step-reward weights of E, updated from outcomes
//!   (the chosen reply's mean step signals against right/wrong — outcome
//!   supervision of a process reward);
//! - [`distill_template`] / [`distill_error_note`]: a solved episode becomes
//!   a thought template (a reusable plan without the specific numbers), a
//!   failed one an error note.
//!
//! Strategy posteriors need no update step here: they are read from the
//! outcomes stored in memory (conjugate counts), so recording an outcome
//! updates them.
#![deny(missing_docs)]

pub mod baselines;
pub mod prompts;

pub use baselines::BaselineConfidences;

use metareason_bayes::LogisticRegression;
use metareason_core::{LanguageModel, ModelError, Prompt, SamplingParams, Usage};
use metareason_monitor::{Candidate, RewardWeights};
use metareason_solver::Trace;
use metareason_verify::{Finding, Verdict};
use serde::{Deserialize, Serialize};

/// The shipped calibration model of numeric answers, fitted on the graded
/// episodes of the whole loop on GSM8K problems
/// (`metareason bench fit-calibration`): both the answer each episode gave
/// and, where escalation drew more replies, its first reply judged alone.
pub const SHIPPED_CALIBRATION: &str = include_str!("../calibration.json");

/// The shipped calibration model of short answers (yes/no, a choice, a
/// short text): the model fitted on arithmetic episodes before escalation,
/// which the abstention sets were measured with. Numbers got a model of
/// their own when escalation changed what their features mean; no refit
/// on short answers has been measured, so they keep this one (its
/// `single_reply` weight is 0 with prior variance 0.01: it barely moves
/// their confidence until feedback teaches it).
pub const SHIPPED_CALIBRATION_SHORT_ANSWERS: &str =
    include_str!("../calibration-short-answers.json");

/// The signals of an episode that calibration maps to P(correct).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFeatures {
    /// Share of the search's candidates agreeing with the answer (1 for a
    /// single sample).
    pub agreement: f64,
    /// +1 when an independent second strategy gave the same answer, −1 when
    /// it gave another, 0 when not checked (or it gave none).
    pub cross_check: f64,
    /// Mean token log-probability of the chosen reply.
    pub mean_logprob: f64,
    /// Mean step reward of the chosen reply.
    pub mean_reward: f64,
    /// Lowest step reward of the chosen reply.
    pub min_reward: f64,
    /// Verifier failures, weighted by their confidence.
    pub verifier_fails: f64,
    /// Verifier passes, weighted by their confidence.
    pub verifier_passes: f64,
    /// Prior P(success) of the chosen strategy from self-awareness.
    pub prior: f64,
    /// The model's P(True) that the question can be answered.
    pub p_true: f64,
    /// 1 when no answer could be extracted.
    pub no_answer: f64,
    /// 1 when the answer rests on a single reply (no other reply with an
    /// answer was drawn): its agreement of 1 is then no evidence, where
    /// the same agreement over a pool of replies is. Episodes stored
    /// before this feature read 0.
    #[serde(default)]
    pub single_reply: f64,
}

/// Names of the entries of [`CalibrationFeatures::vector`].
pub const FEATURE_NAMES: [&str; 12] = [
    "bias",
    "agreement",
    "cross_check",
    "mean_logprob",
    "mean_reward",
    "min_reward",
    "verifier_fails",
    "verifier_passes",
    "logit_prior",
    "logit_p_true",
    "no_answer",
    "single_reply",
];

fn logit(p: f64) -> f64 {
    metareason_bayes::logit(p, 1e-3)
}

impl CalibrationFeatures {
    /// The features of a solve trace; `cross_check`, `prior` and `p_true`
    /// come from outside the solver.
    pub fn from_trace(trace: &Trace, cross_check: Option<bool>, prior: f64, p_true: f64) -> Self {
        let attempt = &trace.attempts[trace.final_attempt];
        let mut f = Self::from_reply(
            attempt.outcome.best(),
            attempt.outcome.agreement,
            &attempt.findings,
            prior,
            p_true,
        );
        f.cross_check = match cross_check {
            Some(true) => 1.0,
            Some(false) => -1.0,
            None => 0.0,
        };
        f.no_answer = if trace.answer.is_none() { 1.0 } else { 0.0 };
        f.single_reply = if metareason_solver::answered(&attempt.outcome.candidates) <= 1 {
            1.0
        } else {
            0.0
        };
        f
    }

    /// The features of one reply: its tokens and step rewards, the share of
    /// replies agreeing with it, what the verifiers found; not
    /// cross-checked, and read as resting on that reply alone
    /// (`single_reply` 1) until the caller says a pool backs it.
    pub fn from_reply(
        best: &Candidate,
        agreement: f64,
        findings: &[Finding],
        prior: f64,
        p_true: f64,
    ) -> Self {
        let rewards: Vec<f64> = best.steps.iter().map(|s| s.reward).collect();
        let (mut fails, mut passes) = (0.0, 0.0);
        for f in findings {
            match f.verdict {
                Verdict::Fail => fails += f.confidence,
                Verdict::Pass => passes += f.confidence,
            }
        }
        Self {
            agreement,
            cross_check: 0.0,
            mean_logprob: best.mean_logprob,
            mean_reward: if rewards.is_empty() {
                0.0
            } else {
                rewards.iter().sum::<f64>() / rewards.len() as f64
            },
            min_reward: rewards.iter().copied().fold(1.0, f64::min),
            verifier_fails: fails,
            verifier_passes: passes,
            prior,
            p_true,
            no_answer: if best.answer.is_none() { 1.0 } else { 0.0 },
            single_reply: 1.0,
        }
    }

    /// The vector the calibration model reads (names in [`FEATURE_NAMES`]).
    pub fn vector(&self) -> Vec<f64> {
        vec![
            1.0,
            self.agreement,
            self.cross_check,
            self.mean_logprob.max(-5.0),
            self.mean_reward,
            self.min_reward,
            self.verifier_fails.min(3.0),
            self.verifier_passes.min(3.0),
            logit(self.prior),
            logit(self.p_true),
            self.no_answer,
            self.single_reply,
        ]
    }
}

/// Calibrated confidence: Bayesian logistic regression over
/// [`CalibrationFeatures`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// Feature names, in order (a stored model with other names is stale).
    pub features: Vec<String>,
    /// The posterior over the weights.
    pub model: LogisticRegression,
    /// Outcomes observed since the shipped weights.
    pub observed: u64,
}

impl Calibrator {
    /// The shipped model of numeric answers.
    pub fn shipped() -> Self {
        let c: Calibrator =
            serde_json::from_str(SHIPPED_CALIBRATION).expect("shipped calibration is valid");
        debug_assert_eq!(c.features, FEATURE_NAMES);
        c
    }

    /// The shipped model of short answers (yes/no, a choice, a short text).
    pub fn shipped_short_answers() -> Self {
        let c: Calibrator = serde_json::from_str(SHIPPED_CALIBRATION_SHORT_ANSWERS)
            .expect("shipped short-answer calibration is valid");
        debug_assert_eq!(c.features, FEATURE_NAMES);
        c
    }

    /// A model from prior weights `mean` with prior variance `variance`.
    pub fn with_prior(mean: Vec<f64>, variance: f64) -> Self {
        assert_eq!(mean.len(), FEATURE_NAMES.len(), "one weight per feature");
        Self {
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            model: LogisticRegression::new(mean, variance),
            observed: 0,
        }
    }

    /// The posterior after `episodes` (features and whether the answer was
    /// right) from the prior N(0, `prior_variance` · I), fitted at once
    /// (the mode by Newton's method), not in the order-dependent online way
    /// [`Self::observe`] learns: how a shipped model is made from recorded
    /// episodes (`metareason bench fit-calibration`).
    pub fn fit(
        episodes: &[(CalibrationFeatures, bool)],
        prior_variance: f64,
    ) -> Result<Self, metareason_bayes::DomainError> {
        let (xs, ys) = Self::batch(episodes);
        Ok(Self::fitted(LogisticRegression::fit(
            &xs,
            &ys,
            prior_variance,
        )?))
    }

    /// [`Self::fit`] with the prior centred on `earlier`'s weights,
    /// N(earlier, `prior_variance` · I): the refit moves the weights only
    /// as far as the episodes say, and a signal they never show (no answer
    /// at all, say) keeps its earlier weight.
    pub fn fit_around(
        earlier: &Calibrator,
        episodes: &[(CalibrationFeatures, bool)],
        prior_variance: f64,
    ) -> Result<Self, metareason_bayes::DomainError> {
        if !earlier.is_current() {
            return Err(metareason_bayes::DomainError(
                "the earlier calibrator has other features than this build".into(),
            ));
        }
        let (xs, ys) = Self::batch(episodes);
        Ok(Self::fitted(LogisticRegression::fit_around(
            &xs,
            &ys,
            &earlier.model.mean,
            prior_variance,
        )?))
    }

    /// The feature vectors and outcomes of `episodes`, for a batch fit.
    fn batch(episodes: &[(CalibrationFeatures, bool)]) -> (Vec<Vec<f64>>, Vec<bool>) {
        episodes.iter().map(|(f, y)| (f.vector(), *y)).unzip()
    }

    /// A calibrator of today's features around a freshly fitted `model`.
    fn fitted(model: LogisticRegression) -> Self {
        Self {
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            model,
            observed: 0,
        }
    }

    /// Whether a stored model fits the current features.
    pub fn is_current(&self) -> bool {
        self.features == FEATURE_NAMES && self.model.dim() == FEATURE_NAMES.len()
    }

    /// P(correct).
    pub fn confidence(&self, f: &CalibrationFeatures) -> f64 {
        self.model.predict(&f.vector())
    }

    /// Learns from one outcome.
    pub fn observe(&mut self, f: &CalibrationFeatures, correct: bool) {
        self.model.observe(&f.vector(), correct, 1.0);
        self.observed += 1;
    }
}

/// Learns the step-reward weights from outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardLearner {
    /// Posterior over [bias, mean_logprob, min_logprob, mean_entropy,
    /// self_certainty, length].
    pub model: LogisticRegression,
    /// The judge weight (not learned here: judges are rarely asked).
    pub judge: f64,
    /// Outcomes observed.
    pub observed: u64,
}

impl RewardLearner {
    /// Starts from `w`, with prior variance `variance` around it.
    pub fn from_weights(w: &RewardWeights, variance: f64) -> Self {
        Self {
            model: LogisticRegression::new(
                vec![
                    w.bias,
                    w.mean_logprob,
                    w.min_logprob,
                    w.mean_entropy,
                    w.self_certainty,
                    w.length,
                ],
                variance,
            ),
            judge: w.judge,
            observed: 0,
        }
    }

    /// The current weights (posterior mean).
    pub fn weights(&self) -> RewardWeights {
        let m = &self.model.mean;
        RewardWeights {
            bias: m[0],
            mean_logprob: m[1],
            min_logprob: m[2],
            mean_entropy: m[3],
            self_certainty: m[4],
            length: m[5],
            judge: self.judge,
        }
    }

    /// Learns from the chosen reply of `trace` and whether it was right.
    pub fn observe(&mut self, trace: &Trace, correct: bool) {
        let best = trace.attempts[trace.final_attempt].outcome.best();
        if best.steps.is_empty() {
            return;
        }
        let n = best.steps.len() as f64;
        let mut x = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for s in &best.steps {
            let g = &s.signals;
            x[1] += g.mean_logprob / n;
            x[2] += g.min_logprob / n;
            x[3] += g.mean_entropy / n;
            x[4] += g.self_certainty / n;
            x[5] += (1.0 + g.tokens as f64).ln() / n;
        }
        self.model.observe(&x, correct, 1.0);
        self.observed += 1;
    }
}

/// The reasoning text of a trace's chosen reply (its steps joined).
pub fn solution_text(trace: &Trace) -> String {
    let best = trace.attempts[trace.final_attempt].outcome.best();
    if best.steps.is_empty() {
        best.text.clone()
    } else {
        best.steps
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn distill(
    model: &dyn LanguageModel,
    user: String,
    max_tokens: u32,
) -> Result<(String, Usage), ModelError> {
    let prompt = Prompt::user(user).with_system(prompts::DISTILL_SYSTEM);
    let (seq, usage) = model.generate_one(&prompt, &SamplingParams::greedy(max_tokens))?;
    Ok((seq.text.trim().to_string(), usage))
}

/// A thought template from a solved task: the model restates the
/// solution as a plan without the specific numbers.
pub fn distill_template(
    model: &dyn LanguageModel,
    task: &str,
    solution: &str,
) -> Result<(String, Usage), ModelError> {
    distill(
        model,
        prompts::fill(
            prompts::TEMPLATE_USER,
            &[("task", task), ("solution", solution)],
        ),
        160,
    )
}

/// An error note from a failed task.
pub fn distill_error_note(
    model: &dyn LanguageModel,
    task: &str,
    solution: &str,
    reference: Option<&str>,
) -> Result<(String, Usage), ModelError> {
    let reference = reference
        .map(|r| format!(" (the right answer is {r})"))
        .unwrap_or_default();
    distill(
        model,
        prompts::fill(
            prompts::ERROR_NOTE_USER,
            &[
                ("task", task),
                ("solution", solution),
                ("reference", &reference),
            ],
        ),
        80,
    )
}

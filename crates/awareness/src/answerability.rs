//! Whether a question can be answered at all — a property of the question,
//! not of an attempt. A question cannot be answered when it rests on a
//! false premise, asks what nobody knows or could know, or lacks context it
//! needs. The posterior P(answerable | probes) is a Bayesian logistic
//! regression over cheap signals of the model (its P(True) that the
//! question can be answered, its P(Yes) that the question rests on a false
//! premise, that it asks the unknowable, that a given context suffices, its
//! own P("unknown") as the answer, the question's perplexity, how often
//! its sampled short answers agree) and the distance of the task to what
//! memory has seen. The shipped weights
//! (`answerability.json`) were fitted on the learn halves of the
//! development abstention sets (see the README for the command and the
//! test-half figures).
//!
//! Declining before an attempt is then a decision under the policy's costs:
//! declining is itself an answer ("this cannot be answered") that can be
//! wrong, so it is weighed like one (see [`decline_threshold`]).

use std::sync::OnceLock;

use metareason_bayes::LogisticRegression;
use serde::{Deserialize, Serialize};

use metareason_core::AnswerKind;

use crate::classifier::EmbeddingClassifier;
use crate::policy::Costs;
use crate::Probes;

/// Names of the features, in order.
pub const FEATURES: [&str; 11] = [
    "bias",
    "logit_p_answerable",
    "logit_p_false_premise",
    "logit_p_unknowable",
    "has_context",
    "context_logit_p_suffices",
    "logit_p_unknown_reply",
    "question_logprob",
    "ood",
    "state_logit_decline",
    "sample_agreement",
];

/// Where `state_logit_decline` sits in [`FEATURES`]; runs recorded before
/// it existed have exactly this many features.
pub const STATE_FEATURE: usize = 9;

/// Where `sample_agreement` sits in [`FEATURES`].
pub const AGREEMENT_FEATURE: usize = 10;

/// How far the state probe's logit may move the features (a probe fitted
/// with fewer questions than dimensions can be very sure out of its data).
const STATE_LOGIT_BOUND: f64 = 6.0;

fn logit(p: f64) -> f64 {
    metareason_bayes::logit(p, 1e-4)
}

/// The feature vector of a question: probes not run count as 0 (no
/// evidence either way).
pub fn features(probes: &Probes, ood: f64) -> Vec<f64> {
    let l = |p: Option<f64>| p.map_or(0.0, logit);
    let has_context = probes.p_context_suffices.is_some();
    vec![
        1.0,
        l(probes.p_true),
        l(probes.p_false_premise),
        l(probes.p_unknowable),
        if has_context { 1.0 } else { 0.0 },
        l(probes.p_context_suffices),
        l(probes.p_unknown_reply),
        probes
            .question_logprob
            .map_or(0.0, |lp| ((lp + 3.0) / 2.0).clamp(-3.0, 3.0)),
        ood.clamp(0.0, 1.0),
        probes.state_p_decline.map_or(0.0, state_feature),
        // Centred so that "not sampled" (0) sits between agreement and
        // disagreement.
        probes
            .sample_agreement
            .map_or(0.0, |s| 2.0 * s.clamp(0.0, 1.0) - 1.0),
    ]
}

/// The `state_logit_decline` feature of the state probe's P(decline): its
/// logit, bounded.
pub fn state_feature(p_decline: f64) -> f64 {
    logit(p_decline).clamp(-STATE_LOGIT_BOUND, STATE_LOGIT_BOUND)
}

/// A fitted answerability model with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerabilityModel {
    /// The feature names ([`FEATURES`]); a stored model with other names
    /// is stale and is not used.
    pub features: Vec<String>,
    /// P(answerable) as a Bayesian logistic regression.
    pub model: LogisticRegression,
    /// What it was fitted on (data, model, command).
    pub fitted_on: String,
    /// A probe of the model's own state for whether a question should be
    /// declined (its P feeds `state_logit_decline`); it reads the state of
    /// one model only, and where that reading is not at hand the feature
    /// is 0 (no evidence either way). The model was fitted on the probe's
    /// out-of-fold values, so the two belong together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_probe: Option<EmbeddingClassifier>,
}

/// The shipped model's JSON.
pub const SHIPPED: &str = include_str!("../answerability.json");

impl AnswerabilityModel {
    /// The shipped model.
    pub fn shipped() -> &'static AnswerabilityModel {
        static M: OnceLock<AnswerabilityModel> = OnceLock::new();
        M.get_or_init(|| {
            let m: AnswerabilityModel =
                serde_json::from_str(SHIPPED).expect("the shipped answerability model parses");
            assert!(
                m.is_current(),
                "the shipped answerability model has the current features"
            );
            m
        })
    }

    /// Whether its features are the current ones.
    pub fn is_current(&self) -> bool {
        self.features.iter().map(String::as_str).eq(FEATURES) && self.model.dim() == FEATURES.len()
    }

    /// P(answerable), integrated over the weights' posterior.
    pub fn p_answerable(&self, features: &[f64]) -> f64 {
        self.model.predict(features)
    }

    /// Fits the model to labelled questions (`answerable[i]` for features
    /// `xs[i]`) under a N(0, `prior_variance` I) prior.
    pub fn fit(
        xs: &[Vec<f64>],
        answerable: &[bool],
        prior_variance: f64,
        fitted_on: String,
    ) -> Result<Self, metareason_bayes::DomainError> {
        Ok(Self {
            features: FEATURES.iter().map(|s| s.to_string()).collect(),
            model: LogisticRegression::fit(xs, answerable, prior_variance)?,
            fitted_on,
            state_probe: None,
        })
    }
}

/// The probability of answerability below which declining beats trying.
///
/// Declining claims "this cannot be answered": right, it earns what a right
/// answer earns (v); wrong, it costs what a wrong answer costs (w).
/// Attempting an unanswerable question yields a wrong answer (−w);
/// attempting an answerable one is worth `attempt_utility` (the best
/// strategy's expected utility). Decline iff
/// (1 − p)·v − p·w > −(1 − p)·w + p·u, i.e. p < (v + w) / (v + 2w + u).
pub fn decline_threshold(costs: &Costs, attempt_utility: f64) -> f64 {
    let (v, w) = (costs.value_correct, costs.cost_wrong);
    let denominator = v + 2.0 * w + attempt_utility;
    if denominator <= 0.0 {
        return 1.0;
    }
    ((v + w) / denominator).clamp(0.0, 1.0)
}

/// Whether the answerability model speaks for questions of this kind. It
/// was fitted on questions with a short answer (a number, a name, a date, a
/// yes or no: the development abstention sets), where "this cannot be
/// answered" has a clear meaning. A free-text request (explain, write,
/// advise, how to) lies outside that data: its P(answerable) is shown but
/// declines nothing, so an ordinary request is never turned away as
/// unanswerable on an extrapolation (the mission policy still refuses
/// what must be refused, and the calibrated confidence can still withhold
/// a poor reply).
pub fn covers(kind: &AnswerKind) -> bool {
    !matches!(kind, AnswerKind::FreeText)
}

/// Why a question looks unanswerable: the probe that suspects it most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suspect {
    /// It rests on a false premise.
    FalsePremise,
    /// It asks what nobody knows or could know.
    Unknowable,
    /// Its context does not hold the answer.
    MissingContext,
    /// No single reason stands out.
    General,
}

impl Suspect {
    /// The most suspected reason, from the probes.
    pub fn of(probes: &Probes) -> Self {
        let candidates = [
            (Suspect::FalsePremise, probes.p_false_premise),
            (Suspect::Unknowable, probes.p_unknowable),
            (
                Suspect::MissingContext,
                probes.p_context_suffices.map(|p| 1.0 - p),
            ),
        ];
        candidates
            .into_iter()
            .filter_map(|(s, p)| Some((s, p?)))
            .filter(|(_, p)| *p >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Suspect::General, |(s, _)| s)
    }

    /// What the user is told.
    pub fn reply(self) -> &'static str {
        use crate::prompts::*;
        match self {
            Suspect::FalsePremise => DECLINE_FALSE_PREMISE,
            Suspect::Unknowable => DECLINE_UNKNOWABLE,
            Suspect::MissingContext => DECLINE_MISSING_CONTEXT,
            Suspect::General => DECLINE_GENERAL,
        }
    }

    /// A short name for reasons and traces.
    pub fn name(self) -> &'static str {
        match self {
            Suspect::FalsePremise => "a false premise",
            Suspect::Unknowable => "something nobody knows",
            Suspect::MissingContext => "context that does not hold the answer",
            Suspect::General => "no single reason",
        }
    }
}

/// What the answerability model concluded about a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerabilityVerdict {
    /// P(answerable).
    pub p_answerable: f64,
    /// Declining pays below this ([`decline_threshold`]).
    pub threshold: f64,
    /// Whether the question was declined for it.
    pub declined: bool,
    /// The most suspected reason it cannot be answered.
    pub suspect: Suspect,
    /// The features ([`FEATURES`]), kept for learning.
    pub features: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_ranks_recorded_unanswerable_questions_below_answerable_ones() {
        let m = AnswerabilityModel::shipped();
        assert!(m.is_current());
        // Features recorded by the default model on two learn-half
        // questions of known-unknowns: "How often did Abraham Lincoln cut
        // his toenails?" (ku-0, unanswerable) and one it can answer
        // (ku-11). No state probe ships (it declined ordinary questions
        // such as "What does DNA stand for?"), so its feature reads 0.
        let unknowable = [1.0, -0.32, 0.55, 0.53, 0.0, 0.0, 2.94, -0.23, 1.0, 0.0, 0.0];
        let answerable = [1.0, 0.77, 0.63, 0.47, 0.0, 0.0, -3.04, 0.5, 0.78, 0.0, 0.0];
        let (a, u) = (m.p_answerable(&answerable), m.p_answerable(&unknowable));
        assert!(a > u + 0.2, "{a} vs {u}");
        let threshold = decline_threshold(&Costs::default(), 0.4);
        assert!(u < threshold && a > threshold, "{u} {a} {threshold}");
        assert!(m.state_probe.is_none());
        let doubtful = Probes {
            p_false_premise: Some(0.9),
            p_unknowable: Some(0.6),
            ..Probes::default()
        };
        assert_eq!(Suspect::of(&doubtful), Suspect::FalsePremise);
        assert_eq!(Suspect::of(&Probes::default()), Suspect::General);
    }

    #[test]
    fn the_feature_indices_name_their_features() {
        assert_eq!(FEATURES[STATE_FEATURE], "state_logit_decline");
        assert_eq!(FEATURES[AGREEMENT_FEATURE], "sample_agreement");
    }

    #[test]
    fn declining_is_weighed_as_an_answer_that_can_be_wrong() {
        let costs = Costs::default();
        // v = 1, w = 3: with an attempt worth 0.4, decline below 4 / 7.4.
        let t = decline_threshold(&costs, 0.4);
        assert!((t - 4.0 / 7.4).abs() < 1e-12, "{t}");
        // A more valuable attempt makes declining rarer.
        assert!(decline_threshold(&costs, 0.9) < t);
        // When wrong claims cost nothing, declining is only a lost answer.
        let free = Costs {
            cost_wrong: 0.0,
            ..costs
        };
        assert!((decline_threshold(&free, 0.4) - 1.0 / 1.4).abs() < 1e-12);
    }
}

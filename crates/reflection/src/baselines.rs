//! The confidence estimates that calibrated confidence is compared with,
//! computed in the same episode so that every comparison is one run:
//!
//! - **verbalised**: the model is asked for the probability, 0–100, that
//!   the proposed answer is right, and says a number;
//! - **P(True)**: the model is asked whether the proposed answer is true;
//!   the confidence is P("True") renormalised over True/False;
//! - **mean log-probability**: exp of the mean token log-probability of the
//!   reply that produced the answer (no extra model call).

use metareason_core::{LanguageModel, ModelError, Prompt, SamplingParams, Usage};
use serde::{Deserialize, Serialize};

use crate::prompts;

/// Baseline confidences of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineConfidences {
    /// The number the model states, as a probability (None when its reply
    /// holds no number in 0–100).
    pub verbalized: Option<f64>,
    /// P("True") over True/False.
    pub p_true: Option<f64>,
    /// exp(mean token log-probability) of the reply.
    pub mean_logprob: Option<f64>,
    /// What the two questions cost (kept apart from the episode's usage, so
    /// a configuration's token count is not inflated by its baselines).
    #[serde(default)]
    pub usage: Usage,
}

impl BaselineConfidences {
    /// Computes all three for `answer` to `task`; `mean_logprob` comes from
    /// the trace. Two short model calls.
    pub fn compute(
        model: &dyn LanguageModel,
        task: &str,
        answer: &str,
        mean_logprob: Option<f64>,
    ) -> Result<Self, ModelError> {
        let mut usage = Usage::default();
        let slots = [("task", task), ("answer", answer)];
        let ask = Prompt::user(prompts::fill(prompts::VERBALIZED_USER, &slots))
            .with_system(prompts::BASELINE_SYSTEM);
        let (seq, u) = model.generate_one(&ask, &SamplingParams::greedy(8))?;
        usage += u;
        let judge = Prompt::user(prompts::fill(prompts::P_TRUE_USER, &slots))
            .with_system(prompts::BASELINE_SYSTEM);
        let (p, u) = model.choice_probabilities(&judge, &["True", "False"])?;
        usage += u;
        Ok(Self {
            verbalized: parse_verbalized(&seq.text),
            p_true: p.first().copied(),
            mean_logprob: mean_logprob.map(f64::exp),
            usage,
        })
    }

    /// The (name, value) pairs that are known, named as bench runs name
    /// them.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        [
            ("verbalized", self.verbalized),
            ("p_true", self.p_true),
            ("mean_logprob", self.mean_logprob),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect()
    }
}

/// The first number in `reply` as a probability: "85", "85%", "0.85" and
/// "85/100" all give 0.85; a number above 100 or none gives None.
pub fn parse_verbalized(reply: &str) -> Option<f64> {
    let start = reply.find(|c: char| c.is_ascii_digit())?;
    let tail = &reply[start..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tail.len());
    let x: f64 = tail[..end].trim_end_matches('.').parse().ok()?;
    let rest = tail[end..].trim_start();
    let p = if rest.starts_with('%') || rest.starts_with("/100") || x > 1.0 {
        x / 100.0
    } else {
        x
    };
    (0.0..=1.0).contains(&p).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metareason_scripted::{Reply, ScriptedModel, When};

    #[test]
    fn verbalized_numbers_parse_as_probabilities() {
        assert_eq!(parse_verbalized("85"), Some(0.85));
        assert_eq!(parse_verbalized("I'd say 85%."), Some(0.85));
        assert_eq!(parse_verbalized("0.3"), Some(0.3));
        assert_eq!(parse_verbalized("60/100"), Some(0.6));
        assert_eq!(parse_verbalized("100"), Some(1.0));
        assert_eq!(parse_verbalized("1"), Some(1.0));
        assert_eq!(parse_verbalized("0"), Some(0.0));
        assert_eq!(parse_verbalized("250"), None);
        assert_eq!(parse_verbalized("very likely"), None);
    }

    #[test]
    fn computes_all_three_from_the_model() {
        let model = ScriptedModel::new()
            .on(
                When::PromptContains("probability, from 0 to 100".into()),
                [Reply::text("70")],
            )
            .score_if("True or False", "True", -0.5)
            .score_if("True or False", "False", -1.5);
        let b = BaselineConfidences::compute(&model, "2+2?", "4", Some(-0.2)).unwrap();
        assert_eq!(b.verbalized, Some(0.7));
        let want = 1.0 / (1.0 + (-1.0f64).exp());
        assert!((b.p_true.unwrap() - want).abs() < 1e-9, "{:?}", b.p_true);
        assert!((b.mean_logprob.unwrap() - (-0.2f64).exp()).abs() < 1e-12);
        assert_eq!(b.named().len(), 3);
        assert!(b.usage.generated_tokens > 0);
    }
}

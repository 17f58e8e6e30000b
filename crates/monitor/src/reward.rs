//! The step reward Q_t: intrinsic signals of a step's tokens, combined by a
//! weight vector that the meta level owns (defaults shipped here, learned
//! from outcomes later).

use metareason_core::TokenLogprob;
use serde::{Deserialize, Serialize};

/// What a step's tokens say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSignals {
    /// Mean token log-probability.
    pub mean_logprob: f64,
    /// Lowest token log-probability.
    pub min_logprob: f64,
    /// Mean entropy (nats) of the renormalised top-k distribution.
    pub mean_entropy: f64,
    /// Mean self-certainty: KL divergence of the uniform distribution from
    /// the renormalised top-k distribution (0 when flat; higher when sure).
    pub self_certainty: f64,
    /// Number of tokens.
    pub tokens: usize,
    /// P(" Yes") of a judge asked whether the step is correct, when asked.
    pub judge: Option<f64>,
}

impl StepSignals {
    /// Signals of a run of tokens (an empty run gives all zeros).
    pub fn from_tokens(tokens: &[TokenLogprob]) -> Self {
        if tokens.is_empty() {
            return Self::default();
        }
        let n = tokens.len() as f64;
        let mut sum_lp = 0.0;
        let mut min_lp = f64::INFINITY;
        let mut sum_h = 0.0;
        let mut sum_sc = 0.0;
        for t in tokens {
            let lp = f64::from(t.logprob);
            sum_lp += lp;
            min_lp = min_lp.min(lp);
            let (h, sc) = top_k_entropy(t);
            sum_h += h;
            sum_sc += sc;
        }
        Self {
            mean_logprob: sum_lp / n,
            min_logprob: min_lp,
            mean_entropy: sum_h / n,
            self_certainty: sum_sc / n,
            tokens: tokens.len(),
            judge: None,
        }
    }
}

/// Entropy and self-certainty of a token's renormalised top-k distribution.
fn top_k_entropy(t: &TokenLogprob) -> (f64, f64) {
    let k = t.top.len();
    if k < 2 {
        return (0.0, 0.0);
    }
    let ps: Vec<f64> = t.top.iter().map(|a| f64::from(a.logprob).exp()).collect();
    let z: f64 = ps.iter().sum();
    if z <= 0.0 {
        return (0.0, 0.0);
    }
    let mut h = 0.0;
    let mut sum_log_p = 0.0;
    for p in &ps {
        let q = (p / z).max(1e-12);
        h -= q * q.ln();
        sum_log_p += q.ln();
    }
    let kf = k as f64;
    // KL(U || p) = sum (1/k) log((1/k) / p_i)
    let sc = -kf.ln() - sum_log_p / kf;
    (h, sc)
}

/// Weights of the step reward: Q = sigmoid(bias + sum w_i x_i).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RewardWeights {
    /// Intercept.
    pub bias: f64,
    /// Weight of the mean log-probability.
    pub mean_logprob: f64,
    /// Weight of the minimum log-probability.
    pub min_logprob: f64,
    /// Weight of the mean entropy.
    pub mean_entropy: f64,
    /// Weight of the self-certainty.
    pub self_certainty: f64,
    /// Weight of ln(1 + tokens).
    pub length: f64,
    /// Weight of (judge - 0.5), when a judge was asked.
    pub judge: f64,
}

impl Default for RewardWeights {
    /// Shipped defaults: confident, low-entropy steps score high; one very
    /// unlikely token pulls a step down. (Hand-set priors; the meta level
    /// learns them from outcomes.)
    fn default() -> Self {
        Self {
            bias: 2.0,
            mean_logprob: 3.0,
            min_logprob: 0.25,
            mean_entropy: -0.5,
            self_certainty: 0.2,
            length: 0.0,
            judge: 4.0,
        }
    }
}

impl RewardWeights {
    /// The reward of a step, in (0, 1).
    pub fn reward(&self, s: &StepSignals) -> f64 {
        let mut z = self.bias
            + self.mean_logprob * s.mean_logprob
            + self.min_logprob * s.min_logprob
            + self.mean_entropy * s.mean_entropy
            + self.self_certainty * s.self_certainty
            + self.length * (1.0 + s.tokens as f64).ln();
        if let Some(j) = s.judge {
            z += self.judge * (j - 0.5);
        }
        1.0 / (1.0 + (-z).exp())
    }
}

/// Assigns each token of a reply to the step its text starts in, for steps
/// cut from the reply's text by `delimiter`; returns per-step token runs.
pub fn tokens_per_step<'a>(
    tokens: &'a [TokenLogprob],
    text: &str,
    delimiter: &str,
) -> Vec<(String, &'a [TokenLogprob])> {
    // Byte spans of the non-empty steps.
    let mut spans = Vec::new();
    let mut start = 0;
    for part in text.split(delimiter) {
        let end = start + part.len();
        if !part.trim().is_empty() {
            spans.push((start, end, part.trim().to_string()));
        }
        start = end + delimiter.len();
    }
    let mut out: Vec<(String, &[TokenLogprob])> = Vec::with_capacity(spans.len());
    let mut offset = 0;
    let mut tok_start = 0;
    let mut span_i = 0;
    let mut first_tok_of_span = None;
    for (i, t) in tokens.iter().enumerate() {
        while span_i < spans.len() && offset >= spans[span_i].1 {
            if let Some(f) = first_tok_of_span.take() {
                out.push((spans[span_i].2.clone(), &tokens[f..i]));
            }
            span_i += 1;
        }
        if span_i < spans.len()
            && offset + t.bytes.len() > spans[span_i].0
            && first_tok_of_span.is_none()
        {
            first_tok_of_span = Some(i);
        }
        offset += t.bytes.len();
        tok_start = i + 1;
    }
    if span_i < spans.len() {
        if let Some(f) = first_tok_of_span {
            out.push((spans[span_i].2.clone(), &tokens[f..tok_start]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use metareason_core::TopToken;

    use super::*;

    fn tok(text: &str, lp: f32, top: &[f32]) -> TokenLogprob {
        TokenLogprob {
            text: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob: lp,
            top: top
                .iter()
                .map(|&l| TopToken {
                    text: "t".into(),
                    logprob: l,
                })
                .collect(),
        }
    }

    #[test]
    fn signals_match_hand_computation() {
        let half = (0.5f32).ln();
        let toks = [tok("a", half, &[half, half]), tok("b", -2.0, &[-0.1, -2.0])];
        let s = StepSignals::from_tokens(&toks);
        assert!((s.mean_logprob - (f64::from(half) - 2.0) / 2.0).abs() < 1e-6);
        assert!((s.min_logprob + 2.0).abs() < 1e-9);
        // First token: uniform over 2 -> entropy ln 2, self-certainty 0.
        let p1 = (-0.1f64).exp() / ((-0.1f64).exp() + (-2.0f64).exp());
        let h2 = -(p1 * p1.ln() + (1.0 - p1) * (1.0 - p1).ln());
        assert!((s.mean_entropy - (2f64.ln() + h2) / 2.0).abs() < 1e-6);
        let sc2 = -(2f64).ln() - (p1.ln() + (1.0 - p1).ln()) / 2.0;
        assert!((s.self_certainty - sc2 / 2.0).abs() < 1e-6);
        assert_eq!(s.tokens, 2);
    }

    #[test]
    fn confident_steps_score_higher() {
        let w = RewardWeights::default();
        let sure = StepSignals::from_tokens(&[tok("x", -0.01, &[-0.01, -5.0])]);
        let unsure = StepSignals::from_tokens(&[tok("x", -2.5, &[-0.7, -0.8])]);
        assert!(w.reward(&sure) > 0.8, "{}", w.reward(&sure));
        assert!(w.reward(&unsure) < w.reward(&sure));
        let judged_bad = StepSignals {
            judge: Some(0.05),
            ..sure
        };
        assert!(w.reward(&judged_bad) < w.reward(&sure));
    }

    #[test]
    fn tokens_are_assigned_to_their_steps() {
        let toks = [
            tok("3*4", -0.1, &[]),
            tok("=12", -0.2, &[]),
            tok("\n", -0.3, &[]),
            tok("The answer", -0.4, &[]),
            tok(" is 12.", -0.5, &[]),
        ];
        let steps = tokens_per_step(&toks, "3*4=12\nThe answer is 12.", "\n");
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].0, "3*4=12");
        assert_eq!(steps[0].1.len(), 2);
        assert_eq!(steps[1].0, "The answer is 12.");
        assert_eq!(steps[1].1.len(), 2);
    }
}

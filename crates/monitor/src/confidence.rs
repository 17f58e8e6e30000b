//! Confidence of a whole reasoning trace from its tokens, in the manner of
//! DeepConf (Fu et al. 2025, "Deep Think with Confidence").
//!
//! A token's confidence is the negative mean log-probability of the most
//! likely tokens at its position: high where the model's distribution is
//! peaked, low where it hesitates. A *group* confidence is the mean token
//! confidence over a sliding window; a trace is as weak as its weakest
//! stretch, so the trace's confidence is its lowest group confidence (or the
//! mean of its lowest tenth, or of its tail). A sampled trace can be cut
//! early once its running group confidence falls below a threshold set from
//! warm-up traces: [`TraceConfidence::stop_at`] says where, for any
//! threshold, from the few points where the running minimum fell.

use metareason_core::TokenLogprob;
use serde::{Deserialize, Serialize};

/// Tokens per group (sliding window). DeepConf uses 2048 for traces of
/// tens of thousands of tokens; the replies here are a few hundred tokens.
pub const GROUP_TOKENS: usize = 32;

/// Tokens at the end of a trace that make its tail.
pub const TAIL_TOKENS: usize = 32;

/// The confidence of one token ([`TokenLogprob::confidence`]).
pub fn token_confidence(t: &TokenLogprob) -> f64 {
    t.confidence()
}

/// The confidence summaries of one trace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TraceConfidence {
    /// Tokens in the trace.
    pub tokens: u32,
    /// Mean token confidence over the trace.
    pub mean: f64,
    /// Lowest group confidence (over every window of [`GROUP_TOKENS`]; the
    /// whole trace when it is shorter).
    pub lowest_group: f64,
    /// Mean of the lowest 10% of group confidences (at least one).
    pub bottom_10: f64,
    /// Mean token confidence of the last [`TAIL_TOKENS`] tokens.
    pub tail: f64,
    /// Where the running minimum of the group confidence fell: (tokens
    /// generated when it fell, the new minimum). Enough to replay early
    /// termination at any threshold.
    pub drops: Vec<(u32, f64)>,
}

impl TraceConfidence {
    /// Summarises the tokens of a trace (all zeros without tokens).
    pub fn of(tokens: &[TokenLogprob]) -> Self {
        let c: Vec<f64> = tokens.iter().map(token_confidence).collect();
        Self::of_confidences(&c)
    }

    /// Summarises token confidences.
    pub fn of_confidences(c: &[f64]) -> Self {
        if c.is_empty() {
            return Self::default();
        }
        let n = c.len();
        let w = GROUP_TOKENS.min(n);
        // Group confidence of the window ending at each token; only full
        // windows count (a trace shorter than a window is one group).
        let mut groups = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 0..n {
            sum += c[i];
            if i >= w {
                sum -= c[i - w];
            }
            let len = (i + 1).min(w);
            groups.push((i + 1, sum / len as f64));
        }
        let full: Vec<f64> = groups[w - 1..].iter().map(|g| g.1).collect();
        let lowest_group = full.iter().copied().fold(f64::INFINITY, f64::min);
        let mut sorted = full.clone();
        sorted.sort_by(f64::total_cmp);
        let k = (sorted.len() / 10).max(1);
        let bottom_10 = sorted[..k].iter().sum::<f64>() / k as f64;
        let t = TAIL_TOKENS.min(n);
        let tail = c[n - t..].iter().sum::<f64>() / t as f64;
        let mut drops: Vec<(u32, f64)> = Vec::new();
        for &(at, g) in &groups[w - 1..] {
            if drops.last().is_none_or(|d| g < d.1) {
                drops.push((at as u32, round4(g)));
            }
        }
        Self {
            tokens: n as u32,
            mean: c.iter().sum::<f64>() / n as f64,
            lowest_group,
            bottom_10,
            tail,
            drops,
        }
    }

    /// Where a trace generated under early termination at `threshold`
    /// would have been cut: the tokens generated when its group confidence
    /// first fell below it (None: it runs to its end).
    pub fn stop_at(&self, threshold: f64) -> Option<u32> {
        self.drops.iter().find(|d| d.1 < threshold).map(|d| d.0)
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Which summary of a trace ranks and weighs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfidenceMeasure {
    /// Mean token confidence.
    Mean,
    /// Lowest group confidence.
    #[default]
    LowestGroup,
    /// Mean of the lowest tenth of groups.
    Bottom10,
    /// Tail confidence.
    Tail,
}

impl ConfidenceMeasure {
    /// Every measure.
    pub const ALL: [ConfidenceMeasure; 4] = [
        ConfidenceMeasure::Mean,
        ConfidenceMeasure::LowestGroup,
        ConfidenceMeasure::Bottom10,
        ConfidenceMeasure::Tail,
    ];

    /// The measure of a trace.
    pub fn of(self, c: &TraceConfidence) -> f64 {
        match self {
            ConfidenceMeasure::Mean => c.mean,
            ConfidenceMeasure::LowestGroup => c.lowest_group,
            ConfidenceMeasure::Bottom10 => c.bottom_10,
            ConfidenceMeasure::Tail => c.tail,
        }
    }

    /// A reply's vote weight under this measure: its token confidence, at
    /// least a small positive floor; 1 for a reply without tokens (so that
    /// it still counts).
    pub fn vote_weight(self, c: &TraceConfidence) -> f64 {
        if c.tokens == 0 {
            return 1.0;
        }
        self.of(c).max(1e-3)
    }

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            ConfidenceMeasure::Mean => "mean",
            ConfidenceMeasure::LowestGroup => "lowest group",
            ConfidenceMeasure::Bottom10 => "bottom 10%",
            ConfidenceMeasure::Tail => "tail",
        }
    }
}

/// The value at quantile `q` (0..=1) of `xs` (linear interpolation); None
/// when empty. DeepConf's threshold keeping the top η% of warm-up traces is
/// `quantile(warmup, 1 - η)`.
pub fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metareason_core::TopToken;

    fn tok(alts: &[f32]) -> TokenLogprob {
        TokenLogprob {
            text: "x".into(),
            bytes: b"x".to_vec(),
            logprob: alts[0],
            top: alts
                .iter()
                .map(|&l| TopToken {
                    text: "y".into(),
                    logprob: l,
                })
                .collect(),
        }
    }

    #[test]
    fn a_peaked_position_is_more_confident_than_a_flat_one() {
        // Peaked: one likely token and unlikely alternatives.
        let peaked = token_confidence(&tok(&[-0.01, -6.0, -7.0]));
        let flat = token_confidence(&tok(&[-1.0, -1.2, -1.3]));
        assert!(peaked > flat, "{peaked} vs {flat}");
        assert!((flat - 3.5 / 3.0).abs() < 1e-6);
        // Without runners-up, a likelier token is still the more confident.
        let sure = token_confidence(&tok(&[-0.01]));
        let unsure = token_confidence(&tok(&[-1.5]));
        assert!(sure > unsure && unsure > 0.0, "{sure} vs {unsure}");
    }

    #[test]
    fn the_weakest_window_sets_the_lowest_group() {
        // 64 confident tokens, then 32 hesitant ones, then 32 confident.
        let mut c = vec![10.0; 64];
        c.extend(vec![1.0; 32]);
        c.extend(vec![10.0; 32]);
        let t = TraceConfidence::of_confidences(&c);
        assert_eq!(t.tokens, 128);
        assert!((t.lowest_group - 1.0).abs() < 1e-9);
        assert!((t.tail - 10.0).abs() < 1e-9);
        assert!(t.mean > t.bottom_10 && t.bottom_10 >= t.lowest_group);
        // Early termination at 5: a window of k ones and 32 - k tens has
        // mean (320 - 9k) / 32, below 5 from k = 18 on: cut at token 82.
        assert_eq!(t.stop_at(5.0), Some(82));
        assert_eq!(t.stop_at(0.5), None);
    }

    #[test]
    fn a_short_trace_is_one_group() {
        let t = TraceConfidence::of_confidences(&[2.0, 4.0]);
        assert!((t.lowest_group - 3.0).abs() < 1e-9);
        assert_eq!(TraceConfidence::of(&[]), TraceConfidence::default());
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.25), Some(1.25));
    }
}

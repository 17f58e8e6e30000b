//! Capability-aware solvability from experience: for each strategy, a Beta
//! posterior over its chance of success on this task, from the outcomes of
//! the most similar past episodes weighted by similarity, shrunk toward the
//! strategy's overall success rate (partial pooling). Few or distant
//! neighbours leave the posterior close to the pooled prior and wide.

use metareason_bayes::Beta;
use metareason_memory::Neighbour;
use metareason_strategy::StrategyKind;
use serde::{Deserialize, Serialize};

/// How neighbours are weighted and how strongly the pooled prior holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapabilitySettings {
    /// Neighbours looked at.
    pub neighbours: usize,
    /// Similarity kernel width: weight = exp(−(1 − similarity) / bandwidth).
    pub bandwidth: f64,
    /// Neighbours less similar than this are ignored.
    pub min_similarity: f32,
    /// Pseudo-count of the pooled prior (how many neighbours it is worth).
    pub pooling: f64,
}

impl Default for CapabilitySettings {
    fn default() -> Self {
        Self {
            neighbours: 32,
            bandwidth: 0.15,
            min_similarity: 0.2,
            pooling: 4.0,
        }
    }
}

/// What experience says about one strategy on one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyBelief {
    /// The strategy.
    pub strategy: StrategyKind,
    /// Its overall success: Beta(1 + successes, 1 + failures) over all its
    /// episodes with a known outcome.
    pub overall: Beta,
    /// The posterior for this task.
    pub posterior: Beta,
    /// Neighbours of this strategy that counted.
    pub neighbours: usize,
    /// Their summed weight (the effective number of observations).
    pub weight: f64,
}

/// Beliefs for `strategies` (with their prior P(success), `priors[i]` for
/// `strategies[i]`) from the task's `neighbours` and per-strategy outcome
/// `counts` (strategy, with outcome, correct).
pub fn beliefs(
    neighbours: &[Neighbour],
    counts: &[(StrategyKind, u64, u64)],
    strategies: &[StrategyKind],
    priors: &[f64],
    settings: &CapabilitySettings,
) -> Vec<StrategyBelief> {
    strategies
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let prior = priors.get(i).copied().unwrap_or(0.5);
            let (n, k) = counts
                .iter()
                .find(|(kind, _, _)| *kind == s)
                .map(|(_, n, k)| (*n, *k))
                .unwrap_or((0, 0));
            // The prior counts as two observations at its mean: Beta(1, 1)
            // for a prior of 1/2.
            let p0 = prior.clamp(0.01, 0.99);
            let overall = Beta::new(2.0 * p0 + k as f64, 2.0 * (1.0 - p0) + (n - k) as f64)
                .expect("positive");
            let m = settings.pooling.max(1e-6);
            let mut posterior =
                Beta::new(m * overall.mean(), m * (1.0 - overall.mean())).expect("positive");
            let (mut used, mut weight) = (0, 0.0);
            for nb in neighbours.iter().filter(|nb| nb.strategy == Some(s)) {
                let Some(outcome) = nb.outcome else { continue };
                if nb.similarity < settings.min_similarity {
                    continue;
                }
                let w = (-(1.0 - f64::from(nb.similarity)) / settings.bandwidth.max(1e-6)).exp();
                if outcome {
                    posterior.observe_weighted(w, 0.0);
                } else {
                    posterior.observe_weighted(0.0, w);
                }
                used += 1;
                weight += w;
            }
            StrategyBelief {
                strategy: s,
                overall,
                posterior,
                neighbours: used,
                weight,
            }
        })
        .collect()
}

/// Out-of-distribution score: 1 − the mean similarity of the `k` nearest
/// episodes (1 when memory has none): 0 for a task seen before, near 1 for
/// one unlike anything seen.
pub fn ood_score(neighbours: &[Neighbour], k: usize) -> f64 {
    let top: Vec<f64> = neighbours
        .iter()
        .take(k.max(1))
        .map(|n| f64::from(n.similarity))
        .collect();
    if top.is_empty() {
        1.0
    } else {
        (1.0 - top.iter().sum::<f64>() / top.len() as f64).clamp(0.0, 2.0)
    }
}

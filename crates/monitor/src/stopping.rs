//! When to stop sampling: the posterior that the leading answer is the
//! majority answer of the model's answer distribution.
//!
//! - **Beta rule** (Adaptive-Consistency, Aggarwal et al. 2023): with `a`
//!   votes for the leader and `b` for the runner-up, P(p_leader > p_second)
//!   under Beta(a + 1, b + 1) is P(X > 1/2) for X ~ Beta(a + 1, b + 1).
//! - **Dirichlet rule**: over all answers seen plus one bucket for answers
//!   not yet seen, the posterior Dirichlet(counts + alpha); P(the leader has
//!   the largest share) by seeded Monte Carlo.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};
use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

/// Which posterior decides when to stop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum StopRule {
    /// Beta posterior of leader against runner-up.
    Beta {
        /// Stop once P(leader is the majority) reaches this.
        threshold: f64,
    },
    /// Dirichlet posterior over all answers.
    Dirichlet {
        /// Stop once P(leader is the majority) reaches this.
        threshold: f64,
        /// Pseudo-count of every bucket.
        alpha: f64,
    },
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule::Beta { threshold: 0.95 }
    }
}

/// Leader's and runner-up's vote counts.
pub fn top_two(votes: &BTreeMap<String, usize>) -> (usize, usize) {
    let mut counts: Vec<usize> = votes.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    (
        counts.first().copied().unwrap_or(0),
        counts.get(1).copied().unwrap_or(0),
    )
}

/// Plain votes: how many times each answer was given.
pub fn count_votes<'a>(answers: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut votes: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        *votes.entry(a.to_string()).or_default() += 1;
    }
    votes
}

/// Whether `next` more votes can no longer put another answer ahead of
/// the leader: even if every one of them went to the runner-up (or to an
/// answer not seen yet), it would at best draw level. Drawing them cannot
/// change the answer, so whatever they are worth, it is not that. A draw
/// would go to the higher weight, so the rule is exact for `next` votes
/// only up to that tie.
pub fn settled(votes: &BTreeMap<String, usize>, next: usize) -> bool {
    let (leader, runner_up) = top_two(votes);
    leader > 0 && leader >= runner_up + next
}

/// P(X > 1/2) for X ~ Beta(a + 1, b + 1).
pub fn beta_majority(a: usize, b: usize) -> f64 {
    beta_majority_weighted(a as f64, b as f64)
}

/// P(X > 1/2) for X ~ Beta(a + 1, b + 1) with real-valued (weighted) counts.
pub fn beta_majority_weighted(a: f64, b: f64) -> f64 {
    let beta = Beta::new(a.max(0.0) + 1.0, b.max(0.0) + 1.0).expect("positive shapes");
    1.0 - beta.cdf(0.5)
}

/// Votes weighted by each reply's confidence, rescaled so that they sum to
/// the number of replies: the weights move evidence between answers but
/// never add any, so a stopping rule stays as cautious as with plain votes.
pub fn rescaled_votes<'a>(
    weighted: impl IntoIterator<Item = (&'a str, f64)>,
) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    let mut n = 0usize;
    for (a, w) in weighted {
        *m.entry(a.to_string()).or_default() += w.max(0.0);
        n += 1;
    }
    let total: f64 = m.values().sum();
    let answers = m.len().max(1) as f64;
    for v in m.values_mut() {
        *v = if total > 0.0 {
            *v / total * n as f64
        } else {
            n as f64 / answers
        };
    }
    m
}

/// The winner of weighted votes: among the items whose answer has the
/// largest total weight (negative weights count 0), the one with the
/// largest `tie` key (the last of equals); None when no item has an answer.
/// The one rule by which sampled replies, escalation's pool and replays
/// pick their answer.
pub fn weighted_winner<T>(
    items: &[T],
    answer: impl Fn(&T) -> Option<&str>,
    weight: impl Fn(&T) -> f64,
    tie: impl Fn(&T) -> f64,
) -> Option<usize> {
    let mut total: BTreeMap<&str, f64> = BTreeMap::new();
    for it in items {
        if let Some(a) = answer(it) {
            *total.entry(a).or_default() += weight(it).max(0.0);
        }
    }
    let top = total.values().copied().fold(f64::NEG_INFINITY, f64::max);
    let tolerance = 1e-9 * top.abs().max(1.0);
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| answer(it).is_some_and(|a| (total[a] - top).abs() <= tolerance))
        .max_by(|x, y| tie(x.1).total_cmp(&tie(y.1)))
        .map(|(i, _)| i)
}

/// P(the leading answer has the largest share) under Dirichlet(counts +
/// alpha) with one extra bucket for unseen answers, from `draws` seeded draws.
pub fn dirichlet_majority(
    votes: &BTreeMap<String, f64>,
    alpha: f64,
    draws: usize,
    seed: u64,
) -> f64 {
    if votes.is_empty() {
        return 0.0;
    }
    let mut counts: Vec<f64> = votes.values().map(|&c| c.max(0.0) + alpha).collect();
    counts.sort_by(|a, b| b.total_cmp(a));
    counts.push(alpha); // answers not seen yet
    let gammas: Vec<Gamma<f64>> = counts
        .iter()
        .map(|&c| Gamma::new(c, 1.0).expect("positive shape"))
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut wins = 0;
    for _ in 0..draws {
        let x: Vec<f64> = gammas.iter().map(|g| g.sample(&mut rng)).collect();
        if x[1..].iter().all(|&v| x[0] > v) {
            wins += 1;
        }
    }
    wins as f64 / draws as f64
}

impl StopRule {
    /// The posterior probability that the current leader is the majority answer.
    pub fn confidence(&self, votes: &BTreeMap<String, usize>) -> f64 {
        let weighted: BTreeMap<String, f64> =
            votes.iter().map(|(k, &v)| (k.clone(), v as f64)).collect();
        self.confidence_weighted(&weighted)
    }

    /// The same over weighted votes (see [`rescaled_votes`]).
    pub fn confidence_weighted(&self, votes: &BTreeMap<String, f64>) -> f64 {
        match *self {
            StopRule::Beta { .. } => {
                let mut w: Vec<f64> = votes.values().copied().collect();
                w.sort_by(|a, b| b.total_cmp(a));
                let (a, b) = (
                    w.first().copied().unwrap_or(0.0),
                    w.get(1).copied().unwrap_or(0.0),
                );
                if a <= 0.0 {
                    0.0
                } else {
                    beta_majority_weighted(a, b)
                }
            }
            StopRule::Dirichlet { alpha, .. } => dirichlet_majority(votes, alpha, 4000, 7),
        }
    }

    /// The threshold the posterior must reach.
    pub fn threshold(&self) -> f64 {
        match *self {
            StopRule::Beta { threshold } | StopRule::Dirichlet { threshold, .. } => threshold,
        }
    }

    /// Whether sampling may stop.
    pub fn should_stop(&self, votes: &BTreeMap<String, usize>) -> bool {
        self.confidence(votes) >= self.threshold()
    }

    /// Whether sampling may stop, over weighted votes.
    pub fn should_stop_weighted(&self, votes: &BTreeMap<String, f64>) -> bool {
        self.confidence_weighted(votes) >= self.threshold()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_the_next_votes_cannot_overturn_is_settled() {
        let votes = |v: &[(&str, usize)]| -> BTreeMap<String, usize> {
            v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
        };
        // 3 to 1: two more votes for the runner-up only draw level.
        assert!(settled(&votes(&[("7", 3), ("9", 1)]), 2));
        // 3 to 2: two more could overtake.
        assert!(!settled(&votes(&[("7", 3), ("9", 2)]), 2));
        // A lone answer of one vote is not settled against two new ones.
        assert!(!settled(&votes(&[("7", 1)]), 2));
        assert!(settled(&votes(&[("7", 2)]), 2));
        // No votes: nothing is settled.
        assert!(!settled(&BTreeMap::new(), 0));
    }

    #[test]
    fn the_weighted_winner_is_the_heaviest_answer_and_ties_go_to_the_tie_key() {
        // (answer, weight, tie key)
        let items = [
            (Some("a"), 0.2, 5.0),
            (Some("b"), 0.5, 1.0),
            (Some("a"), 0.2, 2.0),
            (None, 9.0, 9.0),
            (Some("c"), -4.0, 8.0),
        ];
        let win = |xs: &[(Option<&'static str>, f64, f64)]| {
            weighted_winner(xs, |x| x.0, |x| x.1, |x| x.2)
        };
        // b (0.5) beats a (0.4); the unanswered item never wins.
        assert_eq!(win(&items), Some(1));
        // Equal totals: the item with the larger tie key among both answers.
        let tied = [
            (Some("a"), 0.5, 5.0),
            (Some("b"), 0.5, 7.0),
            (Some("a"), 0.0, 1.0),
        ];
        assert_eq!(win(&tied), Some(1));
        assert_eq!(win(&[(None, 1.0, 1.0)]), None);
        // A negative weight counts 0, not against its answer.
        let negative = [(Some("c"), -4.0, 1.0), (Some("d"), 0.0, 0.0)];
        assert_eq!(win(&negative), Some(0));
    }

    fn votes(v: &[(&str, usize)]) -> BTreeMap<String, usize> {
        v.iter().map(|(k, c)| (k.to_string(), *c)).collect()
    }

    #[test]
    fn beta_rule_matches_closed_form() {
        // With no votes for the runner-up, P = 1 - 2^-(a+1).
        for a in 1..8 {
            let want = 1.0 - 0.5f64.powi(a as i32 + 1);
            assert!((beta_majority(a, 0) - want).abs() < 1e-9, "a={a}");
        }
        // Symmetric counts: one half.
        assert!((beta_majority(3, 3) - 0.5).abs() < 1e-9);
        // Beta(4, 2): P(X > 1/2) = 1 - I_{1/2}(4, 2) = 13/16.
        assert!((beta_majority(3, 1) - 13.0 / 16.0).abs() < 1e-9);
    }

    #[test]
    fn beta_rule_stops_at_four_unanimous_votes_at_0_95() {
        let r = StopRule::Beta { threshold: 0.95 };
        assert!(!r.should_stop(&votes(&[("18", 3)])));
        assert!(r.should_stop(&votes(&[("18", 4)])));
        assert!(!r.should_stop(&votes(&[("18", 4), ("20", 1)])));
    }

    fn weighted(v: &[(&str, f64)]) -> BTreeMap<String, f64> {
        v.iter().map(|(k, c)| (k.to_string(), *c)).collect()
    }

    #[test]
    fn weighted_votes_move_evidence_but_add_none() {
        // Two replies for "a" at confidence 3, one for "b" at 1: 3 votes in
        // all, of which a holds 6/7.
        let v = rescaled_votes([("a", 3.0), ("a", 3.0), ("b", 1.0)]);
        assert!((v["a"] - 18.0 / 7.0).abs() < 1e-9 && (v["b"] - 3.0 / 7.0).abs() < 1e-9);
        let r = StopRule::Beta { threshold: 0.95 };
        // Unweighted 2 against 1 is far from sure; weighted it is surer,
        // and equal weights give back the plain rule.
        let plain = r.confidence(&votes(&[("a", 2), ("b", 1)]));
        assert!(r.confidence_weighted(&v) > plain);
        let same = rescaled_votes([("a", 0.5), ("a", 0.5), ("b", 0.5)]);
        assert!((r.confidence_weighted(&same) - plain).abs() < 1e-12);
        assert!(!r.should_stop_weighted(&same));
    }

    #[test]
    fn dirichlet_rule_is_seeded_and_sensible() {
        let v = weighted(&[("a", 6.0), ("b", 1.0)]);
        let p1 = dirichlet_majority(&v, 1.0, 4000, 3);
        assert_eq!(p1, dirichlet_majority(&v, 1.0, 4000, 3));
        assert!(p1 > 0.9, "{p1}");
        let tie = weighted(&[("a", 2.0), ("b", 2.0)]);
        assert!(dirichlet_majority(&tie, 1.0, 4000, 3) < 0.6);
    }
}

//! Paired comparison of two runs on the items both graded: whether the
//! difference in right answers is more than the luck of which problems
//! fell where.
//!
//! Two configurations run on the same items with the same seeds disagree
//! only on some items; only those carry evidence. The exact McNemar test
//! (a two-sided sign test over the items exactly one run got right) says
//! how often a difference at least as large would arise if neither
//! configuration were better, and a paired bootstrap gives a 95% interval
//! of the difference in accuracy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::bootstrap;
use crate::run::ItemResult;

/// Two runs compared item by item, on "right answering all" (the answer
/// found, whether or not it was given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Items both runs graded.
    pub items: usize,
    /// Right in both.
    pub both: usize,
    /// Right in the first run only.
    pub only_first: usize,
    /// Right in the second run only.
    pub only_second: usize,
    /// Right in neither.
    pub neither: usize,
    /// Accuracy of the second run minus the first's, on these items.
    pub difference: f64,
    /// Percentile bootstrap 95% interval of the difference (items
    /// resampled in pairs).
    pub ci95: Option<(f64, f64)>,
    /// Exact two-sided McNemar p-value.
    pub p_value: f64,
    /// Mean generated tokens per item of the first run, on these items.
    pub tokens_first: f64,
    /// The same of the second run.
    pub tokens_second: f64,
}

/// Compares `second` against `first` on the items both graded (an item
/// is graded when whether its answer is right is known), in `first`'s
/// order. None when they share no graded item.
pub fn paired(first: &[ItemResult], second: &[ItemResult], seed: u64) -> Option<Paired> {
    let by_id: BTreeMap<&str, &ItemResult> = second
        .iter()
        .filter(|r| r.candidate_correct.is_some())
        .map(|r| (r.id.as_str(), r))
        .collect();
    let pairs: Vec<(&ItemResult, &ItemResult)> = first
        .iter()
        .filter(|a| a.candidate_correct.is_some())
        .filter_map(|a| Some((a, *by_id.get(a.id.as_str())?)))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let right: Vec<(bool, bool)> = pairs
        .iter()
        .map(|(a, b)| {
            (
                a.candidate_correct == Some(true),
                b.candidate_correct == Some(true),
            )
        })
        .collect();
    let count = |f: fn(&(bool, bool)) -> bool| right.iter().filter(|x| f(x)).count();
    let only_first = count(|&(a, b)| a && !b);
    let only_second = count(|&(a, b)| !a && b);
    let n = right.len();
    let diff_of = |idx: &[usize]| {
        let d: i64 = idx
            .iter()
            .map(|&i| i64::from(right[i].1) - i64::from(right[i].0))
            .sum();
        Some(d as f64 / idx.len() as f64)
    };
    let mean_tokens = |f: fn(&(&ItemResult, &ItemResult)) -> u64| {
        pairs.iter().map(|p| f(p) as f64).sum::<f64>() / n as f64
    };
    Some(Paired {
        items: n,
        both: count(|&(a, b)| a && b),
        only_first,
        only_second,
        neither: count(|&(a, b)| !a && !b),
        difference: (only_second as f64 - only_first as f64) / n as f64,
        ci95: bootstrap(n, 2000, seed, diff_of),
        p_value: mcnemar_exact(only_first, only_second),
        tokens_first: mean_tokens(|p| p.0.generated_tokens),
        tokens_second: mean_tokens(|p| p.1.generated_tokens),
    })
}

/// The exact two-sided McNemar p-value of `b` items right only in one run
/// and `c` only in the other: twice the smaller tail of Binomial(b + c,
/// 1/2), at most 1 (1 when there is no discordant item).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // log C(n, i) − n log 2, summed over i ≤ k in log space so that large
    // runs do not underflow.
    let mut log_term = -(n as f64) * std::f64::consts::LN_2;
    let mut terms = vec![log_term];
    for i in 1..=k {
        log_term += ((n - i + 1) as f64).ln() - (i as f64).ln();
        terms.push(log_term);
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = top.exp() * terms.iter().map(|t| (t - top).exp()).sum::<f64>();
    (2.0 * tail).min(1.0)
}

/// A Markdown table of every run after the first against the first.
/// `runs` are (name, results) in order.
pub fn paired_markdown(runs: &[(String, Vec<ItemResult>)], seed: u64) -> String {
    let Some((base, first)) = runs.first() else {
        return String::new();
    };
    let mut out = format!(
        "\nPaired against {base}, on the items both graded (right answering all; \
         95% interval by paired bootstrap; exact McNemar test):\n\n\
         | run | items | both right | only {base} | only the run | difference [95% CI] | p | tokens / item ({base}, run) |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    for (name, results) in &runs[1..] {
        match paired(first, results, seed) {
            None => out.push_str(&format!(
                "| {name} | 0 | – | – | – | no item graded by both | – | – |\n"
            )),
            Some(p) => {
                let ci = p
                    .ci95
                    .map_or(String::new(), |(lo, hi)| format!(" [{lo:+.3}, {hi:+.3}]"));
                let p_value = if p.p_value < 0.001 {
                    "<0.001".to_string()
                } else {
                    format!("{:.3}", p.p_value)
                };
                out.push_str(&format!(
                    "| {name} | {} | {} | {} | {} | {:+.3}{ci} | {p_value} | {:.0}, {:.0} |\n",
                    p.items,
                    p.both,
                    p.only_first,
                    p.only_second,
                    p.difference,
                    p.tokens_first,
                    p.tokens_second
                ));
            }
        }
    }
    out
}

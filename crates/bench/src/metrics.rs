//! Metrics over (confidence, correct) pairs and abstention decisions.
//!
//! Conventions: confidences are P(correct) in [0, 1]; empty inputs give
//! `None` where a metric is undefined (AUROC with one class, ECE of nothing).

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Share correct.
pub fn accuracy(correct: &[bool]) -> Option<f64> {
    (!correct.is_empty())
        .then(|| correct.iter().filter(|c| **c).count() as f64 / correct.len() as f64)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Lower edge of confidence.
    pub low: f64,
    /// Upper edge.
    pub high: f64,
    /// Items in it.
    pub count: usize,
    /// Mean confidence.
    pub confidence: f64,
    /// Share correct.
    pub accuracy: f64,
}

fn ece_of(bins: &[Bin], n: usize) -> f64 {
    bins.iter()
        .map(|b| b.count as f64 / n as f64 * (b.confidence - b.accuracy).abs())
        .sum()
}

fn bin_of(items: &[(f64, bool)], low: f64, high: f64) -> Bin {
    let count = items.len();
    let (c, a) = items.iter().fold((0.0, 0.0), |(c, a), (p, y)| {
        (c + p, a + f64::from(u8::from(*y)))
    });
    Bin {
        low,
        high,
        count,
        confidence: if count > 0 { c / count as f64 } else { 0.0 },
        accuracy: if count > 0 { a / count as f64 } else { 0.0 },
    }
}

/// Equal-width reliability bins over [0, 1] (the last bin includes 1);
/// empty bins are kept with count 0.
pub fn reliability_equal_width(conf: &[f64], correct: &[bool], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut groups: Vec<Vec<(f64, bool)>> = vec![Vec::new(); bins];
    for (&p, &y) in conf.iter().zip(correct) {
        let i = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        groups[i].push((p, y));
    }
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| bin_of(g, i as f64 / bins as f64, (i + 1) as f64 / bins as f64))
        .collect()
}

/// Expected calibration error with equal-width bins.
pub fn ece_equal_width(conf: &[f64], correct: &[bool], bins: usize) -> Option<f64> {
    (!conf.is_empty()).then(|| ece_of(&reliability_equal_width(conf, correct, bins), conf.len()))
}

/// Equal-mass bins: items sorted by confidence and cut into `bins` groups
/// of (nearly) equal size; ties are never split across bins.
pub fn reliability_equal_mass(conf: &[f64], correct: &[bool], bins: usize) -> Vec<Bin> {
    let mut items: Vec<(f64, bool)> = conf.iter().copied().zip(correct.iter().copied()).collect();
    items.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = items.len();
    let bins = bins.max(1).min(n.max(1));
    let mut out = Vec::new();
    let mut start = 0;
    for b in 0..bins {
        if start >= n {
            break;
        }
        let mut end = ((b + 1) * n).div_ceil(bins).max(start + 1).min(n);
        while end < n && items[end].0 == items[end - 1].0 {
            end += 1;
        }
        let g = &items[start..end];
        out.push(bin_of(g, g[0].0, g[g.len() - 1].0));
        start = end;
    }
    out
}

/// Expected calibration error with equal-mass bins.
pub fn ece_equal_mass(conf: &[f64], correct: &[bool], bins: usize) -> Option<f64> {
    (!conf.is_empty()).then(|| ece_of(&reliability_equal_mass(conf, correct, bins), conf.len()))
}

/// Brier score: mean squared error of the confidence.
pub fn brier(conf: &[f64], correct: &[bool]) -> Option<f64> {
    (!conf.is_empty()).then(|| {
        conf.iter()
            .zip(correct)
            .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2))
            .sum::<f64>()
            / conf.len() as f64
    })
}

/// Negative log-likelihood per item (confidences clamped to [1e-6, 1 − 1e-6]).
pub fn nll(conf: &[f64], correct: &[bool]) -> Option<f64> {
    (!conf.is_empty()).then(|| {
        conf.iter()
            .zip(correct)
            .map(|(p, y)| {
                let p = p.clamp(1e-6, 1.0 - 1e-6);
                -(if *y { p.ln() } else { (1.0 - p).ln() })
            })
            .sum::<f64>()
            / conf.len() as f64
    })
}

/// Area under the ROC curve of confidence for telling right (positive)
/// from wrong: the probability that a random right item has higher
/// confidence than a random wrong one, ties counting one half. None when
/// only one class is present.
pub fn auroc(conf: &[f64], correct: &[bool]) -> Option<f64> {
    let pos: Vec<f64> = conf
        .iter()
        .zip(correct)
        .filter(|(_, y)| **y)
        .map(|(p, _)| *p)
        .collect();
    let neg: Vec<f64> = conf
        .iter()
        .zip(correct)
        .filter(|(_, y)| !**y)
        .map(|(p, _)| *p)
        .collect();
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    // Rank-based (Mann–Whitney U) with midranks for ties.
    let mut all: Vec<(f64, bool)> = conf.iter().copied().zip(correct.iter().copied()).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|x| x.1).count() as f64 * mid;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// Area under the precision-recall curve (average precision) of confidence
/// for finding right items; tied confidences enter as one step.
pub fn auprc(conf: &[f64], correct: &[bool]) -> Option<f64> {
    let total = correct.iter().filter(|y| **y).count();
    if total == 0 || conf.is_empty() {
        return None;
    }
    let mut items: Vec<(f64, bool)> = conf.iter().copied().zip(correct.iter().copied()).collect();
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen, mut ap, mut i) = (0usize, 0usize, 0.0, 0usize);
    while i < items.len() {
        let mut j = i;
        while j + 1 < items.len() && items[j + 1].0 == items[i].0 {
            j += 1;
        }
        let new_tp = items[i..=j].iter().filter(|x| x.1).count();
        tp += new_tp;
        seen += j - i + 1;
        ap += new_tp as f64 / total as f64 * (tp as f64 / seen as f64);
        i = j + 1;
    }
    Some(ap)
}

/// A point of the risk-coverage curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskPoint {
    /// Share of items answered.
    pub coverage: f64,
    /// Error rate among them.
    pub risk: f64,
}

/// Risk-coverage curve: answer the most confident items first; one point
/// per distinct confidence (ties are answered together).
pub fn risk_coverage(conf: &[f64], correct: &[bool]) -> Vec<RiskPoint> {
    let mut items: Vec<(f64, bool)> = conf.iter().copied().zip(correct.iter().copied()).collect();
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    let n = items.len();
    let mut out = Vec::new();
    let (mut wrong, mut i) = (0usize, 0usize);
    while i < n {
        let mut j = i;
        while j + 1 < n && items[j + 1].0 == items[i].0 {
            j += 1;
        }
        wrong += items[i..=j].iter().filter(|x| !x.1).count();
        out.push(RiskPoint {
            coverage: (j + 1) as f64 / n as f64,
            risk: wrong as f64 / (j + 1) as f64,
        });
        i = j + 1;
    }
    out
}

/// Area under the risk-coverage curve: the mean, over k = 1..n, of the
/// risk when the k most confident items are answered (ties share the risk
/// of their whole group). Lower is better.
pub fn aurc(conf: &[f64], correct: &[bool]) -> Option<f64> {
    let n = conf.len();
    if n == 0 {
        return None;
    }
    let curve = risk_coverage(conf, correct);
    let mut total = 0.0;
    let mut prev = 0usize;
    for p in &curve {
        let k = (p.coverage * n as f64).round() as usize;
        total += (k - prev) as f64 * p.risk;
        prev = k;
    }
    Some(total / n as f64)
}

/// Accuracy on the most confident `coverage` share of items (at least one
/// item; ties broken by input order).
pub fn selective_accuracy(conf: &[f64], correct: &[bool], coverage: f64) -> Option<f64> {
    let n = conf.len();
    if n == 0 {
        return None;
    }
    let k = ((coverage.clamp(0.0, 1.0) * n as f64).round() as usize).clamp(1, n);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]).then(a.cmp(&b)));
    Some(idx[..k].iter().filter(|&&i| correct[i]).count() as f64 / k as f64)
}

/// Precision, recall and F1 of a yes/no decision against the truth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    /// Of the items flagged, the share that should be.
    pub precision: Option<f64>,
    /// Of the items that should be flagged, the share flagged.
    pub recall: Option<f64>,
    /// Harmonic mean.
    pub f1: Option<f64>,
    /// Flagged although it should not be, over all that should not be
    /// (the over-refusal rate when flagging is declining).
    pub false_positive_rate: Option<f64>,
    /// Counts: true positives, false positives, false negatives, true negatives.
    pub counts: [usize; 4],
}

/// Precision/recall/F1 of `flagged` (e.g. abstained) against `should`.
pub fn prf(flagged: &[bool], should: &[bool]) -> Prf {
    let mut c = [0usize; 4];
    for (f, s) in flagged.iter().zip(should) {
        let i = match (f, s) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        };
        c[i] += 1;
    }
    let div = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let precision = div(c[0], c[0] + c[1]);
    let recall = div(c[0], c[0] + c[2]);
    // Where flagging was right somewhere but nothing right was flagged, F1
    // is 0 (also when nothing was flagged at all: never declining earns
    // no credit); it is undefined only when nothing should be flagged.
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (_, Some(_)) => Some(0.0),
        _ => None,
    };
    Prf {
        precision,
        recall,
        f1,
        false_positive_rate: div(c[1], c[1] + c[3]),
        counts: c,
    }
}

/// A percentile bootstrap 95% interval of `stat` over items resampled with
/// replacement (`draws` resamples, seeded); None when `stat` is undefined
/// on the data.
pub fn bootstrap<F>(n: usize, draws: usize, seed: u64, stat: F) -> Option<(f64, f64)>
where
    F: Fn(&[usize]) -> Option<f64>,
{
    if n == 0 {
        return None;
    }
    let mut rng = metareason_bayes::seeded(seed);
    let mut values: Vec<f64> = (0..draws)
        .filter_map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            stat(&idx)
        })
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let q =
        |p: f64| values[((p * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    Some((q(0.025), q(0.975)))
}

//! Linear probes: a Bayesian logistic regression over vectors a reader
//! made of labelled texts (sentence embeddings, or a language model's
//! hidden state at one of its layers), class-balanced, its prior variance
//! and — for a model's states — its layer chosen by 5-fold
//! cross-validation on the learn half only. The harm classifier is one
//! such probe ([`crate::safety::fit_harm`]); `bench fit-probe` fits one for
//! any labelled development set (for example, whether a question can be
//! answered from the context it gives).

use metareason_awareness::{EmbeddingClassifier, Standardize};
use metareason_bayes::LogisticRegression;

use crate::datasets::DatasetError;

fn fail(m: String) -> DatasetError {
    DatasetError::Fetch("probe".into(), m)
}

/// Each class weighs as much as the other in total (`positive`: the
/// row's class; `positives` and `negatives`: the class sizes).
pub fn class_weight(positive: bool, positives: usize, negatives: usize) -> f64 {
    let n = (positives + negatives) as f64;
    if positive {
        n / (2 * positives.max(1)) as f64
    } else {
        n / (2 * negatives.max(1)) as f64
    }
}

/// Class-balanced log loss of probabilities `p` of labels `y`, each class
/// weighing as much as the other in a set of `positives` and `negatives`.
pub fn balanced_log_loss(p: &[f64], y: &[bool], positives: usize, negatives: usize) -> f64 {
    let (mut sum, mut total) = (0.0, 0.0);
    for (&p, &y) in p.iter().zip(y) {
        let w = class_weight(y, positives, negatives);
        let q = if y { p } else { 1.0 - p };
        sum -= w * q.clamp(1e-9, 1.0).ln();
        total += w;
    }
    sum / total.max(1e-9)
}

fn class_sizes(ys: &[bool]) -> Result<(usize, usize), DatasetError> {
    let positives = ys.iter().filter(|y| **y).count();
    let negatives = ys.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(fail(
            "a probe needs rows of both classes in the learn half".into(),
        ));
    }
    Ok((positives, negatives))
}

/// The class-weighted regression of labels `ys` on features `xs` under a
/// N(0, `prior` I) prior.
pub fn fit_weighted(
    xs: &[Vec<f64>],
    ys: &[bool],
    prior: f64,
) -> Result<LogisticRegression, DatasetError> {
    let (positives, negatives) = class_sizes(ys)?;
    let weights: Vec<f64> = ys
        .iter()
        .map(|&y| class_weight(y, positives, negatives))
        .collect();
    LogisticRegression::fit_weighted(xs, ys, &weights, prior).map_err(|e| fail(e.to_string()))
}

/// 5-fold out-of-fold probabilities (folds by row index) of the
/// class-weighted regression of `ys` on `xs` under a N(0, `prior` I)
/// prior: each row's P(positive) from the fit on the other four folds.
/// This is what a probe says of rows it has not seen, so a model stacked
/// on the probe's output is fitted on honest values.
pub fn out_of_fold(xs: &[Vec<f64>], ys: &[bool], prior: f64) -> Result<Vec<f64>, DatasetError> {
    class_sizes(ys)?;
    let mut p = vec![0.0; xs.len()];
    for fold in 0..5 {
        let pick = |i: usize| i % 5 == fold;
        let train: Vec<usize> = (0..xs.len()).filter(|&i| !pick(i)).collect();
        let model = fit_weighted(
            &train.iter().map(|&i| xs[i].clone()).collect::<Vec<_>>(),
            &train.iter().map(|&i| ys[i]).collect::<Vec<_>>(),
            prior,
        )?;
        for i in (0..xs.len()).filter(|&i| pick(i)) {
            p[i] = model.predict(&xs[i]);
        }
    }
    Ok(p)
}

/// 5-fold cross-validation ([`out_of_fold`]) of the class-weighted
/// regression of `ys` on `xs`: (prior variance, class-balanced log loss
/// out of fold) for each of `priors`.
pub fn cross_validate(
    xs: &[Vec<f64>],
    ys: &[bool],
    priors: &[f64],
) -> Result<CrossValidation, DatasetError> {
    let (positives, negatives) = class_sizes(ys)?;
    priors
        .iter()
        .map(|&prior| {
            let p = out_of_fold(xs, ys, prior)?;
            Ok((prior, balanced_log_loss(&p, ys, positives, negatives)))
        })
        .collect()
}

/// (prior variance, class-balanced log loss out of fold) for each prior
/// tried.
pub type CrossValidation = Vec<(f64, f64)>;

/// Standardised features of a model's state vectors (a bias first), with
/// the standardisation fitted on them.
pub fn standardized(vectors: &[Vec<f32>]) -> (Standardize, Vec<Vec<f64>>) {
    let z = Standardize::fit(vectors);
    let xs = vectors.iter().map(|v| z.features(v)).collect();
    (z, xs)
}

/// Cross-validation of a probe at each candidate layer: `by_layer[k]` are
/// the rows' vectors at the k-th layer. Returns the index of the layer of
/// least loss (at its best prior) and each layer's (prior, loss) table.
pub fn choose_layer(
    by_layer: &[Vec<Vec<f32>>],
    ys: &[bool],
    priors: &[f64],
) -> Result<(usize, Vec<CrossValidation>), DatasetError> {
    let mut tables = Vec::with_capacity(by_layer.len());
    let mut best: Option<(f64, usize)> = None;
    for (k, vectors) in by_layer.iter().enumerate() {
        let (_, xs) = standardized(vectors);
        let cv = cross_validate(&xs, ys, priors)?;
        let loss = cv.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        if best.is_none_or(|(b, _)| loss < b) {
            best = Some((loss, k));
        }
        tables.push(cv);
    }
    Ok((best.map_or(0, |b| b.1), tables))
}

/// A probe fitted by [`fit_state_probe`], with how it was chosen.
#[derive(Debug, Clone)]
pub struct StateProbe {
    /// The probe.
    pub classifier: EmbeddingClassifier,
    /// Class-balanced log loss out of fold by prior variance.
    pub cross_validation: CrossValidation,
    /// Each row's out-of-fold P(positive) at the chosen prior (what the
    /// probe says of a row it was not fitted on).
    pub out_of_fold: Vec<f64>,
}

/// A probe over a model's states: standardised, read whole, its prior
/// variance chosen from `priors` by cross-validation, its variances
/// matched to the full posterior.
pub fn fit_state_probe(
    vectors: &[Vec<f32>],
    ys: &[bool],
    priors: &[f64],
    label: &str,
    embedder: &str,
    fitted_on: &str,
) -> Result<StateProbe, DatasetError> {
    let (z, xs) = standardized(vectors);
    let cv = cross_validate(&xs, ys, priors)?;
    let prior = cv
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(1.0, |c| c.0);
    let posterior = fit_weighted(&xs, ys, prior)?;
    let (positives, negatives) = class_sizes(ys)?;
    let classifier = EmbeddingClassifier::from_posterior(
        label,
        embedder,
        &posterior,
        prior,
        &format!(
            "{fitted_on}: {positives} positive, {negatives} negative; prior variance {prior} by 5-fold cross-validation"
        ),
    )
    .in_windows(false)
    .matching_variance(&posterior, &xs)
    .standardized_by(z);
    Ok(StateProbe {
        classifier,
        cross_validation: cv,
        out_of_fold: out_of_fold(&xs, ys, prior)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose label is carried by dimension `signal` (noise elsewhere).
    fn rows(n: usize, signal: usize) -> (Vec<Vec<f32>>, Vec<bool>) {
        let mut vs = Vec::new();
        let mut ys = Vec::new();
        for i in 0..n {
            let y = i % 3 == 0;
            let mut v: Vec<f32> = (0..4)
                .map(|d| (((i * 7 + d * 13) % 11) as f32 - 5.0) / 5.0)
                .collect();
            v[signal] += if y { 2.0 } else { -2.0 };
            vs.push(v);
            ys.push(y);
        }
        (vs, ys)
    }

    #[test]
    fn the_layer_that_carries_the_label_is_chosen_and_the_probe_reads_it() {
        let (noise, ys) = rows(60, 0);
        // Layer 0: the label is not in it (its signal dimension shuffled
        // away); layer 1: it is.
        let uninformative: Vec<Vec<f32>> = noise
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut v = v.clone();
                v[0] = ((i * 5 % 7) as f32 - 3.0) / 3.0;
                v
            })
            .collect();
        let (k, tables) = choose_layer(&[uninformative, noise.clone()], &ys, &[0.1, 1.0]).unwrap();
        assert_eq!(k, 1, "{tables:?}");
        assert!(tables[1][1].1 < tables[0][1].1);
        let fitted = fit_state_probe(&noise, &ys, &[0.1, 1.0], "x", "e", "test").unwrap();
        let (probe, cv) = (&fitted.classifier, &fitted.cross_validation);
        assert_eq!(cv.len(), 2);
        // Out of fold, the probe still reads the label (it is in the data,
        // not memorised), and each row has its value.
        assert_eq!(fitted.out_of_fold.len(), 60);
        let right_oof = fitted
            .out_of_fold
            .iter()
            .zip(&ys)
            .filter(|(p, &y)| (**p > 0.5) == y)
            .count();
        assert!(right_oof >= 54, "{right_oof} of 60 out of fold");
        assert!(!probe.windows && probe.standardize.is_some());
        let right = noise
            .iter()
            .zip(&ys)
            .filter(|(v, &y)| (probe.probability(v) > 0.5) == y)
            .count();
        assert!(right >= 57, "{right} of 60");
        // One class only: a clear error, not a fit.
        assert!(cross_validate(&[vec![1.0, 0.0]], &[true], &[1.0]).is_err());
    }
}

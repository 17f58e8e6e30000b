//! Metrics against hand-computed values, ties and degenerate cases.

use metareason_bench::metrics::*;

const EPS: f64 = 1e-12;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn ece_with_equal_width_bins_by_hand() {
    // Bins of width 0.5: [0.2, 0.4] -> conf 0.3, acc 0.5; [0.6, 0.8, 1.0]
    // -> conf 0.8, acc 2/3. ECE = 2/5 * 0.2 + 3/5 * (0.8 - 2/3).
    let conf = [0.2, 0.4, 0.6, 0.8, 1.0];
    let y = [false, true, true, false, true];
    let want = 0.4 * 0.2 + 0.6 * (0.8 - 2.0 / 3.0);
    assert!(close(ece_equal_width(&conf, &y, 2), want));
    let bins = reliability_equal_width(&conf, &y, 2);
    assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![2, 3]);
    // One bin: |mean confidence - accuracy|.
    assert!(close(ece_equal_width(&conf, &y, 1), (0.6f64 - 0.6).abs()));
    // Empty input: undefined.
    assert_eq!(ece_equal_width(&[], &[], 10), None);
}

#[test]
fn ece_with_equal_mass_bins_keeps_ties_together() {
    let conf = [0.1, 0.9, 0.9, 0.9, 0.5, 0.3];
    let y = [false, true, true, false, true, false];
    let bins = reliability_equal_mass(&conf, &y, 2);
    // Sorted: .1 .3 .5 | .9 .9 .9 (the cut at 3 falls between distinct values).
    assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![3, 3]);
    let want = 0.5 * ((0.3f64 - 1.0 / 3.0).abs()) + 0.5 * ((0.9f64 - 2.0 / 3.0).abs());
    assert!(close(ece_equal_mass(&conf, &y, 2), want));
    // A cut inside a run of ties moves past the run.
    let bins = reliability_equal_mass(&[0.5, 0.5, 0.5, 0.7], &[true; 4], 2);
    assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), vec![3, 1]);
}

#[test]
fn perfect_and_constant_confidence() {
    // All right with confidence 1: no calibration error, no risk.
    let y = [true; 4];
    assert!(close(ece_equal_width(&[1.0; 4], &y, 10), 0.0));
    assert!(close(brier(&[1.0; 4], &y), 0.0));
    assert_eq!(auroc(&[1.0; 4], &y), None, "one class");
    assert!(close(aurc(&[1.0; 4], &y), 0.0));
    // All wrong.
    let n = [false; 3];
    assert_eq!(accuracy(&n), Some(0.0));
    assert_eq!(auprc(&[0.3; 3], &n), None);
    assert!(close(aurc(&[0.2, 0.5, 0.9], &n), 1.0));
    // Constant confidence: AUROC one half, AURC the error rate.
    let c = [0.7; 4];
    let y = [true, false, true, true];
    assert!(close(auroc(&c, &y), 0.5));
    assert!(close(aurc(&c, &y), 0.25));
    assert!(close(auprc(&c, &y), 0.75));
}

#[test]
fn auroc_and_auprc_by_hand() {
    // Positives .9 .6 ; negatives .7 .2: pairs (.9>.7 .9>.2 .6<.7 .6>.2) -> 3/4.
    let conf = [0.9, 0.7, 0.6, 0.2];
    let y = [true, false, true, false];
    assert!(close(auroc(&conf, &y), 0.75));
    // AP: at .9 precision 1 (recall .5); at .6 precision 2/3 (recall 1).
    assert!(close(auprc(&conf, &y), 0.5 * 1.0 + 0.5 * 2.0 / 3.0));
    // A tie between a positive and a negative counts one half.
    assert!(close(auroc(&[0.5, 0.5], &[true, false]), 0.5));
    assert!(close(auroc(&[0.1, 0.9], &[true, false]), 0.0));
}

#[test]
fn brier_and_nll_by_hand() {
    let conf = [0.8, 0.3];
    let y = [true, false];
    assert!(close(brier(&conf, &y), (0.04 + 0.09) / 2.0));
    let want = -(0.8f64.ln() + 0.7f64.ln()) / 2.0;
    assert!(close(nll(&conf, &y), want));
    // Certain and wrong is clamped, not infinite.
    assert!(nll(&[1.0], &[false]).unwrap().is_finite());
}

#[test]
fn risk_coverage_and_selective_accuracy_by_hand() {
    let conf = [0.9, 0.8, 0.7, 0.6];
    let y = [true, false, true, true];
    let curve = risk_coverage(&conf, &y);
    let risks: Vec<f64> = curve.iter().map(|p| p.risk).collect();
    assert!((risks[0] - 0.0).abs() < EPS);
    assert!((risks[1] - 0.5).abs() < EPS);
    assert!((risks[2] - 1.0 / 3.0).abs() < EPS);
    assert!((risks[3] - 0.25).abs() < EPS);
    assert!(close(aurc(&conf, &y), (0.0 + 0.5 + 1.0 / 3.0 + 0.25) / 4.0));
    assert!(close(selective_accuracy(&conf, &y, 0.5), 0.5));
    assert!(close(selective_accuracy(&conf, &y, 0.25), 1.0));
    assert!(close(selective_accuracy(&conf, &y, 1.0), 0.75));
    assert_eq!(selective_accuracy(&[], &[], 0.5), None);
}

#[test]
fn precision_recall_f1_and_over_refusal() {
    // flagged: T T F F T ; should: T F T F T
    let p = prf(
        &[true, true, false, false, true],
        &[true, false, true, false, true],
    );
    assert_eq!(p.counts, [2, 1, 1, 1]);
    assert!(close(p.precision, 2.0 / 3.0));
    assert!(close(p.recall, 2.0 / 3.0));
    assert!(close(p.f1, 2.0 / 3.0));
    assert!(close(p.false_positive_rate, 0.5));
    // Nothing flagged: precision undefined, recall 0, F1 0.
    let p = prf(&[false, false], &[true, false]);
    assert_eq!(p.precision, None);
    assert!(close(p.recall, 0.0));
    assert!(close(p.f1, 0.0));
    // Nothing should be flagged: recall and F1 undefined.
    let p = prf(&[true, false], &[false, false]);
    assert_eq!((p.recall, p.f1), (None, None));
    assert!(close(p.false_positive_rate, 0.5));
}

#[test]
fn bootstrap_intervals_are_seeded_and_bracket_the_estimate() {
    let y: Vec<bool> = (0..100).map(|i| i % 4 != 0).collect();
    let stat =
        |idx: &[usize]| Some(idx.iter().filter(|&&i| y[i]).count() as f64 / idx.len() as f64);
    let a = bootstrap(y.len(), 500, 7, stat).unwrap();
    let b = bootstrap(y.len(), 500, 7, stat).unwrap();
    assert_eq!(a, b);
    assert!(a.0 < 0.75 && 0.75 < a.1, "{a:?}");
    assert!(a.1 - a.0 < 0.25);
    assert_eq!(bootstrap(0, 10, 1, stat), None);
}

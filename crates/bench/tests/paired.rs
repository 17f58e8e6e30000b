//! Two runs compared item by item: only the items one run got right and
//! the other not carry evidence, and the exact test weighs them.

use metareason_bench::paired::{mcnemar_exact, paired, paired_markdown};
use metareason_bench::run::ItemResult;

/// A graded item `id` (right or not, `tokens` generated); `right: None`
/// is an item without a reference.
fn item(id: &str, right: Option<bool>, tokens: u64) -> ItemResult {
    serde_json::from_value(serde_json::json!({
        "id": id, "decision": "answer", "answer": "1", "reference": right.map(|_| "1"),
        "correct": right, "should_decline": false, "confidence": 0.5,
        "candidate_correct": right, "generated_tokens": tokens, "prompt_tokens": 0,
        "seconds": 1.0
    }))
    .expect("a valid item")
}

#[test]
fn the_exact_mcnemar_test_is_twice_the_smaller_binomial_tail() {
    // No discordant item: nothing to tell the runs apart.
    assert_eq!(mcnemar_exact(0, 0), 1.0);
    assert_eq!(mcnemar_exact(5, 5), 1.0);
    // 0 against 6: 2 · 2^-6.
    assert!((mcnemar_exact(0, 6) - 2.0 / 64.0).abs() < 1e-12);
    assert_eq!(mcnemar_exact(6, 0), mcnemar_exact(0, 6));
    // 1 against 9: 2 · (1 + 10) / 1024.
    assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
    // 10 against 16 (the loop against SC@8 on held-out problems): 0.327.
    assert!((mcnemar_exact(10, 16) - 0.3269).abs() < 1e-3);
    // Thousands of discordant items do not underflow to 0 or 1.
    let p = mcnemar_exact(1000, 1100);
    assert!(p > 0.01 && p < 0.05, "{p}");
}

#[test]
fn runs_are_paired_on_the_items_both_graded() {
    let first = vec![
        item("a", Some(true), 100),
        item("b", Some(true), 100),
        item("c", Some(false), 100),
        item("d", Some(false), 100),
        item("only-first", Some(true), 100),
        item("ungraded", None, 100),
    ];
    let second = vec![
        item("d", Some(true), 300),
        item("c", Some(true), 300),
        item("b", Some(false), 300),
        item("a", Some(true), 300),
        item("ungraded", Some(true), 300),
        item("only-second", Some(true), 300),
    ];
    let p = paired(&first, &second, 7).expect("shared items");
    assert_eq!(p.items, 4);
    assert_eq!(
        (p.both, p.only_first, p.only_second, p.neither),
        (1, 1, 2, 0)
    );
    assert!((p.difference - 0.25).abs() < 1e-12);
    let (lo, hi) = p.ci95.expect("an interval");
    assert!(lo <= p.difference && p.difference <= hi, "{lo} {hi}");
    assert!(lo < 0.0, "one problem lost: the interval reaches below 0");
    // 1 against 2: 2 · (1 + 3) / 8, at most 1.
    assert!((p.p_value - 1.0).abs() < 1e-12);
    assert_eq!((p.tokens_first, p.tokens_second), (100.0, 300.0));
    // Nothing shared: no comparison.
    assert!(paired(&first[..1], &second[5..], 7).is_none());
}

#[test]
fn the_table_names_each_run_against_the_first() {
    let first: Vec<ItemResult> = (0..20)
        .map(|i| item(&i.to_string(), Some(i < 10), 200))
        .collect();
    let better: Vec<ItemResult> = (0..20)
        .map(|i| item(&i.to_string(), Some(true), 50))
        .collect();
    let stranger = vec![item("x", Some(true), 1)];
    let table = paired_markdown(
        &[
            ("greedy".into(), first),
            ("loop".into(), better),
            ("other".into(), stranger),
        ],
        7,
    );
    assert!(table.contains("Paired against greedy"), "{table}");
    // 10 found only by the loop: p = 2 · 2^-10.
    assert!(
        table.contains("| loop | 20 | 10 | 0 | 10 | +0.500 ")
            && table.contains("| 0.002 | 200, 50 |"),
        "{table}"
    );
    assert!(table.contains("| other | 0 |"), "{table}");
}

#[test]
fn a_tiny_p_value_is_printed_as_a_bound() {
    let first: Vec<ItemResult> = (0..30)
        .map(|i| item(&i.to_string(), Some(false), 10))
        .collect();
    let second: Vec<ItemResult> = (0..30)
        .map(|i| item(&i.to_string(), Some(true), 10))
        .collect();
    let table = paired_markdown(&[("a".into(), first), ("b".into(), second)], 7);
    assert!(table.contains("| <0.001 |"), "{table}");
}

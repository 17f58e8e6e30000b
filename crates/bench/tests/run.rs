//! Resumable runs: a rerun skips finished items; a cut last line is redone.

use metareason_bench::datasets::{Expected, Item};
use metareason_core::Decision;
use std::collections::BTreeMap;

use metareason_bench::run::{
    baseline_names, read_results, run, run_parallel, summarize, with_baseline_confidence,
    ItemResult,
};

fn items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| Item {
            id: format!("i{i}"),
            question: format!("q{i}"),
            expected: if i % 4 == 3 {
                Expected::Decline
            } else {
                Expected::Answer {
                    reference: i.to_string(),
                    answer_kind: metareason_strategy::answer::AnswerKind::Number,
                }
            },
        })
        .collect()
}

fn result(item: &Item) -> ItemResult {
    let i: usize = item.id[1..].parse().unwrap();
    let decline = matches!(item.expected, Expected::Decline);
    let correct = (!decline).then_some(i.is_multiple_of(2));
    ItemResult {
        id: item.id.clone(),
        decision: if decline {
            Decision::Abstain
        } else {
            Decision::Answer
        },
        grounds: None,
        answer: Some(i.to_string()),
        reference: (!decline).then(|| i.to_string()),
        correct,
        should_decline: decline,
        confidence: Some(if i.is_multiple_of(2) { 0.9 } else { 0.2 }),
        candidate_correct: correct,
        generated_tokens: 10,
        prompt_tokens: 5,
        seconds: 0.5,
        baselines: BTreeMap::from([("verbalized".to_string(), 0.5)]),
        answerability: None,
        p_answerable: None,
        harm: None,
        samples: Vec::new(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("boom")]
struct Boom;

#[test]
fn a_rerun_skips_finished_items_and_redoes_a_cut_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/results.jsonl");
    let all = items(8);
    // First run dies at item 5 (an error stands in for a kill).
    let mut calls = Vec::new();
    let err = run(
        &all,
        &path,
        |it| {
            calls.push(it.id.clone());
            if it.id == "i5" {
                Err(Boom)
            } else {
                Ok(result(it))
            }
        },
        |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("item i5"), "{err}");
    assert_eq!(read_results(&path).unwrap().len(), 5);
    // A kill mid-write leaves half a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"id\": \"i5\", \"deci");
    std::fs::write(&path, text).unwrap();
    let mut calls = Vec::new();
    let mut fresh = 0;
    let results = run(
        &all,
        &path,
        |it| {
            calls.push(it.id.clone());
            Ok::<_, Boom>(result(it))
        },
        |_, new| fresh += usize::from(new),
    )
    .unwrap();
    assert_eq!(calls, vec!["i5", "i6", "i7"]);
    assert_eq!(fresh, 3);
    assert_eq!(
        results.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7"]
    );
    assert_eq!(read_results(&path).unwrap().len(), 8);
}

#[test]
fn a_summary_counts_accuracy_calibration_and_declining() {
    let all = items(8);
    let results: Vec<ItemResult> = all.iter().map(result).collect();
    let s = summarize(&results, 1);
    assert_eq!((s.n, s.graded), (8, 6));
    // Graded: i0 i1 i2 i4 i5 i6 -> right when even: i0 i2 i4 i6.
    assert!((s.accuracy.value.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    assert!((s.candidate_accuracy.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(s.coverage, Some(1.0));
    // Confidence 0.9 exactly on the right ones, 0.2 on the wrong: AUROC 1.
    assert_eq!(s.auroc.value, Some(1.0));
    let (lo, hi) = s.accuracy.ci95.unwrap();
    assert!(lo <= 4.0 / 6.0 && 4.0 / 6.0 <= hi);
    // Declined exactly where declining is right.
    assert_eq!(s.decline.f1, Some(1.0));
    assert_eq!(s.decline.false_positive_rate, Some(0.0));
    // Items to decline (i3, i7: odd, confidence 0.2) against the rest
    // (0.9 on even, 0.2 on i1, i5): 1 − confidence ranks them above the even
    // ones and ties the odd ones: (2·4 + 0.5·2·2) / (2·6) = 10/12.
    assert!((s.decline_auroc.unwrap() - 10.0 / 12.0).abs() < 1e-12);
    assert!((s.generated_tokens - 10.0).abs() < 1e-12);
}

#[test]
fn parallel_workers_finish_every_item_once_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.jsonl");
    let all = items(20);
    // A first run stops at the first error; what finished is on disk.
    let err = run_parallel(
        &all,
        &path,
        3,
        |_| {
            Ok::<_, Boom>(|it: &Item| {
                if it.id == "i9" {
                    Err(Boom)
                } else {
                    Ok(result(it))
                }
            })
        },
        |_, _| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("item i9"), "{err}");
    let first = read_results(&path).unwrap();
    assert!(first.len() < 20 && first.iter().all(|r| r.id != "i9"));
    // The rerun does the rest, each remaining item exactly once, and returns
    // them in item order.
    let seen = std::sync::Mutex::new(Vec::new());
    let workers = std::sync::Mutex::new(std::collections::HashSet::new());
    let results = run_parallel(
        &all,
        &path,
        4,
        |w| {
            workers.lock().unwrap().insert(w);
            let seen = &seen;
            Ok::<_, Boom>(move |it: &Item| {
                seen.lock().unwrap().push(it.id.clone());
                Ok(result(it))
            })
        },
        |_, _| {},
    )
    .unwrap();
    let mut redone = seen.into_inner().unwrap();
    redone.sort();
    let mut want: Vec<String> = all
        .iter()
        .map(|i| i.id.clone())
        .filter(|id| first.iter().all(|r| &r.id != id))
        .collect();
    want.sort();
    assert_eq!(redone, want);
    assert_eq!(
        results.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        all.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(read_results(&path).unwrap().len(), 20);
    assert!(workers.into_inner().unwrap().len() > 1);
}

#[test]
fn a_baseline_confidence_replaces_the_runs_own() {
    let all = items(8);
    let results: Vec<ItemResult> = all.iter().map(result).collect();
    assert_eq!(baseline_names(&results), vec!["verbalized"]);
    let v = with_baseline_confidence(&results, "verbalized");
    // A constant confidence cannot rank right above wrong.
    assert_eq!(summarize(&v, 1).auroc.value, Some(0.5));
    assert!(with_baseline_confidence(&results, "p_true")
        .iter()
        .all(|r| r.confidence.is_none()));
}

#[test]
fn declaring_a_question_unanswerable_is_scored_apart_from_withholding_an_attempt() {
    use metareason_core::Grounds;
    let all = items(8); // i3 and i7 should be declined
    let mut results: Vec<ItemResult> = all.iter().map(result).collect();
    // i3: declared unanswerable (right); i7: withheld for low confidence
    // (declines, but blames the attempt); i1: declared unanswerable although
    // answerable; i5: withheld (an attempt that failed).
    let set = |r: &mut ItemResult, decision: Decision, g: Grounds| {
        r.decision = decision;
        r.grounds = Some(g);
    };
    for r in results.iter_mut() {
        match r.id.as_str() {
            "i3" => set(r, Decision::Abstain, Grounds::Unanswerable),
            "i7" => set(r, Decision::Abstain, Grounds::LowConfidence),
            "i1" => set(r, Decision::Abstain, Grounds::Unanswerable),
            "i5" => set(r, Decision::Abstain, Grounds::LowConfidence),
            _ => set(r, Decision::Answer, Grounds::Confident),
        }
    }
    let s = summarize(&results, 1);
    // Every decline: 4 declined, 2 of them rightly; both right ones found.
    assert_eq!(s.decline.counts, [2, 2, 0, 4]);
    // Declared unanswerable: 2, one rightly; one of the two missed.
    let u = s.unanswerable.expect("every result records grounds");
    assert_eq!(u.counts, [1, 1, 1, 5]);
    assert_eq!(u.f1, Some(0.5));
    assert!((u.false_positive_rate.unwrap() - 1.0 / 6.0).abs() < 1e-12);
    // Results recorded before grounds were kept give no such score.
    results[0].grounds = None;
    assert!(summarize(&results, 1).unanswerable.is_none());
}

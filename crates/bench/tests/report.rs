//! The HTML report: what it shows for which runs.

use metareason_bench::report::{accuracy_tokens_svg, comparison_markdown, html};
use metareason_bench::run::{summarize, ItemResult, Summary};

fn run(right: &[bool], declined: &[bool]) -> Summary {
    let results: Vec<ItemResult> = right
        .iter()
        .zip(declined)
        .enumerate()
        .map(|(i, (&ok, &no))| ItemResult {
            id: format!("i{i}"),
            decision: if no {
                metareason_core::Decision::Abstain
            } else {
                metareason_core::Decision::Answer
            },
            grounds: None,
            answer: (!no).then(|| "1".into()),
            reference: Some("1".into()),
            correct: Some(ok && !no),
            should_decline: false,
            confidence: Some(if ok { 0.9 } else { 0.3 }),
            candidate_correct: Some(ok),
            generated_tokens: 100,
            prompt_tokens: 10,
            seconds: 1.0,
            baselines: Default::default(),
            answerability: None,
            p_answerable: None,
            harm: None,
            samples: Vec::new(),
        })
        .collect();
    summarize(&results, 3)
}

#[test]
fn the_page_has_every_run_and_the_token_plot_skips_derived_runs() {
    let full = run(&[true, true, false, false], &[false, false, true, false]);
    let plain = run(&[true, false, true, false], &[false; 4]);
    let runs = vec![
        ("full".to_string(), full.clone()),
        ("greedy <cot>".to_string(), plain.clone()),
        ("greedy <cot>+p_true".to_string(), plain),
    ];
    let page = html("t", &runs);
    assert!(page.starts_with("<!doctype html>"));
    // Names are escaped, every run has a reliability diagram.
    assert!(!page.contains("<cot>") && page.contains("greedy &lt;cot&gt;"));
    assert_eq!(page.matches("<svg").count(), 2 + runs.len());
    let tokens = accuracy_tokens_svg(&runs);
    assert!(
        !tokens.contains("+p_true"),
        "derived runs share their run's point"
    );
    // `full` withholds only a wrong answer: answering everything would give
    // the same accuracy, so no hollow marker. Withholding a right one draws
    // it.
    assert!(!tokens.contains("answering all"));
    let withheld_right = run(&[true, true, false, false], &[true, false, false, false]);
    assert_eq!(withheld_right.candidate_accuracy, Some(0.5));
    assert_eq!(withheld_right.accuracy.value, Some(0.25));
    let tokens = accuracy_tokens_svg(&[("w".into(), withheld_right)]);
    assert!(tokens.contains("answering all 0.500"), "{tokens}");
    let table = comparison_markdown(&[("full".into(), full)]);
    assert!(table.contains("| coverage | 0.750 |"), "{table}");
}

#[test]
fn many_runs_stay_apart_in_the_legend_and_the_table_scrolls() {
    let s = run(&[true, false], &[false, false]);
    let runs: Vec<(String, Summary)> = (0..14).map(|i| (format!("run{i}"), s.clone())).collect();
    let rc = metareason_bench::report::risk_coverage_svg(&runs);
    // Runs 0-11 take the palette solid; 12 and 13 reuse its first colours
    // dashed, in the lines and in the legend alike.
    assert_eq!(
        rc.matches(r#"stroke-dasharray="6 3""#).count(),
        2 * 2,
        "{rc}"
    );
    assert_eq!(rc.matches(r#"stroke-dasharray="none""#).count(), 12 * 2);
    // Fourteen legend rows fit beside the 320-pixel plot; forty do not, and
    // the picture grows to hold them.
    assert!(rc.contains(r#"height="320""#), "{}", &rc[..200]);
    let many: Vec<(String, Summary)> = (0..40).map(|i| (format!("r{i}"), s.clone())).collect();
    let tall = metareason_bench::report::risk_coverage_svg(&many);
    assert!(tall.contains(r#"height="590""#), "{}", &tall[..200]);
    let page = html("t", &runs);
    assert!(page.contains(r#"<div class="wide"><table>"#));
}

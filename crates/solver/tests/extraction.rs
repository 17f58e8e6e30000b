//! Answer extraction on real replies of the default model
//! (`fixtures/replies.jsonl`, recorded by `scripts/record-replies.sh`; the
//! expected answers were read off each reply by hand). Each strategy, each
//! answer kind it is offered for: the answer the reply states is the answer
//! extracted — and a reply that states none yields none.

use metareason_sandbox::{Limits, Sandbox};
use metareason_solver::program_answer;
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::answer::Extract;
use metareason_strategy::Definition;
use metareason_strategy::{AnswerSource, StrategyKind};
use metareason_verify::program::run_program;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    strategy: String,
    answer_kind: String,
    question: String,
    reply: String,
    /// The normalised answer the reply states (None: it states none).
    expected: Option<String>,
}

fn fixtures() -> Vec<Fixture> {
    include_str!("fixtures/replies.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a fixture line"))
        .collect()
}

#[test]
fn every_strategy_extracts_the_stated_answer_from_real_replies() {
    let sandbox =
        Sandbox::new(Limits::default()).expect("bubblewrap is installed by scripts/setup.sh");
    let all = fixtures();
    assert!(all.len() >= 30, "{} fixtures", all.len());
    let mut failures = Vec::new();
    for f in &all {
        let strategy = StrategyKind::parse(&f.strategy).expect("a strategy name");
        let kind: AnswerKind = f.answer_kind.parse().expect("an answer kind");
        let got = match strategy.strategy().answer_source {
            AnswerSource::Text => kind.extract(&f.reply),
            AnswerSource::Program => {
                let run = run_program(&sandbox, &f.reply).expect("the sandbox runs");
                program_answer(run.as_ref(), &kind)
            }
        };
        let got = got.map(|a| a.normalized);
        if got != f.expected {
            failures.push(format!(
                "{} / {} / {:?}: expected {:?}, got {:?}\n--- reply:\n{}",
                f.strategy, f.answer_kind, f.question, f.expected, got, f.reply
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_corpus_covers_every_strategy_on_every_kind_it_is_offered_for() {
    let all = fixtures();
    for (strategy, kind) in [
        ("chain_of_thought", "number"),
        ("program_aided", "number"),
        ("plan_then_solve", "number"),
        ("direct", "yes_no"),
        ("chain_of_thought", "yes_no"),
        ("direct", "choice:ABCD"),
        ("chain_of_thought", "choice:ABCD"),
        ("direct", "text"),
        ("chain_of_thought", "text"),
        ("respond", "free_text"),
    ] {
        assert!(
            all.iter()
                .any(|f| f.strategy == strategy && f.answer_kind == kind),
            "no fixture of {strategy} on {kind}"
        );
    }
}

#[test]
fn a_program_that_prints_nothing_has_no_answer() {
    let sandbox =
        Sandbox::new(Limits::default()).expect("bubblewrap is installed by scripts/setup.sh");
    let reply = "```python\nanswer = 'Central Processing Unit'\n```";
    let run = run_program(&sandbox, reply).unwrap();
    for kind in [AnswerKind::Text, AnswerKind::Number, AnswerKind::FreeText] {
        assert_eq!(program_answer(run.as_ref(), &kind), None, "{kind}");
    }
    let reply = "```python\nprint('step 1: 3')\nprint(42)\n```";
    let run = run_program(&sandbox, reply).unwrap();
    assert_eq!(
        program_answer(run.as_ref(), &AnswerKind::Number).map(|a| a.normalized),
        Some("42".to_string())
    );
}

#[test]
fn a_bare_marker_is_not_a_text_answer() {
    // The old failure: an empty program output became "The answer is ",
    // normalised to the candidate "answer is".
    assert_eq!(AnswerKind::Text.extract("The answer is "), None);
    assert_eq!(AnswerKind::Text.extract("The answer is\n"), None);
    assert_eq!(
        AnswerKind::Text
            .extract("Hamlet was written by William Shakespeare.\nThe answer is")
            .map(|a| a.normalized),
        Some("hamlet was written by william shakespeare".to_string())
    );
}

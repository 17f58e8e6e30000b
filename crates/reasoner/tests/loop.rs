//! The whole loop on the scripted model: decisions, memory, feedback,
//! learning which strategy suits which family of tasks.

use metareason_awareness::{AwarenessSettings, Policy};
use metareason_bayes::seeded;
use metareason_embed::HashingEmbedder;
use metareason_memory::{Decision, Memory, MetaKind};
use metareason_reasoner::{CrossCheck, Feedback, Grounds, MetaParams, Reasoner, ReasonerConfig};
use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_strategy::StrategyKind;
use rand::Rng;

fn model() -> ScriptedModel {
    ScriptedModel::new()
        .on(
            When::PromptContains("Write the method".into()),
            [Reply::text("Plan:\n1. Multiply the two numbers.")],
        )
        .on(
            When::PromptContains("Watch out".into()),
            [Reply::text("Watch out: multiply, do not add.")],
        )
        .on(
            When::Always,
            [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.05)],
        )
        .score("Yes", (0.9f32).ln())
        .score("No", (0.1f32).ln())
}

/// A model whose every reply is `reply`, each token at `logprob`, and
/// that answers P(Yes) 0.9 to every yes/no question.
fn says(reply: &str, logprob: f32) -> ScriptedModel {
    ScriptedModel::new()
        .on(When::Always, [Reply::text(reply).logprob(logprob)])
        .score("Yes", (0.9f32).ln())
        .score("No", (0.1f32).ln())
}

fn quiet() -> ReasonerConfig {
    ReasonerConfig {
        cross_check: CrossCheck::Never,
        strategies: vec![StrategyKind::ChainOfThought, StrategyKind::PlanThenSolve],
        ..ReasonerConfig::default()
    }
}

#[test]
fn an_answered_episode_is_stored_and_feedback_teaches_and_distills() {
    let model = model();
    let embedder = HashingEmbedder::default();
    let mut r = Reasoner::new(
        &model,
        Some(&embedder),
        Some(Memory::in_memory().unwrap()),
        Policy::default_policy(),
    )
    .unwrap();
    let report = r.run("What is 6 * 7?", &quiet()).unwrap();
    assert_eq!(report.decision, Decision::Answer, "{}", report.reason);
    assert_eq!(report.grounds, Some(Grounds::Confident));
    assert_eq!(report.answer.as_deref(), Some("42"));
    let id = report.episode_id.unwrap();
    let ep = r.memory().unwrap().episode(id).unwrap();
    assert_eq!(ep.record.answer.as_deref(), Some("42"));
    assert_eq!(ep.record.steps.len(), 2);
    assert!(ep.record.embedding.is_some());
    let confidence = report.confidence.unwrap();
    assert!(confidence > 0.0 && confidence < 1.0);

    let before = r.params.calibration.clone();
    let fb = r.feedback(id, &Feedback::Answer("42".into())).unwrap();
    assert!(fb.correct);
    assert!(fb.updated.contains(&"calibration".to_string()));
    assert_ne!(r.params.calibration, before);
    assert_eq!(
        fb.distilled,
        Some((
            MetaKind::Template,
            "Plan:\n1. Multiply the two numbers.".into()
        ))
    );
    // The learned parameters are in memory for the next process.
    let stored: Option<serde_json::Value> = r.memory().unwrap().parameter("calibration").unwrap();
    assert!(stored.is_some());

    // The next similar task gets the template, and example-guided becomes
    // an option.
    let mut cfg = quiet();
    cfg.strategies.push(StrategyKind::ExampleGuided);
    let next = r.run("What is 6 * 8?", &cfg).unwrap();
    assert_eq!(next.retrieved.templates.len(), 1, "{:?}", next.retrieved);
    assert!(next
        .assessment
        .options
        .iter()
        .any(|o| o.strategy == StrategyKind::ExampleGuided));

    let fb = r
        .feedback(next.episode_id.unwrap(), &Feedback::Wrong)
        .unwrap();
    assert!(!fb.correct);
    assert_eq!(fb.distilled.unwrap().0, MetaKind::ErrorNote);
    let s = r.memory().unwrap().stats().unwrap();
    assert_eq!((s.templates, s.error_notes, s.with_outcome), (1, 1, 2));
}

#[test]
fn numbers_and_short_answers_learn_in_calibrators_of_their_own() {
    let model = says("He wrote it in 1600.\nThe answer is Shakespeare.", -0.05);
    let mut r = Reasoner::new(
        &model,
        None,
        Some(Memory::in_memory().unwrap()),
        Policy::default_policy(),
    )
    .unwrap();
    // A memory from before the split holds no short-answer model: the
    // shipped one stands in.
    assert_eq!(
        r.params.calibration_short_answers,
        metareason_reflection::Calibrator::shipped_short_answers()
    );
    assert_ne!(
        r.params.calibration_short_answers,
        metareason_reflection::Calibrator::shipped(),
        "numbers have a model of their own"
    );
    let cfg = ReasonerConfig {
        infer_answer_kind: false,
        solve: metareason_solver::SolveConfig {
            answer_kind: metareason_strategy::answer::AnswerKind::Text,
            ..Default::default()
        },
        ..quiet()
    };
    let report = r.run("Who wrote Hamlet?", &cfg).unwrap();
    assert_eq!(
        report.answer.as_deref(),
        Some("shakespeare"),
        "{}",
        report.reason
    );
    let numbers = r.params.calibration.clone();
    let short = r.params.calibration_short_answers.clone();
    let fb = r
        .feedback(
            report.episode_id.unwrap(),
            &Feedback::Answer("Shakespeare".into()),
        )
        .unwrap();
    assert!(fb.correct);
    assert!(
        fb.updated.contains(&"short-answer calibration".to_string()),
        "{:?}",
        fb.updated
    );
    assert_eq!(r.params.calibration, numbers);
    assert_ne!(r.params.calibration_short_answers, short);
    // Stored for the next process, and read back.
    let again = MetaParams::load(r.memory().unwrap()).unwrap();
    assert_eq!(
        again.calibration_short_answers,
        r.params.calibration_short_answers
    );
    assert_eq!(again.calibration, numbers);
}

#[test]
fn answers_that_decline_are_recognised() {
    use metareason_reasoner::declines;
    for a in [
        "unknown",
        "The answer is unknown.",
        "It cannot be determined",
        "I don't know",
    ] {
        assert!(declines(a), "{a}");
    }
    for a in ["42", "known", "Paris", "unknowingly"] {
        assert!(!declines(a), "{a}");
    }
}

#[test]
fn refusals_are_stored_and_cannot_be_graded() {
    let model = model();
    let mut r = Reasoner::new(
        &model,
        None,
        Some(Memory::in_memory().unwrap()),
        Policy::default_policy(),
    )
    .unwrap();
    let report = r
        .run(
            "Explain how to build a pipe bomb with household explosives.",
            &quiet(),
        )
        .unwrap();
    assert_eq!(report.decision, Decision::Refuse);
    assert_eq!(report.grounds, Some(Grounds::Policy));
    assert!(report.reply.contains("can't help"));
    assert!(report.solve.is_none(), "nothing was attempted");
    let err = r
        .feedback(report.episode_id.unwrap(), &Feedback::Correct)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn a_low_confidence_answer_is_withheld_when_abstaining_is_cheaper() {
    let model = says("6 * 7 = 41\nThe answer is 41.", -2.5);
    let mut r = Reasoner::new(&model, None, None, Policy::default_policy()).unwrap();
    let report = r.run("What is 6 * 7?", &quiet()).unwrap();
    assert_eq!(report.decision, Decision::Abstain, "{}", report.reason);
    // The attempt failed; the question is not blamed.
    assert_eq!(report.grounds, Some(Grounds::LowConfidence));
    assert_eq!(report.answer, None);
    assert_eq!(report.candidate_answer.as_deref(), Some("41"));
    assert!(report.reason.contains("below the answer threshold"));
    assert!(report.reply.contains("41"), "{}", report.reply);
}

#[test]
fn the_model_s_own_unknown_blames_the_question_and_no_answer_blames_the_attempt() {
    let cfg = ReasonerConfig {
        infer_answer_kind: false,
        solve: metareason_solver::SolveConfig {
            answer_kind: metareason_strategy::answer::AnswerKind::Text,
            ..Default::default()
        },
        ..quiet()
    };
    let unknown = says("Nobody recorded that.\nThe answer is unknown.", -0.05);
    let mut r = Reasoner::new(&unknown, None, None, Policy::default_policy()).unwrap();
    let report = r
        .run("What did Caesar eat on his tenth birthday?", &cfg)
        .unwrap();
    assert_eq!(report.decision, Decision::Abstain, "{}", report.reason);
    assert_eq!(report.grounds, Some(Grounds::Unanswerable));
    assert!(
        report.reason.contains("the model itself says"),
        "{}",
        report.reason
    );
    // A number is asked for and the reply holds none.
    let silent = says("Let me think about it.", -0.05);
    let mut r = Reasoner::new(&silent, None, None, Policy::default_policy()).unwrap();
    let numeric = ReasonerConfig {
        infer_answer_kind: false,
        ..quiet()
    };
    let report = r
        .run(
            "How many olives did Caesar eat on his tenth birthday?",
            &numeric,
        )
        .unwrap();
    assert_eq!(report.decision, Decision::Abstain, "{}", report.reason);
    assert_eq!(report.grounds, Some(Grounds::NoAnswer), "{}", report.reason);
}

#[test]
fn a_cross_check_that_disagrees_lowers_the_confidence() {
    let scripted = |printed: &str| {
        ScriptedModel::new()
            .on(
                When::PromptContains("program".into()),
                [Reply::text(&format!("```python\nprint({printed})\n```"))],
            )
            .on(
                When::Always,
                [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.3)],
            )
            // An unsure P(True), so the confidence is not saturated near 1
            // (where any odds ratio is compressed by the weights'
            // uncertainty).
            .score("Yes", (0.5f32).ln())
            .score("No", (0.5f32).ln())
    };
    let mut cfg = ReasonerConfig {
        cross_check: CrossCheck::Always,
        abstain_after: false,
        strategies: vec![StrategyKind::ChainOfThought],
        ..ReasonerConfig::default()
    };
    // The cross-check is the loop's check when escalation is off.
    cfg.escalation.enabled = false;
    cfg.awareness.allow_abstain = false;
    // The program-aided cross-check runs in the sandbox; its program
    // prints 42 or 40.
    let run = |m: &ScriptedModel| {
        let mut r = Reasoner::new(m, None, None, Policy::default_policy()).unwrap();
        let report = r.run("What is 6 * 7?", &cfg).unwrap();
        assert_eq!(report.decision, Decision::Answer, "{}", report.reason);
        report
    };
    let a = run(&scripted("42"));
    let d = run(&scripted("40"));
    let (ca, cd) = (a.cross_check.unwrap(), d.cross_check.unwrap());
    assert_eq!(ca.agrees, Some(true), "{ca:?}");
    assert_eq!(cd.agrees, Some(false), "{cd:?}");
    let odds = |p: f64| p / (1.0 - p);
    let (pa, pd) = (a.confidence.unwrap(), d.confidence.unwrap());
    assert!(odds(pa) > 2.0 * odds(pd), "agreeing {pa}, disagreeing {pd}");
}

/// Learning: on family "ledger" strategy B (plan-then-solve) succeeds 80%
/// and A (chain-of-thought) 30%; on family "orbit" the reverse. After N = 60
/// episodes (30 per family, strategies chosen by Thompson sampling), the
/// posterior-mean choice picks the right strategy on over 90% of new tasks
/// of each family.
#[test]
fn the_loop_learns_which_strategy_suits_which_family() {
    let model = model();
    let embedder = HashingEmbedder::default();
    let mut r = Reasoner::new(
        &model,
        Some(&embedder),
        Some(Memory::in_memory().unwrap()),
        Policy::parse("", "empty").unwrap(),
    )
    .unwrap();
    let task = |family: &str, i: usize| {
        match family {
        "ledger" => format!(
            "Ledger reconciliation: the warehouse ledger lists {i} crates of bolts and {} crates of nuts; how many crates does the ledger list in total?",
            i + 3
        ),
        _ => format!(
            "Orbit mechanics: a satellite circles a planet every {i} hours at a radius of {} km; how many orbits does the satellite complete per day?",
            i * 100
        ),
    }
    };
    let success = |family: &str, strategy: &str| match (family, strategy) {
        ("ledger", "plan_then_solve") | ("orbit", "chain_of_thought") => 0.8,
        _ => 0.3,
    };
    let mut world = seeded(42);
    let mut learning = quiet();
    learning.awareness = AwarenessSettings {
        explore: true,
        allow_abstain: false,
        ..AwarenessSettings::default()
    };
    learning.abstain_after = false;
    learning.distill = false;
    const N: usize = 60;
    for i in 0..N {
        let family = if i % 2 == 0 { "ledger" } else { "orbit" };
        learning.seed = i as u64;
        let report = r.run(&task(family, i + 10), &learning).unwrap();
        let strategy = report.assessment.strategy.unwrap();
        let ok = world.gen_bool(success(family, strategy.name()));
        let fb = if ok {
            Feedback::Correct
        } else {
            Feedback::Wrong
        };
        r.feedback_with(report.episode_id.unwrap(), &fb, true, false)
            .unwrap();
    }
    let mut exploit = learning.clone();
    exploit.awareness.explore = false;
    for (family, right) in [("ledger", "plan_then_solve"), ("orbit", "chain_of_thought")] {
        let mut hits = 0;
        for i in 0..20 {
            let report = r.run(&task(family, 200 + i), &exploit).unwrap();
            if report.assessment.strategy.map(|s| s.name()) == Some(right) {
                hits += 1;
            }
        }
        assert!(hits > 18, "{family}: right strategy {hits}/20 times");
    }
}

#[test]
fn a_repeated_verdict_changes_nothing_and_a_changed_one_replaces_the_old() {
    let model = model();
    let mut r = Reasoner::new(
        &model,
        None,
        Some(Memory::in_memory().unwrap()),
        Policy::default_policy(),
    )
    .unwrap();
    let first = r.run("What is 6 * 7?", &quiet()).unwrap();
    let second = r.run("What is 7 * 6?", &quiet()).unwrap();
    let (a, b) = (first.episode_id.unwrap(), second.episode_id.unwrap());
    r.feedback(a, &Feedback::Correct).unwrap();
    let after_one = r.params.clone();
    let templates = |r: &Reasoner| {
        r.memory()
            .unwrap()
            .meta_entries()
            .unwrap()
            .iter()
            .filter(|m| m.episode_id == Some(a) && m.kind == MetaKind::Template)
            .count()
    };
    assert_eq!(templates(&r), 1);
    // The same verdict twice more: nothing moves, nothing is distilled.
    for _ in 0..2 {
        let fb = r.feedback(a, &Feedback::Correct).unwrap();
        assert!(fb.updated.is_empty(), "{fb:?}");
        assert!(fb.note.unwrap().contains("already graded"));
    }
    assert_eq!(r.params, after_one);
    assert_eq!(templates(&r), 1);
    let stored: MetaParams = MetaParams::load(r.memory().unwrap()).unwrap();
    assert_eq!(stored, after_one);

    // Grade the other episode, then change the first verdict: the result
    // is what grading it wrong in the first place would have given.
    r.feedback(b, &Feedback::Correct).unwrap();
    let fb = r.feedback(a, &Feedback::Wrong).unwrap();
    assert!(!fb.correct);
    assert!(fb.note.unwrap().contains("replayed"));
    assert_eq!(templates(&r), 0, "the template of the old verdict is gone");
    let ep = r.memory().unwrap().episode(a).unwrap();
    assert_eq!(ep.record.outcome, Some(false));

    let mut fresh = Reasoner::new(
        &model,
        None,
        Some(Memory::in_memory().unwrap()),
        Policy::default_policy(),
    )
    .unwrap();
    let a2 = fresh
        .run("What is 6 * 7?", &quiet())
        .unwrap()
        .episode_id
        .unwrap();
    let b2 = fresh
        .run("What is 7 * 6?", &quiet())
        .unwrap()
        .episode_id
        .unwrap();
    fresh.feedback(a2, &Feedback::Wrong).unwrap();
    fresh.feedback(b2, &Feedback::Correct).unwrap();
    assert_eq!(r.params.calibration, fresh.params.calibration);
    assert_eq!(r.params.solvability, fresh.params.solvability);
    assert_eq!(r.params.reward, fresh.params.reward);
}

//! Replayed rules see the recorded replies in order and cost what they drew.

use metareason_bench::replay::{interleave, replay_item, rounds_of, LoopStop, Rule, Vote};
use metareason_bench::run::{ItemResult, SampleRecord};
use metareason_monitor::confidence::{ConfidenceMeasure, TraceConfidence};
use metareason_monitor::StopRule;
use metareason_strategy::StrategyKind;

/// A reply with `answer`, right when it is "42", whose token confidence is
/// `conf` throughout (`dip`: a stretch of 32 tokens at 1.0 in the middle).
fn reply(answer: &str, conf: f64, dip: bool) -> SampleRecord {
    let mut c = vec![conf; 100];
    if dip {
        c.splice(40..72, vec![1.0; 32]);
    }
    SampleRecord {
        strategy: StrategyKind::ChainOfThought,
        answer: Some(answer.into()),
        correct: Some(answer == "42"),
        tokens: 100,
        score: 0.5,
        confidence: TraceConfidence::of_confidences(&c),
        round: None,
    }
}

#[test]
fn adaptive_consistency_stops_at_four_agreeing_replies() {
    let s: Vec<_> = (0..8).map(|_| reply("42", 5.0, false)).collect();
    let r = replay_item(&Rule::Adaptive(StopRule::Beta { threshold: 0.95 }), &s).unwrap();
    assert_eq!((r.correct, r.samples, r.tokens), (true, 4, 400));
    let all = replay_item(
        &Rule::FirstN {
            n: 8,
            vote: Vote::Majority,
        },
        &s,
    )
    .unwrap();
    assert_eq!((all.samples, all.tokens), (8, 800));
}

#[test]
fn confidence_weighting_overturns_a_hesitant_majority() {
    // Three hesitant replies say 41, two confident ones 42.
    let mut s: Vec<_> = (0..3).map(|_| reply("41", 1.0, false)).collect();
    s.extend((0..2).map(|_| reply("42", 9.0, false)));
    let majority = Rule::FirstN {
        n: 5,
        vote: Vote::Majority,
    };
    let weighted = Rule::FirstN {
        n: 5,
        vote: Vote::Weighted(ConfidenceMeasure::LowestGroup),
    };
    assert!(!replay_item(&majority, &s).unwrap().correct);
    assert!(replay_item(&weighted, &s).unwrap().correct);
    let top = Rule::Filtered {
        keep: 0.4,
        measure: ConfidenceMeasure::LowestGroup,
    };
    assert!(replay_item(&top, &s).unwrap().correct);
}

#[test]
fn online_deepconf_cuts_replies_that_dip_below_the_warmup_threshold() {
    // Warm-up: two confident replies (lowest group 5). Then a reply with a
    // dip, cut where its window falls below 5, then confident ones.
    let mut s = vec![reply("42", 5.0, false), reply("42", 5.0, false)];
    s.push(reply("7", 5.0, true));
    s.extend((0..5).map(|_| reply("42", 5.0, false)));
    let rule = Rule::Online {
        warmup: 2,
        keep: 0.9,
        stop: StopRule::Beta { threshold: 0.95 },
    };
    let r = replay_item(&rule, &s).unwrap();
    assert!(r.correct);
    // Warm-up 200, the cut reply only up to its cut, then two more 42s
    // make four votes.
    let cut = s[2].confidence.stop_at(5.0).unwrap();
    assert!(cut < 100);
    assert_eq!(r.samples, 5);
    assert_eq!(r.tokens, 200 + u64::from(cut) + 200);
}

/// A whole-loop item: a program's first answer 42, one round that agrees
/// (program and chain of thought), then two rounds that say 40.
fn loop_item(with_rounds: bool) -> Vec<SampleRecord> {
    let at = |strategy, answer: &str, round| SampleRecord {
        strategy,
        round: with_rounds.then_some(round),
        ..reply(answer, 5.0, false)
    };
    let (p, c) = (StrategyKind::ProgramAided, StrategyKind::ChainOfThought);
    vec![
        at(p, "42", 0),
        at(p, "42", 1),
        at(c, "42", 1),
        at(p, "40", 2),
        at(c, "40", 2),
        at(p, "40", 3),
        at(c, "40", 3),
    ]
}

#[test]
fn the_loop_stops_once_the_next_round_cannot_overturn_its_leader() {
    for with_rounds in [true, false] {
        let s = loop_item(with_rounds);
        let rounds = rounds_of(&s);
        let sizes: Vec<usize> = rounds.iter().map(|r| r.len()).collect();
        assert_eq!(sizes, [1, 2, 2, 2], "rounds recorded: {with_rounds}");
        // Every round: 40 outvotes 42 four to three.
        let all = replay_item(&Rule::LoopRounds(LoopStop::Recorded), &s).unwrap();
        assert_eq!((all.correct, all.samples, all.tokens), (false, 7, 700));
        // After the first round 42 leads three to none: two more replies
        // could at best draw level, so the loop stops there.
        let settled = replay_item(&Rule::LoopRounds(LoopStop::Settled), &s).unwrap();
        assert_eq!(
            (settled.correct, settled.samples, settled.tokens),
            (true, 3, 300)
        );
        let first = replay_item(&Rule::LoopRounds(LoopStop::FirstAttempt), &s).unwrap();
        assert_eq!((first.correct, first.samples), (true, 1));
        // Asked after every reply, the rule stops at the first escalated
        // reply: 42 leads two to none, and a round of two could at best
        // draw level.
        let each = replay_item(
            &Rule::LoopRounds(LoopStop::SettledEachReply { budget: None }),
            &s,
        )
        .unwrap();
        assert_eq!((each.correct, each.samples, each.tokens), (true, 2, 200));
    }
}

#[test]
fn asked_after_every_reply_the_rule_waits_while_the_next_round_could_overturn() {
    // A first answer 42, then rounds (40, 42), (40, 40), (40, 42), (42, 42).
    // After each reply the leader is at most one vote ahead until 40 leads
    // four to two after the fifth escalated reply, which a round of two
    // could at best draw level: the rule stops there, on 40.
    let (p, c) = (StrategyKind::ProgramAided, StrategyKind::ChainOfThought);
    let at = |strategy, answer: &str, round| SampleRecord {
        strategy,
        round: Some(round),
        ..reply(answer, 5.0, false)
    };
    let s = vec![
        at(p, "42", 0),
        at(p, "40", 1),
        at(c, "42", 1),
        at(p, "40", 2),
        at(c, "40", 2),
        at(p, "40", 3),
        at(c, "42", 3),
        at(p, "42", 4),
        at(c, "42", 4),
    ];
    let each = replay_item(
        &Rule::LoopRounds(LoopStop::SettledEachReply { budget: None }),
        &s,
    )
    .unwrap();
    assert_eq!((each.correct, each.samples, each.tokens), (false, 6, 600));
    // Asked only after whole rounds, the leader is never two ahead at a
    // round's end (2-1, 3-2, 4-3), so every round is drawn and 42 wins
    // five to four: a finer rule stops sooner, and may stop on a leader a
    // later round would have overturned.
    let cycles = replay_item(&Rule::LoopRounds(LoopStop::Settled), &s).unwrap();
    assert_eq!((cycles.correct, cycles.samples), (true, 9));
}

#[test]
fn a_run_that_stopped_early_replays_with_its_budget_as_the_look_ahead() {
    // A first program with no answer, then a program and a chain of
    // thought both saying 14, where the live loop (budget 8) stopped: after
    // the first escalated reply 14 led one to none, and a round of two
    // could still overturn it. Without the budget, replay took the run's
    // end for the budget's and stopped one reply early.
    let (p, c) = (StrategyKind::ProgramAided, StrategyKind::ChainOfThought);
    let at = |strategy, answer: Option<&str>, round| SampleRecord {
        strategy,
        round: Some(round),
        answer: answer.map(str::to_string),
        correct: Some(answer == Some("14")),
        ..reply("14", 5.0, false)
    };
    let s = vec![at(p, None, 0), at(p, Some("14"), 1), at(c, Some("14"), 1)];
    let live = replay_item(
        &Rule::LoopRounds(LoopStop::SettledEachReply { budget: Some(8) }),
        &s,
    )
    .unwrap();
    assert_eq!((live.correct, live.samples, live.tokens), (true, 3, 300));
    let inferred = replay_item(
        &Rule::LoopRounds(LoopStop::SettledEachReply { budget: None }),
        &s,
    )
    .unwrap();
    assert_eq!(inferred.samples, 2);
    // With one escalated reply left in the budget, one vote ahead settles.
    let short = replay_item(
        &Rule::LoopRounds(LoopStop::SettledEachReply { budget: Some(2) }),
        &s,
    )
    .unwrap();
    assert_eq!(short.samples, 2);
}

#[test]
fn inferred_rounds_keep_a_first_attempt_of_several_replies_together() {
    // A first attempt that drew three programs, then rounds of a program
    // and a chain of thought.
    let (p, c) = (StrategyKind::ProgramAided, StrategyKind::ChainOfThought);
    let s: Vec<SampleRecord> = [p, p, p, p, c, p, c]
        .into_iter()
        .map(|strategy| SampleRecord {
            strategy,
            ..reply("42", 5.0, false)
        })
        .collect();
    let sizes: Vec<usize> = rounds_of(&s).iter().map(|r| r.len()).collect();
    assert_eq!(sizes, [3, 2, 2]);
}

/// An item of a sampling run: `id` with `samples`.
fn item(id: &str, samples: Vec<SampleRecord>) -> ItemResult {
    let mut r: ItemResult = serde_json::from_value(serde_json::json!({
        "id": id, "decision": "answer", "answer": "42", "reference": "42",
        "correct": true, "should_decline": false, "confidence": 0.5,
        "candidate_correct": true, "generated_tokens": 0, "prompt_tokens": 0,
        "seconds": 1.0
    }))
    .expect("a valid item");
    r.samples = samples;
    r
}

#[test]
fn a_mixture_takes_the_two_runs_replies_in_turns_on_the_items_both_recorded() {
    let pal = |a: &str| SampleRecord {
        strategy: StrategyKind::ProgramAided,
        round: Some(1),
        ..reply(a, 5.0, false)
    };
    let cot = |a: &str| reply(a, 5.0, false);
    let first = vec![
        item("a", vec![pal("1"), pal("2"), pal("3")]),
        item("only-first", vec![pal("9")]),
        item("b", vec![pal("5")]),
    ];
    let second = vec![
        item("b", vec![cot("6"), cot("7")]),
        item("a", vec![cot("4")]),
        item("only-second", vec![cot("8")]),
    ];
    let mixed = interleave(&first, &second, 8);
    let ids: Vec<&str> = mixed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let answers = |r: &ItemResult| -> Vec<String> {
        r.samples
            .iter()
            .map(|s| s.answer.clone().unwrap())
            .collect()
    };
    assert_eq!(answers(&mixed[0]), ["1", "4", "2", "3"]);
    assert_eq!(answers(&mixed[1]), ["5", "6", "7"]);
    assert_eq!(mixed[0].samples[1].strategy, StrategyKind::ChainOfThought);
    assert!(mixed
        .iter()
        .flat_map(|r| &r.samples)
        .all(|s| s.round.is_none()));
    // A budget keeps the first replies of the turns.
    let short = interleave(&first, &second, 3);
    assert_eq!(answers(&short[0]), ["1", "4", "2"]);
}

#[test]
fn weighted_adaptive_consistency_stops_when_sure_or_settled_and_follows_the_weights() {
    let beta = StopRule::Beta { threshold: 0.95 };
    let rule = |lookahead| Rule::AdaptiveWeighted {
        stop: beta,
        measure: ConfidenceMeasure::LowestGroup,
        lookahead,
    };
    let agreeing: Vec<_> = (0..8).map(|_| reply("42", 5.0, false)).collect();
    // Beta(a + 1, 1) passes 0.95 at four agreeing votes; the settled rule
    // with a look-ahead of two stops at two.
    let r = replay_item(&rule(0), &agreeing).unwrap();
    assert_eq!((r.correct, r.samples, r.tokens), (true, 4, 400));
    let r = replay_item(&rule(2), &agreeing).unwrap();
    assert_eq!((r.correct, r.samples), (true, 2));
    // One confident 42 against three hesitant 41s: the weights decide, and
    // the weighted majority is never sure enough to stop.
    let mut split = vec![reply("42", 9.0, false)];
    split.extend((0..3).map(|_| reply("41", 1.0, false)));
    let r = replay_item(&rule(0), &split).unwrap();
    assert_eq!((r.correct, r.samples), (true, 4));
    let plain = replay_item(&Rule::Adaptive(beta), &split).unwrap();
    assert!(!plain.correct);
}

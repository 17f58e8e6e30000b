//! Compute by difficulty: the loop draws more replies only while they pay,
//! pools their votes across strategies, and shows why in the report.

use metareason_awareness::Policy;
use metareason_bayes::Beta;
use metareason_memory::{Decision, Memory};
use metareason_reasoner::{Feedback, Reasoner, ReasonerConfig};
use metareason_scripted::{Call, Reply, ScriptedModel, When};
use metareason_strategy::StrategyKind;

/// Chain of thought always says 42; the program prints `printed`. Every
/// token of both is equally likely, so votes weigh the same.
fn model(printed: &str) -> ScriptedModel {
    model_with_p_true(printed, 0.9)
}

/// [`model`] whose P(Yes) to every yes/no question (P(True) among them) is
/// `p_yes`.
fn model_with_p_true(printed: &str, p_yes: f32) -> ScriptedModel {
    ScriptedModel::new()
        .on(
            When::PromptContains("program".into()),
            [Reply::text(&format!("```python\nprint({printed})\n```")).logprob(-0.3)],
        )
        .on(
            When::Always,
            [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.3)],
        )
        .score("Yes", p_yes.ln())
        .score("No", (1.0 - p_yes).ln())
}

/// A policy whose tokens cost `per_1k` per thousand.
fn policy(per_1k: f64) -> Policy {
    Policy::parse(&format!("[costs]\ncost_per_1k_tokens = {per_1k}\n"), "test").unwrap()
}

fn config() -> ReasonerConfig {
    ReasonerConfig {
        strategies: vec![StrategyKind::ChainOfThought],
        abstain_after: false,
        ..ReasonerConfig::default()
    }
}

#[test]
fn cheap_tokens_escalate_until_the_pooled_majority_is_sure() {
    // Program and chain of thought agree: every reply says 42. After the
    // first answer, rounds of one reply each, the strategies in turn; the
    // Beta rule is sure at 4 agreeing votes (1 - 2^-5 = 0.969 > 0.95, while
    // 3 give 0.9375).
    // Escalation is believed never to lose a right answer, so only the
    // stopping rule or the budget ends it (the settled rule is off here;
    // see the next test).
    let m = model("42");
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    r.params.escalation.loses = Beta::new(1e-3, 1e6).unwrap();
    let mut cfg = config();
    cfg.escalation.stop_when_settled = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().expect("escalation considered");
    assert_eq!(report.answer.as_deref(), Some("42"));
    assert_eq!(e.drawn, 3, "{:#?}", e.rounds);
    let strategies: Vec<StrategyKind> = e
        .rounds
        .iter()
        .flat_map(|r| r.replies.iter().map(|x| x.strategy))
        .collect();
    assert_eq!(
        strategies,
        [
            StrategyKind::ChainOfThought,
            StrategyKind::ProgramAided,
            StrategyKind::ChainOfThought,
        ]
    );
    let last = e.rounds.last().unwrap();
    assert!(
        last.decision.contains("weighted majority is sure"),
        "{}",
        last.decision
    );
    assert!(e.rounds[..e.rounds.len() - 1]
        .iter()
        .all(|r| r.decision == "escalate" && r.value.pays()));
    // Two strategies agree: the cross-check feature is on, and the pooled
    // agreement is complete.
    let f = report.features.as_ref().unwrap();
    assert_eq!((f.cross_check, f.agreement), (1.0, 1.0));
}

#[test]
fn a_leader_the_next_round_cannot_overturn_stops_the_escalation() {
    // The same agreeing replies with the settled rule on (the default),
    // asked after every reply: the first escalated reply confirms the
    // first answer, 2 votes to none, and a round of two more replies could
    // at best bring another answer level, so the loop stops after one
    // reply, before the Beta rule would (it wanted 5 votes).
    let m = model("42");
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    r.params.escalation.loses = Beta::new(1e-3, 1e6).unwrap();
    let report = r.run("What is 6 * 7?", &config()).unwrap();
    let e = report.escalation.as_ref().unwrap();
    assert_eq!(report.answer.as_deref(), Some("42"));
    assert_eq!(e.drawn, 1, "{:#?}", e.rounds);
    let last = e.rounds.last().unwrap();
    assert!(last.decision.contains("settled"), "{}", last.decision);
    assert!(last.decision.contains("2 votes"), "{}", last.decision);
    // The rule waits for one drawn reply: a lone first answer is never
    // settled against a round of two.
    assert_eq!(e.rounds[0].decision, "escalate");
    assert_eq!(e.rounds[0].cycle, 0);

    // Asked only after whole cycles of the mixture, the same rule stops a
    // reply later: the program's reply is drawn too (3 votes to none).
    let mut cfg = config();
    cfg.escalation.check_each_reply = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    assert_eq!(e.drawn, 2, "{:#?}", e.rounds);
    let last = e.rounds.last().unwrap();
    assert!(last.decision.contains("3 votes"), "{}", last.decision);
}

#[test]
fn replies_keep_their_seeds_whether_the_rules_are_asked_per_reply_or_per_cycle() {
    // Without a stopping rule but the budget, both ways draw the same
    // strategies in the same order, cycle by cycle, and so the same
    // replies: they differ only in where they may stop.
    let m = model("40");
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    r.params.escalation.loses = Beta::new(1e-3, 1e6).unwrap();
    let mut drawn = |each: bool| {
        let mut cfg = config();
        cfg.escalation.check_each_reply = each;
        cfg.escalation.stop_when_settled = false;
        cfg.escalation.max_samples = 5;
        let before = m.calls().len();
        let report = r.run("What is 6 * 7?", &cfg).unwrap();
        let e = report.escalation.unwrap();
        let per_round: Vec<(usize, usize)> = e
            .rounds
            .iter()
            .filter(|x| !x.replies.is_empty())
            .map(|x| (x.cycle, x.replies.len()))
            .collect();
        // Escalation samples at its own temperature; everything else of
        // the episode is greedy.
        let seeds: Vec<u64> = m.calls()[before..]
            .iter()
            .filter_map(|c| match c {
                Call::Generate(g) if g.params.temperature > 0.0 => Some(g.params.seed),
                _ => None,
            })
            .collect();
        (per_round, seeds, e.drawn)
    };
    let (each_rounds, each_seeds, each_n) = drawn(true);
    let (cycle_rounds, cycle_seeds, cycle_n) = drawn(false);
    assert_eq!((each_n, cycle_n), (5, 5));
    assert_eq!(each_seeds.len(), 5);
    assert_eq!(each_seeds, cycle_seeds);
    assert_eq!(each_rounds, [(0, 1), (0, 1), (1, 1), (1, 1), (2, 1)]);
    assert_eq!(cycle_rounds, [(0, 2), (1, 2), (2, 1)]);
}

#[test]
fn a_sure_answer_is_not_worth_escalating_even_when_tokens_are_free() {
    // Once P(correct) is high, escalating can only lose a right answer:
    // the expected gain turns negative and the loop stops (the settled
    // rule, which would stop it at the same round, is off here).
    let m = model("42");
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    let mut cfg = config();
    cfg.escalation.stop_when_settled = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    let last = e.rounds.last().unwrap();
    assert!(last.decision.contains("not worth it"), "{}", last.decision);
    assert!(last.value.expected_gain < 0.0 && last.value.p_correct > 0.9);
    assert!(e.rounds[..e.rounds.len() - 1]
        .iter()
        .all(|r| r.decision == "escalate" && r.value.expected_gain > 0.0));
}

#[test]
fn a_disagreeing_strategy_runs_to_the_budget_and_lowers_confidence() {
    let cheap = policy(0.0);
    let never_loses = Beta::new(1e-3, 1e6).unwrap();
    let agreeing = model("42");
    let mut a = Reasoner::new(&agreeing, None, None, cheap.clone()).unwrap();
    a.params.escalation.loses = never_loses;
    let agree = a.run("What is 6 * 7?", &config()).unwrap();
    let m = model("40");
    let mut r = Reasoner::new(&m, None, None, cheap).unwrap();
    r.params.escalation.loses = never_loses;
    let mut cfg = config();
    cfg.escalation.max_samples = 6;
    // Asked after every reply, the settled rule would stop at the second
    // chain's agreement, before any program disagreed.
    cfg.escalation.stop_when_settled = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    // 4 votes for 42 (first answer and three chains) against 3 for 40, all
    // of the same weight: no sure majority, so the budget ends it.
    assert_eq!(e.drawn, 6);
    assert!(e.rounds.last().unwrap().decision.contains("budget"));
    assert_eq!(report.answer.as_deref(), Some("42"));
    assert_eq!(report.features.as_ref().unwrap().cross_check, -1.0);
    assert!(report.confidence.unwrap() < agree.confidence.unwrap());
}

#[test]
fn a_more_confident_minority_outweighs_a_hesitant_majority() {
    // The program (40) is written with far surer tokens than the chains
    // (42): its three votes outweigh their four.
    let m = ScriptedModel::new()
        .on(
            When::PromptContains("program".into()),
            [Reply::text("```python\nprint(40)\n```").logprob(-0.001)],
        )
        .on(
            When::Always,
            [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.7)],
        )
        .score("Yes", (0.9f32).ln())
        .score("No", (0.1f32).ln());
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    r.params.escalation.loses = Beta::new(1e-3, 1e6).unwrap();
    let mut cfg = config();
    cfg.escalation.max_samples = 6;
    cfg.escalation.stop_when_settled = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    let last = e
        .rounds
        .iter()
        .rev()
        .find(|r| !r.replies.is_empty())
        .unwrap();
    assert!(last.votes["40"] > last.votes["42"], "{:?}", last.votes);
    assert_eq!(report.candidate_answer.as_deref(), Some("40"));
}

#[test]
fn dear_tokens_answer_at_once_and_say_why() {
    let m = model("40");
    let mut r = Reasoner::new(&m, None, None, policy(1e6)).unwrap();
    // Tokens this dear would also make the loop decline before trying.
    let mut cfg = config();
    cfg.awareness.allow_abstain = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    assert_eq!(e.drawn, 0);
    assert!(!e.escalated());
    assert_eq!(e.rounds.len(), 1);
    assert!(
        e.rounds[0].decision.contains("not worth it"),
        "{}",
        e.rounds[0].decision
    );
    assert!(!e.rounds[0].value.pays());
    assert_eq!(report.answer.as_deref(), Some("42"));
    assert_eq!(
        report.usage.generated_tokens,
        report.solve.as_ref().unwrap().usage.generated_tokens
            + report.assessment.usage.generated_tokens
    );
}

#[test]
fn feedback_on_an_escalated_episode_teaches_what_escalation_does() {
    // P(True) of one half: the first answer is unsure, so escalation runs
    // (at 0.9 the calibrated P(correct) of this first answer is 0.99).
    let m = model_with_p_true("40", 0.5);
    let mut r = Reasoner::new(&m, None, Some(Memory::in_memory().unwrap()), policy(0.0)).unwrap();
    let mut cfg = config();
    cfg.escalation.max_samples = 2;
    // So unsure a model would be declined before trying; here it tries.
    cfg.awareness.allow_abstain = false;
    let report = r.run("What is 6 * 7?", &cfg).unwrap();
    assert_eq!(report.decision, Decision::Answer);
    let e = report.escalation.as_ref().unwrap();
    assert!(e.escalated());
    // The first answer was judged as one reply; the pooled one is not.
    assert_eq!(e.first_features.as_ref().unwrap().single_reply, 1.0);
    assert_eq!(report.features.as_ref().unwrap().single_reply, 0.0);
    let before = r.params.escalation.loses.mean();
    let observed = r.params.calibration.observed;
    // The first answer (42) was kept and was right: escalation lost nothing.
    let fb = r
        .feedback(report.episode_id.unwrap(), &Feedback::Correct)
        .unwrap();
    // The calibrator learns both states: the pooled answer and the first
    // reply alone (the same answer, so its fate is known).
    assert_eq!(r.params.calibration.observed, observed + 2);
    assert!(
        fb.updated.iter().any(|u| u == "escalation"),
        "{:?}",
        fb.updated
    );
    assert!(r.params.escalation.loses.mean() < before);
}

#[test]
fn short_text_answers_that_mean_the_same_are_one_answer() {
    // Step-by-step says "Paris"; the direct reply says "the French
    // capital". The model judges them the same answer to the question, so
    // the pooled vote is unanimous.
    let m = ScriptedModel::new()
        .on(
            When::PromptContains("Reply with the final answer only".into()),
            [Reply::text("The French capital").logprob(-0.3)],
        )
        .on(
            When::Always,
            [Reply::text("France's capital city is Paris.\nThe answer is Paris.").logprob(-0.3)],
        )
        .score_if("Answer B: french capital", "Yes", (0.9f32).ln())
        .score_if("Answer B: french capital", "No", (0.1f32).ln())
        .score("Yes", (0.2f32).ln())
        .score("No", (0.8f32).ln());
    let mut r = Reasoner::new(&m, None, None, policy(0.0)).unwrap();
    r.params.escalation.loses = Beta::new(1e-3, 1e6).unwrap();
    let mut cfg = config();
    cfg.infer_answer_kind = false;
    cfg.solve.answer_kind = metareason_strategy::answer::AnswerKind::Text;
    cfg.awareness.allow_abstain = false;
    cfg.escalation.max_samples = 2;
    // A whole cycle, so that the direct reply is drawn beside the chain.
    cfg.escalation.check_each_reply = false;
    let report = r.run("What is the capital of France?", &cfg).unwrap();
    let e = report.escalation.as_ref().unwrap();
    let last = e
        .rounds
        .iter()
        .rev()
        .find(|r| !r.replies.is_empty())
        .unwrap();
    assert_eq!(last.votes.len(), 1, "{:?}", last.votes);
    assert_eq!(report.candidate_answer.as_deref(), Some("paris"));
    assert_eq!(report.features.as_ref().unwrap().agreement, 1.0);
}

//! Search policies on the scripted model: exact expectations.

use metareason_core::Prompt;
use metareason_monitor::search::vote;
use metareason_monitor::{
    Event, RewardWeights, SearchPolicy, SearchSettings, Searcher, StepSignals, StopRule,
    TreeSelection,
};
use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::Definition;
use metareason_strategy::StrategyKind;

fn answer(n: &str) -> Reply {
    Reply::text(&format!("Some work.\nThe answer is {n}."))
}

fn run(model: &ScriptedModel, policy: SearchPolicy) -> metareason_monitor::SearchOutcome {
    run_with(model, policy, &SearchSettings::default(), None)
}

fn run_with(
    model: &ScriptedModel,
    policy: SearchPolicy,
    settings: &SearchSettings,
    judge: Option<&dyn metareason_monitor::StepJudge>,
) -> metareason_monitor::SearchOutcome {
    let weights = RewardWeights::default();
    let searcher = Searcher {
        model,
        strategy: StrategyKind::ChainOfThought.strategy(),
        kind: &AnswerKind::Number,
        weights: &weights,
        settings,
        judge,
    };
    searcher.run(&policy, &Prompt::user("q")).unwrap()
}

fn beam(width: usize, expansions: usize, max_steps: usize) -> SearchPolicy {
    SearchPolicy::Beam {
        width,
        expansions,
        max_steps,
    }
}

fn adaptive(threshold: f64) -> SearchPolicy {
    SearchPolicy::Adaptive {
        max_samples: 8,
        batch: 1,
        rule: StopRule::Beta { threshold },
    }
}

#[test]
fn adaptive_consistency_stops_after_four_unanimous_samples() {
    // Beta rule at 0.95: 1 - 2^-(a+1) passes 0.95 first at a = 4.
    let model = ScriptedModel::new().on(When::Always, [answer("18")]);
    let out = run(&model, adaptive(0.95));
    assert_eq!(model.sequences_generated(), 4);
    assert_eq!(out.candidates.len(), 4);
    assert_eq!(out.best().answer.as_ref().unwrap().normalized, "18");
    assert_eq!(out.agreement, 1.0);
}

#[test]
fn adaptive_consistency_needs_seven_samples_after_one_dissent() {
    // Votes 18,20,18,... : P(X > 1/2), X ~ Beta(a+1, 2) reaches 0.95 at a = 6.
    let replies = ["18", "20", "18", "18", "18", "18", "18", "18"].map(answer);
    let model = ScriptedModel::new().on(When::Always, replies);
    let out = run(&model, adaptive(0.95));
    assert_eq!(model.sequences_generated(), 7);
    assert_eq!(out.votes.get("18"), Some(&6));
    assert_eq!(out.votes.get("20"), Some(&1));
    let confidences: Vec<f64> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Vote { confidence, .. } => Some(*confidence),
            _ => None,
        })
        .collect();
    assert_eq!(confidences.len(), 7);
    // Beta(7, 2): P(X > 1/2) = 1 - 9/256.
    assert!((confidences[6] - (1.0 - 9.0 / 256.0)).abs() < 1e-9);
}

#[test]
fn adaptive_consistency_respects_its_maximum() {
    let replies = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map(answer);
    let model = ScriptedModel::new().on(When::Always, replies);
    let out = run(&model, adaptive(0.95));
    assert_eq!(model.sequences_generated(), 8);
    assert_eq!(out.candidates.len(), 8);
}

#[test]
fn self_consistency_takes_the_majority_and_best_of_n_the_best_score() {
    let replies = [
        answer("5").logprob(-0.05),
        answer("7").logprob(-1.5),
        answer("7").logprob(-1.2),
    ];
    let model = ScriptedModel::new().on(When::Always, replies.clone());
    let sc = run(&model, SearchPolicy::SelfConsistency { n: 3 });
    assert_eq!(sc.best().answer.as_ref().unwrap().normalized, "7");
    assert_eq!(vote(&sc.candidates).get("7"), Some(&2));
    // Of the two "7" replies, the better-scored one is chosen.
    assert_eq!(sc.chosen, 2);

    let model = ScriptedModel::new().on(When::Always, replies);
    let bon = run(&model, SearchPolicy::BestOfN { n: 3 });
    assert_eq!(bon.chosen, 0);
    assert_eq!(bon.best().answer.as_ref().unwrap().normalized, "5");
}

#[test]
fn beam_keeps_exactly_the_top_width_nodes_by_reward() {
    // Depth 0: three first steps of different confidence; depth 1: answers.
    let first = [
        Reply::text("Step good.\n").logprob(-0.05),
        Reply::text("Step bad.\n").logprob(-3.0),
        Reply::text("Step fine.\n").logprob(-0.4),
    ];
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("Step".into()),
            [Reply::text("The answer is 3.").logprob(-0.1)],
        )
        .on(When::Always, first);
    let out = run(&model, beam(2, 3, 4));
    let w = RewardWeights::default();
    // The scripted model cuts "Step good.\n" into the tokens "Step" and " good.".
    let reward = |text: &str| {
        let lp = if text.contains("good") {
            -0.05
        } else if text.contains("bad") {
            -3.0
        } else {
            -0.4
        };
        let toks =
            ["Step", text.trim_start_matches("Step")].map(|t| metareason_core::TokenLogprob {
                text: t.into(),
                bytes: t.as_bytes().to_vec(),
                logprob: lp,
                top: Vec::new(),
            });
        w.reward(&StepSignals::from_tokens(&toks))
    };
    let Event::BeamStep {
        children,
        kept_scores,
        ..
    } = &out.events[0]
    else {
        panic!("expected a beam step first: {:?}", out.events)
    };
    assert_eq!(*children, 3);
    let good = reward(" good.");
    let fine = reward(" fine.");
    assert_eq!(kept_scores.len(), 2);
    assert!(
        (kept_scores[0] - good).abs() < 1e-9,
        "{kept_scores:?} vs {good}"
    );
    assert!(
        (kept_scores[1] - fine).abs() < 1e-9,
        "{kept_scores:?} vs {fine}"
    );
    // Two beams survive to the end, both answered; the bad step is gone.
    assert_eq!(out.candidates.len(), 2);
    assert!(out.candidates.iter().all(|c| !c.text.contains("bad")));
    assert!(out
        .candidates
        .iter()
        .all(|c| c.answer.as_ref().unwrap().normalized == "3"));
    assert!(out.best().text.starts_with("Step good."));
    // The drawn tree: the root, the three first steps (the bad one pruned)
    // and one answer under each kept step, which ends a candidate.
    let nodes = tree_of(&out);
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    assert_eq!(nodes[0].parent, None);
    let firsts: Vec<_> = nodes.iter().filter(|n| n.parent == Some(0)).collect();
    assert_eq!(firsts.len(), 3);
    let pruned: Vec<_> = firsts.iter().filter(|n| !n.kept).collect();
    assert_eq!(pruned.len(), 1);
    assert!(pruned[0].step.contains("bad"));
    let leaves: Vec<_> = nodes.iter().filter(|n| !n.candidates.is_empty()).collect();
    assert_eq!(leaves.len(), 2);
    for leaf in leaves {
        let parent = &nodes[leaf.parent.unwrap()];
        assert!(parent.kept && !parent.step.contains("bad"));
        assert!(leaf.step.contains("answer is 3"));
    }
}

fn tree_of(out: &metareason_monitor::SearchOutcome) -> Vec<metareason_monitor::TreeNode> {
    out.events
        .iter()
        .find_map(|e| match e {
            Event::Tree { nodes, .. } => Some(nodes.clone()),
            _ => None,
        })
        .expect("a tree event")
}

#[test]
fn a_beam_keeps_no_duplicate_paths() {
    // Two of three sampled first steps are the same; width 2 keeps the two
    // different ones, not the better one twice.
    let first = [
        Reply::text("Step good.\n").logprob(-0.05),
        Reply::text("Step good.\n").logprob(-0.05),
        Reply::text("Step fine.\n").logprob(-0.4),
    ];
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("Step".into()),
            [Reply::text("The answer is 3.")],
        )
        .on(When::Always, first);
    let out = run(&model, beam(2, 3, 4));
    let Event::BeamStep { children, .. } = &out.events[0] else {
        panic!("expected a beam step first: {:?}", out.events)
    };
    assert_eq!(*children, 2);
    let texts: Vec<&str> = out.candidates.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].starts_with("Step good."), "{texts:?}");
    assert!(texts[1].starts_with("Step fine."), "{texts:?}");
}

#[test]
fn a_step_that_only_mentions_an_answer_does_not_end_a_beam() {
    // The first step names "answer" and a number; the reply goes on to state
    // its answer. Taking the first step as the end would answer 22.
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("22 apples".into()),
            [Reply::text("The answer is 5.")],
        )
        .on(
            When::Always,
            [Reply::text("To find the answer, count the 22 apples.\n")],
        );
    let out = run(&model, beam(1, 1, 4));
    let best = out.best();
    assert_eq!(best.answer.as_ref().unwrap().normalized, "5");
    assert!(best.complete);
    assert_eq!(best.steps.len(), 2);
}

#[test]
fn a_beam_cut_by_the_depth_limit_is_finished_by_a_rollout() {
    // Steps are one line each; at one step the beam is cut, and a rollout
    // (which does not stop at a line end) writes the rest of the reply.
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("Step one.".into()),
            [Reply::text("Then 2 + 2 = 4.\nThe answer is 4.")],
        )
        .on(When::Always, [Reply::text("Step one.\n")]);
    let out = run(&model, beam(1, 1, 1));
    let best = out.best();
    assert_eq!(best.text, "Step one.\nThen 2 + 2 = 4.\nThe answer is 4.");
    assert_eq!(best.answer.as_ref().unwrap().normalized, "4");
    assert!(best.complete);
    assert_eq!(best.steps.len(), 3);
    let finished: Vec<u64> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::BeamFinished { rollout_tokens, .. } => Some(*rollout_tokens),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 1);
    assert!(finished[0] > 0);
    // The candidate's tokens count the step and the rollout.
    assert_eq!(best.tokens, out.usage.generated_tokens);
}

#[test]
fn blank_lines_do_not_use_up_the_depth_of_a_beam() {
    // The model puts a blank line after every step; with two steps allowed
    // the beam still reaches the second step's stated answer itself.
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("Step one.\n\n".into()),
            [Reply::text("The answer is 9.")],
        )
        .on(
            When::PrefixContains("Step one.\n".into()),
            [Reply::text("\n")],
        )
        .on(When::Always, [Reply::text("Step one.\n")]);
    let out = run(&model, beam(1, 1, 2));
    assert_eq!(out.best().answer.as_ref().unwrap().normalized, "9");
    assert!(!out
        .events
        .iter()
        .any(|e| matches!(e, Event::BeamFinished { .. })));
}

#[test]
fn mcts_produces_rollouts_and_votes_over_them() {
    let model = ScriptedModel::new()
        .on(
            When::PrefixContains("Step".into()),
            [Reply::text("Then 2 + 2 = 4.\nThe answer is 4.")],
        )
        .on(
            When::Always,
            [Reply::text("Step one.\n"), Reply::text("Step two.\n")],
        );
    let out = run(
        &model,
        SearchPolicy::Mcts {
            iterations: 4,
            expansions: 2,
            exploration: 1.0,
            max_steps: 4,
            selection: TreeSelection::Uct,
        },
    );
    assert_eq!(out.candidates.len(), 4);
    assert_eq!(out.best().answer.as_ref().unwrap().normalized, "4");
    let iterations = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::MctsIteration { .. }))
        .count();
    assert_eq!(iterations, 4);
    // The drawn tree: every node's parent comes before it, the root's
    // visits are the iterations, a parent's visits are its children's plus
    // its own rollouts, and each rollout is listed once.
    let nodes = tree_of(&out);
    assert!(nodes.len() >= 3);
    assert_eq!(nodes[0].visits, 4);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        assert!(n.parent.unwrap() < i);
    }
    for (i, n) in nodes.iter().enumerate() {
        let below: u32 = nodes
            .iter()
            .filter(|c| c.parent == Some(i))
            .map(|c| c.visits)
            .sum();
        assert_eq!(n.visits, below + n.candidates.len() as u32, "node {i}");
    }
    let mut rollouts: Vec<usize> = nodes.iter().flat_map(|n| n.candidates.clone()).collect();
    rollouts.sort_unstable();
    assert_eq!(rollouts, vec![0, 1, 2, 3]);
}

#[test]
fn a_token_budget_stops_adaptive_sampling() {
    // Each reply is 6 word tokens; a budget of 10 allows two replies.
    let replies = ["1", "2", "3", "4", "5"].map(answer);
    let model = ScriptedModel::new().on(When::Always, replies);
    let settings = SearchSettings {
        budget_tokens: 10,
        ..SearchSettings::default()
    };
    let out = run_with(&model, adaptive(0.95), &settings, None);
    assert_eq!(model.sequences_generated(), 2);
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, Event::BudgetExhausted { .. })));
}

/// A judge that distrusts any step claiming 3 * 4 = 13.
struct Distrust;
impl metareason_monitor::StepJudge for Distrust {
    fn judge(
        &self,
        _q: &Prompt,
        _earlier: &[String],
        step: &str,
    ) -> Result<(f64, metareason_core::Usage), metareason_core::ModelError> {
        Ok((
            if step.contains("13") { 0.02 } else { 0.98 },
            Default::default(),
        ))
    }
}

#[test]
fn a_step_judge_overrides_token_confidence() {
    let replies = [
        Reply::text("3 * 4 = 13\nThe answer is 13.").logprob(-0.05),
        Reply::text("3 * 4 = 12\nThe answer is 12.").logprob(-0.6),
    ];
    let pick = |judge: Option<&dyn metareason_monitor::StepJudge>| {
        let model = ScriptedModel::new().on(When::Always, replies.clone());
        let out = run_with(
            &model,
            SearchPolicy::BestOfN { n: 2 },
            &SearchSettings::default(),
            judge,
        );
        out.best().answer.as_ref().unwrap().normalized.clone()
    };
    // Without a judge the more confident, wrong reply wins; with it, the right one.
    assert_eq!(pick(None), "13");
    assert_eq!(pick(Some(&Distrust)), "12");
}

#[test]
fn puct_rolls_out_the_child_the_step_reward_prefers_and_uct_the_first() {
    // The root's two sampled next steps: an unsure one first, a sure one
    // second. Each leads to its own answer.
    let model = || {
        ScriptedModel::new()
            .on(
                When::PrefixContains("Unsure".into()),
                [Reply::text("The answer is 5.")],
            )
            .on(
                When::PrefixContains("Sure".into()),
                [Reply::text("The answer is 4.")],
            )
            .on(
                When::Always,
                [
                    Reply::text("Unsure step.\n").logprob(-4.0),
                    Reply::text("Sure step.\n"),
                ],
            )
    };
    let mcts = |selection| SearchPolicy::Mcts {
        iterations: 1,
        expansions: 2,
        exploration: 1.0,
        max_steps: 4,
        selection,
    };
    let uct = run(&model(), mcts(TreeSelection::Uct));
    assert_eq!(uct.candidates.len(), 1);
    assert!(uct.candidates[0].text.starts_with("Unsure step."));
    assert_eq!(uct.best().answer.as_ref().unwrap().normalized, "5");
    let puct = run(&model(), mcts(TreeSelection::Puct));
    assert_eq!(puct.candidates.len(), 1);
    assert!(puct.candidates[0].text.starts_with("Sure step."));
    assert_eq!(puct.best().answer.as_ref().unwrap().normalized, "4");
    // The policy's JSON form: PUCT named, UCT the default when absent.
    let json = serde_json::to_value(mcts(TreeSelection::Puct)).unwrap();
    assert_eq!(json["selection"], "puct");
    let old = serde_json::json!({"policy": "mcts", "iterations": 2, "expansions": 2,
                                 "exploration": 1.0, "max_steps": 4});
    let back: SearchPolicy = serde_json::from_value(old).unwrap();
    assert_eq!(
        back,
        SearchPolicy::Mcts {
            iterations: 2,
            expansions: 2,
            exploration: 1.0,
            max_steps: 4,
            selection: TreeSelection::Uct,
        }
    );
}

/// A 40-token reply answering `n`, every token at log-probability `lp`
/// with runners-up at `alts`.
fn long_reply(n: &str, lp: f32, alts: [f32; 2]) -> Reply {
    let mut tokens: Vec<(String, f32)> = (0..36).map(|i| (format!("w{i} "), lp)).collect();
    tokens.extend(["The ", "answer ", "is ", &format!("{n}.")].map(|t| (t.to_string(), lp)));
    Reply::tokens(tokens).alternatives([("x", alts[0]), ("y", alts[1])])
}

#[test]
fn deepconf_cuts_a_hesitant_reply_below_the_warmup_floor_and_drops_its_vote() {
    // Warm-up: two confident replies (token confidence 5.67 and 6.34); the
    // floor keeps 90% of their confidence: 5.73. The third reply hesitates
    // (confidence 0.9): cut after one window of 32 tokens, no vote. Then
    // confident replies until the weighted Beta rule is sure (4 votes).
    let sure_a = long_reply("18", -0.01, [-8.0, -9.0]);
    let sure_b = long_reply("18", -0.01, [-9.0, -10.0]);
    let hesitant = long_reply("20", -0.5, [-1.0, -1.2]);
    let replies = [
        sure_a,
        sure_b.clone(),
        hesitant,
        sure_b.clone(),
        sure_b.clone(),
        sure_b,
    ];
    let model = ScriptedModel::new().on(When::Always, replies);
    let policy = SearchPolicy::DeepConf {
        warmup: 2,
        max_samples: 8,
        keep: 0.9,
        rule: StopRule::Beta { threshold: 0.95 },
    };
    let out = run(&model, policy);
    assert_eq!(model.sequences_generated(), 5);
    let cut = &out.candidates[2];
    assert_eq!(cut.tokens, 32);
    assert!(cut.answer.is_none() && !cut.complete);
    assert_eq!(out.votes.get("18"), Some(&4));
    assert_eq!(out.votes.get("20"), None);
    assert_eq!(out.best().answer.as_ref().unwrap().normalized, "18");
    let floor = out.events.iter().find_map(|e| match e {
        Event::ConfidenceFloor { threshold, .. } => Some(*threshold),
        _ => None,
    });
    let f = floor.expect("the warm-up set a floor");
    assert!(f > 5.67 && f < 5.8, "{f}");
}

#[test]
fn a_reply_cut_by_the_token_limit_answers_only_what_it_states() {
    let model =
        ScriptedModel::new().on(When::Always, [Reply::text("6 * 7 = 42\nThe answer is 42.")]);
    // Cut after one token: "6" is where the cut fell, not an answer.
    let settings = SearchSettings {
        max_tokens: 1,
        ..SearchSettings::default()
    };
    let cut = run_with(&model, SearchPolicy::Greedy, &settings, None);
    assert!(!cut.best().complete);
    assert_eq!(cut.best().answer, None);
    // Cut after the marked answer: it stands.
    let model = ScriptedModel::new().on(
        When::Always,
        [Reply::text(
            "The answer is 42. And now some more words that run on",
        )],
    );
    let settings = SearchSettings {
        max_tokens: 6,
        ..SearchSettings::default()
    };
    let marked = run_with(&model, SearchPolicy::Greedy, &settings, None);
    assert!(!marked.best().complete);
    assert_eq!(
        marked.best().answer.as_ref().map(|a| a.normalized.as_str()),
        Some("42")
    );
}

//! The solver on the scripted model: verification, revision, switching, programs.

use metareason_monitor::SearchPolicy;
use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_solver::{SolveConfig, Solver, TRACE_SCHEMA};
use metareason_strategy::StrategyKind;
use metareason_verify::{Verdict, VerifierKind};

const REVISION_MARK: &str = "A check of an earlier attempt";

fn config() -> SolveConfig {
    SolveConfig {
        fallbacks: Vec::new(),
        ..SolveConfig::default()
    }
}

#[test]
fn a_correct_chain_is_answered_with_its_checks_in_the_trace() {
    let model = ScriptedModel::new().on(
        When::Always,
        [Reply::text("3 * 4 = 12\n12 + 5 = 17\nThe answer is 17.")],
    );
    let t = Solver::new(&model).solve("q", &config()).unwrap();
    assert_eq!(t.schema, TRACE_SCHEMA);
    assert_eq!(t.answer.as_deref(), Some("17"));
    let a = &t.attempts[t.final_attempt];
    assert_eq!(a.outcome.best().steps.len(), 3);
    assert!(a
        .findings
        .iter()
        .any(|f| f.verifier == VerifierKind::Arithmetic && f.verdict == Verdict::Pass));
    assert!(t.revisions.is_empty());
    assert!(t.confidence > 0.5, "{}", t.confidence);
    // The trace round-trips through its JSON form.
    let json = serde_json::to_string(&t).unwrap();
    let back: metareason_solver::Trace = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
}

#[test]
fn a_wrong_step_is_revised_from_that_step_and_the_better_revision_accepted() {
    let model = ScriptedModel::new()
        .on(
            When::PromptContains(REVISION_MARK.into()),
            [Reply::text("12 + 5 = 17\nThe answer is 17.")],
        )
        .on(
            When::Always,
            [Reply::text("3 * 4 = 12\n12 + 5 = 18\nThe answer is 18.")],
        );
    let t = Solver::new(&model).solve("q", &config()).unwrap();
    assert_eq!(t.revisions.len(), 1);
    let r = &t.revisions[0];
    assert_eq!(r.from_step, 1, "the second step is the first wrong one");
    assert!(
        r.finding.message.contains("equals 17"),
        "{}",
        r.finding.message
    );
    assert!(r.accepted);
    assert!(r.confidence_after > r.confidence_before);
    assert_eq!(t.answer.as_deref(), Some("17"));
    // The revision continued after the kept first step.
    let revised = r.attempt.as_ref().unwrap();
    assert_eq!(revised.prompt.assistant_prefix, "3 * 4 = 12\n");
    assert!(revised
        .outcome
        .best()
        .text
        .starts_with("3 * 4 = 12\n12 + 5 = 17"));
}

#[test]
fn a_revision_that_is_no_better_is_rejected() {
    let model = ScriptedModel::new()
        .on(
            When::PromptContains(REVISION_MARK.into()),
            [Reply::text("12 + 5 = 19\nThe answer is 19.")],
        )
        .on(
            When::Always,
            [Reply::text("3 * 4 = 12\n12 + 5 = 18\nThe answer is 18.")],
        );
    let t = Solver::new(&model).solve("q", &config()).unwrap();
    assert_eq!(t.revisions.len(), 1);
    assert!(!t.revisions[0].accepted);
    assert_eq!(t.answer.as_deref(), Some("18"));
}

#[test]
fn collapsing_step_rewards_switch_to_the_next_strategy() {
    let model = ScriptedModel::new()
        .on(
            When::PromptContains("Python".into()),
            [Reply::text("```python\nprint(3 * 4 + 5)\n```")],
        )
        .on(
            When::Always,
            [Reply::text("hmm maybe\nsomething\nThe answer is 99.").logprob(-4.0)],
        );
    let cfg = SolveConfig {
        fallbacks: vec![StrategyKind::ProgramAided],
        max_revisions: 0,
        ..SolveConfig::default()
    };
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    assert_eq!(t.switches.len(), 1);
    let s = &t.switches[0];
    assert_eq!(s.from, StrategyKind::ChainOfThought);
    assert_eq!(s.to, StrategyKind::ProgramAided);
    assert!(s.reason.contains("collapsed"), "{}", s.reason);
    assert!(!s.rewards.is_empty());
    assert_eq!(t.attempts.len(), 2);
    // The program ran in the sandbox; its output is the answer.
    let pal = &t.attempts[1];
    let (program, run) = pal.program.as_ref().unwrap();
    assert!(program.contains("print"));
    assert_eq!(run.stdout.trim(), "17");
    assert_eq!(t.answer.as_deref(), Some("17"), "{}", t.summary());
}

#[test]
fn program_aided_self_consistency_votes_on_program_outputs() {
    let model = ScriptedModel::new().on(
        When::Always,
        [
            Reply::text("```python\nprint(2 + 2)\n```"),
            Reply::text("```python\nprint(5)\n```"),
            Reply::text("```python\nx = 2\nprint(x * 2)\n```"),
        ],
    );
    let cfg = SolveConfig {
        strategy: StrategyKind::ProgramAided,
        fallbacks: Vec::new(),
        policy: SearchPolicy::SelfConsistency { n: 3 },
        max_revisions: 0,
        ..SolveConfig::default()
    };
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    let o = &t.attempts[0].outcome;
    assert_eq!(o.votes.get("4"), Some(&2));
    assert_eq!(o.votes.get("5"), Some(&1));
    assert_eq!(t.answer.as_deref(), Some("4"));
}

#[test]
fn the_critique_is_scored_from_yes_and_no() {
    let model = ScriptedModel::new()
        .on(When::Always, [Reply::text("2 + 2 = 4\nThe answer is 4.")])
        .score("Yes", -0.1)
        .score("No", -2.5);
    let cfg = SolveConfig {
        critique: true,
        ..config()
    };
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    let f = t.attempts[0]
        .findings
        .iter()
        .find(|f| f.verifier == VerifierKind::Critique)
        .unwrap();
    assert_eq!(f.verdict, Verdict::Pass);
    let p = (-0.1f64).exp() / ((-0.1f64).exp() + (-2.5f64).exp());
    assert!(f.message.contains(&format!("{p:.2}")), "{}", f.message);
}

#[test]
fn the_summary_names_strategy_steps_and_cost() {
    let model = ScriptedModel::new().on(When::Always, [Reply::text("1 + 1 = 2\nThe answer is 2.")]);
    let t = Solver::new(&model).solve("q", &config()).unwrap();
    let s = t.summary();
    assert!(s.contains("answer 2"), "{s}");
    assert!(s.contains("strategy: chain_of_thought"), "{s}");
    assert!(s.contains("1 + 1 = 2"), "{s}");
    assert!(s.contains("tokens:"), "{s}");
}

#[test]
fn a_collapsed_step_is_backtracked_and_resampled_before_switching() {
    // The first reply collapses at its second step; resampled from the first
    // step, the continuation is confident, so no strategy switch is needed.
    let model = ScriptedModel::new()
        .on(
            When::PrefixEndsWith("3 * 4 = 12\n".into()),
            [Reply::text("12 + 5 = 17\nThe answer is 17.")],
        )
        .on(
            When::Always,
            [Reply::tokens([
                ("3 * 4 = 12", -0.05),
                ("\n", -0.05),
                ("12 + 5 = 71", -6.0),
                ("\n", -0.05),
                ("The answer is 71.", -0.05),
            ])],
        );
    let cfg = SolveConfig {
        fallbacks: vec![StrategyKind::ProgramAided],
        max_revisions: 0,
        ..SolveConfig::default()
    };
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    assert_eq!(t.backtracks.len(), 1, "{}", t.summary());
    let b = &t.backtracks[0];
    assert_eq!(b.at_step, 1);
    assert!(b.accepted);
    assert!(
        b.rewards_before[1] < 0.2 && b.rewards_after.iter().all(|&r| r > 0.5),
        "{b:?}"
    );
    assert!(t.switches.is_empty());
    assert_eq!(t.answer.as_deref(), Some("17"));
}

/// A judge that finds every step after the first wrong, and records what it saw.
struct DoubtingJudge {
    seen: std::sync::Mutex<Vec<(usize, String)>>,
}

impl metareason_monitor::StepJudge for DoubtingJudge {
    fn judge(
        &self,
        _question: &metareason_core::Prompt,
        earlier: &[String],
        step: &str,
    ) -> Result<(f64, metareason_core::Usage), metareason_core::ModelError> {
        self.seen
            .lock()
            .unwrap()
            .push((earlier.len(), step.to_string()));
        Ok((
            if earlier.is_empty() { 0.9 } else { 0.02 },
            Default::default(),
        ))
    }
}

#[test]
fn an_external_step_judge_scores_every_step_without_judge_steps() {
    let model = ScriptedModel::new().on(
        When::Always,
        [Reply::text("3 * 4 = 12\n12 + 5 = 17\nThe answer is 17.")],
    );
    let judge = DoubtingJudge {
        seen: Default::default(),
    };
    let cfg = SolveConfig {
        max_revisions: 0,
        backtrack_samples: 0,
        ..config()
    };
    assert!(!cfg.judge_steps);
    let judged = Solver::new(&model)
        .with_step_judge(&judge)
        .solve("q", &cfg)
        .unwrap();
    let plain = Solver::new(&model).solve("q", &cfg).unwrap();
    let steps = &judged.attempts[0].outcome.best().steps;
    let signals: Vec<Option<f64>> = steps.iter().map(|s| s.signals.judge).collect();
    assert_eq!(signals, [Some(0.9), Some(0.02), Some(0.02)]);
    // Each step was judged once, after the steps before it.
    let seen = judge.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (0, "3 * 4 = 12".to_string()),
            (1, "12 + 5 = 17".to_string()),
            (2, "The answer is 17.".to_string())
        ]
    );
    // The judge's doubt lowers the later steps' rewards.
    let plain_steps = &plain.attempts[0].outcome.best().steps;
    assert!(plain_steps[0].signals.judge.is_none());
    assert!(steps[0].reward > plain_steps[0].reward);
    assert!(steps[1].reward < plain_steps[1].reward);
}

#[test]
fn a_check_that_still_fails_after_revision_switches_to_the_next_strategy() {
    // The chain's arithmetic is wrong and its revision no better; the
    // program gets it right.
    let model = ScriptedModel::new()
        .on(
            When::PromptContains("Python".into()),
            [Reply::text("```python\nprint(3 * 4 + 5)\n```")],
        )
        .on(
            When::PromptContains(REVISION_MARK.into()),
            [Reply::text("12 + 5 = 19\nThe answer is 19.")],
        )
        .on(
            When::Always,
            [Reply::text("3 * 4 = 12\n12 + 5 = 18\nThe answer is 18.")],
        );
    let cfg = SolveConfig {
        fallbacks: vec![StrategyKind::ProgramAided],
        ..SolveConfig::default()
    };
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    assert_eq!(t.revisions.len(), 1);
    assert!(!t.revisions[0].accepted);
    assert_eq!(t.switches.len(), 1, "{}", t.summary());
    let s = &t.switches[0];
    assert_eq!(
        (s.from, s.to),
        (StrategyKind::ChainOfThought, StrategyKind::ProgramAided)
    );
    assert!(
        s.reason
            .starts_with("the arithmetic check still fails at step 2:"),
        "{}",
        s.reason
    );
    assert_eq!(s.rewards.len(), 3);
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.final_attempt, 1);
    assert_eq!(t.answer.as_deref(), Some("17"));

    // Switched off, the flagged chain answers.
    let off = SolveConfig {
        switch_on_flag: false,
        ..cfg.clone()
    };
    let t = Solver::new(&model).solve("q", &off).unwrap();
    assert!(t.switches.is_empty());
    assert_eq!(t.answer.as_deref(), Some("18"));

    // A chain no check flags is not second-guessed.
    let clean = ScriptedModel::new().on(
        When::Always,
        [Reply::text("3 * 4 = 12\n12 + 5 = 17\nThe answer is 17.")],
    );
    let t = Solver::new(&clean).solve("q", &cfg).unwrap();
    assert!(t.switches.is_empty());
    assert_eq!(t.attempts.len(), 1);
}

#[test]
fn the_token_budget_bounds_the_whole_solve() {
    // Every reply is long and has no answer, so every sample, fallback and
    // revision would run if nothing stopped them.
    let model = ScriptedModel::new().on(
        When::Always,
        [Reply::text(
            "Let me think about this problem step by step and consider every detail of it \
             carefully before writing anything down at all",
        )],
    );
    let mut cfg = SolveConfig {
        policy: SearchPolicy::SelfConsistency { n: 8 },
        fallbacks: vec![StrategyKind::PlanThenSolve, StrategyKind::Direct],
        ..SolveConfig::default()
    };
    cfg.settings.budget_tokens = 20;
    let t = Solver::new(&model).solve("q", &cfg).unwrap();
    assert!(
        t.usage.generated_tokens <= 20,
        "{} tokens generated under a budget of 20",
        t.usage.generated_tokens
    );
    // Without a budget the same solve spends far more.
    cfg.settings.budget_tokens = 0;
    let free = Solver::new(&model).solve("q", &cfg).unwrap();
    assert!(
        free.usage.generated_tokens > 100,
        "{}",
        free.usage.generated_tokens
    );
}

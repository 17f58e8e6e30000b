//! Meta-reflection: calibration learns from outcomes, reward weights move
//! the right way, distillation uses the model's words.

use metareason_bayes::seeded;
use metareason_monitor::RewardWeights;
use metareason_reflection::{
    distill_error_note, distill_template, CalibrationFeatures, Calibrator, RewardLearner,
    FEATURE_NAMES,
};
use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_solver::{SolveConfig, Solver};
use rand::Rng;

#[test]
fn the_shipped_calibration_is_current_and_prefers_agreeing_verified_answers() {
    let c = Calibrator::shipped();
    assert!(c.is_current());
    assert_eq!(c.model.dim(), FEATURE_NAMES.len());
    let good = CalibrationFeatures {
        agreement: 1.0,
        cross_check: 1.0,
        mean_logprob: -0.1,
        mean_reward: 0.9,
        min_reward: 0.8,
        verifier_passes: 1.0,
        prior: 0.8,
        p_true: 0.9,
        ..Default::default()
    };
    let bad = CalibrationFeatures {
        agreement: 0.3,
        cross_check: -1.0,
        mean_logprob: -1.5,
        mean_reward: 0.4,
        min_reward: 0.1,
        verifier_fails: 1.0,
        prior: 0.3,
        p_true: 0.4,
        ..Default::default()
    };
    assert!(c.confidence(&good) > 0.8, "{}", c.confidence(&good));
    assert!(c.confidence(&bad) < 0.2, "{}", c.confidence(&bad));
    let none = CalibrationFeatures {
        no_answer: 1.0,
        ..good.clone()
    };
    assert!(c.confidence(&none) < c.confidence(&good));
}

#[test]
fn online_calibration_learns_that_a_signal_it_trusted_means_nothing() {
    // The world: correct with probability 0.5 whatever cross_check says.
    let mut c = Calibrator::shipped();
    let mut rng = seeded(3);
    let agree = CalibrationFeatures {
        agreement: 1.0,
        cross_check: 1.0,
        mean_logprob: -0.3,
        mean_reward: 0.8,
        min_reward: 0.6,
        prior: 0.5,
        p_true: 0.5,
        ..Default::default()
    };
    let before = c.confidence(&agree);
    let observed = c.observed;
    assert!(before > 0.75);
    for _ in 0..400 {
        let mut f = agree.clone();
        f.cross_check = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
        c.observe(&f, rng.gen_bool(0.5));
    }
    let after = c.confidence(&agree);
    assert!((after - 0.5).abs() < 0.1, "before {before}, after {after}");
    assert_eq!(c.observed, observed + 400);
}

#[test]
fn a_calibrator_fitted_on_episodes_learns_which_signal_predicts_the_outcome() {
    // The world: agreement of the pool predicts right answers, the
    // cross-check (always +1 here, as after escalation) predicts nothing.
    let mut rng = seeded(5);
    let episodes: Vec<(CalibrationFeatures, bool)> = (0..400)
        .map(|_| {
            let agreement: f64 = rng.gen_range(0.2..1.0);
            let f = CalibrationFeatures {
                agreement,
                cross_check: 1.0,
                mean_logprob: -0.2,
                mean_reward: 0.8,
                min_reward: 0.5,
                prior: 0.6,
                p_true: 0.6,
                ..Default::default()
            };
            let right = rng.gen_bool(agreement);
            (f, right)
        })
        .collect();
    let c = Calibrator::fit(&episodes, 1.0).unwrap();
    assert!(c.is_current());
    assert_eq!(c.observed, 0);
    let at = |agreement: f64| {
        c.confidence(&CalibrationFeatures {
            agreement,
            ..episodes[0].0.clone()
        })
    };
    assert!(at(0.95) > 0.8, "{}", at(0.95));
    assert!(at(0.25) < 0.45, "{}", at(0.25));
    // The shipped model, fitted before escalation, trusts the cross-check
    // and so calls a low-agreement pool far surer than it is.
    let shipped = Calibrator::shipped().confidence(&CalibrationFeatures {
        agreement: 0.25,
        ..episodes[0].0.clone()
    });
    assert!(
        shipped > at(0.25) + 0.2,
        "shipped {shipped}, fitted {}",
        at(0.25)
    );
    assert!(Calibrator::fit(&[], 1.0).is_err());
}

#[test]
fn reward_weights_move_toward_the_signal_that_predicts_outcomes() {
    // Two scripted replies: confident tokens for right answers, hesitant
    // ones for wrong answers.
    let right = ScriptedModel::new().on(
        When::Always,
        [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.05)],
    );
    let wrong = ScriptedModel::new().on(
        When::Always,
        [Reply::text("6 * 7 = 43\nThe answer is 43.").logprob(-1.5)],
    );
    let cfg = SolveConfig {
        fallbacks: vec![],
        max_revisions: 0,
        ..SolveConfig::default()
    };
    let t_right = Solver::new(&right).solve("What is 6 * 7?", &cfg).unwrap();
    let t_wrong = Solver::new(&wrong).solve("What is 6 * 7?", &cfg).unwrap();
    let start = RewardWeights {
        mean_logprob: 0.0,
        ..RewardWeights::default()
    };
    let mut learner = RewardLearner::from_weights(&start, 1.0);
    for _ in 0..30 {
        learner.observe(&t_right, true);
        learner.observe(&t_wrong, false);
    }
    let w = learner.weights();
    assert!(w.mean_logprob > 0.5, "{w:?}");
    assert_eq!(w.judge, start.judge);
    assert_eq!(learner.observed, 60);
}

#[test]
fn distillation_prompts_carry_the_task_and_return_the_models_words() {
    let model = ScriptedModel::new()
        .on(
            When::PromptContains("Watch out".into()),
            [Reply::text("Watch out: convert units before adding.")],
        )
        .on(
            When::Always,
            [Reply::text(
                "Plan:\n1. Find the rate.\n2. Multiply by time.",
            )],
        );
    let (t, _) = distill_template(&model, "A car drives 60 km/h for 2 h.", "60*2=120").unwrap();
    assert!(t.starts_with("Plan:"), "{t}");
    let (n, _) = distill_error_note(&model, "A car...", "60+2=62", Some("120")).unwrap();
    assert_eq!(n, "Watch out: convert units before adding.");
    let calls = model.calls();
    let rendered = format!("{:?}", calls[1]);
    assert!(rendered.contains("the right answer is 120"), "{rendered}");
}

#[test]
fn a_lone_reply_is_not_read_as_a_unanimous_pool() {
    // One greedy reply: its agreement of 1 rests on itself alone.
    let m = ScriptedModel::new().on(When::Always, [Reply::text("6 * 7 = 42\nThe answer is 42")]);
    let trace = Solver::new(&m)
        .solve("What is 6 * 7?", &SolveConfig::default())
        .unwrap();
    let lone = CalibrationFeatures::from_trace(&trace, None, 0.7, 0.6);
    assert_eq!(lone.agreement, 1.0);
    assert_eq!(lone.single_reply, 1.0);
    // The same signals backed by a pool of replies that all agree.
    let pooled = CalibrationFeatures {
        single_reply: 0.0,
        ..lone.clone()
    };
    let c = Calibrator::shipped();
    assert!(
        c.confidence(&lone) + 0.05 < c.confidence(&pooled),
        "lone {}, pooled {}",
        c.confidence(&lone),
        c.confidence(&pooled)
    );
    // Short answers keep the earlier model, which never saw the feature
    // (weight 0, prior variance 0.01): their confidence barely moves.
    let s = Calibrator::shipped_short_answers();
    let (a, b) = (s.confidence(&lone), s.confidence(&pooled));
    assert!(a <= b && b - a < 0.001, "lone {a}, pooled {b}");
}

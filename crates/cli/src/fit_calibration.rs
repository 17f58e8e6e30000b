//! `metareason bench fit-calibration`: refits the calibrator (P(correct) of
//! a final answer) on the graded episodes that runs of the whole loop kept
//! in their memory, and compares it with the shipped one on other runs.
//!
//! The shipped calibrator was fitted on episodes of the loop of its time;
//! when the loop changes what its final answers are (escalation pools
//! replies across strategies, so the cross-check agrees far more often),
//! the same features mean something else and the model is refitted here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use metareason_bench::datasets::fnv1a;
use metareason_bench::metrics;
use metareason_memory::Memory;
use metareason_reflection::{CalibrationFeatures, Calibrator, FEATURE_NAMES};
use metareason_solver::Trace;
use metareason_strategy::answer::{AnswerKind, Extract};

/// Which answer of an episode a graded row is: the first reply, judged
/// alone before escalation, or the answer the episode gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    First,
    Final,
}

/// One graded answer: its task (for folds), which answer of the episode it
/// is, its calibration features, the confidence the run gave it, and
/// whether it was right. `bench export-graded` writes these as JSON lines,
/// which `fit-calibration` reads back in place of a run directory.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Graded {
    /// A hash of the task's text: folds need only to know which answers
    /// share a problem, and an exported file then holds no dataset text.
    task: String,
    state: State,
    features: CalibrationFeatures,
    recorded: f64,
    right: bool,
}

/// What a run's `results.jsonl` says of one item, to grade a first answer
/// that escalation replaced.
#[derive(serde::Deserialize)]
struct ItemRow {
    answer: Option<String>,
    reference: Option<String>,
}

/// The references of the items of `run`, in the order its memory stored
/// their episodes, when its `results.jsonl` lines up with the episodes
/// (same count, the same answer wherever one was given); `None` otherwise.
fn references_in_episode_order(
    run: &Path,
    episodes: &[metareason_memory::Episode],
) -> Option<Vec<Option<String>>> {
    let text = std::fs::read_to_string(run.join("results.jsonl")).ok()?;
    let rows: Vec<ItemRow> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .ok()?;
    let lined_up = rows.len() == episodes.len()
        && rows.iter().zip(episodes).all(|(r, e)| {
            r.answer
                .as_ref()
                .is_none_or(|a| e.record.answer.as_ref() == Some(a))
        });
    lined_up.then(|| rows.into_iter().map(|r| r.reference).collect())
}

/// The features of an episode's first reply, judged alone: as stored with
/// its escalation, or rebuilt from the first attempt of its trace (runs
/// from before they were stored).
fn first_features(trace: &serde_json::Value, p_true: f64) -> Option<CalibrationFeatures> {
    let escalation = trace.get("escalation")?;
    if let Some(f) = escalation.get("first_features").filter(|f| !f.is_null()) {
        return serde_json::from_value(f.clone()).ok();
    }
    let solve: Trace = serde_json::from_value(trace.get("solve")?.clone()).ok()?;
    let strategy = serde_json::to_value(solve.attempts.get(solve.final_attempt)?.strategy).ok()?;
    let prior = trace
        .pointer("/assessment/options")
        .and_then(|o| o.as_array())
        .and_then(|options| {
            options
                .iter()
                .find(|o| o.get("strategy") == Some(&strategy))
        })
        .and_then(|o| o.get("p_success")?.as_f64())
        .unwrap_or(0.5);
    Some(CalibrationFeatures::from_trace(&solve, None, prior, p_true))
}

/// The graded answers of `run`'s memory whose answers are numbers (the
/// calibrator refitted here; short answers and free-text replies have
/// calibrators of their own): each episode's answer and, where escalation
/// drew more replies, its first reply judged alone, when that reply's fate
/// is known (it is the final answer, the run's results give the
/// reference, or the final answer differs and is right).
///
/// `run` may also be a file of graded answers as `bench export-graded`
/// writes it; its rows are read as they are.
fn graded_episodes(run: &Path) -> Result<Vec<Graded>> {
    if run.is_file() {
        return read_graded(run);
    }
    let path = run.join("memory.sqlite");
    if !path.is_file() {
        bail!(
            "{} has no memory.sqlite: fit-calibration reads the episodes a `bench` run of the \
             whole loop kept (runs copied into results/ had their memory removed)",
            run.display()
        );
    }
    let memory = Memory::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let all = memory
        .episodes(false)
        .with_context(|| format!("cannot read the episodes of {}", path.display()))?;
    let references = references_in_episode_order(run, &all);
    let mut out = Vec::new();
    for (i, e) in all.into_iter().enumerate() {
        let r = e.record;
        let (Some(features), Some(right), Some(recorded)) = (r.features, r.outcome, r.confidence)
        else {
            continue;
        };
        let kind: AnswerKind =
            serde_json::from_value(features["answer_kind"].clone()).unwrap_or_default();
        if kind != AnswerKind::Number {
            continue;
        }
        let Some(cal) = features.get("calibration") else {
            continue;
        };
        let mut final_features: CalibrationFeatures = serde_json::from_value(cal.clone())
            .with_context(|| {
                format!(
                    "{}: episode {} has calibration features this build cannot read",
                    path.display(),
                    e.id
                )
            })?;
        let trace = r.trace.unwrap_or_default();
        let escalation = trace.get("escalation").filter(|x| !x.is_null());
        let drawn = escalation
            .and_then(|x| x.get("drawn")?.as_u64())
            .unwrap_or(0);
        if cal.get("single_reply").is_none() {
            // Stored before the feature: one reply unless escalation drew
            // more or a cross-check answered.
            final_features.single_reply = if drawn == 0 && final_features.cross_check == 0.0 {
                1.0
            } else {
                0.0
            };
        }
        if drawn > 0 {
            let first_answer = escalation.and_then(|x| x.get("first_answer")?.as_str());
            let first_right = match (first_answer, r.answer.as_deref()) {
                (Some(a), Some(b)) if kind.same_meaning(a, b) => Some(right),
                (Some(a), _) => match references.as_ref().and_then(|refs| refs[i].as_deref()) {
                    Some(reference) => {
                        Some(metareason_bench::grade::is_correct(&kind, reference, a))
                    }
                    None if right => Some(false),
                    None => None,
                },
                (None, _) => Some(false),
            };
            let first = first_features(&trace, final_features.p_true);
            let first_recorded = escalation.and_then(|x| x.get("first_confidence")?.as_f64());
            if let (Some(first_right), Some(features), Some(recorded)) =
                (first_right, first, first_recorded)
            {
                out.push(Graded {
                    task: task_key(&r.task),
                    state: State::First,
                    features,
                    recorded,
                    right: first_right,
                });
            }
        }
        out.push(Graded {
            task: task_key(&r.task),
            state: State::Final,
            features: final_features,
            recorded,
            right,
        });
    }
    Ok(out)
}

/// The key of a task in graded rows: a 64-bit FNV-1a hash of its text, in
/// hex.
fn task_key(task: &str) -> String {
    format!("{:016x}", fnv1a(task))
}

/// Graded answers from a JSON-lines file of `bench export-graded`.
fn read_graded(path: &Path) -> Result<Vec<Graded>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "{} line {}: not a graded answer as `bench export-graded` writes it \
                     (give a run directory or such a file)",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// `bench export-graded`: writes the graded answers of `runs` (run
/// directories, or files of earlier exports) to `out` as JSON lines, one
/// answer per line, so a calibrator can be refitted after the runs'
/// memories are gone: features, the run's confidence and the grade, with
/// the task as a hash (no dataset text). Returns how many were written.
pub(crate) fn export_graded(runs: &[PathBuf], out: &Path) -> Result<usize> {
    let mut text = String::new();
    let mut n = 0;
    for run in runs {
        let rows = graded_episodes(run)?;
        for row in &rows {
            text.push_str(&serde_json::to_string(row)?);
            text.push('\n');
        }
        println!("{}: {} graded answers", run.display(), rows.len());
        n += rows.len();
    }
    if n == 0 {
        bail!("the runs hold no graded numeric answers: nothing to export");
    }
    crate::bench::write_whole(out, &text)?;
    println!("written: {} ({n} graded answers)", out.display());
    Ok(n)
}

/// The fold (of `k`) of each episode: folds split by task, so the episodes
/// of one problem (several runs of it) are never on both sides. Tasks are
/// dealt round-robin in a fixed hashed order, not by `datasets::fold_of`'s
/// hash modulo k, so that forty problems make five folds of eight.
fn folds_by_task(episodes: &[Graded], k: usize) -> Vec<usize> {
    let mut tasks: Vec<&str> = episodes.iter().map(|e| e.task.as_str()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    // A fixed shuffle (by a hash of the text) so the folds do not follow
    // alphabetical order.
    tasks.sort_by_key(|t| fnv1a(t));
    let fold: BTreeMap<&str, usize> = tasks.iter().enumerate().map(|(i, t)| (*t, i % k)).collect();
    episodes.iter().map(|e| fold[e.task.as_str()]).collect()
}

/// AUROC, ECE (10 equal-width bins, as `bench` reports it) and mean log
/// loss of `p` against `right`, formatted for a table row.
fn scores(p: &[f64], right: &[bool]) -> String {
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3}"));
    format!(
        "{} | {} | {}",
        f(metrics::auroc(p, right)),
        f(metrics::ece_equal_width(p, right, 10)),
        f(metrics::nll(p, right))
    )
}

/// `bench fit-calibration`: fits on the episodes of `learn`, the prior
/// centred on the weights of the calibrator in `centre` (zero without
/// one) and its variance chosen among `variances` by out-of-fold log loss
/// (5 folds by task); writes the model to `out`; then scores the recorded,
/// shipped and fitted confidences on the episodes of each of `test`.
pub(crate) fn fit_calibration(
    learn: &[PathBuf],
    test: &[PathBuf],
    out: &Path,
    variances: &[f64],
    centre: Option<&Path>,
) -> Result<()> {
    if variances.is_empty() || variances.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        bail!("--prior-variances needs one or more positive numbers");
    }
    let centre: Option<Calibrator> = match centre {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the prior centre {}", path.display()))?;
            let c: Calibrator = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a calibrator (a JSON file as `fit-calibration --out` writes)",
                    path.display()
                )
            })?;
            if !c.is_current() {
                bail!(
                    "{} has other features than this build ({}): centre the prior on a \
                     calibrator of the current features, or leave --prior-centre out",
                    path.display(),
                    FEATURE_NAMES.join(", ")
                );
            }
            Some(c)
        }
    };
    let fit = |episodes: &[(CalibrationFeatures, bool)], v: f64| -> Result<Calibrator> {
        match &centre {
            Some(c) => Calibrator::fit_around(c, episodes, v),
            None => Calibrator::fit(episodes, v),
        }
        .map_err(|e| anyhow::anyhow!("cannot fit the calibrator: {e}"))
    };
    let mut episodes = Vec::new();
    for run in learn {
        let e = graded_episodes(run)?;
        let count = |state: State| {
            let of: Vec<&Graded> = e.iter().filter(|e| e.state == state).collect();
            (of.len(), of.iter().filter(|e| e.right).count())
        };
        let ((answered, answered_right), (first, first_right)) =
            (count(State::Final), count(State::First));
        println!(
            "learn: {} ({answered} graded answers, {answered_right} right; {first} first replies \
             of escalated episodes, {first_right} right)",
            run.display(),
        );
        episodes.extend(e);
    }
    if episodes.len() < 2 * FEATURE_NAMES.len() {
        bail!(
            "{} graded episodes are too few to fit {} weights: run the whole loop on more \
             learn-half problems (e.g. `metareason bench gsm8k-train --split learn --limit 100 \
             --config full`)",
            episodes.len(),
            FEATURE_NAMES.len()
        );
    }
    let right: Vec<bool> = episodes.iter().map(|e| e.right).collect();
    if right.iter().all(|r| *r) || right.iter().all(|r| !*r) {
        bail!("every learn episode has the same outcome: nothing to tell right from wrong");
    }
    let folds = folds_by_task(&episodes, 5);
    println!("\nOut of fold on the learn episodes (5 folds by problem):\n");
    println!("| confidence | AUROC | ECE | log loss |");
    println!("|---|---|---|---|");
    let recorded: Vec<f64> = episodes.iter().map(|e| e.recorded).collect();
    println!("| recorded in the runs | {} |", scores(&recorded, &right));
    let mut best: Option<(f64, f64)> = None;
    for &v in variances {
        let mut p = vec![0.0; episodes.len()];
        for fold in 0..5 {
            let train: Vec<(CalibrationFeatures, bool)> = episodes
                .iter()
                .zip(&folds)
                .filter(|(_, f)| **f != fold)
                .map(|(e, _)| (e.features.clone(), e.right))
                .collect();
            let c = fit(&train, v)?;
            for (i, e) in episodes.iter().enumerate() {
                if folds[i] == fold {
                    p[i] = c.confidence(&e.features);
                }
            }
        }
        let loss = metrics::nll(&p, &right).unwrap_or(f64::INFINITY);
        println!("| refit, prior variance {v} | {} |", scores(&p, &right));
        if best.is_none_or(|(_, l)| loss < l) {
            best = Some((v, loss));
        }
    }
    let (variance, _) = best.expect("at least one variance");
    let all: Vec<(CalibrationFeatures, bool)> = episodes
        .iter()
        .map(|e| (e.features.clone(), e.right))
        .collect();
    let fitted = fit(&all, variance)?;
    crate::bench::write_whole(out, &serde_json::to_string(&fitted)?)?;
    println!(
        "\nfitted on {} episodes, prior centred on {}, variance {variance} (least out-of-fold \
         log loss):",
        episodes.len(),
        if centre.is_some() {
            "the given calibrator"
        } else {
            "zero"
        }
    );
    for (i, name) in FEATURE_NAMES.iter().enumerate() {
        let sd = fitted.model.cov[i * FEATURE_NAMES.len() + i].sqrt();
        println!("  {name:<16} {:+.3} ± {sd:.3}", fitted.model.mean[i]);
    }
    println!("written: {}", out.display());
    if test.is_empty() {
        return Ok(());
    }
    let shipped = Calibrator::shipped();
    println!(
        "\nOn other runs' episodes (the runs' own answers, confidence recomputed; \
         \"answered\": the answer each episode gave, \"first reply\": an escalated \
         episode's first reply judged alone):\n"
    );
    println!("| run | answers | episodes | right | confidence | AUROC | ECE | log loss |");
    println!("|---|---|---|---|---|---|---|---|");
    for run in test {
        let all = graded_episodes(run)?;
        for (state, label) in [(State::Final, "answered"), (State::First, "first reply")] {
            let e: Vec<&Graded> = all.iter().filter(|e| e.state == state).collect();
            if e.is_empty() {
                continue;
            }
            let right: Vec<bool> = e.iter().map(|e| e.right).collect();
            let n_right = right.iter().filter(|r| **r).count();
            let rows: [(&str, Vec<f64>); 3] = [
                (
                    "recorded (shipped, learned online)",
                    e.iter().map(|e| e.recorded).collect(),
                ),
                (
                    "shipped",
                    e.iter().map(|e| shipped.confidence(&e.features)).collect(),
                ),
                (
                    "fitted",
                    e.iter().map(|e| fitted.confidence(&e.features)).collect(),
                ),
            ];
            for (name, p) in rows {
                println!(
                    "| {} | {label} | {} | {n_right} | {name} | {} |",
                    run.display(),
                    e.len(),
                    scores(&p, &right)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graded(task: &str) -> Graded {
        Graded {
            task: task.into(),
            state: State::Final,
            features: CalibrationFeatures::default(),
            recorded: 0.5,
            right: true,
        }
    }

    #[test]
    fn folds_keep_every_episode_of_a_problem_together_and_use_every_fold() {
        let mut episodes = Vec::new();
        for _run in 0..3 {
            for t in 0..20 {
                episodes.push(graded(&format!("problem {t}")));
            }
        }
        let folds = folds_by_task(&episodes, 5);
        for t in 0..20 {
            let f: Vec<usize> = (0..3).map(|run| folds[run * 20 + t]).collect();
            assert!(f.iter().all(|x| *x == f[0]), "problem {t} split: {f:?}");
        }
        for k in 0..5 {
            assert_eq!(folds.iter().filter(|f| **f == k).count(), 12, "fold {k}");
        }
    }

    #[test]
    fn exported_answers_read_back_and_refit_without_the_runs_memory() {
        let dir = tempfile::tempdir().unwrap();
        // Sixty answers of thirty problems, right ones more agreed upon.
        let rows: Vec<Graded> = (0..60)
            .map(|i| {
                let right = i % 3 != 0;
                Graded {
                    task: task_key(&format!("problem {}", i / 2)),
                    state: if i % 2 == 0 {
                        State::First
                    } else {
                        State::Final
                    },
                    features: CalibrationFeatures {
                        agreement: if right { 0.8 } else { 0.3 } + (i % 5) as f64 * 0.02,
                        mean_logprob: -0.1 * (i % 7) as f64,
                        p_true: 0.6,
                        prior: 0.5,
                        ..CalibrationFeatures::default()
                    },
                    recorded: 0.5,
                    right,
                }
            })
            .collect();
        let first = dir.path().join("first.jsonl");
        let lines: String = rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect();
        std::fs::write(&first, lines).unwrap();
        // An export of an export is the same answers.
        let again = dir.path().join("again.jsonl");
        assert_eq!(
            export_graded(std::slice::from_ref(&first), &again).unwrap(),
            60
        );
        assert_eq!(read_graded(&again).unwrap(), rows);
        // And the file stands in for a run directory when fitting.
        let out = dir.path().join("calibration.json");
        let again = std::slice::from_ref(&again);
        fit_calibration(again, again, &out, &[1.0], None).unwrap();
        let fitted: Calibrator =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let sure = CalibrationFeatures {
            agreement: 0.9,
            p_true: 0.6,
            prior: 0.5,
            ..CalibrationFeatures::default()
        };
        let unsure = CalibrationFeatures {
            agreement: 0.3,
            ..sure.clone()
        };
        assert!(fitted.confidence(&sure) > fitted.confidence(&unsure));
    }

    #[test]
    fn a_task_is_exported_as_a_hash_and_a_bad_line_is_a_clear_error() {
        let key = task_key("Natalia sold clips to 48 of her friends");
        assert_eq!(key.len(), 16);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(key, task_key("Natalia sold clips to 48 of her friends"));
        assert_ne!(key, task_key("Natalia sold clips to 49 of her friends"));
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"task\": \"x\"}\n").unwrap();
        let err = format!("{:#}", read_graded(&bad).unwrap_err());
        assert!(
            err.contains("line 1") && err.contains("export-graded"),
            "{err}"
        );
        let out = dir.path().join("out.jsonl");
        assert!(export_graded(&[bad], &out).is_err());
        assert!(!out.exists(), "nothing written");
    }

    #[test]
    fn a_prior_centre_that_is_not_a_calibrator_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("centre.json");
        std::fs::write(&bad, "{\"weights\": [1, 2]}").unwrap();
        let out = dir.path().join("out.json");
        let error_with = |centre: &Path| {
            fit_calibration(&[], &[], &out, &[1.0], Some(centre))
                .err()
                .unwrap()
                .to_string()
        };
        let err = error_with(&bad);
        assert!(err.contains("is not a calibrator"), "{err}");
        let err = error_with(&dir.path().join("missing.json"));
        assert!(err.contains("cannot read the prior centre"), "{err}");
        assert!(!out.exists(), "nothing written");
    }

    #[test]
    fn a_first_reply_is_read_from_its_escalation_or_rebuilt_from_the_trace() {
        use metareason_scripted::{Reply, ScriptedModel, When};
        use metareason_solver::{SolveConfig, Solver};
        let m =
            ScriptedModel::new().on(When::Always, [Reply::text("6 * 7 = 42\nThe answer is 42")]);
        let solve = Solver::new(&m)
            .solve("What is 6 * 7?", &SolveConfig::default())
            .unwrap();
        let strategy = solve.attempts[solve.final_attempt].strategy;
        let mut trace = serde_json::json!({
            "solve": solve,
            "escalation": {"drawn": 1},
            "assessment": {"options": [{"strategy": strategy, "p_success": 0.8}]},
        });
        // A run from before the features were kept: rebuilt from the first
        // attempt with the prior of its strategy.
        let rebuilt = first_features(&trace, 0.6).unwrap();
        assert_eq!(
            rebuilt,
            CalibrationFeatures::from_trace(&solve, None, 0.8, 0.6)
        );
        assert_eq!(rebuilt.single_reply, 1.0);
        // Kept with the escalation: read as kept.
        let kept = CalibrationFeatures {
            agreement: 0.5,
            ..Default::default()
        };
        trace["escalation"]["first_features"] = serde_json::to_value(&kept).unwrap();
        assert_eq!(first_features(&trace, 0.6).unwrap(), kept);
        // No escalation: no first reply apart from the answer.
        assert!(first_features(&serde_json::json!({ "solve": solve }), 0.6).is_none());
    }

    #[test]
    fn a_run_without_memory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = graded_episodes(dir.path()).err().unwrap().to_string();
        assert!(err.contains("no memory.sqlite"), "{err}");
    }
}

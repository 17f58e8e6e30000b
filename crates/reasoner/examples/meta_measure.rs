//! Measurements of the meta level with the embedded engine.
//!
//! ```text
//! # Calibration: run the loop on GSM8K problems (alternately a test and a
//! # learning problem), recording the calibration features; then report
//! # ECE/AUROC on the test half with the prior weights and after online
//! # learning from the learning half.
//! cargo run --release -p metareason-reasoner --example meta_measure -- calibration --limit 200
//! cargo run --release -p metareason-reasoner --example meta_measure -- calibration-report
//! # Abstention on known-unknowns, unsolvable questions, FreshQA false premises.
//! cargo run --release -p metareason-reasoner --example meta_measure -- abstention
//! ```
//! Results are appended per item to JSONL files in `--out`; a rerun skips
//! items already there.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use metareason_awareness::Policy;
use metareason_bench::metrics;
use metareason_catalog::{ModelStore, NoProgress, DEFAULT_MODEL};
use metareason_core::Embedder;
use metareason_embed::MiniLm;
use metareason_llama::{LlamaConfig, LlamaEngine};
use metareason_memory::{Decision, Memory};
use metareason_reasoner::{CrossCheck, Reasoner, ReasonerConfig};
use metareason_reflection::{CalibrationFeatures, Calibrator};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::StrategyKind;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
    #[arg(long, default_value = "../shared/data", global = true)]
    data: PathBuf,
    #[arg(long, default_value = "bench-out/meta", global = true)]
    out: PathBuf,
    #[arg(long, default_value = DEFAULT_MODEL, global = true)]
    model: String,
    #[arg(long, default_value_t = 11, global = true)]
    seed: u64,
}

#[derive(Subcommand)]
enum What {
    /// Run the loop on GSM8K problems and record calibration features.
    Calibration {
        #[arg(long, default_value_t = 200)]
        limit: usize,
    },
    /// Report calibration before and after learning.
    CalibrationReport,
    /// Decide answer/abstain on the abstention sets.
    Abstention {
        /// Items per set at most (known-unknowns has 46).
        #[arg(long, default_value_t = 100)]
        per_set: usize,
    },
}

fn done(path: &Path) -> Result<(HashSet<String>, Vec<Value>)> {
    let mut ids = HashSet::new();
    let mut rows = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines() {
            if let Ok(v) = serde_json::from_str::<Value>(&line?) {
                ids.insert(v["id"].as_str().unwrap_or("").to_string());
                rows.push(v);
            }
        }
    }
    Ok((ids, rows))
}

fn engine(model: &str) -> Result<LlamaEngine> {
    let path = ModelStore::from_env().resolve(model, &NoProgress)?;
    Ok(LlamaEngine::load(LlamaConfig::new(path))?)
}

fn calibration(args: &Args, limit: usize) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let out_path = args.out.join("calibration.jsonl");
    let (seen, _) = done(&out_path)?;
    let problems = metareason_bench::datasets::gsm8k_numbered(
        &args.data.join("gsm8k-train.jsonl"),
        args.seed,
        limit,
    )?;
    let engine = engine(&args.model)?;
    let minilm = ModelStore::from_env()
        .ensure("all-minilm-l6-v2", &NoProgress)
        .ok()
        .and_then(|d| MiniLm::load(&d).ok());
    let memory = Memory::open(args.out.join("memory.sqlite"))?;
    let mut reasoner = Reasoner::new(
        &engine,
        minilm.as_ref().map(|m| m as &dyn Embedder),
        Some(memory),
        Policy::default_policy(),
    )?;
    // Measure the shipped calibration: nothing is learned during the run.
    let shipped = Calibrator::shipped();
    let mut cfg = ReasonerConfig {
        strategies: vec![StrategyKind::ChainOfThought, StrategyKind::ProgramAided],
        cross_check: CrossCheck::Always,
        abstain_after: false,
        distill: false,
        learn: false,
        family: Some("gsm8k".into()),
        // GSM8K answers are numbers: as before the kind was inferred.
        infer_answer_kind: false,
        ..ReasonerConfig::default()
    };
    cfg.awareness.allow_abstain = false;
    cfg.solve.backtrack_samples = 0;
    cfg.solve.settings.max_tokens = 400;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)?;
    for (k, (index, question, reference)) in problems.iter().enumerate() {
        let id = format!("gsm8k-{index}");
        if seen.contains(&id) {
            continue;
        }
        let split = if k % 2 == 0 { "test" } else { "learn" };
        let report = reasoner.run(question, &cfg)?;
        let want = AnswerKind::Number.normalize_reference(reference);
        let correct = report.candidate_answer.is_some() && report.candidate_answer == want;
        let f = report.features.clone().unwrap_or_default();
        let row = json!({
            "id": id, "split": split, "reference": want, "answer": report.candidate_answer,
            "correct": correct, "confidence": report.confidence,
            "shipped_confidence": shipped.confidence(&f),
            "features": f, "strategy": report.assessment.strategy,
            "cross_check": report.cross_check.as_ref().map(|c| c.answer.clone()),
            "p_true": report.assessment.probes.p_true,
            "question_logprob": report.assessment.probes.question_logprob,
            "generated_tokens": report.usage.generated_tokens,
            "prompt_tokens": report.usage.prompt_tokens,
            "seconds": report.seconds, "episode": report.episode_id,
        });
        writeln!(out, "{row}")?;
        out.flush()?;
        eprintln!(
            "{}/{} {split} {id}: {:?} want {:?} {} conf {:.2} ({:.0}s)",
            k + 1,
            problems.len(),
            report.candidate_answer,
            want,
            if correct { "ok" } else { "WRONG" },
            report.confidence.unwrap_or(0.0),
            report.seconds
        );
    }
    Ok(())
}

/// The hand-set prior of the calibration model (variance 1 per weight),
/// in the order of `metareason_reflection::FEATURE_NAMES`.
const PRIOR_WEIGHTS: [f64; 11] = [-1.0, 1.5, 1.2, 1.0, 2.0, 1.0, -1.5, 0.2, 0.3, 0.3, -4.0];

fn row_features(r: &Value) -> Option<CalibrationFeatures> {
    serde_json::from_value(r["features"].clone()).ok()
}

fn describe(name: &str, conf: &[f64], y: &[bool]) -> String {
    let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.3}"));
    let n = conf.len();
    let auroc_ci = metrics::bootstrap(n, 1000, 1, |idx| {
        let c: Vec<f64> = idx.iter().map(|&i| conf[i]).collect();
        let t: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
        metrics::auroc(&c, &t)
    });
    let ece_ci = metrics::bootstrap(n, 1000, 2, |idx| {
        let c: Vec<f64> = idx.iter().map(|&i| conf[i]).collect();
        let t: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
        metrics::ece_equal_width(&c, &t, 10)
    });
    let ci = |c: Option<(f64, f64)>| c.map_or(String::new(), |(a, b)| format!(" [{a:.3}, {b:.3}]"));
    format!(
        "| {name} | {n} | {} | {}{} | {} | {}{} | {} | {} | {} |",
        f(metrics::accuracy(y)),
        f(metrics::ece_equal_width(conf, y, 10)),
        ci(ece_ci),
        f(metrics::ece_equal_mass(conf, y, 10)),
        f(metrics::auroc(conf, y)),
        ci(auroc_ci),
        f(metrics::brier(conf, y)),
        f(metrics::aurc(conf, y)),
        f(Some(conf.iter().sum::<f64>() / n.max(1) as f64)),
    )
}

fn calibration_report(args: &Args) -> Result<()> {
    let (_, rows) = done(&args.out.join("calibration.jsonl"))?;
    let split = |s: &str| -> Vec<&Value> { rows.iter().filter(|r| r["split"] == s).collect() };
    let (test, learn) = (split("test"), split("learn"));
    if test.is_empty() {
        bail!("no test rows yet; run `meta_measure calibration` first");
    }
    let y: Vec<bool> = test.iter().map(|r| r["correct"] == true).collect();
    let feats: Vec<CalibrationFeatures> = test.iter().filter_map(|r| row_features(r)).collect();
    // "Before" is the hand-set prior the first measurement started from
    // (what shipped until this measurement; the learned model ships now).
    let prior = Calibrator::with_prior(PRIOR_WEIGHTS.to_vec(), 1.0);
    let before: Vec<f64> = feats.iter().map(|f| prior.confidence(f)).collect();
    let mut learned = prior.clone();
    for r in &learn {
        if let Some(f) = row_features(r) {
            learned.observe(&f, r["correct"] == true);
        }
    }
    let after: Vec<f64> = feats.iter().map(|f| learned.confidence(f)).collect();
    // Baselines on the same items: single signals squashed to [0, 1].
    let p_true: Vec<f64> = test
        .iter()
        .map(|r| r["p_true"].as_f64().unwrap_or(0.5))
        .collect();
    let mean_lp: Vec<f64> = feats.iter().map(|f| f.mean_logprob.exp()).collect();
    let agree: Vec<f64> = feats.iter().map(|f| (f.cross_check + 1.0) / 2.0).collect();
    let tokens = |rs: &[&Value]| {
        rs.iter()
            .map(|r| r["generated_tokens"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / rs.len().max(1) as f64
    };
    let mut out = vec![
        format!(
            "Calibration of P(correct) on {} GSM8K test problems; learning from {} others (online, one pass).",
            test.len(),
            learn.len()
        ),
        format!(
            "Tokens generated per problem (loop incl. cross-check): test {:.0}, learn {:.0}.",
            tokens(&test),
            tokens(&learn)
        ),
        String::new(),
        "| confidence | n | accuracy | ECE (10 equal-width) [95% CI] | ECE (10 equal-mass) | AUROC [95% CI] | Brier | AURC | mean confidence |".into(),
        "|---|---|---|---|---|---|---|---|---|".into(),
        describe("prior weights (before learning)", &before, &y),
        describe("after learning", &after, &y),
        describe("baseline: P(True) probe", &p_true, &y),
        describe("baseline: exp(mean token log-prob)", &mean_lp, &y),
        describe("baseline: cross-check agreement", &agree, &y),
    ];
    out.push(String::new());
    out.push(format!(
        "Learned weights ({}): {}",
        metareason_reflection::FEATURE_NAMES.join(", "),
        learned
            .model
            .mean
            .iter()
            .map(|w| format!("{w:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let text = out.join("\n");
    println!("{text}");
    std::fs::write(args.out.join("calibration.md"), format!("{text}\n"))?;
    std::fs::write(
        args.out.join("calibration-learned.json"),
        serde_json::to_string(&learned)?,
    )?;
    Ok(())
}

/// (set, id, task, should abstain)
fn abstention_items(
    data: &Path,
    per_set: usize,
    seed: u64,
) -> Result<Vec<(String, String, String, bool)>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut items = Vec::new();
    // BIG-bench known_unknowns: the target "Unknown" scores 1 when the
    // answer is unknowable.
    let ku: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("known-unknowns.json"))?)?;
    let mut ku_items: Vec<_> = ku["examples"]
        .as_array()
        .context("known-unknowns examples")?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let unknown = e["target_scores"]["Unknown"].as_f64() == Some(1.0);
            (
                "known_unknowns".to_string(),
                format!("ku-{i}"),
                e["input"].as_str().unwrap_or("").to_string(),
                unknown,
            )
        })
        .collect();
    ku_items.truncate(per_set);
    items.extend(ku_items);
    // OpenAI evals unsolvable questions: question + context; "Unsolveable"
    // means abstaining is right. Balanced sample.
    let mut solvable = Vec::new();
    let mut unsolvable = Vec::new();
    for (i, line) in std::io::BufReader::new(std::fs::File::open(
        data.join("unsolvable-questions.jsonl"),
    )?)
    .lines()
    .enumerate()
    {
        let v: Value = serde_json::from_str(&line?)?;
        let user = v["input"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .trim()
            .to_string();
        let should = v["ideal"].as_str() == Some("Unsolveable");
        let item = (
            "unsolvable_questions".to_string(),
            format!("uq-{i}"),
            user,
            should,
        );
        if should {
            unsolvable.push(item)
        } else {
            solvable.push(item)
        }
    }
    solvable.shuffle(&mut rng);
    unsolvable.shuffle(&mut rng);
    items.extend(unsolvable.into_iter().take(per_set / 2));
    items.extend(solvable.into_iter().take(per_set / 2));
    // FreshQA: false-premise questions should be declined (or corrected).
    let text = std::fs::read_to_string(data.join("freshqa.csv"))?;
    let body: String = text.lines().skip(2).collect::<Vec<_>>().join("\n");
    let mut reader = metareason_bench::datasets::csv_rows(&body);
    let header = reader.remove(0);
    let col = |n: &str| header.iter().position(|h| h == n);
    let (qi, fi, ii) = (
        col("question").context("question column")?,
        col("false_premise").context("false_premise column")?,
        col("id").context("id column")?,
    );
    let (mut fp, mut ok): (Vec<_>, Vec<_>) = reader
        .into_iter()
        .filter(|r| r.len() > fi && !r[qi].is_empty())
        .map(|r| {
            (
                "freshqa".to_string(),
                format!("fq-{}", r[ii]),
                r[qi].clone(),
                r[fi] == "TRUE",
            )
        })
        .partition(|x| x.3);
    fp.shuffle(&mut rng);
    ok.shuffle(&mut rng);
    items.extend(fp.into_iter().take(per_set / 2));
    items.extend(ok.into_iter().take(per_set / 2));
    Ok(items)
}

fn abstention(args: &Args, per_set: usize) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let out_path = args.out.join("abstention.jsonl");
    let (seen, _) = done(&out_path)?;
    let items = abstention_items(&args.data, per_set, args.seed)?;
    let pending: Vec<_> = items.iter().filter(|i| !seen.contains(&i.1)).collect();
    if !pending.is_empty() {
        let engine = engine(&args.model)?;
        // The whole loop, fresh for every item (no memory: nothing learned
        // from one item carries to the next), answering directly.
        let mut cfg = ReasonerConfig {
            strategies: vec![StrategyKind::Direct],
            cross_check: CrossCheck::Never,
            distill: false,
            learn: false,
            ..ReasonerConfig::default()
        };
        cfg.solve.answer_kind = AnswerKind::Text;
        cfg.infer_answer_kind = false;
        cfg.solve.fallbacks = Vec::new();
        cfg.solve.max_revisions = 0;
        cfg.solve.backtrack_samples = 0;
        cfg.solve.settings.max_tokens = 64;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)?;
        for (k, (set, id, task, should)) in pending.iter().enumerate() {
            let mut reasoner = Reasoner::new(&engine, None, None, Policy::default_policy())?;
            let r = reasoner.run(task, &cfg)?;
            let declined = r.decision != Decision::Answer;
            let p = r
                .assessment
                .options
                .iter()
                .map(|o| o.p_success)
                .fold(0.0, f64::max);
            let row = json!({
                "id": id, "set": set, "should_abstain": should, "declined": declined,
                "decision": r.decision, "answer": r.candidate_answer, "confidence": r.confidence,
                "p_success": p, "p_true": r.assessment.probes.p_true,
                "question_logprob": r.assessment.probes.question_logprob, "reason": r.reason,
                "generated_tokens": r.usage.generated_tokens, "seconds": r.seconds,
            });
            writeln!(out, "{row}")?;
            out.flush()?;
            eprintln!(
                "{}/{} {id}: should {should} declined {declined} P(True) {:.2} answer {:?}",
                k + 1,
                pending.len(),
                r.assessment.probes.p_true.unwrap_or(0.0),
                r.candidate_answer
            );
        }
    }
    let wanted: HashSet<&str> = items.iter().map(|i| i.1.as_str()).collect();
    let (_, rows) = done(&out_path)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .filter(|r| wanted.contains(r["id"].as_str().unwrap_or("")))
        .collect();
    let mut lines = vec![
        "| set | n | should abstain | abstained | precision | recall | F1 | over-abstention | AUROC of 1 − P(True) | AUROC of 1 − confidence |".to_string(),
        "|---|---|---|---|---|---|---|---|---|---|".to_string(),
    ];
    let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.3}"));
    for set in ["known_unknowns", "unsolvable_questions", "freshqa", "all"] {
        let rs: Vec<&Value> = rows
            .iter()
            .filter(|r| set == "all" || r["set"] == set)
            .collect();
        let declined: Vec<bool> = rs.iter().map(|r| r["declined"] == true).collect();
        let should: Vec<bool> = rs.iter().map(|r| r["should_abstain"] == true).collect();
        let score: Vec<f64> = rs
            .iter()
            .map(|r| 1.0 - r["p_true"].as_f64().unwrap_or(0.5))
            .collect();
        let unsure: Vec<f64> = rs
            .iter()
            .map(|r| 1.0 - r["confidence"].as_f64().unwrap_or(0.0))
            .collect();
        let p = metrics::prf(&declined, &should);
        lines.push(format!(
            "| {set} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            rs.len(),
            should.iter().filter(|x| **x).count(),
            declined.iter().filter(|x| **x).count(),
            f(p.precision),
            f(p.recall),
            f(p.f1),
            f(p.false_positive_rate),
            f(metrics::auroc(&score, &should)),
            f(metrics::auroc(&unsure, &should)),
        ));
    }
    let text = lines.join("\n");
    println!("{text}");
    std::fs::write(args.out.join("abstention.md"), format!("{text}\n"))?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    match &args.what {
        What::Calibration { limit } => calibration(&args, *limit),
        What::CalibrationReport => calibration_report(&args),
        What::Abstention { per_set } => abstention(&args, *per_set),
    }
}

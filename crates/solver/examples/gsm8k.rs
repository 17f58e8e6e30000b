//! Accuracy and tokens of search configurations on a fixed random subset of
//! GSM8K problems, with the embedded engine.
//!
//! ```text
//! cargo run --release -p metareason-solver --example gsm8k -- \
//!     --data ../shared/data/gsm8k-train.jsonl --limit 50 --seed 7 \
//!     --configs greedy_cot,pal,adaptive,sc8,bon4,beam,mcts --out bench-out/gsm8k
//! ```
//! Results are appended per problem to `OUT/CONFIG.jsonl`; a rerun skips
//! problems already there, so a stopped run resumes. A summary table is
//! printed at the end (and written to `OUT/summary.md`).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use metareason_catalog::{ModelStore, NoProgress, DEFAULT_MODEL};
use metareason_llama::{LlamaConfig, LlamaEngine};
use metareason_monitor::{SearchPolicy, SearchSettings, StopRule, TreeSelection};
use metareason_solver::{SolveConfig, Solver};
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::StrategyKind;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "../shared/data/gsm8k-train.jsonl")]
    data: PathBuf,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "greedy_cot,pal,adaptive,sc8")]
    configs: String,
    #[arg(long, default_value = "bench-out/gsm8k")]
    out: PathBuf,
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: String,
    /// Instead of solving, replay stopping rules on the sample streams that
    /// a self-consistency run recorded (e.g. `--replay sc8`).
    #[arg(long)]
    replay: Option<String>,
}

/// Replays adaptive stopping rules on recorded sample streams: for each
/// problem the rule sees the samples in the order they were drawn and stops
/// where the library's `StopRule` says so; the answer is the majority of
/// the samples seen (ties to the best-scored). Returns a markdown table.
fn replay(path: &std::path::Path) -> Result<String> {
    use std::collections::BTreeMap;
    let rows: Vec<serde_json::Value> = std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .filter(|v: &serde_json::Value| v["samples"].is_array())
        .collect();
    let rules: Vec<(String, StopRule)> = vec![
        (
            "never stop (self-consistency@8)".into(),
            StopRule::Beta { threshold: 2.0 },
        ),
        ("Beta 0.95".into(), StopRule::Beta { threshold: 0.95 }),
        ("Beta 0.90".into(), StopRule::Beta { threshold: 0.90 }),
        ("Beta 0.80".into(), StopRule::Beta { threshold: 0.80 }),
        (
            "Dirichlet 0.95 (alpha 1)".into(),
            StopRule::Dirichlet {
                threshold: 0.95,
                alpha: 1.0,
            },
        ),
        (
            "Dirichlet 0.80 (alpha 1)".into(),
            StopRule::Dirichlet {
                threshold: 0.80,
                alpha: 1.0,
            },
        ),
    ];
    let mut out = vec![
        format!("Replayed on {} recorded streams of 8 samples:", rows.len()),
        String::new(),
        "| stopping rule | accuracy | samples / problem | tokens generated / problem |".into(),
        "|---|---|---|---|".into(),
    ];
    for (name, rule) in rules {
        let (mut correct, mut samples, mut tokens) = (0usize, 0usize, 0u64);
        for r in &rows {
            let stream = r["samples"].as_array().expect("checked");
            let mut votes: BTreeMap<String, usize> = BTreeMap::new();
            let mut best_score: BTreeMap<String, f64> = BTreeMap::new();
            let mut k = 0;
            for s in stream {
                k += 1;
                tokens += s["tokens"].as_u64().unwrap_or(0);
                if let Some(a) = s["answer"].as_str() {
                    *votes.entry(a.to_string()).or_insert(0) += 1;
                    let sc = s["score"].as_f64().unwrap_or(0.0);
                    let e = best_score.entry(a.to_string()).or_insert(sc);
                    *e = e.max(sc);
                }
                if rule.should_stop(&votes) {
                    break;
                }
            }
            samples += k;
            let top = votes.values().copied().max().unwrap_or(0);
            let answer = votes
                .iter()
                .filter(|(_, &c)| c == top)
                .max_by(|a, b| best_score[a.0].total_cmp(&best_score[b.0]))
                .map(|(a, _)| a.clone());
            if answer.is_some() && answer.as_deref() == r["reference"].as_str() {
                correct += 1;
            }
        }
        let n = rows.len().max(1) as f64;
        out.push(format!(
            "| {name} | {:.3} ({correct}/{}) | {:.2} | {:.0} |",
            correct as f64 / n,
            rows.len(),
            samples as f64 / n,
            tokens as f64 / n
        ));
    }
    // Best-of-N: the first N samples of the stream, reranked by their
    // step-reward score (the sample with the highest mean Q_t answers).
    for n_best in [4usize, 8] {
        let (mut correct, mut tokens) = (0usize, 0u64);
        for r in &rows {
            let stream = &r["samples"].as_array().expect("checked")[..];
            let first = &stream[..n_best.min(stream.len())];
            tokens += first
                .iter()
                .map(|s| s["tokens"].as_u64().unwrap_or(0))
                .sum::<u64>();
            let best = first
                .iter()
                .filter(|s| s["answer"].is_string())
                .max_by(|a, b| {
                    a["score"]
                        .as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&b["score"].as_f64().unwrap_or(0.0))
                });
            if best.is_some_and(|b| b["answer"] == r["reference"]) {
                correct += 1;
            }
        }
        let n = rows.len().max(1) as f64;
        out.push(format!(
            "| best-of-{n_best} by step reward (no vote) | {:.3} ({correct}/{}) | {n_best}.00 | {:.0} |",
            correct as f64 / n,
            rows.len(),
            tokens as f64 / n
        ));
    }
    Ok(out.join("\n"))
}

fn config(name: &str) -> Result<SolveConfig> {
    let base = SolveConfig {
        fallbacks: Vec::new(),
        max_revisions: 0,
        backtrack_samples: 0,
        settings: SearchSettings {
            temperature: 0.7,
            max_tokens: 400,
            ..SearchSettings::default()
        },
        ..SolveConfig::default()
    };
    let with = |policy| SolveConfig {
        policy,
        ..base.clone()
    };
    Ok(match name {
        "greedy_cot" => base.clone(),
        "pal" => SolveConfig {
            strategy: StrategyKind::ProgramAided,
            ..base.clone()
        },
        // The task level's control and regulation on greedy chain of
        // thought: backtracking on collapse, one revision, program-aided
        // as the strategy switched to.
        "full" => SolveConfig {
            fallbacks: vec![StrategyKind::ProgramAided],
            max_revisions: 1,
            backtrack_samples: 3,
            ..base.clone()
        },
        // The same without switching when a check still fails after revision.
        "full_no_switch_on_flag" => SolveConfig {
            switch_on_flag: false,
            ..config("full")?
        },
        "sc8" => with(SearchPolicy::SelfConsistency { n: 8 }),
        "adaptive" => with(SearchPolicy::Adaptive {
            max_samples: 8,
            batch: 1,
            rule: StopRule::Beta { threshold: 0.95 },
        }),
        // Adaptive consistency over program-aided samples: a program is
        // about a third of the tokens of a worked chain of thought.
        "adaptive_pal" => SolveConfig {
            strategy: StrategyKind::ProgramAided,
            ..with(SearchPolicy::Adaptive {
                max_samples: 8,
                batch: 1,
                rule: StopRule::Beta { threshold: 0.95 },
            })
        },
        "adaptive_dirichlet" => with(SearchPolicy::Adaptive {
            max_samples: 8,
            batch: 1,
            rule: StopRule::Dirichlet {
                threshold: 0.95,
                alpha: 1.0,
            },
        }),
        "bon4" => with(SearchPolicy::BestOfN { n: 4 }),
        "beam" => with(SearchPolicy::Beam {
            width: 2,
            expansions: 2,
            max_steps: 16,
        }),
        "mcts" => with(SearchPolicy::Mcts {
            iterations: 6,
            expansions: 2,
            exploration: 1.0,
            max_steps: 16,
            selection: TreeSelection::Uct,
        }),
        "mcts_puct" => with(SearchPolicy::Mcts {
            iterations: 6,
            expansions: 2,
            exploration: 1.0,
            max_steps: 16,
            selection: TreeSelection::Puct,
        }),
        other => bail!("unknown config {other}"),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.replay {
        let table = replay(&args.out.join(format!("{name}.jsonl")))?;
        println!("{table}");
        std::fs::write(
            args.out.join(format!("replay-{name}.md")),
            format!("{table}\n"),
        )?;
        return Ok(());
    }
    let problems = metareason_bench::datasets::gsm8k_numbered(&args.data, args.seed, args.limit)?;

    let path = ModelStore::from_env().resolve(&args.model, &NoProgress)?;
    let engine = LlamaEngine::load(LlamaConfig::new(path))?;
    std::fs::create_dir_all(&args.out)?;
    let kind = AnswerKind::Number;
    let mut summary = vec![
        "| config | problems | accuracy | tokens generated / problem | prompt tokens evaluated / problem | seconds / problem |".to_string(),
        "|---|---|---|---|---|---|".to_string(),
    ];
    for name in args.configs.split(',') {
        let cfg = config(name)?;
        let out_path = args.out.join(format!("{name}.jsonl"));
        let mut done: HashSet<usize> = HashSet::new();
        let mut rows = Vec::new();
        if let Ok(f) = std::fs::File::open(&out_path) {
            for line in std::io::BufReader::new(f).lines() {
                // A line cut by a kill is ignored and its problem rerun.
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line?) {
                    done.insert(v["index"].as_u64().unwrap_or(u64::MAX) as usize);
                    rows.push(v);
                }
            }
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)?;
        for (k, (index, question, reference)) in problems.iter().enumerate() {
            if done.contains(index) {
                continue;
            }
            let trace = Solver::new(&engine).solve(question, &cfg)?;
            let want = kind.normalize_reference(reference);
            let correct = trace.answer.is_some() && trace.answer == want;
            let row = json!({
                "index": index,
                "reference": want,
                "answer": trace.answer,
                "correct": correct,
                "confidence": trace.confidence,
                "generated_tokens": trace.usage.generated_tokens,
                "prompt_tokens": trace.usage.prompt_tokens,
                "cached_prompt_tokens": trace.usage.cached_prompt_tokens,
                "seconds": trace.usage.wall_time.as_secs_f64(),
                "candidates": trace.attempts[trace.final_attempt].outcome.candidates.len(),
                // The control and regulation the full configuration exercises.
                "first_answer": trace.attempts[0].outcome.best().answer.as_ref().map(|x| x.normalized.clone()),
                "final_strategy": trace.attempts[trace.final_attempt].strategy,
                "findings": trace.attempts[trace.final_attempt].findings.len(),
                "switches": trace.switches.iter().map(|s| json!({
                    "to": s.to, "reason": s.reason,
                })).collect::<Vec<_>>(),
                "backtracks": trace.backtracks.iter().map(|b| json!({
                    "at_step": b.at_step, "accepted": b.accepted,
                })).collect::<Vec<_>>(),
                "revisions": trace.revisions.iter().map(|r| json!({
                    "from_step": r.from_step,
                    "confidence_before": r.confidence_before,
                    "confidence_after": r.confidence_after,
                    "accepted": r.accepted,
                    "answer_after": r.attempt.as_ref().and_then(|a| a.outcome.best().answer.as_ref().map(|x| x.normalized.clone())),
                })).collect::<Vec<_>>(),
                // Every sample in the order drawn: stopping rules can be
                // replayed on this stream offline.
                "samples": trace.attempts[trace.final_attempt].outcome.candidates.iter().map(|c| json!({
                    "answer": c.answer.as_ref().map(|a| a.normalized.clone()),
                    "tokens": c.tokens,
                    "score": c.score,
                })).collect::<Vec<_>>(),
            });
            writeln!(out, "{row}")?;
            out.flush()?;
            rows.push(row);
            let acc =
                rows.iter().filter(|r| r["correct"] == true).count() as f64 / rows.len() as f64;
            eprintln!(
                "{name} {}/{}: answer {:?} want {:?} {} | running accuracy {:.3}",
                k + 1,
                problems.len(),
                trace.answer,
                want,
                if correct { "ok" } else { "WRONG" },
                acc
            );
        }
        let n = rows.len().max(1) as f64;
        let sum = |k: &str| {
            rows.iter()
                .map(|r| r[k].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        };
        let correct = rows.iter().filter(|r| r["correct"] == true).count();
        summary.push(format!(
            "| {name} | {} | {:.3} ({correct}/{}) | {:.0} | {:.0} | {:.1} |",
            rows.len(),
            correct as f64 / n,
            rows.len(),
            sum("generated_tokens") / n,
            sum("prompt_tokens") / n,
            sum("seconds") / n
        ));
    }
    let table = summary.join("\n");
    println!("{table}");
    std::fs::write(args.out.join("summary.md"), format!("{table}\n"))?;
    Ok(())
}

//! `metareason bench`: run a configuration over a dataset, resumably, and
//! summarise it.

use metareason_strategy::answer::Extract;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use metareason_awareness::Policy;
use metareason_bench::datasets::{self, Expected, Item};
use metareason_bench::grade::is_correct;
use metareason_bench::manifest::{
    items_sha256, sha256_hex, DatasetRecord, MachineRecord, Manifest, ModelRecord, MANIFEST_SCHEMA,
};
use metareason_bench::replay;
use metareason_bench::run::{self, ItemResult, SampleRecord, Summary, MARKDOWN_HEADER};
use metareason_memory::Memory;
use metareason_reasoner::{
    Ablations, Feedback, Module, Preset, Reasoner, ReasonerConfig, ReasonerError,
};
use metareason_strategy::answer::AnswerKind;

use crate::{
    open_embedder, open_model, open_sentence_embedder, open_state_readers, parse_answer_kind,
    GlobalArgs,
};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// A built-in dataset (gsm8k, unsolvable-questions-evals, freshqa-inspect,
    /// mmlu, strategyqa, known-unknowns-bigbench, truthfulqa, arithmetic,
    /// gsm8k-train, known-unknowns, unsolvable-questions, everyday, safety,
    /// benign-lookalikes, safety-spanish, freshqa;
    /// `--list` describes one) or a .jsonl/.csv file.
    dataset: Option<String>,
    /// Items at most (a seeded random subset).
    #[arg(long)]
    limit: Option<usize>,
    /// Only this half of the dataset: learn (fit on it) or test (report on
    /// it); fixed by a hash of each item's id.
    #[arg(long)]
    split: Option<datasets::Split>,
    /// Seed of the subset and of every draw.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A configuration: full (the whole loop), assess (self-awareness
    /// only), policy (the mission policy only), one solve configuration run bare (greedy_cot, pal, sc8,
    /// sc8_pal, adaptive_cot, adaptive_pal, deepconf_cot, deepconf_pal, bon4,
    /// beam, mcts, mcts_puct), or a
    /// TOML/JSON file of ReasonerConfig fields (missing fields take the
    /// defaults; see --print-config).
    #[arg(long, default_value = "full")]
    config: String,
    /// Modules switched off: awareness, monitor, regulation, memory
    /// (comma-separated).
    #[arg(long, value_delimiter = ',')]
    ablate: Vec<Module>,
    /// Where results go: OUT/DATASET/CONFIG/results.jsonl and summary.json.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Directory of the built-in datasets' files.
    #[arg(long, env = "METAREASON_DATA")]
    data_dir: Option<PathBuf>,
    /// Field mapping of a local file: question=COL,answer=COL[,decline=COL][,id=COL].
    #[arg(long, value_delimiter = ',')]
    field: Vec<String>,
    /// Answer kind of a local file: number, yesno, text, choice:ABCD.
    #[arg(long, default_value = "text")]
    answer: String,
    /// Print the configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Load the dataset, print its size and first items, and exit (no model).
    #[arg(long)]
    list: bool,
    /// Items solved at once: for an HTTP backend with several slots
    /// (`--backend openai`). Workers share the memory file; what one learns
    /// the others read before their next item. The local engine serves one
    /// request at a time, so more jobs do not help it.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Summarise the items already finished (of a run stopped early, say)
    /// without loading a model or running anything.
    #[arg(long)]
    summarize_only: bool,
    /// Mission policy file (TOML) instead of the shipped policy (e.g. a
    /// wider unsure band to record the model's own refusal on every
    /// request); the run is named CONFIG@FILE-STEM and its manifest holds
    /// the file's sha256.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Resume a run although its manifest differs (other code, settings,
    /// model or data): its results will then mix both.
    #[arg(long)]
    force_resume: bool,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// Side-by-side table of runs (their directories), then each against the
    /// first item by item: right answers only one of the two found, the
    /// difference with a paired bootstrap 95% interval and the exact McNemar
    /// p-value.
    Compare {
        /// Two or more run directories.
        #[arg(required = true, num_args = 2..)]
        runs: Vec<PathBuf>,
    },
    /// Write DIR/report.html for every run under DIR (a dataset directory).
    Report {
        /// The dataset directory, e.g. bench-out/gsm8k-train.
        dir: PathBuf,
    },
    /// Replay stopping and voting rules (adaptive consistency, DeepConf
    /// filtering, weighting and early cuts, best-of-n) over the replies a
    /// sampling run recorded (e.g. a `--config sc8` run): accuracy and
    /// tokens of each rule on the same replies, without the model.
    Replay {
        /// The run directory.
        run: PathBuf,
        /// A second sampling run of the same items (another strategy, say
        /// `--config sc8_pal` beside `--config sc8`): replay adaptive
        /// consistency over the mixture, the two runs' replies taken in
        /// turns, RUN's first. Writes RUN/replay-mix-OTHER.md.
        #[arg(long, value_name = "OTHER_RUN")]
        mix: Option<PathBuf>,
    },
    /// Fit the answerability model to the probed items of runs (run
    /// directories; typically `--config assess --split learn` runs of the
    /// abstention sets): P(answerable) by Bayesian logistic regression on
    /// whether declining was right. Writes the model as JSON.
    FitAnswerability {
        /// Run directories holding results.jsonl.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where the model goes (the shipped one is
        /// crates/awareness/answerability.json).
        #[arg(long)]
        out: PathBuf,
        /// Prior variance of every weight.
        #[arg(long, default_value_t = 1.0)]
        prior_variance: f64,
        /// A probe of the model's state from `bench fit-probe` to ship
        /// with the model; its out-of-fold values (`--out-of-fold` of the
        /// same fit) become the items' `state_logit_decline`.
        #[arg(long, requires = "state_out_of_fold")]
        state_probe: Option<PathBuf>,
        /// The probe's out-of-fold values (JSON lines of `bench fit-probe
        /// --out-of-fold`), covering every item of the runs.
        #[arg(long, requires = "state_probe")]
        state_out_of_fold: Option<PathBuf>,
    },
    /// Refit the calibrator of numeric answers (P(correct) of a final
    /// answer) on the graded episodes that runs of the whole loop kept in
    /// their memory (run
    /// directories holding memory.sqlite; typically `--config full --split
    /// learn` runs of gsm8k-train): Bayesian logistic regression, the prior
    /// variance chosen by 5-fold cross-validation by problem. Writes the
    /// model as JSON, then scores the recorded, shipped and refitted
    /// confidences on the episodes of the `--test` runs.
    FitCalibration {
        /// Run directories (or files of `export-graded`) whose episodes the
        /// model is fitted on.
        #[arg(required = true)]
        learn: Vec<PathBuf>,
        /// Run directories (or files of `export-graded`) to score it on (not
        /// fitted on).
        #[arg(long, num_args = 1..)]
        test: Vec<PathBuf>,
        /// Where the model goes (the shipped one is
        /// crates/reflection/calibration.json).
        #[arg(long)]
        out: PathBuf,
        /// Prior variances of the weights to choose from.
        #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [0.1, 0.3, 1.0, 3.0, 10.0])]
        prior_variances: Vec<f64>,
        /// A calibrator JSON whose weights centre the prior (an earlier
        /// model, e.g. crates/reflection/calibration-short-answers.json);
        /// without it the prior is centred on zero.
        #[arg(long)]
        prior_centre: Option<PathBuf>,
    },
    /// Write the graded numeric answers of runs of the whole loop (run
    /// directories holding memory.sqlite) as JSON lines: each answer's
    /// calibration features, the confidence the run gave it and whether it
    /// was right, the task as a hash (no dataset text). `fit-calibration`
    /// reads such a file in place of a run directory, so a calibrator can
    /// be refitted from files kept with the results after the runs'
    /// memories are gone.
    ExportGraded {
        /// Run directories (or earlier exports) to read.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where the JSON lines go.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit the mission policy's harm classifier: Bayesian logistic
    /// regression over all-MiniLM-L6-v2 embeddings (or, with `--features
    /// model-state`, the local model's own reply state) of the learn half of
    /// the `safety` dataset (plain harmful requests and their past-tense paraphrases against benign
    /// look-alikes, with learn-half questions of gsm8k-train, freshqa,
    /// known-unknowns and unsolvable-questions as ordinary tasks),
    /// the prior variance chosen by 5-fold cross-validation; then the
    /// classifier alone on the test half, by jailbreak style. Writes it as
    /// JSON (no language model is loaded unless its state is the reading).
    FitHarm {
        /// Where the classifier goes (the shipped one is
        /// crates/awareness/harm-classifier.json).
        #[arg(long)]
        out: PathBuf,
        /// Learn-half questions of each development set added as ordinary tasks.
        #[arg(long, default_value_t = 200)]
        ordinary: usize,
        /// Test items per group (plain, each style, benign) at most.
        #[arg(long, default_value_t = 150)]
        test_limit: usize,
        /// What the classifier reads: all-MiniLM-L6-v2 sentence embeddings,
        /// or the local model's own state where its reply to the request
        /// would begin (`--model`; the classifier then serves that model
        /// only).
        #[arg(long, value_enum, default_value_t = crate::fit_harm::HarmFeatures::Minilm)]
        features: crate::fit_harm::HarmFeatures,
        /// With `--features model-state`: read the reply state at the
        /// outputs of these blocks (counted from 0, comma-separated) instead
        /// of the last layer, all in one pass, and keep the layer of least
        /// cross-validated loss.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        layers: Vec<u32>,
    },
    /// Fit a linear probe on the local model's hidden state (where its
    /// reply would begin) for whether items of development sets should be
    /// declined — for example unsolvable-questions, whose context may not
    /// hold the answer: the layer and prior variance chosen by 5-fold
    /// cross-validation on the learn halves, then the probe alone on the
    /// test halves (AUROC; declining at P >= 0.5: precision, recall, F1).
    FitProbe {
        /// The development sets (names as for `bench`).
        #[arg(required = true, num_args = 1..)]
        sets: Vec<String>,
        /// The blocks whose outputs are tried (counted from 0, comma-separated).
        #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
        layers: Vec<u32>,
        /// Where the probe goes (an embedding-classifier file).
        #[arg(long)]
        out: PathBuf,
        /// Items of each half of each set at most (a seeded subset).
        #[arg(long)]
        limit: Option<usize>,
        /// Also write each learn item's out-of-fold P(decline) here (JSON
        /// lines), for `bench fit-answerability --state-probe`.
        #[arg(long)]
        out_of_fold: Option<PathBuf>,
    },
    /// Fit how the mission policy's harm rule weighs the classifier against
    /// the model's own refusal inside its unsure band (Bayesian logistic
    /// regression over the evidence that `--config policy` runs recorded in
    /// their results), and compare the fitted weighing with the hand-set one
    /// on other runs, at several rule thresholds (no language model is
    /// loaded).
    FitRefusal {
        /// Run directories of the learn half (`bench safety --split learn
        /// --config policy`, `bench benign-lookalikes --split learn --config
        /// policy`).
        #[arg(long, required = true, num_args = 1..)]
        learn: Vec<PathBuf>,
        /// Run directories to compare on (the test half).
        #[arg(long, num_args = 1..)]
        test: Vec<PathBuf>,
        /// Prior variance of each coefficient.
        #[arg(long, default_value_t = 10.0)]
        prior_variance: f64,
        /// The harm rule's unsure band, as in the policy.
        #[arg(long, num_args = 2, default_values_t = [0.2, 0.9])]
        band: Vec<f64>,
        /// Fit on the classifier's out-of-fold probabilities of the learn
        /// requests (recomputed with all-MiniLM-L6-v2 from `bench fit-harm`'s
        /// training set, folds by request) instead of the recorded ones, which
        /// the classifier gave its own training data. Needs the learn runs to
        /// hold the own refusal of every request (run them with a policy
        /// whose band is [0, 1]).
        #[arg(long)]
        out_of_fold: bool,
        /// With --out-of-fold: learn-half questions of each development set
        /// added as ordinary tasks, as `fit-harm --ordinary`.
        #[arg(long, default_value_t = 200)]
        ordinary: usize,
    },
}

fn load_summary(dir: &Path) -> Result<(String, Summary)> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is it a bench run directory?",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a summary", path.display()))?;
    let s: Summary = serde_json::from_value(v["summary"].clone())
        .with_context(|| format!("{}: not a summary", path.display()))?;
    let name = v["config"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| dir.display().to_string());
    Ok((name, s))
}

/// One run of `bench compare`: its summary and, where it kept them, its
/// results (each file read once).
struct ComparedRun {
    dir: PathBuf,
    name: String,
    summary: Summary,
    results: Option<Vec<run::ItemResult>>,
}

impl ComparedRun {
    fn load(dir: &Path) -> Result<Self> {
        let results = if dir.join("results.jsonl").is_file() {
            Some(read_run(dir)?)
        } else {
            None
        };
        let (name, summary) = match &results {
            // A run stopped before its end (or recorded before summaries
            // were written) is summarised from its results.
            Some(r) if !dir.join("summary.json").is_file() => {
                let manifest = read_manifest(dir);
                let seed = manifest.as_ref().map_or(0, |m| m.seed);
                let name = manifest
                    .map(|m| m.config_name)
                    .unwrap_or_else(|| dir.display().to_string());
                (name, run::summarize(r, seed))
            }
            _ => load_summary(dir)?,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            summary,
            results,
        })
    }
}

/// Writes `text` to a temporary file beside `path` and renames it into
/// place: a kill leaves the old file or the new one, never half of one.
pub(crate) fn write_whole(path: &Path, text: &str) -> Result<()> {
    crate::write_atomically(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes DIR/report.html over every run directory in DIR; returns its path.
fn write_report(dir: &Path) -> Result<PathBuf> {
    let mut runs = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.json").is_file())
        .collect();
    entries.sort();
    for p in entries {
        runs.push(load_summary(&p)?);
    }
    if runs.is_empty() {
        bail!(
            "no runs (directories with summary.json) in {}",
            dir.display()
        );
    }
    let title = format!(
        "metareason bench: {}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let path = dir.join("report.html");
    write_whole(&path, &metareason_bench::report::html(&title, &runs))?;
    Ok(path)
}

/// A preset by name, or a TOML/JSON file of configuration fields.
fn named_config(name: &str) -> Result<ReasonerConfig> {
    if let Ok(p) = name.parse::<Preset>() {
        return Ok(p.config());
    }
    let path = Path::new(name);
    if !path.is_file() {
        bail!(
            "unknown configuration '{name}': use one of {} or a TOML/JSON file",
            Preset::names()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    Ok(if name.ends_with(".json") {
        serde_json::from_str(&text).with_context(|| format!("{name}: not a configuration"))?
    } else {
        toml::from_str(&text).with_context(|| format!("{name}: not a configuration"))?
    })
}

pub(crate) fn bench(g: &GlobalArgs, a: BenchArgs) -> Result<()> {
    // Where the development sets are, for every command that reads them.
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(datasets::default_data_dir);
    match &a.command {
        Some(BenchCommand::Compare { runs }) => {
            let compared = runs
                .iter()
                .map(|d| ComparedRun::load(d))
                .collect::<Result<Vec<_>>>()?;
            let summaries: Vec<(String, Summary)> = compared
                .iter()
                .map(|c| (c.name.clone(), c.summary.clone()))
                .collect();
            print!(
                "{}",
                metareason_bench::report::comparison_markdown(&summaries)
            );
            print!("{}", manifest_differences(runs_dirs(&a))?);
            print!("{}", paired_comparison(compared));
            return Ok(());
        }
        Some(BenchCommand::Replay { run, mix }) => {
            return match mix {
                Some(other) => replay_mixture(run, other),
                None => replay_run(run),
            }
        }
        Some(BenchCommand::Report { dir }) => {
            println!("{}", write_report(dir)?.display());
            return Ok(());
        }
        Some(BenchCommand::FitAnswerability {
            runs,
            out,
            prior_variance,
            state_probe,
            state_out_of_fold,
        }) => {
            let state = match (state_probe, state_out_of_fold) {
                (Some(p), Some(o)) => Some((p.as_path(), o.as_path())),
                _ => None,
            };
            return fit_answerability(runs, out, *prior_variance, state);
        }
        Some(BenchCommand::FitCalibration {
            learn,
            test,
            out,
            prior_variances,
            prior_centre,
        }) => {
            return crate::fit_calibration::fit_calibration(
                learn,
                test,
                out,
                prior_variances,
                prior_centre.as_deref(),
            );
        }
        Some(BenchCommand::ExportGraded { runs, out }) => {
            crate::fit_calibration::export_graded(runs, out)?;
            return Ok(());
        }
        Some(BenchCommand::FitRefusal {
            learn,
            test,
            prior_variance,
            band,
            out_of_fold,
            ordinary,
        }) => {
            let out_of_fold = out_of_fold.then_some(crate::fit_harm::OutOfFold {
                ordinary: *ordinary,
                data_dir: &data_dir,
                seed: a.seed,
            });
            return crate::fit_harm::fit_refusal(
                g,
                learn,
                test,
                *prior_variance,
                [band[0], band[1]],
                out_of_fold,
            );
        }
        Some(BenchCommand::FitHarm {
            out,
            ordinary,
            test_limit,
            features,
            layers,
        }) => {
            return crate::fit_harm::fit_harm(
                g,
                *features,
                layers,
                out,
                *ordinary,
                *test_limit,
                &data_dir,
                a.seed,
            );
        }
        Some(BenchCommand::FitProbe {
            sets,
            layers,
            out,
            limit,
            out_of_fold,
        }) => {
            let job = crate::fit_probe::ProbeJob {
                sets,
                layers,
                out,
                limit: *limit,
                out_of_fold: out_of_fold.as_deref(),
            };
            return crate::fit_probe::fit_probe(g, &job, &data_dir, a.seed);
        }
        None => {}
    }
    let Some(dataset) = a.dataset.clone() else {
        bail!("name a dataset: metareason bench gsm8k-train (or bench compare / bench report)");
    };
    let mut config = named_config(&a.config)?;
    config.seed = a.seed;
    let ablations = Ablations::new(a.ablate.iter().copied());
    ablations.apply(&mut config);
    let (no_policy, no_memory) = (!ablations.uses_policy(), !ablations.uses_memory());
    if a.print_config {
        print!("{}", toml::to_string_pretty(&config)?);
        return Ok(());
    }
    let mut fields = BTreeMap::new();
    for f in &a.field {
        let Some((k, v)) = f.split_once('=') else {
            bail!(
                "--field takes NAME=COLUMN, e.g. --field question=prompt,answer=gold (got '{f}')"
            );
        };
        fields.insert(k.trim().to_string(), v.trim().to_string());
    }
    let answer_kind = parse_answer_kind(&a.answer)?;
    let mut items = datasets::load(&dataset, &data_dir, &fields, &answer_kind)?;
    if let Some(split) = a.split {
        items = split.of(items);
    }
    if a.limit.is_some() {
        items = datasets::seeded_subset(items, a.seed, a.limit);
    }
    if items.is_empty() {
        bail!("the dataset has no items");
    }
    if a.list {
        println!("{dataset}: {} items", items.len());
        for it in items.iter().take(3) {
            println!("{}", serde_json::to_string(it)?);
        }
        return Ok(());
    }
    let config_name = Path::new(&a.config)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.config.clone());
    let policy_suffix = match &a.policy {
        Some(p) if !no_policy => format!(
            "@{}",
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let run_name = format!("{config_name}{}{policy_suffix}", ablations.suffix());
    let dataset_name = Path::new(&dataset)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| dataset.clone());
    // A half is a dataset of its own: its results never mix with the whole's.
    let dataset_name = match a.split {
        Some(datasets::Split::Learn) => format!("{dataset_name}.learn"),
        Some(datasets::Split::Test) => format!("{dataset_name}.test"),
        None => dataset_name,
    };
    let dir = a.out.join(&dataset_name).join(&run_name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let results_path = dir.join("results.jsonl");
    if !a.summarize_only {
        let mut manifest = make_manifest(g, &a, &dataset, &run_name, &config, &items, &fields)?;
        manifest.policy = policy_record(a.policy.as_deref(), no_policy)?;
        check_and_write_manifest(&dir, &manifest, a.force_resume)?;
    }
    let (results, model_info) = if a.summarize_only {
        let results = run::finished(&items, &results_path)
            .with_context(|| format!("cannot read {}", results_path.display()))?;
        if results.is_empty() {
            bail!(
                "{}: no finished items to summarise (run without --summarize-only first)",
                results_path.display()
            );
        }
        // The model named by the run's earlier summary, when there is one.
        let info = std::fs::read_to_string(dir.join("summary.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| v["model"].clone())
            .unwrap_or(serde_json::Value::Null);
        (results, info)
    } else {
        run_items(g, &a, &config, &items, &dir, no_policy, no_memory)?
    };
    let write_summary = |dir: &Path, name: &str, results: &[ItemResult]| -> Result<Summary> {
        let summary = run::summarize(results, a.seed);
        std::fs::create_dir_all(dir)?;
        write_whole(
            &dir.join("summary.json"),
            &serde_json::to_string_pretty(&serde_json::json!({
                "dataset": dataset,
                "config": name,
                "model": model_info,
                "seed": a.seed,
                "summary": summary,
            }))?,
        )?;
        Ok(summary)
    };
    println!("{MARKDOWN_HEADER}");
    let summary = write_summary(&dir, &run_name, &results)?;
    println!("{}", run::markdown_row(&run_name, &summary));
    // Each baseline confidence of the same answers, as a run of its own.
    for b in run::baseline_names(&results) {
        let name = format!("{run_name}+{b}");
        let derived = dir.with_file_name(&name);
        let s = write_summary(
            &derived,
            &name,
            &run::with_baseline_confidence(&results, &b),
        )?;
        println!("{}", run::markdown_row(&name, &s));
    }
    // What the system did with each request: refused, withheld, answered
    // with a reply that itself refuses, or answered.
    if matches!(
        dataset.as_str(),
        "safety" | "safety-spanish" | "benign-lookalikes"
    ) {
        let rates = metareason_bench::safety::decisions_by_group(&results);
        let table = metareason_bench::safety::decisions_markdown(&rates);
        print!("\n{table}");
        write_whole(&dir.join("decisions.md"), &table)?;
    }
    println!("results: {}", dir.display());
    let report = write_report(dir.parent().expect("run dirs sit in a dataset dir"))?;
    println!("report: {}", report.display());
    Ok(())
}

/// Runs the items not yet finished; returns every result and the model's
/// description.
fn run_items(
    g: &GlobalArgs,
    a: &BenchArgs,
    config: &ReasonerConfig,
    items: &[Item],
    dir: &Path,
    no_policy: bool,
    no_memory: bool,
) -> Result<(Vec<ItemResult>, serde_json::Value)> {
    let memory = if no_memory {
        None
    } else {
        Some(Memory::open(dir.join("memory.sqlite"))?)
    };
    let model = open_model(g)?;
    let embedder = if memory.is_some() {
        open_embedder(g)
    } else {
        open_sentence_embedder(g)
    };
    let policy = match &a.policy {
        _ if no_policy => Policy::parse("", "no policy")?,
        Some(path) => Policy::load(path)?,
        None => Policy::default_policy(),
    };
    let state_readers = open_state_readers(g, &policy);
    if a.jobs == 0 {
        bail!("--jobs takes at least 1");
    }
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let (mut graded, mut right) = (0usize, 0usize);
    let learn = !no_memory && config.learn;
    let shared = a.jobs > 1;
    let memory_path = dir.join("memory.sqlite");
    // Feedback reads, updates and writes the learned parameters: one worker
    // at a time, so that no update is lost.
    let feedback_lock = Mutex::new(());
    let make = |worker: usize| -> Result<_, ReasonerError> {
        let memory = if no_memory {
            None
        } else {
            Some(Memory::open(&memory_path)?)
        };
        let mut reasoner =
            Reasoner::new(model.as_ref(), embedder.as_deref(), memory, policy.clone())?;
        for r in &state_readers {
            reasoner = reasoner.with_state_reader(r.as_ref());
        }
        let mut cfg = config.clone();
        cfg.seed = cfg.seed.wrapping_add(worker as u64);
        let feedback_lock = &feedback_lock;
        Ok(move |item: &Item| -> Result<ItemResult, ReasonerError> {
            if shared {
                reasoner.reload_params()?;
            }
            let (raw_reference, kind) = match &item.expected {
                Expected::Answer {
                    reference,
                    answer_kind,
                } => (Some(reference.clone()), Some(answer_kind.clone())),
                _ => (None, None),
            };
            let reference = raw_reference
                .as_deref()
                .zip(kind.as_ref())
                .map(|(r, k)| k.normalize_reference(r).unwrap_or_else(|| r.to_string()));
            let grade = |answer: Option<&String>| -> Option<bool> {
                let (r, k) = (raw_reference.as_deref()?, kind.as_ref()?);
                Some(answer.is_some_and(|a| is_correct(k, r, a)))
            };
            // A number, yes/no or choice item says what kind of answer it
            // wants, as its task format does; a short-text item (or one
            // without a reference) leaves the kind to the loop, as a user
            // asking it would.
            match kind.clone().filter(|k| *k != AnswerKind::Text) {
                Some(k) => {
                    cfg.solve.answer_kind = k;
                    cfg.infer_answer_kind = false;
                }
                None => cfg.infer_answer_kind = true,
            }
            let report = reasoner.run(&item.question, &cfg)?;
            let candidate_correct = grade(report.candidate_answer.as_ref());
            let correct = grade(report.answer.as_ref());
            // Meta-reflection: graded items teach the memory.
            if let (true, Some(id), Some(right)) = (learn, report.episode_id, candidate_correct) {
                if report.candidate_answer.is_some() {
                    let _one_at_a_time = feedback_lock.lock().unwrap_or_else(|p| p.into_inner());
                    if shared {
                        reasoner.reload_params()?;
                    }
                    let verdict = if right {
                        Feedback::Correct
                    } else {
                        Feedback::Wrong
                    };
                    reasoner.feedback_with(id, &verdict, true, cfg.distill)?;
                }
            }
            Ok(ItemResult {
                id: item.id.clone(),
                decision: report.decision,
                grounds: report.grounds,
                answer: report.answer.clone(),
                reference,
                correct,
                should_decline: run::should_decline(item),
                confidence: report.confidence,
                candidate_correct,
                generated_tokens: report.usage.generated_tokens,
                prompt_tokens: report.usage.prompt_tokens,
                seconds: report.seconds,
                baselines: report
                    .baselines
                    .map(|b| {
                        b.named()
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect()
                    })
                    .unwrap_or_default(),
                answerability: report
                    .assessment
                    .answerability
                    .as_ref()
                    .map(|v| v.features.clone()),
                p_answerable: report
                    .assessment
                    .answerability
                    .as_ref()
                    .map(|v| v.p_answerable),
                harm: Some(metareason_bench::safety::HarmRecord::of(
                    &report.assessment.policy,
                ))
                .filter(|h| h.classifier.is_some() || h.refused_earlier),
                samples: sample_records(&report, &grade),
            })
        })
    };
    let results = run::run_parallel(items, &dir.join("results.jsonl"), a.jobs, make, |r, _| {
        if let Some(c) = r.correct {
            graded += 1;
            right += usize::from(c);
        }
        bar.inc(1);
        if graded > 0 {
            bar.set_message(format!(
                "accuracy {:.3} ({right}/{graded})",
                right as f64 / graded as f64
            ));
        }
    })?;
    bar.finish_and_clear();
    Ok((results, serde_json::to_value(model.info())?))
}

/// The replies the first attempt and any escalation drew, in order, graded
/// one by one.
fn sample_records(
    report: &metareason_reasoner::EpisodeReport,
    grade: &dyn Fn(Option<&String>) -> Option<bool>,
) -> Vec<SampleRecord> {
    let first = report.solve.as_ref().and_then(|t| t.attempts.first());
    let escalated = report.escalation.iter().flat_map(|e| e.attempts.iter());
    // The round of each escalated reply (its cycle of the mixture, counted
    // from 1; the first attempt is round 0), from the rounds that drew any.
    let rounds: Vec<usize> = report
        .escalation
        .iter()
        .flat_map(|e| e.rounds.iter().filter(|r| !r.replies.is_empty()))
        .flat_map(|r| std::iter::repeat_n(r.cycle + 1, r.replies.len()))
        .collect();
    let firsts = first.into_iter().flat_map(|a| {
        a.outcome
            .candidates
            .iter()
            .map(move |c| (a.strategy, c, Some(0)))
    });
    let later = escalated
        .flat_map(|a| a.outcome.candidates.iter().map(move |c| (a.strategy, c)))
        .enumerate()
        .map(|(i, (s, c))| (s, c, rounds.get(i).copied()));
    firsts
        .chain(later)
        .map(|(strategy, c, round)| {
            let answer = c.answer.as_ref().map(|a| a.normalized.clone());
            SampleRecord {
                strategy,
                correct: grade(answer.as_ref()),
                answer,
                tokens: c.tokens,
                score: c.score,
                confidence: c.confidence.clone(),
                round: report.escalation.as_ref().and(round),
            }
        })
        .collect()
}

/// The manifest of the run in `dir`; None for runs made before manifests
/// (or an unreadable one).
fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The escalation budget (`escalation.max_samples`) of the configuration a
/// run's manifest records; None for runs without a manifest or the field.
/// Read as TOML values, not as today's configuration type, so manifests of
/// older configurations still answer.
fn escalation_budget(dir: &Path) -> Option<usize> {
    let config: toml::Value = toml::from_str(&read_manifest(dir)?.config).ok()?;
    usize::try_from(config.get("escalation")?.get("max_samples")?.as_integer()?).ok()
}

/// The most replies any item of a run recorded.
fn most_replies(results: &[run::ItemResult]) -> usize {
    results.iter().map(|r| r.samples.len()).max().unwrap_or(0)
}

/// The items a bench run recorded in DIR/results.jsonl.
fn read_run(dir: &Path) -> Result<Vec<run::ItemResult>> {
    let path = dir.join("results.jsonl");
    if !path.is_file() {
        bail!(
            "{} not found: give the directory of a bench run (e.g. bench-out/gsm8k/sc8)",
            path.display()
        );
    }
    run::read_results(&path).with_context(|| {
        format!(
            "cannot read {}: is it a bench run directory?",
            path.display()
        )
    })
}

/// `bench replay`: stopping and voting rules over the replies a run
/// recorded; prints the table and writes it to RUN/replay.md.
fn replay_run(dir: &Path) -> Result<()> {
    let results = read_run(dir)?;
    let path = dir.join("results.jsonl");
    let most = most_replies(&results);
    if most == 0 {
        bail!(
            "{}: no recorded replies to replay; run a sampling configuration first (e.g. --config sc8)",
            path.display()
        );
    }
    // A run of the whole loop pools replies of several strategies in
    // rounds: its rules are the loop's own; a sampling run's, the rest.
    let whole_loop = results.iter().any(|r| {
        r.samples.iter().any(|s| s.round.is_some())
            || r.samples.windows(2).any(|w| w[0].strategy != w[1].strategy)
    });
    let rules = if whole_loop {
        replay::loop_rules(escalation_budget(dir))
    } else {
        replay::default_rules(most)
    };
    let rows = replay::replay(&results, &rules);
    let table = format!(
        "Replayed on the {} graded items of {} (at most {most} replies each):\n\n{}",
        rows.first().map_or(0, |r| r.items),
        dir.display(),
        replay::markdown(&rows)
    );
    print!("{table}");
    write_whole(&dir.join("replay.md"), &table)?;
    Ok(())
}

/// `bench replay RUN --mix OTHER`: adaptive consistency over the two
/// sampling runs' replies taken in turns; prints the table and writes it to
/// RUN/replay-mix-OTHER.md.
fn replay_mixture(dir: &Path, other: &Path) -> Result<()> {
    let read = |d: &Path| -> Result<Vec<run::ItemResult>> {
        let results = read_run(d)?;
        let path = d.join("results.jsonl");
        if results.iter().all(|r| r.samples.is_empty()) {
            bail!(
                "{}: no recorded replies to mix; both runs must be sampling configurations (e.g. --config sc8 and --config sc8_pal)",
                path.display()
            );
        }
        if results
            .iter()
            .any(|r| r.samples.iter().any(|s| s.round.is_some()))
        {
            bail!(
                "{}: a run of the whole loop; mix two sampling runs (e.g. --config sc8 and --config sc8_pal)",
                path.display()
            );
        }
        Ok(results)
    };
    let (first, second) = (read(dir)?, read(other)?);
    // The mixture gets the budget of one run, not of both: its figures
    // then compare with each run's own at the same number of replies.
    let budget = most_replies(&first).max(most_replies(&second));
    let mixed = replay::interleave(&first, &second, budget);
    if mixed.is_empty() {
        bail!(
            "{} and {} share no item with recorded replies: were they run on the same dataset, split, limit and seed?",
            dir.display(),
            other.display()
        );
    }
    let rows = replay::replay(&mixed, &replay::mixture_rules(budget, 2));
    let table = format!(
        "Replayed on the {} graded items both {} and {} recorded, their replies taken in turns (at most {budget} in all):\n\n{}",
        rows.first().map_or(0, |r| r.items),
        dir.display(),
        other.display(),
        replay::markdown(&rows)
    );
    print!("{table}");
    let name = other
        .file_name()
        .map_or_else(|| "other".into(), |n| n.to_string_lossy().into_owned());
    write_whole(&dir.join(format!("replay-mix-{name}.md")), &table)?;
    Ok(())
}

/// `bench fit-answerability`: reads the probed items of `runs`, fits
/// P(answerable) and writes the model to `out`. With `state` (a probe file
/// and its out-of-fold values), each item's `state_logit_decline` is the
/// probe's out-of-fold value and the probe ships with the model.
fn fit_answerability(
    runs: &[PathBuf],
    out: &Path,
    prior_variance: f64,
    state: Option<(&Path, &Path)>,
) -> Result<()> {
    use metareason_awareness::answerability::{self, AnswerabilityModel, FEATURES, STATE_FEATURE};
    let state = state
        .map(|(probe, oof)| -> Result<_> {
            let text = std::fs::read_to_string(probe)
                .with_context(|| format!("cannot read the state probe {}", probe.display()))?;
            let classifier = metareason_awareness::EmbeddingClassifier::parse(
                &text,
                &probe.display().to_string(),
            )?;
            let text = std::fs::read_to_string(oof)
                .with_context(|| format!("cannot read {}", oof.display()))?;
            let mut by_id = BTreeMap::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let row: crate::fit_probe::OutOfFold =
                    serde_json::from_str(line).with_context(|| {
                        format!("{}:{}: not an out-of-fold line", oof.display(), i + 1)
                    })?;
                by_id.insert(row.id, row.p_decline);
            }
            Ok((classifier, by_id))
        })
        .transpose()?;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    let mut sources = Vec::new();
    let mut from_run = Vec::new();
    for (k, dir) in runs.iter().enumerate() {
        let path = dir.join("results.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: ItemResult = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a result", path.display(), i + 1))?;
            let Some(mut x) = r.answerability else {
                continue;
            };
            // A run recorded before the later features existed (the state
            // probe, the agreement of sampled answers) has them missing:
            // no evidence, unless out-of-fold values are given.
            if (STATE_FEATURE..FEATURES.len()).contains(&x.len()) {
                x.resize(FEATURES.len(), 0.0);
            }
            if x.len() != FEATURES.len() {
                bail!(
                    "{}:{}: {} answerability features, the model has {}: rerun with this build",
                    path.display(),
                    i + 1,
                    x.len(),
                    FEATURES.len()
                );
            }
            if let Some((_, by_id)) = &state {
                let Some(p) = by_id.get(&r.id) else {
                    bail!(
                        "{}:{}: item {} has no out-of-fold value: fit the probe on every item of \
                         these runs (a larger --limit of bench fit-probe)",
                        path.display(),
                        i + 1,
                        r.id
                    );
                };
                x[STATE_FEATURE] = answerability::state_feature(*p);
            }
            xs.push(x);
            ys.push(!r.should_decline);
            from_run.push(k);
            n += 1;
        }
        sources.push(format!("{} ({n} items)", dir.display()));
    }
    if xs.is_empty() {
        bail!(
            "no probed items in these runs: run them with self-awareness on (e.g. --config assess)"
        );
    }
    let answerable = ys.iter().filter(|y| **y).count();
    let mut model = AnswerabilityModel::fit(
        &xs,
        &ys,
        prior_variance,
        format!(
            "{} questions ({answerable} answerable) from {}; prior variance {prior_variance}{}",
            xs.len(),
            sources.join(", "),
            state.as_ref().map_or(String::new(), |(c, _)| format!(
                "; state_logit_decline: out-of-fold values of the state probe ({})",
                c.fitted_on
            ))
        ),
    )
    .map_err(|e| anyhow::anyhow!("cannot fit the answerability model: {e}"))?;
    model.state_probe = state.map(|(c, _)| c);
    // How well it ranks questions it was not fitted on: 5-fold
    // cross-validation over all items, read per run.
    let mut p_oof = vec![0.0; xs.len()];
    for fold in 0..5 {
        let train: Vec<usize> = (0..xs.len()).filter(|i| i % 5 != fold).collect();
        let m = AnswerabilityModel::fit(
            &train.iter().map(|&i| xs[i].clone()).collect::<Vec<_>>(),
            &train.iter().map(|&i| ys[i]).collect::<Vec<_>>(),
            prior_variance,
            String::new(),
        )
        .map_err(|e| anyhow::anyhow!("cannot fit the answerability model: {e}"))?;
        for i in (0..xs.len()).filter(|i| i % 5 == fold) {
            p_oof[i] = m.p_answerable(&xs[i]);
        }
    }
    write_whole(out, &serde_json::to_string_pretty(&model)?)?;
    println!("fitted on {}", model.fitted_on);
    for (name, (w, i)) in FEATURES.iter().zip(model.model.mean.iter().zip(0..)) {
        let sd = model.model.cov[i * FEATURES.len() + i].sqrt();
        println!("  {name:<26} {w:+.3} ± {sd:.3}");
    }
    println!("AUROC of P(answerable) for answerable questions, 5-fold out of fold:");
    for (k, dir) in runs.iter().enumerate() {
        let (p, y): (Vec<f64>, Vec<bool>) = (0..xs.len())
            .filter(|&i| from_run[i] == k)
            .map(|i| (p_oof[i], ys[i]))
            .unzip();
        println!(
            "  {}: {}",
            dir.display(),
            metareason_bench::metrics::auroc(&p, &y).map_or("–".into(), |a| format!("{a:.3}"))
        );
    }
    println!("written: {}", out.display());
    Ok(())
}

fn runs_dirs(a: &BenchArgs) -> Vec<PathBuf> {
    match &a.command {
        Some(BenchCommand::Compare { runs }) => runs.clone(),
        _ => Vec::new(),
    }
}

/// Every compared run against the first, item by item (see
/// `metareason_bench::paired`). Runs are named as in the summary table, by
/// their directories where two share a configuration's name. Runs that kept
/// only a summary (no `results.jsonl`, e.g. the baseline rows of a run) are
/// left out, and said to be.
fn paired_comparison(compared: Vec<ComparedRun>) -> String {
    let shared = |name: &str| compared.iter().filter(|c| c.name == name).count() > 1;
    let labels: Vec<String> = compared
        .iter()
        .map(|c| {
            if shared(&c.name) {
                c.dir.display().to_string()
            } else {
                c.name.clone()
            }
        })
        .collect();
    let Some(first) = compared.first() else {
        return String::new();
    };
    if first.results.is_none() {
        return format!(
            "\nNo item-by-item comparison: {} kept no results.jsonl\n",
            first.dir.display()
        );
    }
    let seed = read_manifest(&first.dir).map_or(0, |m| m.seed);
    let mut runs = Vec::new();
    let mut left_out = Vec::new();
    for (c, label) in compared.into_iter().zip(labels) {
        match c.results {
            Some(r) => runs.push((label, r)),
            None => left_out.push(label),
        }
    }
    let mut out = if runs.len() > 1 {
        metareason_bench::paired::paired_markdown(&runs, seed)
    } else {
        String::new()
    };
    if !left_out.is_empty() {
        out.push_str(&format!(
            "\nLeft out (no results.jsonl): {}\n",
            left_out.join(", ")
        ));
    }
    out
}

/// How the compared runs' manifests differ from the first's.
fn manifest_differences(dirs: Vec<PathBuf>) -> Result<String> {
    let Some(first) = dirs.first() else {
        return Ok(String::new());
    };
    let mut out = String::from("\nManifests:\n");
    let Some(base) = read_manifest(first) else {
        out.push_str(&format!(
            "- {}: no manifest (made before manifests)\n",
            first.display()
        ));
        return Ok(out);
    };
    out.push_str(&format!(
        "- {}: commit {}{}, model {} (sha256 {}), dataset {} ({} items), seed {}\n",
        first.display(),
        base.commit.as_deref().unwrap_or("unknown"),
        if base.dirty == Some(true) {
            " (dirty)"
        } else {
            ""
        },
        base.model.name,
        base.model
            .sha256
            .as_deref()
            .map_or("unknown", |s| &s[..s.len().min(12)]),
        base.dataset.name,
        base.dataset.items,
        base.seed
    ));
    for d in &dirs[1..] {
        match read_manifest(d) {
            None => out.push_str(&format!("- {}: no manifest\n", d.display())),
            Some(m) => {
                let diffs = base.differences(&m);
                if diffs.is_empty() {
                    out.push_str(&format!(
                        "- {}: same code, model, data and seed\n",
                        d.display()
                    ));
                } else {
                    out.push_str(&format!("- {}: {}\n", d.display(), diffs.join("; ")));
                }
            }
        }
    }
    Ok(out)
}

/// The commit the binary was built from and whether its tree had
/// uncommitted changes (None each when it was not built from a git clone).
fn git_state() -> (Option<String>, Option<bool>) {
    let commit = Some(env!("METAREASON_GIT_COMMIT").to_string()).filter(|c| !c.is_empty());
    let dirty = match env!("METAREASON_GIT_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (commit, dirty)
}

/// sha256 of the model the run will use: the catalog's for a known model,
/// computed for a file given by path, none for a server's model.
fn model_record(g: &GlobalArgs) -> Result<ModelRecord> {
    use crate::Backend;
    Ok(match g.backend {
        Backend::Openai => ModelRecord {
            name: g.model.clone(),
            backend: "openai".into(),
            sha256: None,
            base_url: g.base_url.clone(),
        },
        Backend::Llama => {
            let sha256 = match metareason_catalog::find(&g.model) {
                Some(known) => known.files.first().map(|f| f.sha256.to_string()),
                None => {
                    let path = Path::new(&g.model);
                    if path.is_file() {
                        let (_, sha) =
                            metareason_catalog::hash_file(path, &metareason_catalog::NoProgress)
                                .with_context(|| format!("cannot hash {}", path.display()))?;
                        Some(sha)
                    } else {
                        None
                    }
                }
            };
            ModelRecord {
                name: g.model.clone(),
                backend: "llama.cpp".into(),
                sha256,
                base_url: None,
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn make_manifest(
    g: &GlobalArgs,
    a: &BenchArgs,
    dataset: &str,
    run_name: &str,
    config: &ReasonerConfig,
    items: &[Item],
    fields: &BTreeMap<String, String>,
) -> Result<Manifest> {
    let (commit, dirty) = git_state();
    Ok(Manifest {
        schema: MANIFEST_SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        commit,
        dirty,
        config_name: run_name.to_string(),
        config: toml::to_string_pretty(config)?,
        model: model_record(g)?,
        dataset: DatasetRecord {
            name: dataset.to_string(),
            items: items.len(),
            sha256: items_sha256(items),
            split: a.split.map(|s| match s {
                datasets::Split::Learn => "learn".to_string(),
                datasets::Split::Test => "test".to_string(),
            }),
            limit: a.limit,
            fields: fields.clone(),
        },
        seed: a.seed,
        // Set by the caller, which knows the ablations.
        policy: "shipped".into(),
        machine: MachineRecord {
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads: g.threads,
            jobs: a.jobs,
        },
    })
}

/// The manifest's name of the mission policy: `none` when ablated,
/// `shipped`, or the file with the sha256 of its text. A malformed file
/// fails here, before any model loads.
fn policy_record(path: Option<&Path>, no_policy: bool) -> Result<String> {
    Ok(match path {
        _ if no_policy => "none".into(),
        None => "shipped".into(),
        Some(p) => {
            let text = std::fs::read(p)
                .with_context(|| format!("cannot read the policy file {}", p.display()))?;
            Policy::load(p)?;
            format!("{} (sha256 {})", p.display(), sha256_hex(&text))
        }
    })
}

/// Refuses to add to results made under another manifest (unless forced),
/// then writes this run's manifest.
fn check_and_write_manifest(dir: &Path, manifest: &Manifest, force: bool) -> Result<()> {
    let results = dir.join("results.jsonl");
    let has_results =
        std::fs::read_to_string(&results).is_ok_and(|t| t.lines().any(|l| !l.trim().is_empty()));
    let path = dir.join("manifest.json");
    if has_results && !force {
        match std::fs::read_to_string(&path) {
            Err(_) => bail!(
                "{} holds results made before runs had manifests: nothing says which code, \
                 settings, model and data made them. Use another --out, remove the directory, \
                 or pass --force-resume to add to them anyway",
                dir.display()
            ),
            Ok(text) => {
                let old: Manifest = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a manifest", path.display()))?;
                let diffs = old.differences(manifest);
                if !diffs.is_empty() {
                    bail!(
                        "{} holds results of another run; its manifest differs:\n  {}\n\
                         Use another --out, remove the directory, or pass --force-resume to \
                         mix them anyway",
                        dir.display(),
                        diffs.join("\n  ")
                    );
                }
            }
        }
    }
    write_whole(&path, &serde_json::to_string_pretty(manifest)?)
}

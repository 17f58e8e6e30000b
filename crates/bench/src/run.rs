//! Resumable benchmark runs and their summaries.
//!
//! A run appends one JSON line per finished item to its results file and
//! flushes it; a rerun reads the file, skips the ids already there and
//! ignores a last line cut by a kill, so a killed run loses at most the item
//! in flight.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use metareason_monitor::TraceConfidence;
use metareason_strategy::StrategyKind;
use serde::{Deserialize, Serialize};

use crate::datasets::{Expected, Item};
use crate::metrics::{self, Prf};

/// What happened on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The item.
    pub id: String,
    /// Answered, abstained or refused (stored by its name).
    pub decision: metareason_core::Decision,
    /// On what grounds (None in results recorded before grounds were kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounds: Option<metareason_core::Grounds>,
    /// The answer given (None when declining).
    pub answer: Option<String>,
    /// The reference, normalised, when there is one.
    pub reference: Option<String>,
    /// Whether the answer was right (None without a reference).
    pub correct: Option<bool>,
    /// Whether declining was right.
    pub should_decline: bool,
    /// Confidence P(correct) of the answer found (also when withheld).
    pub confidence: Option<f64>,
    /// Whether the answer found (given or withheld) matched the reference.
    pub candidate_correct: Option<bool>,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: u64,
    /// Wall time.
    pub seconds: f64,
    /// Baseline confidences of the answer found (verbalized, p_true,
    /// mean_logprob), when the configuration computed them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baselines: BTreeMap<String, f64>,
    /// The answerability features of the question, when self-awareness
    /// probed it (what `bench fit-answerability` learns from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answerability: Option<Vec<f64>>,
    /// P(answerable) the loop gave the question, when probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_answerable: Option<f64>,
    /// What the policy's harm rule saw (runs of the safety sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harm: Option<crate::safety::HarmRecord>,
    /// Every reply sampled for the item, in the order drawn (what `bench
    /// replay` replays stopping and voting rules over).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SampleRecord>,
}

/// One sampled reply of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// The strategy that produced it.
    pub strategy: StrategyKind,
    /// Its answer, normalised (None: none could be extracted).
    pub answer: Option<String>,
    /// Whether that answer matches the reference (None without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    /// Tokens generated.
    pub tokens: u64,
    /// Mean step reward.
    pub score: f64,
    /// The reply's confidence from its tokens.
    pub confidence: TraceConfidence,
    /// For the whole loop: 0 for the first attempt's replies, k for those
    /// of the k-th round of escalation (None: a sampling configuration, or
    /// a run recorded before rounds were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<usize>,
}

impl ItemResult {
    /// Whether the system declined.
    pub fn declined(&self) -> bool {
        self.decision != metareason_core::Decision::Answer
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    /// The results file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The system failed on an item.
    #[error("item {id}: {source}")]
    Item {
        /// The item.
        id: String,
        /// The underlying error.
        #[source]
        source: E,
    },
}

/// Reads the results already in `path` (a missing file is an empty run).
pub fn read_results(path: &Path) -> std::io::Result<Vec<ItemResult>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        // A line cut by a kill does not parse and its item runs again.
        if let Ok(r) = serde_json::from_str::<ItemResult>(&line?) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Opens the results file for appending after reading what it holds.
fn open_results(path: &Path) -> std::io::Result<(Vec<ItemResult>, File)> {
    let old = read_results(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // A kill can leave a last line without its newline: start on a fresh one.
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|c| *c != b'\n'))
        .unwrap_or(false);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if needs_newline {
        file.write_all(b"\n")?;
    }
    Ok((old, file))
}

/// Appends one result as a whole line and flushes it.
fn append(file: &mut File, r: &ItemResult) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).expect("results serialise");
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.flush()
}

/// Puts results in item order, dropping ids not among `items`.
fn in_item_order(items: &[Item], mut results: Vec<ItemResult>) -> Vec<ItemResult> {
    let order: std::collections::HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    results.retain(|r| order.contains_key(r.id.as_str()));
    results.sort_by_key(|r| order[r.id.as_str()]);
    results
}

/// The results already in `path` for `items`, in item order (other ids
/// are left out).
pub fn finished(items: &[Item], path: &Path) -> std::io::Result<Vec<ItemResult>> {
    Ok(in_item_order(items, read_results(path)?))
}

/// Runs `solve` on every item not yet in `path`, appending each result as
/// it finishes; `progress` sees every result (old ones first). Returns all
/// results, old and new, in item order.
pub fn run<E, F, P>(
    items: &[Item],
    path: &Path,
    mut solve: F,
    mut progress: P,
) -> Result<Vec<ItemResult>, RunError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(&Item) -> Result<ItemResult, E>,
    P: FnMut(&ItemResult, bool),
{
    let io = |source| RunError::Io {
        path: path.display().to_string(),
        source,
    };
    let (mut results, mut file) = open_results(path).map_err(io)?;
    let done: HashSet<String> = results.iter().map(|r| r.id.clone()).collect();
    for r in &results {
        progress(r, false);
    }
    for item in items.iter().filter(|i| !done.contains(&i.id)) {
        let r = solve(item).map_err(|source| RunError::Item {
            id: item.id.clone(),
            source,
        })?;
        append(&mut file, &r).map_err(io)?;
        progress(&r, true);
        results.push(r);
    }
    Ok(in_item_order(items, results))
}

/// [`run`] with `jobs` workers, for backends that serve requests in
/// parallel (an HTTP server with several slots). Each worker makes its own
/// solver with `make` (its own connection to memory, say) and takes the next
/// unfinished item; results are appended as they finish, in any order. The
/// first error stops the workers after their item in flight, and is
/// returned; every finished item is on disk.
pub fn run_parallel<E, S, M, P>(
    items: &[Item],
    path: &Path,
    jobs: usize,
    make: M,
    mut progress: P,
) -> Result<Vec<ItemResult>, RunError<E>>
where
    E: std::error::Error + Send + 'static,
    M: Fn(usize) -> Result<S, E> + Sync,
    S: FnMut(&Item) -> Result<ItemResult, E>,
    P: FnMut(&ItemResult, bool) + Send,
{
    let io = |source| RunError::Io {
        path: path.display().to_string(),
        source,
    };
    let (results, file) = open_results(path).map_err(io)?;
    let done: HashSet<String> = results.iter().map(|r| r.id.clone()).collect();
    for r in &results {
        progress(r, false);
    }
    let todo: Vec<&Item> = items.iter().filter(|i| !done.contains(&i.id)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let sink = Mutex::new((file, progress, results, None::<RunError<E>>));
    let fail = |e: RunError<E>| {
        stop.store(true, Ordering::SeqCst);
        let mut g = sink.lock().unwrap_or_else(|p| p.into_inner());
        g.3.get_or_insert(e);
    };
    std::thread::scope(|scope| {
        for worker in 0..jobs.clamp(1, todo.len().max(1)) {
            let (next, stop, sink, todo, make, fail) = (&next, &stop, &sink, &todo, &make, &fail);
            scope.spawn(move || {
                let mut solve = match make(worker) {
                    Ok(s) => s,
                    Err(source) => {
                        return fail(RunError::Item {
                            id: format!("(worker {worker} start)"),
                            source,
                        })
                    }
                };
                while !stop.load(Ordering::SeqCst) {
                    let Some(item) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        break;
                    };
                    match solve(item) {
                        Ok(r) => {
                            let mut g = sink.lock().unwrap_or_else(|p| p.into_inner());
                            let (file, progress, results, _) = &mut *g;
                            if let Err(e) = append(file, &r) {
                                drop(g);
                                return fail(io(e));
                            }
                            progress(&r, true);
                            results.push(r);
                        }
                        Err(source) => {
                            return fail(RunError::Item {
                                id: item.id.clone(),
                                source,
                            })
                        }
                    }
                }
            });
        }
    });
    let (_, _, results, error) = sink.into_inner().unwrap_or_else(|p| p.into_inner());
    match error {
        Some(e) => Err(e),
        None => Ok(in_item_order(items, results)),
    }
}

/// The results with their confidence replaced by baseline `name` (None
/// where the item has none): the run as that confidence source would score
/// it.
pub fn with_baseline_confidence(results: &[ItemResult], name: &str) -> Vec<ItemResult> {
    results
        .iter()
        .map(|r| ItemResult {
            confidence: r.baselines.get(name).copied(),
            ..r.clone()
        })
        .collect()
}

/// The baseline names present in `results`.
pub fn baseline_names(results: &[ItemResult]) -> Vec<String> {
    let mut names: Vec<String> = results
        .iter()
        .flat_map(|r| r.baselines.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A value with its bootstrap 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The value on all items.
    pub value: Option<f64>,
    /// The interval.
    pub ci95: Option<(f64, f64)>,
}

/// The metrics of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Items.
    pub n: usize,
    /// Items with a reference answer.
    pub graded: usize,
    /// Right answers over graded items (declining counts as not right).
    pub accuracy: Estimate,
    /// Right answers over the graded items answered.
    pub answered_accuracy: Option<f64>,
    /// Right answers found over graded items, whether given or withheld:
    /// the accuracy the system would have had answering everything.
    #[serde(default)]
    pub candidate_accuracy: Option<f64>,
    /// Share of graded items answered.
    pub coverage: Option<f64>,
    /// ECE, 10 equal-width bins, of the confidence of the answer found.
    pub ece: Estimate,
    /// ECE, 10 equal-mass bins.
    pub ece_equal_mass: Option<f64>,
    /// Brier score.
    pub brier: Option<f64>,
    /// Negative log-likelihood.
    pub nll: Option<f64>,
    /// AUROC of confidence for telling right from wrong.
    pub auroc: Estimate,
    /// AUPRC.
    pub auprc: Option<f64>,
    /// Area under the risk-coverage curve.
    pub aurc: Option<f64>,
    /// Selective accuracy at 50, 80 and 90% coverage.
    pub selective_accuracy: [Option<f64>; 3],
    /// Declining where declining is right, over items where it is known.
    pub decline: Prf,
    /// Declaring the question unanswerable (declining on grounds that blame
    /// the question, not an attempt) where declining is right; None when
    /// the results do not record grounds.
    #[serde(default)]
    pub unanswerable: Option<Prf>,
    /// AUROC of 1 − confidence for telling the items where declining is
    /// right from the others (items with a confidence): how well the
    /// confidence alone would pick what to decline, at any threshold.
    #[serde(default)]
    pub decline_auroc: Option<f64>,
    /// Tokens generated per item.
    pub generated_tokens: f64,
    /// Prompt tokens per item.
    pub prompt_tokens: f64,
    /// Seconds per item.
    pub seconds: f64,
    /// Reliability diagram (10 equal-width bins).
    pub reliability: Vec<metrics::Bin>,
    /// Risk-coverage curve.
    pub risk_coverage: Vec<metrics::RiskPoint>,
}

/// A metric over (confidence, correct) pairs.
type Stat = dyn Fn(&[f64], &[bool]) -> Option<f64>;

/// Summarises results (`seed` drives the bootstrap).
pub fn summarize(results: &[ItemResult], seed: u64) -> Summary {
    let n = results.len();
    let graded: Vec<&ItemResult> = results.iter().filter(|r| r.reference.is_some()).collect();
    let right: Vec<bool> = graded.iter().map(|r| r.correct == Some(true)).collect();
    // Calibration over every graded item with a confidence: the confidence
    // of the answer found against whether it was right.
    let scored: Vec<(f64, bool)> = graded
        .iter()
        .filter_map(|r| Some((r.confidence?, r.candidate_correct?)))
        .collect();
    let conf: Vec<f64> = scored.iter().map(|x| x.0).collect();
    let ok: Vec<bool> = scored.iter().map(|x| x.1).collect();
    let draws = 1000;
    let boot = |stat: &Stat, c: &[f64], y: &[bool], s: u64| Estimate {
        value: stat(c, y),
        ci95: metrics::bootstrap(y.len(), draws, s, |idx| {
            let cc: Vec<f64> = idx.iter().map(|&i| c[i]).collect();
            let yy: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
            stat(&cc, &yy)
        }),
    };
    let zeros = vec![0.0; right.len()];
    let answered: Vec<&&ItemResult> = graded.iter().filter(|r| !r.declined()).collect();
    // Declining is judged on every item: where it is not right, it is
    // over-declining.
    let decline = metrics::prf(
        &results.iter().map(|r| r.declined()).collect::<Vec<_>>(),
        &results.iter().map(|r| r.should_decline).collect::<Vec<_>>(),
    );
    let unanswerable = results.iter().all(|r| r.grounds.is_some()).then(|| {
        metrics::prf(
            &results
                .iter()
                .map(|r| r.grounds.is_some_and(|g| g.blames_the_question()))
                .collect::<Vec<_>>(),
            &results.iter().map(|r| r.should_decline).collect::<Vec<_>>(),
        )
    });
    let mean =
        |f: &dyn Fn(&ItemResult) -> f64| results.iter().map(f).sum::<f64>() / n.max(1) as f64;
    Summary {
        n,
        graded: graded.len(),
        accuracy: boot(&|_, y| metrics::accuracy(y), &zeros, &right, seed),
        candidate_accuracy: metrics::accuracy(
            &graded
                .iter()
                .map(|r| r.candidate_correct == Some(true))
                .collect::<Vec<_>>(),
        ),
        answered_accuracy: metrics::accuracy(
            &answered
                .iter()
                .map(|r| r.correct == Some(true))
                .collect::<Vec<_>>(),
        ),
        coverage: (!graded.is_empty()).then(|| answered.len() as f64 / graded.len() as f64),
        ece: boot(
            &|c, y| metrics::ece_equal_width(c, y, 10),
            &conf,
            &ok,
            seed + 1,
        ),
        ece_equal_mass: metrics::ece_equal_mass(&conf, &ok, 10),
        brier: metrics::brier(&conf, &ok),
        nll: metrics::nll(&conf, &ok),
        auroc: boot(&metrics::auroc, &conf, &ok, seed + 2),
        auprc: metrics::auprc(&conf, &ok),
        aurc: metrics::aurc(&conf, &ok),
        selective_accuracy: [0.5, 0.8, 0.9].map(|c| metrics::selective_accuracy(&conf, &ok, c)),
        decline,
        unanswerable,
        decline_auroc: {
            let (c, y): (Vec<f64>, Vec<bool>) = results
                .iter()
                .filter_map(|r| Some((1.0 - r.confidence?, r.should_decline)))
                .unzip();
            metrics::auroc(&c, &y)
        },
        generated_tokens: mean(&|r| r.generated_tokens as f64),
        prompt_tokens: mean(&|r| r.prompt_tokens as f64),
        seconds: mean(&|r| r.seconds),
        reliability: metrics::reliability_equal_width(&conf, &ok, 10),
        risk_coverage: metrics::risk_coverage(&conf, &ok),
    }
}

/// Whether declining is right for `item`.
pub fn should_decline(item: &Item) -> bool {
    matches!(item.expected, Expected::Decline | Expected::Refuse)
}

/// One markdown row: config, n, accuracy, coverage, accuracy answering
/// all, ECE, AUROC, AURC, decline F1, over-declining, tokens, seconds.
pub fn markdown_row(name: &str, s: &Summary) -> String {
    let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.3}"));
    let ci = |e: &Estimate| match e.ci95 {
        Some((a, b)) => format!("{} [{a:.2}, {b:.2}]", f(e.value)),
        None => f(e.value),
    };
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
        s.n,
        ci(&s.accuracy),
        f(s.coverage),
        f(s.candidate_accuracy),
        ci(&s.ece),
        ci(&s.auroc),
        f(s.aurc),
        f(s.decline.f1),
        f(s.decline.false_positive_rate),
        s.generated_tokens,
        s.seconds
    )
}

/// The header of [`markdown_row`] tables.
pub const MARKDOWN_HEADER: &str = "| configuration | items | accuracy [95% CI] | coverage | accuracy answering all | ECE [95% CI] | AUROC [95% CI] | AURC | decline F1 | over-declining | tokens / item | seconds / item |\n|---|---|---|---|---|---|---|---|---|---|---|---|";

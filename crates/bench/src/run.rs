//! Resumable benchmark runs and their summaries.
//!
//! A run appends one JSON line per finished item to its results file and
//! flushes it; a rerun reads the file, skips the ids already there and
//! ignores a last line cut by a kill, so a killed run loses at most the item
//! in flight.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::datasets::{Expected, Item};
use crate::metrics::{self, Prf};

/// What happened on one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// The item.
    pub id: String,
    /// `answer`, `abstain` or `refuse`.
    pub decision: String,
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
}

impl ItemResult {
    /// Whether the system declined.
    pub fn declined(&self) -> bool {
        self.decision != "answer"
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
    let old = read_results(path).map_err(io)?;
    let done: HashSet<String> = old.iter().map(|r| r.id.clone()).collect();
    for r in &old {
        progress(r, false);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // A kill can leave a last line without its newline: start on a fresh one.
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|c| *c != b'\n'))
        .unwrap_or(false);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    if needs_newline {
        file.write_all(b"\n").map_err(io)?;
    }
    let mut results = old;
    for item in items.iter().filter(|i| !done.contains(&i.id)) {
        let r = solve(item).map_err(|source| RunError::Item {
            id: item.id.clone(),
            source,
        })?;
        let line = serde_json::to_string(&r).expect("results serialise");
        file.write_all(line.as_bytes())
            .and_then(|_| file.write_all(b"\n"))
            .and_then(|_| file.flush())
            .map_err(io)?;
        progress(&r, true);
        results.push(r);
    }
    let order: std::collections::HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    results.retain(|r| order.contains_key(r.id.as_str()));
    results.sort_by_key(|r| order[r.id.as_str()]);
    Ok(results)
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
    let mean =
        |f: &dyn Fn(&ItemResult) -> f64| results.iter().map(f).sum::<f64>() / n.max(1) as f64;
    Summary {
        n,
        graded: graded.len(),
        accuracy: boot(&|_, y| metrics::accuracy(y), &zeros, &right, seed),
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
        generated_tokens: mean(&|r| r.generated_tokens as f64),
        prompt_tokens: mean(&|r| r.prompt_tokens as f64),
        seconds: mean(&|r| r.seconds),
        reliability: metrics::reliability_equal_width(&conf, &ok, 10),
        risk_coverage: metrics::risk_coverage(&conf, &ok),
    }
}

/// Whether declining is right for `item`.
pub fn should_decline(item: &Item) -> bool {
    matches!(item.expected, Expected::Decline)
}

/// One markdown row: config, n, accuracy, ECE, AUROC, AURC, decline F1,
/// over-declining, tokens.
pub fn markdown_row(name: &str, s: &Summary) -> String {
    let f = |x: Option<f64>| x.map_or("–".into(), |v| format!("{v:.3}"));
    let ci = |e: &Estimate| match e.ci95 {
        Some((a, b)) => format!("{} [{a:.2}, {b:.2}]", f(e.value)),
        None => f(e.value),
    };
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
        s.n,
        ci(&s.accuracy),
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
pub const MARKDOWN_HEADER: &str = "| configuration | items | accuracy [95% CI] | ECE [95% CI] | AUROC [95% CI] | AURC | decline F1 | over-declining | tokens / item | seconds / item |\n|---|---|---|---|---|---|---|---|---|---|";

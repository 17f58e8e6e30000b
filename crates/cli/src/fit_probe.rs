//! `metareason bench fit-probe`: a linear probe on the local model's
//! hidden states for whether a development set's item should be declined,
//! fitted on the learn halves and reported alone on the test halves.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use metareason_bench::datasets::{self, Expected, Split};
use metareason_bench::metrics;
use metareason_bench::probe;
use metareason_llama::{LlamaEmbedder, Reading};
use metareason_strategy::answer::AnswerKind;

use crate::fit_harm::{print_layer_table, read_layers, LAYER_PRIORS};
use crate::{store, GlobalArgs};

/// The prior variances of the final fit at the chosen layer.
const PRIOR_GRID: [f64; 6] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0];

/// What `bench fit-probe` is asked to fit.
pub(crate) struct ProbeJob<'a> {
    /// The development sets.
    pub sets: &'a [String],
    /// The blocks tried.
    pub layers: &'a [u32],
    /// Where the probe goes.
    pub out: &'a Path,
    /// Items of each half of each set at most.
    pub limit: Option<usize>,
    /// Where each learn item's out-of-fold P goes, if anywhere.
    pub out_of_fold: Option<&'a Path>,
}

/// Fits the probe on the learn halves of the job's sets at the best of its
/// layers, writes it, and prints it alone on the test halves.
pub(crate) fn fit_probe(
    g: &GlobalArgs,
    job: &ProbeJob<'_>,
    data_dir: &Path,
    seed: u64,
) -> Result<()> {
    let ProbeJob {
        sets,
        layers,
        out,
        limit,
        out_of_fold,
    } = *job;
    if layers.is_empty() {
        bail!("name the layers to try: --layers 6,10,14 (blocks counted from 0)");
    }
    let (mut learn, mut test) = (Vec::new(), Vec::new());
    for name in sets {
        let items = datasets::load(name, data_dir, &BTreeMap::new(), &AnswerKind::Text)
            .with_context(|| format!("cannot load {name} (--data-dir)"))?;
        learn.extend(
            datasets::seeded_subset(Split::Learn.of(items.clone()), seed, limit)
                .into_iter()
                .map(|it| (name.as_str(), it)),
        );
        test.extend(
            datasets::seeded_subset(Split::Test.of(items), seed, limit)
                .into_iter()
                .map(|it| (name.as_str(), it)),
        );
    }
    let declines = |it: &datasets::Item| it.expected == Expected::Decline;
    let path = store(g)
        .resolve(&g.model, &metareason_catalog::NoProgress)
        .with_context(|| format!("the model's states are read from {}", g.model))?;
    let threads = g.threads.map(|t| t as u32);
    let reader = LlamaEmbedder::load_reading(&path, threads, Reading::ReplyStateAt(layers[0]))?;
    let texts: Vec<&str> = learn.iter().map(|(_, it)| it.question.as_str()).collect();
    let ys: Vec<bool> = learn.iter().map(|(_, it)| declines(it)).collect();
    let by_layer = read_layers(&reader, &texts, layers, "learn halves")?;
    let (k, tables) = probe::choose_layer(&by_layer, &ys, &LAYER_PRIORS)?;
    print_layer_table(layers, &tables);
    let layer = layers[k];
    println!("chosen: layer {layer}");
    let name = Reading::ReplyStateAt(layer).embedder_name(&path);
    let fitted = probe::fit_state_probe(
        &by_layer[k],
        &ys,
        &PRIOR_GRID,
        "should be declined",
        &name,
        &format!(
            "the learn halves of {} (seed {seed}{})",
            sets.join(", "),
            limit.map_or(String::new(), |l| format!(", at most {l} each"))
        ),
    )?;
    let (classifier, cv) = (&fitted.classifier, &fitted.cross_validation);
    crate::bench::write_whole(out, &serde_json::to_string(classifier)?)?;
    if let Some(path) = out_of_fold {
        // One line per learn item: what the probe says of it when fitted
        // without it (`bench fit-answerability --state-probe` stacks on
        // these, not on the probe's in-sample values).
        let mut lines = String::new();
        for ((set, it), p) in learn.iter().zip(&fitted.out_of_fold) {
            lines.push_str(&serde_json::to_string(&OutOfFold {
                set: set.to_string(),
                id: it.id.clone(),
                p_decline: *p,
            })?);
            lines.push('\n');
        }
        crate::bench::write_whole(path, &lines)?;
        println!("out-of-fold probabilities: {}", path.display());
    }
    println!("fitted on {}", classifier.fitted_on);
    println!("cross-validation at layer {layer} (prior variance: class-balanced log loss):");
    for (prior, loss) in cv {
        println!("  {prior:>6}: {loss:.4}");
    }
    let texts: Vec<&str> = test.iter().map(|(_, it)| it.question.as_str()).collect();
    let states = read_layers(&reader, &texts, &[layer], "test halves")?;
    let p: Vec<f64> = states[0]
        .iter()
        .map(|v| classifier.probability(v))
        .collect();
    println!("\n| test half | items | should decline | AUROC | declined at P >= 0.5 | precision | recall | F1 | answerable declined |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for set in sets
        .iter()
        .map(String::as_str)
        .chain(std::iter::once("all"))
    {
        let rows: Vec<(f64, bool)> = test
            .iter()
            .zip(&p)
            .filter(|((from, _), _)| set == "all" || *from == set)
            .map(|((_, it), &p)| (p, declines(it)))
            .collect();
        if rows.is_empty() || (set == "all" && sets.len() == 1) {
            continue;
        }
        let (ps, truth): (Vec<f64>, Vec<bool>) = rows.iter().copied().unzip();
        let declined: Vec<bool> = ps.iter().map(|p| *p >= 0.5).collect();
        let m = metrics::prf(&declined, &truth);
        let [_, over, _, _] = m.counts;
        let should = truth.iter().filter(|t| **t).count();
        let answerable = rows.len() - should;
        let two = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}"));
        println!(
            "| {set} | {} | {should} | {} | {} | {} | {} | **{}** | {over} of {answerable} ({:.0}%) |",
            rows.len(),
            metrics::auroc(&ps, &truth).map_or("–".into(), |a| format!("{a:.3}")),
            declined.iter().filter(|d| **d).count(),
            two(m.precision),
            two(m.recall),
            two(m.f1),
            100.0 * over as f64 / answerable.max(1) as f64
        );
    }
    println!("written: {}", out.display());
    Ok(())
}

/// What the probe says of one learn item when fitted without it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct OutOfFold {
    /// The development set.
    pub set: String,
    /// The item's id.
    pub id: String,
    /// P(should be declined), out of fold.
    pub p_decline: f64,
}

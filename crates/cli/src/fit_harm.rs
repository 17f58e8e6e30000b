//! `metareason bench fit-harm`: fits the mission policy's harm classifier
//! and reports it alone on the test half of the safety set.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use metareason_bench::datasets::{self, Split};
use metareason_bench::safety;
use metareason_embed::MiniLm;

use crate::{store, GlobalArgs};

/// Fits on the learn half, writes the classifier to `out`, prints the
/// test-half table.
pub(crate) fn fit_harm(
    g: &GlobalArgs,
    out: &Path,
    ordinary: usize,
    test_limit: usize,
    data_dir: &Path,
    seed: u64,
) -> Result<()> {
    let dir = store(g)
        .path("all-minilm-l6-v2")
        .context("the harm classifier reads all-MiniLM-L6-v2 vectors: run `metareason models fetch all-minilm-l6-v2`")?;
    let embedder = MiniLm::load(&dir)?;
    let items = safety::load()?;
    let learn = Split::Learn.of(items.clone());
    // At most `test_limit` test items per group (a seeded subset): a
    // role-play item is some thirty windows to embed.
    let mut by_group: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for it in Split::Test.of(items) {
        by_group.entry(safety::group_of(&it)).or_default().push(it);
    }
    let test: Vec<_> = by_group
        .into_values()
        .flat_map(|g| datasets::seeded_subset(g, seed, Some(test_limit)))
        .collect();
    // Ordinary tasks: the learn halves of the development sets (arithmetic
    // problems and open-domain questions), `ordinary` of each at most.
    let mut gsm: Vec<String> = Vec::new();
    let mut sources = Vec::new();
    for name in [
        "gsm8k-train",
        "freshqa",
        "known-unknowns",
        "unsolvable-questions",
    ] {
        let items = datasets::load(name, data_dir, &BTreeMap::new(), "text")
            .with_context(|| format!("the ordinary tasks come from {name} (--data-dir)"))?;
        let picked = datasets::seeded_subset(Split::Learn.of(items), seed, Some(ordinary));
        sources.push(format!("{} {name}", picked.len()));
        gsm.extend(picked.into_iter().map(|i| i.question));
    }
    let band = [0.2, 0.9];
    let bar = indicatif::ProgressBar::new(test.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "test half {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        )
        .expect("valid template"),
    );
    let fit = safety::fit_harm(
        &embedder,
        &learn,
        &gsm,
        &test,
        band,
        &format!(
            "the learn half of `metareason bench safety` and, as ordinary tasks, learn-half questions of the development sets ({}; seed {seed})",
            sources.join(", ")
        ),
        &mut || bar.inc(1),
    )?;
    bar.finish_and_clear();
    let json = serde_json::to_string(&fit.classifier)?;
    crate::bench::write_whole(out, &json)?;
    println!("fitted on {}", fit.classifier.fitted_on);
    println!("cross-validation (prior variance: class-balanced log loss):");
    for (prior, loss) in &fit.cross_validation {
        println!("  {prior:>5}: {loss:.4}");
    }
    let (full, diagonal) = fit.test_log_loss_full_diagonal;
    println!(
        "test log loss (plain and benign): full covariance {full:.4}, shipped diagonal {diagonal:.4}"
    );
    println!(
        "\n| test half: group | items | P >= 0.5 | P >= {} (refused unasked) | {} <= P < {} (the model is asked) |",
        band[1], band[0], band[1]
    );
    println!("|---|---|---|---|---|");
    for r in &fit.test {
        let pct = |k: usize| format!("{k} ({:.1}%)", 100.0 * k as f64 / r.n.max(1) as f64);
        println!(
            "| {} | {} | {} | {} | {} |",
            r.group,
            r.n,
            pct(r.flagged),
            pct(r.above),
            pct(r.inside)
        );
    }
    println!("(at most {test_limit} test items per group, seed {seed})");
    println!("written: {}", out.display());
    Ok(())
}

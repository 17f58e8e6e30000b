//! Exact nearest-neighbour search over memory at scale.
//!
//! ```text
//! cargo run --release -p metareason-memory --example nn_scale -- 100000
//! ```
//! Stores N episodes with random 384-dimensional unit embeddings (the size
//! of all-MiniLM-L6-v2) in a fresh database, then times the first search
//! (which loads the index), later searches (k = 32), and a search after
//! new episodes arrive.

use std::time::Instant;

use metareason_memory::{Decision, EpisodeRecord, Memory, StrategyKind};
use rand::{Rng, SeedableRng};

fn unit(rng: &mut impl Rng, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn record(task: String, embedding: Vec<f32>, strategy: StrategyKind) -> EpisodeRecord {
    EpisodeRecord {
        task,
        family: None,
        embedding: Some(embedding),
        embedder: Some("random".into()),
        strategy: Some(strategy),
        search: "greedy".into(),
        decision: Decision::Answer,
        answer: Some("1".into()),
        confidence: Some(0.5),
        features: None,
        outcome: Some(true),
        reference: None,
        generated_tokens: 100,
        prompt_tokens: 100,
        cached_prompt_tokens: 0,
        seconds: 1.0,
        steps: Vec::new(),
        findings: Vec::new(),
        trace: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100_000), |s| s.parse())?;
    let d = 384;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("scale.sqlite");
    let mut m = Memory::open(&path)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let t = Instant::now();
    for i in 0..n {
        let s = [StrategyKind::ChainOfThought, StrategyKind::ProgramAided][i % 2];
        m.record(&record(format!("task {i}"), unit(&mut rng, d), s))?;
    }
    let insert = t.elapsed().as_secs_f64();
    let q = unit(&mut rng, d);
    let t = Instant::now();
    let first = m.nearest(&q, 32)?;
    let cold = t.elapsed().as_secs_f64();
    let queries: Vec<Vec<f32>> = (0..50).map(|_| unit(&mut rng, d)).collect();
    let t = Instant::now();
    for q in &queries {
        std::hint::black_box(m.nearest(q, 32)?);
    }
    let warm = t.elapsed().as_secs_f64() / queries.len() as f64;
    for i in 0..100 {
        m.record(&record(
            format!("late {i}"),
            unit(&mut rng, d),
            StrategyKind::Direct,
        ))?;
    }
    let t = Instant::now();
    let after = m.nearest(&q, 32)?;
    let incremental = t.elapsed().as_secs_f64();
    assert_eq!(first.len(), 32);
    assert_eq!(after.len(), 32);
    let size = std::fs::metadata(&path)?.len()
        + std::fs::metadata(path.with_extension("sqlite-wal")).map_or(0, |m| m.len());
    println!("| episodes | insert (episodes/s) | first search (loads index) | search, k = 32 | search after 100 new | database size |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {n} | {:.0} | {:.0} ms | {:.1} ms | {:.1} ms | {:.0} MB |",
        n as f64 / insert,
        cold * 1e3,
        warm * 1e3,
        incremental * 1e3,
        size as f64 / 1e6
    );
    Ok(())
}

//! Engine benchmark: prompt and decode speed, parallel sequences, and the
//! tokens a prefix cache saves in a small tree expansion.
//!
//! ```text
//! cargo bench -p metareason-llama --bench engine -- [MODEL ...] [--json FILE]
//! ```
//! MODEL is a known name or a GGUF path (default: the 1.5B default model and
//! SmolLM2-135M). `scripts/bench-engine.sh` runs this next to llama.cpp's own
//! `llama-bench` and `llama-batched-bench`, built from the same llama.cpp
//! source, and prints both.

use std::time::Instant;

use metareason_catalog::{ModelStore, NoProgress, DEFAULT_MODEL, TEST_MODEL};
use metareason_core::{GenerateRequest, LanguageModel, Prompt, SamplingParams, Usage};
use metareason_llama::{LlamaConfig, LlamaEngine};
use serde_json::json;

const PROMPT_TOKENS: usize = 256;
const GEN_TOKENS: u32 = 64;
const REPEATS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A user message of about `n` tokens that asks for a long answer.
fn long_prompt(engine: &LlamaEngine, n: usize) -> String {
    let filler = "The quick brown fox jumps over the lazy dog while the river keeps flowing. ";
    let mut text = String::new();
    while engine.count_tokens(&text).unwrap_or(0) < n.saturating_sub(40) {
        text.push_str(filler);
    }
    text.push_str("Now write a very long story about a fox and a river, with many details.");
    text
}

fn timed(engine: &LlamaEngine, req: &GenerateRequest) -> (f64, Usage) {
    engine.clear_cache().expect("clear");
    let t = Instant::now();
    let g = engine.generate(req).expect("generate");
    (t.elapsed().as_secs_f64(), g.usage)
}

fn bench_model(spec: &str) -> serde_json::Value {
    let path = ModelStore::from_env()
        .resolve(spec, &NoProgress)
        .expect("model");
    let mut config = LlamaConfig::new(path);
    config.context_per_sequence = 1024;
    config.sequences = 8;
    let engine = LlamaEngine::load(config).expect("load");
    let user = long_prompt(&engine, PROMPT_TOKENS);
    let prompt = Prompt::user(user);
    // A fixed number of tokens per sequence, as llama.cpp's own benchmark does.
    let greedy = |max| SamplingParams {
        max_tokens: max,
        top_logprobs: 5,
        ignore_eos: true,
        ..SamplingParams::default()
    };
    // Warm-up (page the weights in).
    timed(&engine, &GenerateRequest::new(prompt.clone(), greedy(4)));

    // Prompt: a cold prompt and one generated token.
    let mut prompt_rates = Vec::new();
    let mut t_first = Vec::new();
    let mut prompt_len = 0;
    for _ in 0..REPEATS {
        let (t, u) = timed(&engine, &GenerateRequest::new(prompt.clone(), greedy(1)));
        prompt_len = u.prompt_tokens;
        prompt_rates.push(u.prompt_tokens as f64 / t);
        t_first.push(t);
    }
    let t1 = median(t_first);

    // Decode: the same, with more tokens; the difference is decode time.
    let decode = |n: usize| {
        let mut rates = Vec::new();
        for _ in 0..REPEATS {
            let p = SamplingParams {
                temperature: if n > 1 { 0.8 } else { 0.0 },
                seed: 1,
                ..greedy(GEN_TOKENS)
            };
            let (t, u) = timed(&engine, &GenerateRequest::new(prompt.clone(), p).with_n(n));
            let decoded = u.generated_tokens.saturating_sub(n as u64) as f64;
            rates.push(decoded / (t - t1).max(1e-9));
        }
        median(rates)
    };
    let d1 = decode(1);
    let d4 = decode(4);
    let d8 = decode(8);

    // Tree expansion: depth 3, two children per node, 16 tokens per step.
    let step = SamplingParams {
        temperature: 0.8,
        seed: 2,
        ignore_eos: false,
        ..greedy(16)
    };
    let question = Prompt::user(
        "Think step by step: a train travels 60 km in 45 minutes. What is its speed in km/h?",
    );
    let run_tree = |reuse: bool| {
        engine.clear_cache().expect("clear");
        let mut frontier = vec![String::new()];
        let mut usage = Usage::default();
        let t = Instant::now();
        for _depth in 0..3 {
            let mut next = Vec::new();
            for prefix in &frontier {
                if !reuse {
                    engine.clear_cache().expect("clear");
                }
                let req = GenerateRequest::new(
                    question.clone().with_assistant_prefix(prefix.clone()),
                    step.clone(),
                )
                .with_n(2);
                let g = engine.generate(&req).expect("expand");
                usage += g.usage;
                next.extend(
                    g.sequences
                        .into_iter()
                        .map(|s| format!("{prefix}{}", s.text)),
                );
            }
            frontier = next;
        }
        (usage, t.elapsed().as_secs_f64())
    };
    let (with_cache, t_cache) = run_tree(true);
    let (without, t_nocache) = run_tree(false);
    let info = engine.info();
    json!({
        "model": spec,
        "name": info.name,
        "prompt_tokens": prompt_len,
        "prompt_tok_s": median(prompt_rates),
        "decode_tok_s_1": d1,
        "decode_tok_s_4": d4,
        "decode_tok_s_8": d8,
        "speedup_4": d4 / d1,
        "tree": {
            "expansions": 7, "samples_per_expansion": 2,
            "evaluated_with_cache": with_cache.prompt_tokens,
            "reused_with_cache": with_cache.cached_prompt_tokens,
            "evaluated_without_cache": without.prompt_tokens,
            "seconds_with_cache": t_cache,
            "seconds_without_cache": t_nocache,
        }
    })
}

fn main() {
    let mut models = Vec::new();
    let mut json_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json_out = args.next(),
            "--bench" => {} // passed by `cargo bench`
            _ => models.push(a),
        }
    }
    if models.is_empty() {
        models = vec![DEFAULT_MODEL.to_string(), TEST_MODEL.to_string()];
    }
    let results: Vec<_> = models.iter().map(|m| bench_model(m)).collect();
    println!("| model | prompt tok/s | decode tok/s, 1 seq | total tok/s, 4 seqs | total tok/s, 8 seqs | 4 seqs / 1 seq | tree: prompt tokens evaluated (cache / no cache) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x | {} / {} ({} re-used) |",
            r["model"].as_str().unwrap_or(""),
            r["prompt_tok_s"].as_f64().unwrap_or(0.0),
            r["decode_tok_s_1"].as_f64().unwrap_or(0.0),
            r["decode_tok_s_4"].as_f64().unwrap_or(0.0),
            r["decode_tok_s_8"].as_f64().unwrap_or(0.0),
            r["speedup_4"].as_f64().unwrap_or(0.0),
            r["tree"]["evaluated_with_cache"],
            r["tree"]["evaluated_without_cache"],
            r["tree"]["reused_with_cache"],
        );
    }
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).expect("write json");
    }
}

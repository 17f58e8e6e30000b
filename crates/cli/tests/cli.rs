//! The `metareason` binary as a user runs it: exit codes and messages.

use std::process::{Command, Output};

fn metareason(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metareason"))
        .args(args)
        .env_remove("METAREASON_MODEL")
        .env_remove("METAREASON_BASE_URL")
        // Never the user's own memory.
        .env(
            "METAREASON_MEMORY",
            std::env::temp_dir().join(format!("metareason-cli-test-{}.sqlite", std::process::id())),
        )
        .output()
        .expect("run metareason")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// DIR/short.toml: a bench configuration that answers directly, with no
/// cross-check, distillation, fallback or revision, in at most `max_tokens`.
fn short_bench_config(dir: &std::path::Path, max_tokens: u32) -> std::path::PathBuf {
    let config = dir.join("short.toml");
    std::fs::write(
        &config,
        format!(
            // SmolLM2's probes are noise: the answerability model would
            // decline most tasks before an attempt, which these tests need.
            "strategies = [\"direct\"]\ncross_check = \"never\"\ndistill = false\n[solve]\nfallbacks = []\nmax_revisions = 0\nbacktrack_samples = 0\n[solve.settings]\nmax_tokens = {max_tokens}\n[awareness]\nallow_abstain = false\n[escalation]\nenabled = false\n"
        ),
    )
    .unwrap();
    config
}

fn skip_model_tests() -> bool {
    std::env::var_os("METAREASON_SKIP_MODEL_TESTS").is_some_and(|v| v == "1")
}

#[test]
fn a_reader_that_stops_early_is_no_panic() {
    // `metareason models list | true`: the reader is gone before the first
    // line is written (Rust ignores SIGPIPE, so println! met EPIPE and
    // panicked).
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_metareason"))
        .args(["models", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bench_help_names_every_built_in_dataset() {
    let o = metareason(&["bench", "--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout).replace(['\n', ' '], "");
    for (name, _) in metareason_bench::datasets::BUILTIN {
        assert!(help.contains(name), "bench --help does not name {name}");
    }
}

#[test]
fn models_list_names_every_known_model() {
    let o = metareason(&["models", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "qwen2.5-coder-1.5b-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "smollm2-135m-instruct",
        "all-minilm-l6-v2",
    ] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
}

#[test]
fn unknown_model_names_say_what_to_use() {
    let o = metareason(&["models", "path", "gpt-17"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("metareason: error:"), "{e}");
    assert!(
        e.contains("unknown model 'gpt-17'") && e.contains("models list"),
        "{e}"
    );
}

#[test]
fn path_of_an_unfetched_model_names_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = metareason(&[
        "--models-dir",
        dir.path().to_str().unwrap(),
        "models",
        "path",
        "qwen2.5-coder-0.5b-instruct",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("metareason models fetch qwen2.5-coder-0.5b-instruct"));
}

#[test]
fn verify_finds_a_corrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    // A file of the right size and wrong bytes: `models list` would call it fetched.
    let f = std::fs::File::create(dir.path().join("smollm2-135m-instruct-q4_1.gguf")).unwrap();
    f.set_len(98_362_432).unwrap();
    let o = metareason(&[
        "--models-dir",
        dir.path().to_str().unwrap(),
        "models",
        "verify",
        "smollm2-135m-instruct",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("sha256") && e.contains("fetch again"), "{e}");
}

#[test]
fn empty_prompt_is_refused_before_loading_a_model() {
    let o = metareason(&["--model", "/nonexistent/x.gguf", "generate", "  "]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("prompt is empty"), "{}", stderr(&o));
}

#[test]
fn missing_model_file_is_a_clear_error() {
    let o = metareason(&["--model", "/nonexistent/x.gguf", "generate", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("cannot load model") && e.contains("/nonexistent/x.gguf"),
        "{e}"
    );
}

#[test]
fn openai_backend_needs_a_base_url_and_a_live_server() {
    let o = metareason(&["--backend", "openai", "generate", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--base-url"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let o = metareason(&["--backend", "openai", "--base-url", &url, "generate", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the model server"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let o = metareason(&["generate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = metareason(&["generate", "hi", "--top-logprobs", "50"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--top-logprobs"), "{}", stderr(&o));
    // Sizes out of range are refused before anything runs, with the range.
    for (args, flag) in [
        (vec!["solve", "q", "--samples", "1000000"], "--samples"),
        (vec!["solve", "q", "--samples", "0"], "--samples"),
        (vec!["solve", "q", "--beam-width", "100000"], "--beam-width"),
        (vec!["solve", "q", "--temperature", "9"], "--temperature"),
        (vec!["solve", "q", "--max-tokens", "0"], "--max-tokens"),
        (
            vec!["solve", "q", "--escalation-samples", "500"],
            "--escalation-samples",
        ),
        (vec!["generate", "hi", "-n", "1000"], "-n"),
        (vec!["solve"], "QUESTION"),
    ] {
        let o = metareason(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    let o = metareason(&["solve", "q", "--question-file", "/nonexistent/q.txt"]);
    assert_eq!(o.status.code(), Some(2), "a question and a file conflict");
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "solve",
        "--question-file",
        "/nonexistent/q.txt",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read the question"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stored_text_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mem = dir.path().join("m.sqlite");
    let export = dir.path().join("e.jsonl");
    // A memory whose episode's task and answer hold escape sequences.
    let line = serde_json::json!({
        "type": "episode", "id": 1, "created_at": "2026-01-01T00:00:00Z",
        "task": "evil \u{1b}[2J\u{1b}]0;pwned\u{7} task", "family": null, "embedding": null,
        "embedder": null, "strategy": "direct", "search": "greedy", "decision": "answer",
        "answer": "4\u{1b}[31m2", "confidence": 0.9, "features": null, "outcome": null,
        "reference": null, "generated_tokens": 1, "prompt_tokens": 1,
        "cached_prompt_tokens": 0, "seconds": 0.1, "steps": [], "findings": [], "trace": null
    });
    std::fs::write(&export, format!("{line}\n")).unwrap();
    let o = metareason(&[
        "memory",
        "import",
        export.to_str().unwrap(),
        "--memory",
        mem.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = metareason(&["memory", "list", "--memory", mem.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\u{1b}[2J"), "{out}");
}

#[test]
fn an_export_onto_a_full_disk_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mem = dir.path().join("m.sqlite");
    let m = metareason_memory::Memory::open(&mem).unwrap();
    m.set_parameter("big", &"x".repeat(20_000)).unwrap();
    drop(m);
    let out = dir.path().join("out.jsonl");
    // A 4 KiB file-size limit stands in for a full disk (the write fails
    // with EFBIG; SIGXFSZ is ignored so that the process sees the error).
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 4; exec \"{}\" memory export \"{}\" --memory \"{}\"",
            env!("CARGO_BIN_EXE_metareason"),
            out.display(),
            mem.display()
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn generate_json_on_the_test_model() {
    if skip_model_tests() {
        return;
    }
    let o = metareason(&[
        "--model",
        "smollm2-135m-instruct",
        "--threads",
        "1",
        "generate",
        "Say hello.",
        "--json",
        "--max-tokens",
        "8",
        "-n",
        "2",
        "--temperature",
        "0.7",
        "--top-logprobs",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let seqs = v["sequences"].as_array().unwrap();
    assert_eq!(seqs.len(), 2);
    let tok = &seqs[0]["tokens"][0];
    assert!(tok["logprob"].as_f64().unwrap() <= 0.0);
    assert_eq!(tok["top"].as_array().unwrap().len(), 3);
    assert_eq!(v["model"]["backend"], "llama.cpp");
    assert!(v["usage"]["generated_tokens"].as_u64().unwrap() >= 2);
}

#[test]
fn solve_rejects_unknown_strategies_and_answer_kinds() {
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "solve",
        "2+2?",
        "--strategy",
        "guess",
    ]);
    // A usage error (clap's exit code), before any model is loaded.
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("unknown strategy 'guess'") && e.contains("chain_of_thought"),
        "{e}"
    );
    // The strategy lists are the core's names (ValueEnum): short forms
    // pass, an unknown name is refused with the possible values.
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "solve",
        "2+2?",
        "--strategies",
        "cot,pal,guess",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("'guess'") && e.contains("program_aided"), "{e}");
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "solve",
        "2+2?",
        "--answer",
        "colour",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown answer kind"));
    // A bad reward server is refused before the model loads.
    for (args, want) in [
        (
            [
                "--reward-url",
                "http://127.0.0.1:9/v1",
                "--reward-protocol",
                "prm",
            ],
            "unknown --reward-protocol 'prm': use vllm or json",
        ),
        (
            [
                "--reward-url",
                "localhost:8000",
                "--reward-protocol",
                "json",
            ],
            "must start with http:// or https://",
        ),
    ] {
        let mut all = vec!["--model", "/nonexistent/x.gguf", "solve", "2+2?"];
        all.extend(args);
        let o = metareason(&all);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(e.contains(want) && !e.contains("x.gguf"), "{e}");
    }
    let o = metareason(&["solve", "2+2?", "--search", "astar"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn solve_on_the_test_model_stores_an_episode_that_feedback_grades() {
    if skip_model_tests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("trace.json");
    let mem = dir.path().join("memory.sqlite");
    let mem = mem.to_str().unwrap();
    let o = metareason(&[
        "--model",
        "smollm2-135m-instruct",
        "--threads",
        "1",
        "solve",
        "Tom has 2 apples and buys 3 more. How many apples does he have?",
        // The test needs an attempt: no declining before it.
        "--no-abstain",
        "--strategy",
        "cot",
        "--search",
        "adaptive",
        "--samples",
        "3",
        "--max-tokens",
        "96",
        "--no-fallback",
        "--cross-check",
        "never",
        "--memory",
        mem,
        "--json",
        "--trace",
        trace_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON report on stdout");
    assert_eq!(v["schema"], "metareason.episode/1");
    assert_eq!(v["assessment"]["strategy"], "chain_of_thought");
    let p_true = v["assessment"]["probes"]["p_true"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p_true));
    let t = &v["solve"];
    assert_eq!(t["schema"], "metareason.trace/1");
    let attempt = &t["attempts"][t["final_attempt"].as_u64().unwrap() as usize];
    let n = attempt["outcome"]["candidates"].as_array().unwrap().len();
    assert!((1..=3).contains(&n), "{n} candidates");
    for s in attempt["outcome"]["candidates"][0]["steps"]
        .as_array()
        .unwrap()
    {
        let r = s["reward"].as_f64().unwrap();
        assert!(r > 0.0 && r < 1.0, "{s}");
    }
    assert!(v["usage"]["generated_tokens"].as_u64().unwrap() > 0);
    // Escalation was weighed after the first attempt, with its numbers,
    // and drew no more than its budget.
    let e = &v["escalation"];
    let rounds = e["rounds"].as_array().expect("escalation rounds");
    assert!(!rounds.is_empty());
    assert!(rounds.last().unwrap()["decision"]
        .as_str()
        .unwrap()
        .starts_with("stop"));
    assert!(rounds[0]["value"]["p_correct"].as_f64().is_some());
    assert!(e["drawn"].as_u64().unwrap() <= 8);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert_eq!(file, v);

    let id = v["episode_id"]
        .as_i64()
        .expect("stored in memory")
        .to_string();
    if v["candidate_answer"].is_null() {
        return; // nothing to grade
    }
    let o = metareason(&["feedback", &id, "wrong", "--no-distill", "--memory", mem]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("wrong") && out.contains("calibration"),
        "{out}"
    );
    let o = metareason(&["memory", "stats", "--memory", mem]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("episodes: 1 (1 graded, 0 correct"), "{out}");
    assert!(out.contains("calibration"), "{out}");
    // Export, import elsewhere, same counts.
    let export = dir.path().join("export.jsonl");
    let o = metareason(&[
        "memory",
        "export",
        export.to_str().unwrap(),
        "--memory",
        mem,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = dir.path().join("other.sqlite");
    let o = metareason(&[
        "memory",
        "import",
        export.to_str().unwrap(),
        "--memory",
        other.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("imported 1 episodes"));
}

#[test]
fn feedback_and_memory_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mem = dir.path().join("m.sqlite");
    let mem = mem.to_str().unwrap();
    // Reading a memory that is not there is an error, and creates nothing.
    for args in [
        vec!["memory", "stats", "--memory", mem],
        vec!["memory", "list", "--memory", mem],
        vec!["feedback", "7", "correct", "--memory", mem],
    ] {
        let o = metareason(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains("no memory at"), "{}", stderr(&o));
        assert!(
            !std::path::Path::new(mem).exists(),
            "{args:?} created the file"
        );
    }
    drop(metareason_memory::Memory::open(mem).unwrap());
    let o = metareason(&["feedback", "7", "correct", "--no-distill", "--memory", mem]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no episode 7"), "{}", stderr(&o));
    let o = metareason(&["memory", "reset", "--memory", mem]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let o = metareason(&["memory", "stats", "--memory", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a metareason memory"),
        "{}",
        stderr(&o)
    );
    let o = metareason(&["feedback", "1", "--memory", mem]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a verdict or --answer is required"
    );
}

#[test]
fn policy_check_points_at_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"x\"\naction = \"refuse\"\nreply = \"no\"\nwhen = { regex = \"(\" }\n",
    )
    .unwrap();
    let o = metareason(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.toml:5:"), "{e}");
    assert!(e.contains("invalid regex"), "{e}");
    let o = metareason(&["policy", "default"]);
    let default = dir.path().join("default.toml");
    std::fs::write(&default, &o.stdout).unwrap();
    let o = metareason(&["policy", "check", default.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("mass-casualty-weapons"));
    // A bad policy is refused before any model is loaded.
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "solve",
        "2+2?",
        "--policy",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.toml:5:"));
}

#[test]
fn bench_errors_come_before_any_model_load() {
    let o = metareason(&[
        "--model",
        "/nonexistent/x.gguf",
        "bench",
        "nonsense",
        "--out",
        std::env::temp_dir().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown dataset 'nonsense'"),
        "{}",
        stderr(&o)
    );
    // A module or preset name is checked as the command line is read: a
    // usage error.
    let o = metareason(&["bench", "gsm8k-train", "--ablate", "wisdom"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown module 'wisdom'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bench_on_the_test_model_runs_resumes_and_summarises() {
    if skip_model_tests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.csv");
    std::fs::write(
        &data,
        "key,prompt,gold,skip\na,What is 2 + 2?,4,no\nb,What will I dream tonight?,,yes\n",
    )
    .unwrap();
    let config = short_bench_config(dir.path(), 24);
    let out = dir.path().join("out");
    let args = [
        "--model",
        "smollm2-135m-instruct",
        "--threads",
        "1",
        "bench",
        data.to_str().unwrap(),
        "--field",
        "question=prompt,answer=gold,decline=skip,id=key",
        "--answer",
        "number",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = metareason(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let results = out.join("tiny/short/results.jsonl");
    let lines = std::fs::read_to_string(&results).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "a");
    assert_eq!(first["reference"], "4");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("tiny/short/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["summary"]["n"], 2);
    let report = std::fs::read_to_string(out.join("tiny/report.html")).unwrap();
    assert!(
        report.contains("<svg") && report.contains("short"),
        "report page"
    );
    // `bench compare` of the run against `other`: its table, once it succeeded.
    let short = out.join("tiny/short");
    let compare = |other: &std::path::Path| {
        let o = metareason(&[
            "bench",
            "compare",
            short.to_str().unwrap(),
            other.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let table = compare(&short);
    assert!(table.contains("| AUROC |"), "{table}");
    // Item by item against the first: a run against itself differs on
    // nothing (two runs of one name are told apart by their directories).
    assert!(
        table.contains("Paired against") && table.contains("| +0.000 [+0.000, +0.000] | 1.000 |"),
        "{table}"
    );
    // A run stopped before its summary was written is summarised from its
    // results.
    let stopped = dir.path().join("stopped");
    std::fs::create_dir_all(&stopped).unwrap();
    std::fs::copy(&results, stopped.join("results.jsonl")).unwrap();
    let table = compare(&stopped);
    assert!(table.contains("| items | 2 | 2 |"), "{table}");
    // A run that kept only its summary is compared side by side and left
    // out of the item-by-item table, not an error.
    let summary_only = dir.path().join("summary-only");
    std::fs::create_dir_all(&summary_only).unwrap();
    std::fs::copy(
        short.join("summary.json"),
        summary_only.join("summary.json"),
    )
    .unwrap();
    let table = compare(&summary_only);
    assert!(
        table.contains("Left out (no results.jsonl)") && !table.contains("Paired against"),
        "{table}"
    );
    // The reply of the answered item is recorded with its token confidence
    // and replayed.
    let samples = &first["samples"];
    assert_eq!(samples.as_array().map(Vec::len), Some(1), "{first}");
    assert!(samples[0]["confidence"]["tokens"].as_u64().unwrap() > 0);
    let o = metareason(&["bench", "replay", out.join("tiny/short").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("self-consistency@1") && table.contains("DeepConf online"),
        "{table}"
    );
    assert!(out.join("tiny/short/replay.md").is_file());
    // Mixed with a second sampling run of the same items (here the same
    // run), the replies are taken in turns under the mixture's rules.
    let run = out.join("tiny/short");
    let o = metareason(&[
        "bench",
        "replay",
        run.to_str().unwrap(),
        "--mix",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("settled 2 replies ahead") && table.contains("at most 1 in all"),
        "{table}"
    );
    assert!(out.join("tiny/short/replay-mix-short.md").is_file());
    let o = metareason(&[
        "bench",
        "replay",
        run.to_str().unwrap(),
        "--mix",
        dir.path().join("no-such-run").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    // A rerun finds both items done and runs nothing.
    let o = metareason(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        2
    );
    // Two workers, with the baseline confidences: each baseline becomes a
    // run of its own over the same answers.
    let with_baselines = dir.path().join("baselines.toml");
    std::fs::write(
        &with_baselines,
        format!(
            "baselines = true\n{}",
            std::fs::read_to_string(&config).unwrap()
        ),
    )
    .unwrap();
    let mut args2 = args.to_vec();
    let cfg = with_baselines.to_str().unwrap();
    let at = args2
        .iter()
        .position(|a| *a == config.to_str().unwrap())
        .unwrap();
    args2[at] = cfg;
    args2.extend(["--jobs", "2"]);
    let o = metareason(&args2);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = std::fs::read_to_string(out.join("tiny/baselines/results.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    // Items where an answer was found carry the baselines.
    let with: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["baselines"].is_object())
        .collect();
    assert!(!with.is_empty(), "{lines}");
    for v in &with {
        let p = v["baselines"]["p_true"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{v}");
    }
    assert!(out.join("tiny/baselines+p_true/summary.json").is_file());
    assert!(out
        .join("tiny/baselines+mean_logprob/summary.json")
        .is_file());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("| baselines |"), "{stdout}");
}

#[test]
fn a_bench_killed_mid_run_resumes_without_losing_or_repeating_items() {
    if skip_model_tests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sums.jsonl");
    let lines: String = (1..=8)
        .map(|i| {
            format!(
                "{{\"id\": \"s{i}\", \"q\": \"What is {i} + {i}?\", \"a\": \"{}\"}}\n",
                2 * i
            )
        })
        .collect();
    std::fs::write(&data, lines).unwrap();
    let config = short_bench_config(dir.path(), 16);
    let out = dir.path().join("out");
    let args = [
        "--model",
        "smollm2-135m-instruct",
        "--threads",
        "1",
        "bench",
        data.to_str().unwrap(),
        "--field",
        "question=q,answer=a,id=id",
        "--answer",
        "number",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let results = out.join("sums/short/results.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_metareason"))
        .args(args)
        .env_remove("METAREASON_MODEL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) once the first results are on disk, before the end.
    loop {
        let done = std::fs::read_to_string(&results)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended before it could be killed: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read_to_string(&results).unwrap();
    let kept = before.lines().filter(|l| l.ends_with('}')).count();
    assert!((2..=8).contains(&kept), "{before}");
    // What finished can be summarised without a model.
    let mut summarize = args.to_vec();
    summarize[1] = "/nonexistent/model.gguf";
    summarize.push("--summarize-only");
    let o = metareason(&summarize);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("sums/short/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["summary"]["n"], kept);
    // The rerun does only what is missing and ends with every item once.
    let o = metareason(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::read_to_string(&results).unwrap();
    let mut ids: Vec<String> = after
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (1..=8).map(|i| format!("s{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "{after}");
    // What was on disk before the kill is still there, unchanged.
    for line in before.lines().filter(|l| l.ends_with('}')) {
        assert!(after.contains(line), "lost: {line}");
    }
}

#[test]
fn bench_refuses_to_resume_results_made_under_another_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.csv");
    std::fs::write(&data, "key,prompt,gold\na,What is 2 + 2?,4\n").unwrap();
    let out = dir.path().join("out");
    let run = out.join("tiny/full");
    std::fs::create_dir_all(&run).unwrap();
    let line = r#"{"id":"a","decision":"answer","answer":"4","reference":"4","correct":true,"should_decline":false,"confidence":0.9,"candidate_correct":true,"generated_tokens":5,"prompt_tokens":9,"seconds":1.0}"#;
    std::fs::write(run.join("results.jsonl"), format!("{line}\n")).unwrap();
    let args = |seed: &'static str| {
        vec![
            "--model".to_string(),
            "smollm2-135m-instruct".into(),
            "bench".into(),
            data.to_str().unwrap().into(),
            "--field".into(),
            "question=prompt,answer=gold,id=key".into(),
            "--answer".into(),
            "number".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let call = |a: Vec<String>| metareason(&a.iter().map(String::as_str).collect::<Vec<_>>());
    // Results without a manifest: nothing says what made them.
    let o = call(args("7"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("before runs had manifests"),
        "{}",
        stderr(&o)
    );
    // A manifest of another seed: refused, naming the difference, before
    // any model is loaded.
    let mut manifest: serde_json::Value = serde_json::json!({
        "schema": "metareason.manifest/1", "version": "0", "commit": null, "dirty": null,
        "config_name": "full", "config": "", "seed": 1,
        "model": {"name": "smollm2-135m-instruct", "backend": "llama.cpp", "sha256": null, "base_url": null},
        "dataset": {"name": "x", "items": 1, "sha256": "0", "split": null, "limit": null, "fields": {}},
        "machine": {"os": "linux", "arch": "x86_64", "cpus": 1, "threads": null, "jobs": 1}
    });
    std::fs::write(run.join("manifest.json"), manifest.to_string()).unwrap();
    let o = call(args("7"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("manifest differs") && e.contains("seed: 1 → 7"),
        "{e}"
    );
    // --summarize-only reads what is there without judging it.
    let mut only = args("7");
    only.push("--summarize-only".into());
    let o = call(only);
    assert!(o.status.success(), "{}", stderr(&o));
    manifest["seed"] = 7.into();
    std::fs::write(run.join("manifest.json"), manifest.to_string()).unwrap();
    let o = call(args("7"));
    assert!(stderr(&o).contains("manifest differs"), "{}", stderr(&o));
}

/// Writes a run directory whose results record the harm rule's evidence:
/// (id, harmful, classifier P, own refusal q).
fn harm_run(dir: &std::path::Path, rows: &[(String, bool, f64, f64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let lines: Vec<String> = rows
        .iter()
        .map(|(id, harmful, p, q)| {
            serde_json::json!({
                "id": id, "decision": "answer", "answer": null, "reference": null,
                "correct": null, "should_decline": harmful, "confidence": null,
                "candidate_correct": null, "generated_tokens": 0, "prompt_tokens": 0,
                "seconds": 0.0,
                "harm": {"classifier": p, "own_refusal": q, "refused_earlier": false}
            })
            .to_string()
        })
        .collect();
    std::fs::write(dir.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
}

#[test]
fn fit_refusal_fits_the_weighing_from_recorded_evidence_and_sweeps_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    // Inside the band the classifier says 0.6 of everything; the model
    // refuses a third of the harmful requests and no benign one.
    let rows = |tag: &str| -> Vec<(String, bool, f64, f64)> {
        (0..30)
            .map(|i| {
                let harmful = i % 2 == 0;
                let q = if harmful && i % 3 == 0 { 0.9 } else { 0.01 };
                (format!("{tag}{i}"), harmful, 0.6, q)
            })
            .collect()
    };
    let (learn, test) = (dir.path().join("learn"), dir.path().join("test"));
    harm_run(&learn, &rows("l"));
    harm_run(&test, &rows("t"));
    let out = metareason(&[
        "bench",
        "fit-refusal",
        "--learn",
        learn.to_str().unwrap(),
        "--test",
        test.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fitted on 30 requests of 1 run(s), 30 inside the band"),
        "{text}"
    );
    assert!(text.contains("test: refused by group"), "{text}");
    assert!(
        text.contains("the fitted weighing at other rule thresholds"),
        "{text}"
    );
    // The hand-set rule refuses only what the model refuses (5 of 15); the
    // same requests are in the test run.
    assert!(text.contains("| plain | 15 | 5 (33.3%) |"), "{text}");
    // A run without recorded evidence is an error that says what to do.
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::write(bare.join("results.jsonl"), "").unwrap();
    let out = metareason(&["bench", "fit-refusal", "--learn", bare.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--config policy"), "{}", stderr(&out));
}

//! The `metareason` binary as a user runs it: exit codes and messages.

use std::process::{Command, Output};

fn metareason(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metareason"))
        .args(args)
        .env_remove("METAREASON_MODEL")
        .env_remove("METAREASON_BASE_URL")
        .output()
        .expect("run metareason")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn skip_model_tests() -> bool {
    std::env::var_os("METAREASON_SKIP_MODEL_TESTS").is_some_and(|v| v == "1")
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
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("top_logprobs"));
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
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("unknown strategy 'guess'") && e.contains("chain_of_thought"),
        "{e}"
    );
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
    let o = metareason(&["solve", "2+2?", "--search", "astar"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn solve_on_the_test_model_writes_a_versioned_trace() {
    if skip_model_tests() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("trace.json");
    let o = metareason(&[
        "--model",
        "smollm2-135m-instruct",
        "--threads",
        "1",
        "solve",
        "Tom has 2 apples and buys 3 more. How many apples does he have?",
        "--search",
        "adaptive",
        "--samples",
        "3",
        "--max-tokens",
        "96",
        "--fallback",
        "none",
        "--json",
        "--trace",
        trace_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON trace on stdout");
    assert_eq!(v["schema"], "metareason.trace/1");
    let attempt = &v["attempts"][v["final_attempt"].as_u64().unwrap() as usize];
    let n = attempt["outcome"]["candidates"].as_array().unwrap().len();
    assert!((1..=3).contains(&n), "{n} candidates");
    let steps = attempt["outcome"]["candidates"][0]["steps"]
        .as_array()
        .unwrap();
    for s in steps {
        let r = s["reward"].as_f64().unwrap();
        assert!(r > 0.0 && r < 1.0, "{s}");
    }
    assert!(v["usage"]["generated_tokens"].as_u64().unwrap() > 0);
    let c = v["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    assert_eq!(file, v);
}

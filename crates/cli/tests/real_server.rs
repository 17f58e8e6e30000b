//! `--backend openai` against a real OpenAI-compatible server, not a stub:
//! llama-cpp-python's server (from PyPI) serving SmolLM2-135M. Whatever a
//! real server does differently from the protocol's letter (llama-cpp-python
//! ignores `n`, for one) shows here.
//!
//! The server is installed by `scripts/test.sh` into `target/pydeps-llama`
//! (or set METAREASON_TEST_LLAMA_PYTHONPATH).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_path() -> String {
    let p = std::env::var("METAREASON_TEST_LLAMA_PYTHONPATH").unwrap_or_else(|_| {
        workspace()
            .join("target/pydeps-llama")
            .display()
            .to_string()
    });
    assert!(
        Path::new(&p).join("llama_cpp").is_dir(),
        "llama-cpp-python is not in {p}: run the tests with scripts/test.sh, which installs it \
         there"
    );
    p
}

fn metareason(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metareason"))
        .args(args)
        .env_remove("METAREASON_MODEL")
        .env_remove("METAREASON_BASE_URL")
        .env_remove("METAREASON_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run metareason")
}

fn smollm2_path() -> String {
    let fetched = metareason(&["models", "fetch", "smollm2-135m-instruct"]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let o = metareason(&["models", "path", "smollm2-135m-instruct"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// llama-cpp-python's server on a free loopback port, stopped when dropped.
struct PythonServer {
    child: Child,
    base_url: String,
    log: Arc<Mutex<String>>,
}

impl PythonServer {
    fn start(model: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model", model])
            .args(["--model_alias", "smollm2", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--n_ctx", "4096"])
            .args(["--n_threads", "2", "--logits_all", "true"])
            .env("PYTHONPATH", python_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start llama-cpp-python's server");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        // Drained all along, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            log,
        };
        server.wait_ready(port);
        server
    }

    /// Until `GET /v1/models` answers 200 (the model is loaded).
    fn wait_ready(&mut self, port: u16) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "llama-cpp-python's server ended ({status}) before it served:\n{}",
                    self.log.lock().unwrap()
                );
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(
                    b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                );
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "llama-cpp-python's server did not serve within 300 s:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_of(o: &Output, server: &mut PythonServer) -> Value {
    if !o.status.success() {
        // Whether the server is still there tells a metareason fault from a
        // server that died under the request (SIGILL from a wheel built for
        // another CPU was one).
        let state = match server.child.try_wait() {
            Ok(Some(status)) => format!("the server had ended: {status}"),
            Ok(None) => "the server is still running".to_string(),
            Err(e) => format!("the server's state is unknown: {e}"),
        };
        panic!(
            "metareason failed ({state}): {}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            server.log.lock().unwrap()
        );
    }
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// One server for both checks: loading it is the slow part.
#[test]
fn the_http_backend_runs_the_whole_loop_on_a_real_openai_compatible_server() {
    let mut server = PythonServer::start(&smollm2_path());
    let base_url = server.base_url.clone();
    let backend = [
        "--backend",
        "openai",
        "--base-url",
        base_url.as_str(),
        "--model",
        "smollm2",
    ];

    // Sampling three replies: the server returns one choice per request,
    // the backend asks again with new seeds.
    let mut args = backend.to_vec();
    args.extend([
        "generate",
        "--json",
        "-n",
        "3",
        "--temperature",
        "1.0",
        "--max-tokens",
        "12",
        "--seed",
        "3",
        "Name a colour.",
    ]);
    let g = json_of(&metareason(&args), &mut server);
    let seqs = g["sequences"].as_array().unwrap();
    assert_eq!(seqs.len(), 3, "{g}");
    for s in seqs {
        let tokens = s["tokens"].as_array().unwrap();
        assert!(!tokens.is_empty(), "{s}");
        for t in tokens {
            let lp = t["logprob"].as_f64().unwrap();
            assert!(lp <= 0.0 && lp.is_finite(), "{t}");
        }
    }
    assert_eq!(g["model"]["backend"], "openai");

    // The whole loop, every module on the server: the answer-kind choice
    // and the probes score forced continuations (`/completions` with echoed
    // prompt log-probabilities), the attempt generates, the episode is
    // stored.
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("memory.sqlite");
    let mut args = backend.to_vec();
    args.extend([
        "solve",
        "--memory",
        memory.to_str().unwrap(),
        "--json",
        "What is 2 + 3?",
    ]);
    let e = json_of(&metareason(&args), &mut server);
    let decision = e["decision"].as_str().unwrap_or_default();
    assert!(
        ["answer", "abstain"].contains(&decision),
        "an arithmetic question is answered or withheld, not refused: {e}"
    );
    assert!(e["usage"]["generated_tokens"].as_u64().unwrap() > 0, "{e}");
    assert!(e["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{e}");
    assert!(
        e["assessment"].is_object(),
        "self-awareness ran on the server: {e}"
    );
    let p = e["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{e}");

    let stats = metareason(&["memory", "stats", "--memory", memory.to_str().unwrap()]);
    assert!(stats.status.success());
    let stats = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.contains("episodes: 1"), "{stats}");
}

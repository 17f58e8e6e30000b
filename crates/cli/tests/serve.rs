//! `metareason serve` on the real SmolLM2-135M model, called by the official
//! `openai` Python client and by 16 concurrent clients, and killed mid-load.
//!
//! The Python client is installed by `scripts/test.sh` into
//! `target/pydeps` (or set METAREASON_TEST_PYTHONPATH).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python_path() -> String {
    let p = std::env::var("METAREASON_TEST_PYTHONPATH")
        .unwrap_or_else(|_| workspace().join("target/pydeps").display().to_string());
    assert!(
        Path::new(&p).join("openai").is_dir(),
        "the openai Python client is not in {p}: run the tests with scripts/test.sh, which \
         installs it there"
    );
    p
}

struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(memory: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metareason"))
            .args([
                "--model",
                "smollm2-135m-instruct",
                "--threads",
                "2",
                "serve",
                "--port",
                "0",
                "--memory",
                memory.to_str().unwrap(),
            ])
            .args(extra)
            .env_remove("METAREASON_MODEL")
            .env_remove("METAREASON_BASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run metareason serve");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("the server ended before it listened")
                .unwrap();
            if let Some(rest) = line.split(" on http://").nth(1) {
                let url = rest.split_whitespace().next().unwrap();
                break format!("http://{}", url.trim_end_matches("/v1"));
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Self { child, base }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: sends SIGTERM to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_official_openai_client_works_unchanged_plain_and_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("memory.sqlite"), &[]);
    let out = Command::new("python3")
        .arg(workspace().join("scripts/openai_client_check.py"))
        .arg(format!("{}/v1", served.base))
        .env("PYTHONPATH", python_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("openai client check: {summary}");
    assert_eq!(summary["bad_model"], "BadRequestError");
    // SIGTERM: a clean stop.
    let status = served.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn sixteen_clients_at_once_lose_nothing_even_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let memory = dir.path().join("memory.sqlite");
    let served = Served::start(&memory, &["--max-concurrent", "4", "--max-queue", "16"]);
    let episodes = dir.path().join("episodes.txt");
    let load = |base: &str, requests: &str| {
        Command::new("python3")
            .arg(workspace().join("scripts/loadtest.py"))
            .arg(format!("{base}/v1"))
            .args(["--clients", "16", "--requests", requests, "--episodes"])
            .arg(&episodes)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = load(&served.base, "1").wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("load test, 16 clients x 1 request: {report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(
        report["answered"].as_u64().unwrap() + report["rejected"].as_u64().unwrap(),
        16
    );

    // Now kill -9 mid-load: every episode a client was told about is stored.
    let mut second = load(&served.base, "2");
    let answered = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while answered(&episodes) < 16 + 4 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut served = served;
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    let _ = second.wait();
    let told: Vec<i64> = std::fs::read_to_string(&episodes)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(told.len() >= 20);
    let m = metareason_memory::Memory::open(&memory).expect("the memory opens after kill -9");
    for id in &told {
        let e = m
            .episode(*id)
            .unwrap_or_else(|e| panic!("episode {id} was answered but is not stored: {e}"));
        assert!(
            e.record.trace.is_some(),
            "episode {id} is stored without its trace"
        );
    }
    drop(m);
    // And the memory still opens for a new server.
    let again = Served::start(&memory, &[]);
    drop(again);
}

//! `metareason serve` over real HTTP on the scripted model: the OpenAI
//! protocol, streaming, feedback and episodes, keys, admission, limits and
//! shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use metareason_awareness::Policy;
use metareason_core::{
    GenerateRequest, Generation, LanguageModel, ModelError, ModelInfo, ScoreRequest, Scored,
};
use metareason_reasoner::{CrossCheck, ReasonerConfig};
use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_server::{AppState, Engine, ModelRoutes, Route, ServerConfig};
use metareason_strategy::StrategyKind;
use serde_json::{json, Value};

fn scripted() -> ScriptedModel {
    ScriptedModel::new()
        .on(
            When::PromptContains("capital of Atlantis".into()),
            [Reply::text("Nobody knows.\nThe answer is unknown.").logprob(-0.05)],
        )
        .on(
            When::Always,
            [Reply::text("6 * 7 = 42\nThe answer is 42.").logprob(-0.05)],
        )
        .score("Yes", (0.9f32).ln())
        .score("No", (0.1f32).ln())
}

/// A model whose calls wait while the gate is shut (for tests of what
/// happens while loops are running), then answer as the script says.
struct Gated {
    inner: ScriptedModel,
    open: Mutex<bool>,
    changed: Condvar,
    waiting: Mutex<usize>,
}

impl Gated {
    fn new(open: bool) -> Self {
        Self {
            inner: scripted(),
            open: Mutex::new(open),
            changed: Condvar::new(),
            waiting: Mutex::new(0),
        }
    }

    fn wait(&self) {
        *self.waiting.lock().unwrap() += 1;
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        *self.waiting.lock().unwrap() -= 1;
    }

    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }

    fn waiting(&self) -> usize {
        *self.waiting.lock().unwrap()
    }
}

impl LanguageModel for Gated {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }
    fn generate(&self, r: &GenerateRequest) -> Result<Generation, ModelError> {
        self.wait();
        self.inner.generate(r)
    }
    fn score(&self, r: &ScoreRequest) -> Result<Scored, ModelError> {
        self.wait();
        LanguageModel::score(&self.inner, r)
    }
}

fn quiet() -> ReasonerConfig {
    ReasonerConfig {
        cross_check: CrossCheck::Never,
        strategies: vec![StrategyKind::ChainOfThought],
        ..ReasonerConfig::default()
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(model: Arc<dyn LanguageModel>, mut config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut test_route = ModelRoutes::resolve("metareason").unwrap();
        test_route.name = "metareason-test".into();
        test_route.config = quiet();
        config.routes.push(Route { ..test_route });
        let engine = Engine {
            model,
            embedder: None,
            state_readers: Vec::new(),
            memory_path: Some(dir.path().join("memory.sqlite")),
            policy: Policy::default_policy(),
        };
        let state = AppState::new(engine, config);
        let (tx_addr, rx_addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx_addr.send(listener.local_addr().unwrap()).unwrap();
                metareason_server::serve(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Self {
            addr: rx_addr.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Posts a chat completion; its status and JSON body.
fn chat(s: &Server, body: &Value) -> (u16, Value) {
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn ask(model: &str, question: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": question}]})
}

#[test]
fn models_are_listed_and_a_question_is_answered_with_the_decision() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let c = client();
    let models: Value = c.get(s.url("/v1/models")).send().unwrap().json().unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"metareason"), "{ids:?}");
    assert!(ids.contains(&"metareason-greedy"), "{ids:?}");
    assert!(ids.contains(&"metareason:sc8"), "{ids:?}");

    let r = c
        .post(s.url("/v1/chat/completions"))
        .json(&ask("metareason-test", "What is 6 * 7?"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "42");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let m = &v["metareason"];
    assert_eq!(m["decision"], "answer", "{m}");
    let conf = m["confidence"].as_f64().unwrap();
    assert!(conf > 0.0 && conf < 1.0);
    assert_eq!(m["strategy"], "chain_of_thought");
    assert_eq!(m["configuration"], "metareason-test");
    let phases: Vec<&str> = m["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        phases.contains(&"assessment") && phases.contains(&"solve"),
        "{phases:?}"
    );
    let u = &v["usage"];
    assert!(u["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    // The episode is stored; feedback teaches; the page shows it.
    let id = m["episode_id"].as_i64().unwrap();
    let fb = c
        .post(s.url("/v1/feedback"))
        .json(&json!({"episode_id": id, "answer": "42"}))
        .send()
        .unwrap();
    assert_eq!(fb.status(), 200);
    let fb: Value = fb.json().unwrap();
    assert_eq!(fb["correct"], true);
    let ep: Value = c
        .get(s.url(&format!("/v1/episodes/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ep["outcome"], true);
    assert_eq!(ep["trace"]["answer"], "42");
    let page = c.get(s.url(&format!("/episodes/{id}"))).send().unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(
        html.contains("id=\"decision\" class=\"decision answer\""),
        "{html}"
    );
    assert!(html.contains("What is 6 * 7?"));
    assert!(html.contains("id=\"outcome\">right<"));
    // Missing episodes are 404 in OpenAI's error shape.
    let missing = c.get(s.url("/v1/episodes/999")).send().unwrap();
    assert_eq!(missing.status(), 404);
    let e: Value = missing.json().unwrap();
    assert_eq!(e["error"]["type"], "not_found_error");
}

#[test]
fn an_abstention_is_an_ordinary_reply_not_an_error() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&ask("metareason-test", "What is the capital of Atlantis?"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["metareason"]["decision"], "abstain", "{v}");
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("I don't know"), "{text}");
}

#[test]
fn earlier_turns_are_the_context_of_the_last_user_message() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let body = json!({"model": "metareason-test", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I have 6 boxes of 7 pens."},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": [{"type": "text", "text": "How many pens?"}]}
    ]});
    let v: Value = client()
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = v["metareason"]["episode_id"].as_i64().unwrap();
    let ep: Value = client()
        .get(s.url(&format!("/v1/episodes/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let task = ep["task"].as_str().unwrap();
    assert!(task.contains("Instructions: Be brief."), "{task}");
    assert!(task.contains("User: I have 6 boxes of 7 pens."), "{task}");
    assert!(task.ends_with("How many pens?"), "{task}");
}

/// The `data:` payloads of a server-sent event stream.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

#[test]
fn a_stream_carries_trace_events_then_the_reply_then_done() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let mut body = ask("metareason-test", "What is 6 * 7?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&r.text().unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(chunks.iter().all(|c| c["id"] == id.as_str()));
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let events: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["metareason_event"]["event"].as_str())
        .collect();
    for e in [
        "queued",
        "started",
        "answer_kind",
        "assessed",
        "attempt",
        "decided",
        "stored",
    ] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    // Events come in the loop's order, all before the reply.
    let pos = |e: &str| events.iter().position(|x| *x == e).unwrap();
    assert!(pos("started") < pos("assessed") && pos("assessed") < pos("decided"));
    let first_content = chunks
        .iter()
        .position(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .unwrap();
    let last_event = chunks
        .iter()
        .rposition(|c| c.get("metareason_event").is_some())
        .unwrap();
    assert!(last_event < first_content);
    let reply: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(reply, "42");
    let last_choice = chunks
        .iter()
        .rfind(|c| !c["choices"].as_array().unwrap().is_empty())
        .unwrap();
    assert_eq!(last_choice["choices"][0]["finish_reason"], "stop");
    assert_eq!(last_choice["metareason"]["decision"], "answer");
    let usage = chunks.last().unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(usage["choices"].as_array().unwrap().is_empty());
}

#[test]
fn keys_are_required_when_configured() {
    let s = Server::start(
        Arc::new(scripted()),
        ServerConfig {
            api_keys: vec!["sk-right".into()],
            ..ServerConfig::default()
        },
    );
    let c = client();
    let none = c.get(s.url("/v1/models")).send().unwrap();
    assert_eq!(none.status(), 401);
    let e: Value = none.json().unwrap();
    assert_eq!(e["error"]["code"], "invalid_api_key");
    let wrong = c
        .get(s.url("/v1/models"))
        .bearer_auth("sk-wrong")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let page = c.get(s.url("/episodes/1")).send().unwrap();
    assert_eq!(page.status(), 401);
    let right = c
        .get(s.url("/v1/models"))
        .bearer_auth("sk-right")
        .send()
        .unwrap();
    assert_eq!(right.status(), 200);
    // Health needs no key (for load balancers).
    assert_eq!(c.get(s.url("/health")).send().unwrap().status(), 200);
}

#[test]
fn bad_requests_get_clear_errors_in_openai_shape() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let c = client();
    let post = |body: &str| {
        let r = c
            .post(s.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let (st, e) = post("{not json");
    assert_eq!(st, 400);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a chat completion request"));
    let (st, e) = post(&ask("gpt-4o", "hi").to_string());
    assert_eq!(st, 400);
    assert_eq!(e["error"]["code"], "model_not_found");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("metareason-greedy"));
    let mut two = ask("metareason-test", "hi");
    two["n"] = json!(2);
    let (st, e) = post(&two.to_string());
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("n")));
    let (st, e) = post(
        &json!({"model": "metareason-test", "messages": [{"role": "system", "content": "x"}]})
            .to_string(),
    );
    assert_eq!(st, 400);
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no user message"));
    let (st, _) = post(
        &json!({"model": "metareason-test", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
            .to_string(),
    );
    assert_eq!(st, 400);
    let fb = c
        .post(s.url("/v1/feedback"))
        .json(&json!({"episode_id": 1, "correct": true, "answer": "3"}))
        .send()
        .unwrap();
    assert_eq!(fb.status(), 400);
    let fb = c
        .post(s.url("/v1/feedback"))
        .json(&json!({"episode_id": 77, "correct": true}))
        .send()
        .unwrap();
    assert_eq!(fb.status(), 404);
    assert_eq!(c.get(s.url("/v2/nothing")).send().unwrap().status(), 404);
}

#[test]
fn a_full_queue_answers_429_with_retry_after_and_loses_nothing() {
    let model = Arc::new(Gated::new(false));
    let s = Server::start(
        model.clone(),
        ServerConfig {
            max_concurrent: 1,
            max_queue: 1,
            ..ServerConfig::default()
        },
    );
    let url = s.url("/v1/chat/completions");
    let spawn = |url: String| {
        std::thread::spawn(move || {
            client()
                .post(url)
                .json(&ask("metareason-test", "What is 6 * 7?"))
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let first = spawn(url.clone());
    let second = spawn(url.clone());
    // Both admitted: one running (blocked in the model), one waiting.
    loop {
        let h: Value = client()
            .get(s.url("/health"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        if h["admitted"] == 2 && model.waiting() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let third = client()
        .post(url.clone())
        .json(&ask("metareason-test", "What is 6 * 7?"))
        .send()
        .unwrap();
    assert_eq!(third.status(), 429);
    let retry: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let e: Value = third.json().unwrap();
    assert_eq!(e["error"]["type"], "rate_limit_error");
    model.set(true);
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(second.join().unwrap(), 200);
    // Both episodes were stored.
    for id in [1, 2] {
        let r = client()
            .get(s.url(&format!("/v1/episodes/{id}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn a_request_stops_at_its_token_limit_with_a_clear_error() {
    let s = Server::start(
        Arc::new(scripted()),
        ServerConfig {
            request_tokens: Some(1),
            ..ServerConfig::default()
        },
    );
    let (status, e) = chat(&s, &ask("metareason-test", "What is 6 * 7?"));
    assert_eq!(status, 400, "{e}");
    assert_eq!(e["error"]["code"], "token_limit_exceeded", "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--request-tokens"));
}

#[test]
fn shutdown_lets_the_request_in_flight_finish_and_refuses_new_ones() {
    let model = Arc::new(Gated::new(false));
    let mut s = Server::start(model.clone(), ServerConfig::default());
    let url = s.url("/v1/chat/completions");
    let in_flight = std::thread::spawn(move || {
        let r = client()
            .post(url)
            .json(&ask("metareason-test", "What is 6 * 7?"))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    while model.waiting() == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stop = s.stop.take().unwrap();
    stop.send(()).unwrap();
    // Give the server the signal before the loop may end.
    let addr = s.addr;
    let mut refused = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        refused,
        "the listener still accepts connections after shutdown"
    );
    model.set(true);
    let (status, v) = in_flight.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "42");
    s.shutdown();
}

/// The headless browser the tests render pages in (installed by
/// scripts/test.sh).
fn browser() -> String {
    let name = std::env::var("METAREASON_TEST_BROWSER")
        .unwrap_or_else(|_| "chromium-headless-shell".into());
    let found = std::process::Command::new(&name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: run the tests with scripts/test.sh, which installs it (or set \
         METAREASON_TEST_BROWSER to a Chromium binary)"
    );
    name
}

/// The document at `url` after the page's script ran (--dump-dom).
fn rendered_dom(url: &str) -> String {
    let out = std::process::Command::new(browser())
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=2000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_trace_page_renders_in_a_real_browser() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let v: Value = client()
        .post(s.url("/v1/chat/completions"))
        .json(&ask("metareason-test", "What is 6 * 7?"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = v["metareason"]["episode_id"].as_i64().unwrap();
    let url = s.url(&format!("/episodes/{id}"));
    let dom = rendered_dom(&url);
    assert!(dom.contains("class=\"decision answer\""), "{dom}");
    assert!(dom.contains("id=\"confidence\""));
    assert!(dom.contains("What is 6 * 7?"));
    // The strategy options with their posterior intervals (SVG).
    assert!(dom.contains("class=\"option\""));
    assert!(dom.contains("<svg class=\"interval\""));
    // Steps with rewards, and the script's mark of the weakest one.
    assert_eq!(dom.matches("class=\"step-row").count(), 2, "{dom}");
    assert!(
        dom.contains("step-row weakest"),
        "the page's script did not run: {dom}"
    );
    assert!(dom.contains("2 steps; the weakest is step"), "{dom}");
    // Time and tokens per phase.
    assert!(dom.contains("id=\"phases\"") && dom.contains("class=\"phase\""));
    // And a screenshot renders something.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("page.png");
    let shot = std::process::Command::new(browser())
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,1600",
            &format!("--screenshot={}", png.display()),
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{}",
        bytes.len()
    );
}

#[test]
fn the_trace_page_draws_the_search_tree_in_a_real_browser() {
    let s = Server::start(Arc::new(scripted()), ServerConfig::default());
    let v: Value = client()
        .post(s.url("/v1/chat/completions"))
        .json(&ask("metareason:mcts", "What is 6 * 7?"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = v["metareason"]["episode_id"].as_i64().unwrap();
    let dom = rendered_dom(&s.url(&format!("/episodes/{id}")));
    assert!(
        dom.contains("<svg class=\"tree\" data-search=\"mcts\""),
        "{dom}"
    );
    // The root and the steps it expanded, the chosen path marked.
    assert!(dom.matches("class=\"tree-node").count() >= 3, "{dom}");
    assert!(dom.contains("tree-node chosen"), "{dom}");
    assert!(dom.contains("tree-edge"));
}

#[test]
fn a_request_past_its_time_limit_stops_with_a_timeout() {
    // A limit already spent: the loop stops at its first model call.
    let s = Server::start(
        Arc::new(scripted()),
        ServerConfig {
            request_timeout: Some(Duration::ZERO),
            ..ServerConfig::default()
        },
    );
    let (status, e) = chat(&s, &ask("metareason-test", "What is 6 * 7?"));
    assert_eq!(status, 408, "{e}");
    assert_eq!(e["error"]["type"], "timeout_error");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--request-timeout"));
}

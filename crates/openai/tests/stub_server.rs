//! The HTTP backend against a stub server on loopback (no outside network).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metareason_core::{
    FinishReason, GenerateRequest, LanguageModel, ModelError, Prompt, SamplingParams, ScoreRequest,
    StepJudge,
};
use metareason_openai::{OpenAiConfig, OpenAiModel, RewardEndpoint, RewardProtocol};
use serde_json::{json, Value};

/// What the stub saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: Value,
}

type Handler = dyn Fn(usize, &Seen) -> (u16, String, Option<Duration>) + Send + Sync;

/// A one-thread HTTP/1.1 server: each connection carries one request.
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(handler: Box<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { break };
                if serve(stream, i, &*handler, &seen2).is_err() {
                    continue;
                }
            }
        });
        Stub { url, seen }
    }

    /// A server that answers each connection on a thread of its own, as a
    /// server with several slots does.
    fn start_threaded(handler: Box<Handler>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let handler: Arc<Handler> = Arc::from(handler);
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { break };
                let (handler, seen) = (handler.clone(), seen2.clone());
                std::thread::spawn(move || serve(stream, i, &*handler, &seen));
            }
        });
        Stub { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(
    mut stream: TcpStream,
    i: usize,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut len = 0;
    let mut auth = None;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap_or((h, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let s = Seen {
        path,
        auth,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    seen.lock().unwrap().push(s.clone());
    let (status, text, delay) = handler(i, &s);
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    let resp = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(resp.as_bytes());
    Ok(())
}

fn chat_answer(texts: &[&str]) -> String {
    let choices: Vec<Value> = texts
        .iter()
        .enumerate()
        .rev() // out of order on purpose: the client must sort by index
        .map(|(i, t)| {
            json!({
                "index": i,
                "message": {"role": "assistant", "content": t},
                "finish_reason": "stop",
                "logprobs": {"content": [
                    {"token": t, "logprob": -0.25, "bytes": t.as_bytes(),
                     "top_logprobs": [
                        {"token": "zz", "logprob": -3.0},
                        {"token": t, "logprob": -0.25}
                     ]}
                ]}
            })
        })
        .collect();
    json!({
        "choices": choices,
        "usage": {"prompt_tokens": 12, "completion_tokens": texts.len(),
                  "prompt_tokens_details": {"cached_tokens": 4}}
    })
    .to_string()
}

/// A base URL on a loopback port nobody listens on (bound, then dropped).
fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/v1")
}

fn config(url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(url, "stub-model");
    c.api_key = Some("sk-test".into());
    c.backoff = Duration::from_millis(10);
    c.timeout = Duration::from_secs(5);
    c
}

fn request(n: usize) -> GenerateRequest {
    GenerateRequest::new(
        Prompt::user("What is 2+2?").with_system("Be brief."),
        SamplingParams {
            max_tokens: 8,
            top_logprobs: 2,
            seed: 7,
            stop: vec!["\n".into()],
            ..SamplingParams::default()
        },
    )
    .with_n(n)
}

#[test]
fn chat_completion_maps_tokens_logprobs_and_usage() {
    let stub = Stub::start(Box::new(|_, _| (200, chat_answer(&["4", "four"]), None)));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let g = m.generate(&request(2)).unwrap();
    assert_eq!(g.sequences[0].text, "4");
    assert_eq!(g.sequences[1].text, "four");
    let t = &g.sequences[0].tokens[0];
    assert_eq!(t.logprob, -0.25);
    assert_eq!(t.top[0].text, "4", "top-k sorted best first");
    assert_eq!(g.sequences[0].finish_reason, FinishReason::Stop);
    assert_eq!(g.usage.prompt_tokens, 8);
    assert_eq!(g.usage.cached_prompt_tokens, 4);
    assert_eq!(g.usage.generated_tokens, 2);

    let seen = stub.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer sk-test"));
    let b = &seen[0].body;
    assert_eq!(b["model"], "stub-model");
    assert_eq!(b["n"], 2);
    assert_eq!(b["seed"], 7);
    assert_eq!(b["logprobs"], true);
    assert_eq!(b["top_logprobs"], 2);
    assert_eq!(b["stop"], json!(["\n"]));
    assert_eq!(b["messages"][0]["role"], "system");
    assert!(b.get("continue_final_message").is_none());
}

#[test]
fn a_server_that_ignores_n_is_asked_again_with_new_seeds() {
    // llama-cpp-python's server answers one choice whatever `n` says.
    let stub = Stub::start(Box::new(|i, _| {
        let text = ["a", "b", "c"][i.min(2)];
        (200, chat_answer(&[text]), None)
    }));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let g = m.generate(&request(3)).unwrap();
    let texts: Vec<&str> = g.sequences.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    let asked: Vec<(u64, u64)> = seen
        .iter()
        .map(|s| {
            (
                s.body["n"].as_u64().unwrap(),
                s.body["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(asked, [(3, 7), (2, 8), (1, 9)]);
    // The usage of the three answers is summed.
    assert_eq!(g.usage.prompt_tokens, 24);
    assert_eq!(g.usage.generated_tokens, 3);
}

#[test]
fn more_choices_than_asked_is_a_protocol_error() {
    let stub = Stub::start(Box::new(|_, _| (200, chat_answer(&["a", "b"]), None)));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Protocol(ref s) if s.contains("asked for 1 choices, got 2")),
        "{e}"
    );
}

#[test]
fn partial_reply_is_sent_as_a_continued_assistant_message() {
    let stub = Stub::start(Box::new(|_, _| (200, chat_answer(&[" 4"]), None)));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let mut r = request(1);
    r.prompt = r.prompt.with_assistant_prefix("The answer is");
    m.generate(&r).unwrap();
    let b = &stub.seen()[0].body;
    let msgs = b["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["role"], "assistant");
    assert_eq!(msgs.last().unwrap()["content"], "The answer is");
    assert_eq!(b["continue_final_message"], true);
    assert_eq!(b["add_generation_prompt"], false);
}

#[test]
fn retries_429_and_5xx_then_succeeds() {
    let stub = Stub::start(Box::new(|i, _| match i {
        0 => (429, "{\"error\":\"slow down\"}".into(), None),
        1 => (503, "{\"error\":\"busy\"}".into(), None),
        _ => (200, chat_answer(&["ok"]), None),
    }));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let g = m.generate(&request(1)).unwrap();
    assert_eq!(g.sequences[0].text, "ok");
    assert_eq!(stub.seen().len(), 3);
}

#[test]
fn gives_up_after_the_retry_budget_with_the_server_message() {
    let stub = Stub::start(Box::new(|_, _| (500, "{\"error\":\"boom\"}".into(), None)));
    let mut c = config(&stub.url);
    c.max_retries = 2;
    let m = OpenAiModel::new(c).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Server { status: 500, ref body } if body.contains("boom")),
        "{e}"
    );
    assert_eq!(stub.seen().len(), 3);
}

#[test]
fn client_errors_are_not_retried() {
    let stub = Stub::start(Box::new(|_, _| {
        (400, "{\"error\":\"bad top_k\"}".into(), None)
    }));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(e.to_string().contains("bad top_k"));
    assert_eq!(stub.seen().len(), 1);
}

#[test]
fn missing_logprobs_is_a_clear_error() {
    let body =
        json!({"choices": [{"index": 0, "message": {"content": "4"}, "finish_reason": "stop"}]});
    let stub = Stub::start(Box::new(move |_, _| (200, body.to_string(), None)));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let e = m.generate(&request(1)).unwrap_err().to_string();
    assert!(e.contains("no logprobs"), "{e}");
}

#[test]
fn garbage_answers_are_protocol_errors() {
    let stub = Stub::start(Box::new(|_, _| {
        (200, "<html>proxy error</html>".into(), None)
    }));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Protocol(ref s) if s.contains("proxy error")),
        "{e}"
    );
}

#[test]
fn a_slow_server_times_out() {
    let stub = Stub::start(Box::new(|_, _| {
        (200, chat_answer(&["late"]), Some(Duration::from_secs(3)))
    }));
    let mut c = config(&stub.url);
    c.timeout = Duration::from_millis(300);
    let m = OpenAiModel::new(c).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Unreachable(ref s) if s.contains("no answer within")),
        "{e}"
    );
}

#[test]
fn a_server_that_is_down_is_unreachable() {
    let mut c = config(&closed_port_url());
    c.max_retries = 1;
    let m = OpenAiModel::new(c).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    assert!(
        matches!(e, ModelError::Unreachable(ref s) if s.contains("is the server running")
            && s.contains("refused")),
        "{e}"
    );
}

#[test]
fn a_server_that_dies_mid_request_says_so_with_the_cause() {
    // What a crashing server looks like from outside (llama-cpp-python
    // killed by SIGILL on its first request, seen in CI): the connection is
    // accepted, the request read, then closed without a reply.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(0usize));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            *count.lock().unwrap() += 1;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            drop(stream);
        }
    });
    let mut c = config(&url);
    c.max_retries = 1;
    let m = OpenAiModel::new(c).unwrap();
    let e = m.generate(&request(1)).unwrap_err();
    let ModelError::Unreachable(text) = &e else {
        panic!("not Unreachable: {e}")
    };
    // The cause beneath reqwest's "error sending request" is named.
    assert!(
        text.contains("closed") || text.contains("reset") || text.contains("incomplete"),
        "{text}"
    );
    assert!(text.contains("server crashed"), "{text}");
    // Retried once, then given up: two connections, no hang.
    assert_eq!(*accepted.lock().unwrap(), 2);
}

#[test]
fn scoring_uses_echoed_prompt_logprobs() {
    // The rendered prompt is ChatML; the continuation " Yes" starts at its end.
    let handler = |_: usize, seen: &Seen| {
        let prompt = seen.body["prompt"].as_str().unwrap().to_string();
        let split = prompt.len() - " Yes".len();
        let body = json!({
            "choices": [{"text": prompt, "logprobs": {
                "tokens": [&prompt[..split], " Yes", "!"],
                "token_logprobs": [null, -0.4, -2.0],
                "top_logprobs": [null, {" Yes": -0.4, " No": -1.2}, {"!": -2.0}],
                "text_offset": [0, split, prompt.len()]
            }}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1}
        });
        (200, body.to_string(), None)
    };
    let stub = Stub::start(Box::new(handler));
    let m = OpenAiModel::new(config(&stub.url)).unwrap();
    let s = m
        .score(&ScoreRequest {
            prompt: Prompt::user("Is 2+2=4?"),
            continuation: " Yes".into(),
            top_logprobs: 2,
        })
        .unwrap();
    assert_eq!(s.tokens.len(), 1);
    assert_eq!(s.tokens[0].text, " Yes");
    assert!((s.total_logprob() - -0.4).abs() < 1e-6);
    assert_eq!(s.tokens[0].top[1].text, " No");
    let b = &stub.seen()[0].body;
    assert_eq!(b["echo"], true);
    assert!(b["prompt"]
        .as_str()
        .unwrap()
        .starts_with("<|im_start|>user\nIs 2+2=4?"));
}

#[test]
fn bad_base_url_is_rejected_before_any_request() {
    let e = OpenAiModel::new(OpenAiConfig::new("localhost:8000", "m"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("http://"));
}

#[test]
fn one_model_serves_several_callers_at_once() {
    // Each request waits (up to 10 s) until three are in flight: a client
    // that sent them one at a time would leave the peak at 1.
    let in_flight = Arc::new((Mutex::new((0usize, 0usize)), std::sync::Condvar::new()));
    let state = in_flight.clone();
    let stub = Stub::start_threaded(Box::new(move |_, _| {
        let (lock, cv) = &*state;
        let mut g = lock.lock().unwrap();
        g.0 += 1;
        g.1 = g.1.max(g.0);
        cv.notify_all();
        let (mut g, _) = cv
            .wait_timeout_while(g, Duration::from_secs(10), |g| g.1 < 3)
            .unwrap();
        g.0 -= 1;
        (200, chat_answer(&["4"]), None)
    }));
    let mut c = config(&stub.url);
    c.timeout = Duration::from_secs(30);
    let m = OpenAiModel::new(c).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| m.generate(&request(1)).unwrap()))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().sequences[0].text, "4");
        }
    });
    assert_eq!(in_flight.0.lock().unwrap().1, 3, "requests were serialised");
    assert_eq!(stub.seen().len(), 3);
}

#[test]
fn vllm_pooling_reward_sends_the_steps_with_separators_and_reads_p_good() {
    let stub = Stub::start(Box::new(|_, _| {
        (
            200,
            json!({"object": "list", "data": [{"index": 0, "object": "pooling",
                   "data": [[0.2, 0.8], [0.9, 0.1]]}]})
            .to_string(),
            None,
        )
    }));
    let judge =
        RewardEndpoint::new(config(&stub.url), RewardProtocol::by_name("vllm").unwrap()).unwrap();
    let task = Prompt::user("What is 2+2?").with_system("Be brief.");
    let (p, usage) = judge
        .judge(&task, &["2 + 2 = 4".to_string()], "The answer is 5.")
        .unwrap();
    assert_eq!(p, 0.1);
    assert_eq!(usage.generated_tokens, 0);
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    // /pooling sits beside /v1, not under it.
    assert_eq!(seen[0].path, "/pooling");
    assert_eq!(seen[0].auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(seen[0].body["model"], "stub-model");
    assert_eq!(seen[0].body["messages"][0]["content"], "What is 2+2?");
    assert_eq!(
        seen[0].body["messages"][1]["content"],
        "2 + 2 = 4<extra_0>The answer is 5.<extra_0>"
    );
}

#[test]
fn json_reward_protocol_posts_question_and_steps_to_the_url() {
    let stub = Stub::start(Box::new(|_, s| {
        let n = s.body["steps"].as_array().map_or(0, Vec::len);
        (
            200,
            json!({"rewards": vec![0.5; n - 1].into_iter().chain([0.75]).collect::<Vec<_>>()})
                .to_string(),
            None,
        )
    }));
    let url = format!("{}/score-steps", stub.url);
    let judge = RewardEndpoint::new(config(&url), RewardProtocol::Json).unwrap();
    let (p, _) = judge
        .judge(
            &Prompt::user("Q?"),
            &["a".to_string(), "b".to_string()],
            "c",
        )
        .unwrap();
    assert_eq!(p, 0.75);
    let seen = stub.seen();
    assert_eq!(seen[0].path, "/v1/score-steps");
    assert_eq!(seen[0].body["question"], "Q?");
    assert_eq!(seen[0].body["steps"], json!(["a", "b", "c"]));
}

#[test]
fn reward_server_faults_are_clear_errors() {
    // A generation server that knows nothing of /pooling answers 404.
    let stub = Stub::start(Box::new(|_, _| {
        (404, "{\"detail\":\"Not Found\"}".into(), None)
    }));
    let judge =
        RewardEndpoint::new(config(&stub.url), RewardProtocol::by_name("vllm").unwrap()).unwrap();
    let e = judge.judge(&Prompt::user("Q?"), &[], "s").unwrap_err();
    assert!(matches!(e, ModelError::Server { status: 404, .. }), "{e}");

    // A reward outside [0, 1] (a raw logit, say) is refused, not used.
    let stub = Stub::start(Box::new(|_, _| (200, "{\"reward\": 3.2}".into(), None)));
    let judge = RewardEndpoint::new(config(&stub.url), RewardProtocol::Json).unwrap();
    let e = judge.judge(&Prompt::user("Q?"), &[], "s").unwrap_err();
    assert!(
        matches!(e, ModelError::Protocol(ref m) if m.contains("outside [0, 1]")),
        "{e}"
    );

    // A server that is down.
    let mut c = config(&closed_port_url());
    c.max_retries = 0;
    let judge = RewardEndpoint::new(c, RewardProtocol::Json).unwrap();
    let e = judge.judge(&Prompt::user("Q?"), &[], "s").unwrap_err();
    assert!(matches!(e, ModelError::Unreachable(_)), "{e}");
}

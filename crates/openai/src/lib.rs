//! # metareason-openai
//!
//! A [`LanguageModel`] served over the OpenAI-compatible protocol, as vLLM,
//! SGLang, llama.cpp's server, Ollama and hosted APIs speak it. Point it at a
//! cluster and every metareason module runs on that model.
//!
//! - Generation uses `/chat/completions` with `logprobs` and `top_logprobs`
//!   (the server applies the model's chat template). A partial assistant
//!   reply is sent as a final assistant message with
//!   `continue_final_message` (vLLM, SGLang; llama.cpp's server continues a
//!   trailing assistant message by itself).
//! - Scoring a forced continuation uses `/completions` with `echo` and
//!   `logprobs`, on a prompt rendered here with [`PromptFormat`]; servers that
//!   do not echo prompt log-probabilities get a clear error.
//! - Requests time out, and 429 and 5xx answers are retried with exponential
//!   backoff (honouring `Retry-After`).
//!
//! - [`RewardEndpoint`] asks a process reward model behind a server (vLLM's
//!   `/pooling`, or a small JSON protocol) to judge each reasoning step; its
//!   answer joins the step reward Q_t.
//!
//! This is the only crate that knows the wire format.
#![deny(missing_docs)]

mod reward;
mod wire;

pub use reward::{RewardEndpoint, RewardProtocol};

use std::time::{Duration, Instant};

use metareason_core::{
    FinishReason, GenerateRequest, Generation, LanguageModel, Message, ModelError, ModelInfo,
    Prompt, ScoreRequest, Scored, Sequence, TokenLogprob, Usage,
};
use serde_json::{json, Value};

/// Environment variables read for the API key, in order.
pub const API_KEY_ENVS: [&str; 2] = ["METAREASON_API_KEY", "OPENAI_API_KEY"];

/// How a chat is turned into raw text for `/completions` (used for scoring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (Qwen, SmolLM2 and many others).
    ChatMl,
    /// `role: content` lines; for base models.
    Plain,
}

impl PromptFormat {
    /// Renders a prompt: the chat, the assistant's opening, the partial reply.
    pub fn render(self, prompt: &Prompt) -> String {
        let mut out = String::new();
        match self {
            PromptFormat::ChatMl => {
                for m in &prompt.messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role.as_str(),
                        m.content
                    ));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            PromptFormat::Plain => {
                for m in &prompt.messages {
                    out.push_str(&format!("{}: {}\n", m.role.as_str(), m.content));
                }
                out.push_str("assistant: ");
            }
        }
        out.push_str(&prompt.assistant_prefix);
        out
    }
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL up to and including `/v1`, e.g. `http://localhost:8000/v1`.
    pub base_url: String,
    /// The model name the server knows.
    pub model: String,
    /// Bearer token; `None` sends no `Authorization` header.
    pub api_key: Option<String>,
    /// Limit on one HTTP exchange.
    pub timeout: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Retries after a 429, a 5xx or a failed connection.
    pub max_retries: u32,
    /// First backoff; doubled after each retry.
    pub backoff: Duration,
    /// Send only parameters the hosted OpenAI API accepts (no `top_k`,
    /// `continue_final_message`).
    pub strict: bool,
    /// Rendering used for scoring through `/completions`.
    pub prompt_format: PromptFormat,
    /// Context length per sequence, when known.
    pub context_length: Option<u32>,
}

impl OpenAiConfig {
    /// Defaults for a server: API key from the environment, 300 s timeout,
    /// 3 retries from 0.5 s.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: API_KEY_ENVS
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty())),
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(500),
            strict: false,
            prompt_format: PromptFormat::ChatMl,
            context_length: None,
        }
    }
}

/// A model behind an OpenAI-compatible server.
pub struct OpenAiModel {
    config: OpenAiConfig,
    client: reqwest::blocking::Client,
}

impl OpenAiModel {
    /// Builds the client; no request is made until the first call.
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return Err(ModelError::InvalidRequest(format!(
                "the base URL '{}' must start with http:// or https:// (for example \
                 http://localhost:8000/v1)",
                config.base_url
            )));
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| ModelError::Unreachable(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { config, client })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// POSTs a JSON body to `path` under the base URL, retrying what is
    /// worth retrying; returns the parsed answer.
    fn post(&self, path: &str, body: &Value) -> Result<Value, ModelError> {
        self.post_url(&self.url(path), body)
    }

    /// [`Self::post`] to a full URL.
    fn post_url(&self, url: &str, body: &Value) -> Result<Value, ModelError> {
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            let mut req = self.client.post(url).json(body);
            if let Some(key) = &self.config.api_key {
                req = req.bearer_auth(key);
            }
            let retry_after;
            match req.send() {
                Ok(resp) => {
                    let status = resp.status();
                    retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let text = resp.text().map_err(|e| transport_error(url, &e, self))?;
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| {
                            ModelError::Protocol(format!(
                                "{url} did not answer JSON ({e}): {}",
                                truncate(&text, 200)
                            ))
                        });
                    }
                    let retryable = status.as_u16() == 429 || status.is_server_error();
                    if !retryable || attempt >= self.config.max_retries {
                        return Err(ModelError::Server {
                            status: status.as_u16(),
                            body: truncate(&text, 500),
                        });
                    }
                    tracing::warn!(%url, status = status.as_u16(), attempt, "retrying");
                }
                Err(e) => {
                    // A timeout is not retried: the server is slow, not gone,
                    // and waiting again would multiply the user's wait.
                    if e.is_timeout() || attempt >= self.config.max_retries {
                        return Err(transport_error(url, &e, self));
                    }
                    retry_after = None;
                    tracing::warn!(%url, error = %error_chain(&e), attempt, "retrying");
                }
            }
            std::thread::sleep(retry_after.unwrap_or(delay));
            delay *= 2;
            attempt += 1;
        }
    }

    fn chat_body(&self, req: &GenerateRequest) -> Value {
        let p = &req.params;
        let mut messages: Vec<Message> = req.prompt.messages.clone();
        let continuing = !req.prompt.assistant_prefix.is_empty();
        if continuing {
            messages.push(Message::assistant(req.prompt.assistant_prefix.clone()));
        }
        let mut body = json!({
            "model": self.config.model,
            "messages": messages.iter().map(|m| json!({"role": m.role.as_str(), "content": m.content})).collect::<Vec<_>>(),
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "n": req.n,
            "seed": p.seed,
            "logprobs": true,
            "top_logprobs": p.top_logprobs,
        });
        if !p.stop.is_empty() {
            body["stop"] = json!(p.stop);
        }
        if !self.config.strict {
            if p.top_k > 0 {
                body["top_k"] = json!(p.top_k);
            }
            if p.ignore_eos {
                body["ignore_eos"] = json!(true);
            }
            if continuing {
                body["continue_final_message"] = json!(true);
                body["add_generation_prompt"] = json!(false);
            }
        }
        body
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn transport_error(url: &str, e: &reqwest::Error, m: &OpenAiModel) -> ModelError {
    let why = error_chain(e);
    if e.is_timeout() {
        ModelError::Unreachable(format!(
            "{url} gave no answer within {:?}; the server is overloaded or the request too \
             large (raise --timeout)",
            m.config.timeout
        ))
    } else if e.is_connect() {
        ModelError::Unreachable(format!(
            "cannot connect to {url}: is the server running and is --base-url right? ({why})"
        ))
    } else {
        ModelError::Unreachable(format!(
            "{url}: {why} (a connection closed mid-answer often means the server crashed: \
             see its log)"
        ))
    }
}

/// The error and its causes, outermost first: reqwest's own message
/// ("error sending request") hides whether the connection was refused or
/// closed mid-answer, which is what tells a user where to look.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn no_logprobs(what: &str) -> ModelError {
    ModelError::Protocol(format!(
        "the server returned no {what}; metareason needs token log-probabilities: use a server \
         that returns them (vLLM, SGLang, llama.cpp server, Ollama ≥ 0.12) and check that it \
         allows top_logprobs (vLLM: --max-logprobs)"
    ))
}

impl LanguageModel for OpenAiModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.config.model.clone(),
            backend: "openai".into(),
            context_length: self.config.context_length,
        }
    }

    fn generate(&self, req: &GenerateRequest) -> Result<Generation, ModelError> {
        req.validate()?;
        let started = Instant::now();
        // Some servers (llama-cpp-python's, for one) ignore `n` and return
        // one choice: the rest are asked for in further requests, each with
        // its own seed so that sampled replies differ.
        let mut choices: Vec<wire::ChatChoice> = Vec::with_capacity(req.n);
        let mut server_usage: Option<Usage> = None;
        let mut round: u64 = 0;
        while choices.len() < req.n {
            let missing = req.n - choices.len();
            let mut body = self.chat_body(req);
            body["n"] = json!(missing);
            body["seed"] = json!(req.params.seed.wrapping_add(round));
            let answer: wire::ChatResponse =
                serde_json::from_value(self.post("chat/completions", &body)?)
                    .map_err(|e| ModelError::Protocol(format!("malformed chat completion: {e}")))?;
            let mut got = answer.choices;
            got.sort_by_key(|c| c.index);
            if got.is_empty() || got.len() > missing {
                return Err(ModelError::Protocol(format!(
                    "asked for {missing} choices, got {}",
                    got.len()
                )));
            }
            if let Some(u) = answer.usage {
                *server_usage.get_or_insert_with(Usage::default) += u.into_usage();
            }
            choices.extend(got);
            round += 1;
        }
        let mut sequences = Vec::with_capacity(choices.len());
        for c in choices {
            let content = c
                .logprobs
                .and_then(|l| l.content)
                .ok_or_else(|| no_logprobs("logprobs for the generated tokens"))?;
            let tokens: Vec<TokenLogprob> = content
                .into_iter()
                .map(wire::ChatToken::into_token)
                .collect();
            sequences.push(Sequence {
                text: c.message.content.unwrap_or_default(),
                tokens,
                finish_reason: match c.finish_reason.as_deref() {
                    Some("length") => FinishReason::Length,
                    _ => FinishReason::Stop,
                },
                // vLLM and SGLang name the stop string in `stop_reason`.
                stop_sequence: c.stop_reason.and_then(|v| v.as_str().map(str::to_string)),
            });
        }
        // A server cannot stop on a confidence floor: the same cut, after
        // the fact.
        if let Some(floor) = &req.params.confidence_floor {
            for s in &mut sequences {
                s.apply_confidence_floor(floor);
            }
        }
        let generated: u64 = sequences.iter().map(|s| s.tokens.len() as u64).sum();
        let mut usage = server_usage.unwrap_or(Usage {
            generated_tokens: generated,
            ..Usage::default()
        });
        usage.wall_time = started.elapsed();
        Ok(Generation { sequences, usage })
    }

    fn score(&self, req: &ScoreRequest) -> Result<Scored, ModelError> {
        req.prompt.validate()?;
        if req.continuation.is_empty() {
            return Err(ModelError::InvalidRequest(
                "the continuation to score is empty".into(),
            ));
        }
        let started = Instant::now();
        let context = self.config.prompt_format.render(&req.prompt);
        let text = format!("{context}{}", req.continuation);
        let body = json!({
            "model": self.config.model,
            "prompt": text,
            "echo": true,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": req.top_logprobs.max(1),
        });
        let answer: wire::CompletionResponse =
            serde_json::from_value(self.post("completions", &body)?)
                .map_err(|e| ModelError::Protocol(format!("malformed completion: {e}")))?;
        let choice = answer
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ModelError::Protocol("the completion has no choices".into()))?;
        let lp = choice
            .logprobs
            .ok_or_else(|| no_logprobs("echoed prompt log-probabilities (needed for scoring)"))?;
        let tokens = lp.forced_tokens(context.len(), text.len(), usize::from(req.top_logprobs))?;
        let mut usage = answer.usage.map(|u| u.into_usage()).unwrap_or_default();
        usage.generated_tokens = 0;
        usage.wall_time = started.elapsed();
        Ok(Scored { tokens, usage })
    }
}

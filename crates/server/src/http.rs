//! The HTTP surface: routes, authentication, admission, streaming.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metareason_core::ModelError;
use metareason_memory::MemoryError;
use metareason_reasoner::{
    EpisodeReport, Feedback, ReasonerConfig, ReasonerError, TraceEvent, TraceObserver,
};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use crate::engine::{Engine, Limits};
use crate::page;
use crate::routes::{ModelRoutes, Route};
use crate::wire::*;

/// How the server admits and limits requests.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accepted bearer keys; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Loops running at once (requests beyond wait in the queue).
    pub max_concurrent: usize,
    /// Requests waiting at most; beyond, 429 with Retry-After.
    pub max_queue: usize,
    /// Time limit of one request's loop (checked before each model call).
    pub request_timeout: Option<Duration>,
    /// Tokens one request's loop may generate.
    pub request_tokens: Option<u64>,
    /// The configurations offered ([`ModelRoutes::all`] by default).
    pub routes: Vec<Route>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            max_concurrent: 4,
            max_queue: 16,
            request_timeout: Some(Duration::from_secs(600)),
            request_tokens: Some(16_384),
            routes: ModelRoutes::all(),
        }
    }
}

/// What every handler shares.
pub struct AppState {
    engine: Arc<Engine>,
    config: ServerConfig,
    slots: Arc<Semaphore>,
    /// Requests admitted and not finished (running or waiting).
    admitted: AtomicUsize,
    /// Feedback is applied one at a time.
    feedback: tokio::sync::Mutex<()>,
    /// Mean episode seconds (exponential average), for Retry-After.
    mean_seconds: Mutex<f64>,
    started: u64,
}

impl AppState {
    /// The state of a server running `engine` under `config`.
    pub fn new(engine: Engine, config: ServerConfig) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        Arc::new(Self {
            engine: Arc::new(engine),
            config,
            slots,
            admitted: AtomicUsize::new(0),
            feedback: tokio::sync::Mutex::new(()),
            mean_seconds: Mutex::new(30.0),
            started: unix_now(),
        })
    }

    fn retry_after(&self) -> u64 {
        let mean = *self.mean_seconds.lock().expect("not poisoned");
        let waiting = self.admitted.load(Ordering::Relaxed) as f64;
        (mean * waiting / self.config.max_concurrent.max(1) as f64)
            .ceil()
            .clamp(1.0, 3600.0) as u64
    }

    fn record_seconds(&self, s: f64) {
        let mut m = self.mean_seconds.lock().expect("not poisoned");
        *m = 0.8 * *m + 0.2 * s;
    }
}

/// The application: every route, behind the key check.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/v1/feedback", post(feedback))
        .route("/v1/episodes/{id}", get(episode_json))
        .route("/episodes/{id}", get(episode_page))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; requests in
/// flight then finish, nothing new is accepted.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight, accepting none");
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error response in OpenAI's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
            retry_after: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }

    fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.map(str::to_string),
                code: self.code.map(str::to_string),
            },
        }
    }

    /// What a failed loop means to the client.
    fn from_loop(e: ReasonerError, limits: &Limits) -> Self {
        match e.model_error() {
            Some(ModelError::Cancelled(m)) => {
                if limits
                    .deadline
                    .is_some_and(|d| std::time::Instant::now() >= d)
                {
                    Self::new(StatusCode::REQUEST_TIMEOUT, "timeout_error", m.clone())
                        .code("timeout")
                } else {
                    Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", m.clone())
                        .code("token_limit_exceeded")
                }
            }
            Some(m @ ModelError::ContextOverflow { .. }) => Self::invalid(m.to_string())
                .code("context_length_exceeded")
                .param("messages"),
            Some(m @ ModelError::InvalidRequest(_)) => Self::invalid(m.to_string()),
            Some(m @ (ModelError::Unreachable(_) | ModelError::Server { .. })) => {
                Self::new(StatusCode::BAD_GATEWAY, "server_error", m.to_string())
            }
            _ => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.config.api_keys.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|g| {
        state.config.api_keys.iter().fold(false, |acc, k| {
            acc | bool::from(k.as_bytes().ct_eq(g.as_bytes()))
        })
    });
    if ok {
        next.run(request).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong API key: send `Authorization: Bearer KEY` with a key the server \
             was started with (--api-key or --api-keys-file)",
        )
        .code("invalid_api_key")
        .into_response()
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let info = state.engine.model.info();
    Json(serde_json::json!({
        "status": "ok",
        "model": info.name,
        "backend": info.backend,
        "admitted": state.admitted.load(Ordering::Relaxed),
        "max_concurrent": state.config.max_concurrent,
        "max_queue": state.config.max_queue,
    }))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        "no such route: this server offers POST /v1/chat/completions, GET /v1/models, \
         POST /v1/feedback, GET /v1/episodes/{id}, GET /episodes/{id} and GET /health",
    )
}

async fn list_models(State(state): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: state
            .config
            .routes
            .iter()
            .cloned()
            .map(|r| ModelEntry {
                id: r.name,
                object: "model".into(),
                created: state.started,
                owned_by: "metareason".into(),
                description: r.description,
            })
            .collect(),
    })
}

/// A request turned into a task and a configuration.
struct Job {
    task: String,
    route: Route,
    config: ReasonerConfig,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// The task of a conversation: the last user message, with the earlier
/// turns (and system instructions) as its context.
pub fn task_of(messages: &[ChatMessage]) -> Result<String, String> {
    let last_user = messages
        .iter()
        .rposition(|m| m.role == "user")
        .ok_or("the conversation has no user message: the last user message is the task")?;
    let text = |m: &ChatMessage| -> Result<String, String> {
        match &m.content {
            Some(c) => c.text(),
            None => Ok(String::new()),
        }
    };
    let question = text(&messages[last_user])?;
    if question.trim().is_empty() {
        return Err("the last user message is empty: give a task".into());
    }
    let mut context = Vec::new();
    for m in messages.iter().take(last_user) {
        let t = text(m)?;
        if t.trim().is_empty() {
            continue;
        }
        let who = match m.role.as_str() {
            "system" | "developer" => "Instructions",
            "user" => "User",
            "assistant" => "Assistant",
            "tool" => "Tool",
            other => return Err(format!("unknown message role '{other}'")),
        };
        context.push(format!("{who}: {}", t.trim()));
    }
    // Messages after the last user message (an assistant prefix) are not
    // continued: the loop answers the user.
    if context.is_empty() {
        Ok(question)
    } else {
        Ok(format!(
            "Conversation so far:\n{}\n\nNow answer the user's last message:\n{}",
            context.join("\n"),
            question.trim()
        ))
    }
}

fn job_of(body: &[u8], routes: &[Route]) -> Result<Job, ApiError> {
    let req: ChatRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "the request body is not a chat completion request: {e}"
        ))
    })?;
    let route = ModelRoutes::resolve_in(routes, &req.model)
        .map_err(|m| ApiError::invalid(m).param("model").code("model_not_found"))?;
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid(
            "n must be 1: the loop gives one answer per request (it samples internally as it sees fit)",
        )
        .param("n"));
    }
    if req.top_p.is_some_and(|p| (p - 1.0).abs() > 1e-6) {
        return Err(ApiError::invalid(
            "top_p is not a knob of the loop's search (it samples with temperature only): \
             leave it out or at 1",
        )
        .param("top_p"));
    }
    let task = task_of(&req.messages).map_err(|m| ApiError::invalid(m).param("messages"))?;
    let mut config = route.config.clone();
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(
                ApiError::invalid("temperature must be between 0 and 2").param("temperature")
            );
        }
        config.solve.settings.temperature = t;
        config.escalation.temperature = t;
    }
    if let Some(m) = req.max_completion_tokens.or(req.max_tokens) {
        if m == 0 {
            return Err(ApiError::invalid("max_tokens must be at least 1").param("max_tokens"));
        }
        config.solve.settings.max_tokens = m;
    }
    if let Some(s) = req.seed {
        config.seed = s;
    }
    Ok(Job {
        task,
        route,
        config,
        stop: req.stop.map(|s| s.strings()).unwrap_or_default(),
        stream: req.stream,
        include_usage: req.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The reply cut at the first stop string.
fn apply_stop(reply: &str, stop: &[String]) -> String {
    let cut = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| reply.find(s.as_str()))
        .min();
    match cut {
        Some(i) => reply[..i].to_string(),
        None => reply.to_string(),
    }
}

/// A place in line: counted while admitted, released on drop.
struct Ticket {
    state: Arc<AppState>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.state.admitted.fetch_sub(1, Ordering::Relaxed);
    }
}

fn admit(state: &Arc<AppState>) -> Result<Ticket, ApiError> {
    let capacity = state.config.max_concurrent.max(1) + state.config.max_queue;
    let prev = state.admitted.fetch_add(1, Ordering::Relaxed);
    if prev >= capacity {
        state.admitted.fetch_sub(1, Ordering::Relaxed);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "the server is busy: {} requests running or waiting (at most {} running and {} \
                 waiting); retry later",
                prev,
                state.config.max_concurrent.max(1),
                state.config.max_queue
            ),
        )
        .code("queue_full");
        e.retry_after = Some(state.retry_after());
        return Err(e);
    }
    Ok(Ticket {
        state: state.clone(),
    })
}

/// Sets the cancel flag when dropped unless disarmed: a handler dropped
/// because its client went away stops its loop at the next model call.
struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f.store(true, Ordering::Relaxed);
        }
    }
}

fn limits(state: &AppState) -> Limits {
    Limits::new(state.config.request_timeout, state.config.request_tokens)
}

async fn run_loop(
    state: &Arc<AppState>,
    job: &Job,
    limits: Limits,
    permit: OwnedSemaphorePermit,
    observer: Option<Arc<dyn TraceObserver>>,
) -> Result<EpisodeReport, ApiError> {
    let engine = state.engine.clone();
    let task = job.task.clone();
    let config = job.config.clone();
    let l = limits.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        engine.run(&task, &config, l, observer.as_deref())
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("the loop stopped abnormally: {e}"),
        )
    })?;
    match result {
        Ok(report) => {
            state.record_seconds(report.seconds);
            Ok(report)
        }
        Err(e) => Err(ApiError::from_loop(e, &limits)),
    }
}

fn completion_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "chatcmpl-{:x}{:04x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        NEXT.fetch_add(1, Ordering::Relaxed) % 0x10000
    )
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let job = match job_of(&body, &state.config.routes) {
        Ok(j) => j,
        Err(e) => return e.into_response(),
    };
    let ticket = match admit(&state) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    if job.stream {
        return stream_completion(state, job, ticket).into_response();
    }
    let limits = limits(&state);
    let mut guard = CancelOnDrop(Some(limits.cancelled.clone()));
    let permit = match state.slots.clone().acquire_owned().await {
        Ok(p) => p,
        Err(_) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is shutting down",
            )
            .into_response()
        }
    };
    let result = run_loop(&state, &job, limits, permit, None).await;
    guard.0 = None;
    drop(ticket);
    match result {
        Ok(report) => {
            let content = apply_stop(&report.reply, &job.stop);
            Json(ChatResponse {
                id: completion_id(),
                object: "chat.completion",
                created: unix_now(),
                model: job.route.name.clone(),
                choices: vec![Choice {
                    index: 0,
                    message: AssistantMessage {
                        role: "assistant",
                        content,
                        refusal: None,
                    },
                    finish_reason: "stop",
                    logprobs: None,
                }],
                usage: WireUsage::from(&report.usage),
                metareason: MetareasonInfo::of(&report, &job.route.name),
            })
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Makes the chunks of one streamed response (same id, time and model).
#[derive(Clone)]
struct Chunker {
    id: String,
    created: u64,
    model: String,
}

impl Chunker {
    fn event(
        &self,
        choice: Option<(Delta, Option<&'static str>)>,
        event: Option<serde_json::Value>,
        info: Option<MetareasonInfo>,
        usage: Option<WireUsage>,
    ) -> Event {
        let c = ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: choice
                .map(|(delta, finish_reason)| ChunkChoice {
                    index: 0,
                    delta,
                    finish_reason,
                    logprobs: None,
                })
                .into_iter()
                .collect(),
            usage,
            metareason_event: event,
            metareason: info,
        };
        Event::default().data(serde_json::to_string(&c).unwrap_or_default())
    }

    fn trace(&self, event: serde_json::Value) -> Event {
        self.event(None, Some(event), None, None)
    }

    fn content(&self, text: String) -> Event {
        self.event(
            Some((
                Delta {
                    role: None,
                    content: Some(text),
                },
                None,
            )),
            None,
            None,
            None,
        )
    }
}

/// Hands the loop's events to the stream; marks the request cancelled once
/// the client is gone.
struct StreamObserver {
    tx: mpsc::UnboundedSender<Event>,
    chunker: Chunker,
    cancelled: Arc<AtomicBool>,
}

impl TraceObserver for StreamObserver {
    fn on_event(&self, event: &TraceEvent) {
        let value = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
        if self.tx.send(self.chunker.trace(value)).is_err() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

fn stream_completion(
    state: Arc<AppState>,
    job: Job,
    ticket: Ticket,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let limits = limits(&state);
    let chunker = Chunker {
        id: completion_id(),
        created: unix_now(),
        model: job.route.name.clone(),
    };
    let observer: Arc<dyn TraceObserver> = Arc::new(StreamObserver {
        tx: tx.clone(),
        chunker: chunker.clone(),
        cancelled: limits.cancelled.clone(),
    });
    // The first chunks go out at once, before any model call: the role,
    // then where the request stands.
    let _ = tx.send(chunker.event(
        Some((
            Delta {
                role: Some("assistant"),
                content: Some(String::new()),
            },
            None,
        )),
        None,
        None,
        None,
    ));
    let _ = tx.send(chunker.trace(serde_json::json!({
        "event": "queued",
        "admitted": state.admitted.load(Ordering::Relaxed),
        "max_concurrent": state.config.max_concurrent,
    })));
    tokio::spawn(async move {
        let _ticket = ticket;
        let result = match state.slots.clone().acquire_owned().await {
            Ok(permit) => run_loop(&state, &job, limits, permit, Some(observer)).await,
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is shutting down",
            )),
        };
        match result {
            Ok(report) => {
                let reply = apply_stop(&report.reply, &job.stop);
                for p in pieces(&reply) {
                    let _ = tx.send(chunker.content(p));
                }
                let info = MetareasonInfo::of(&report, &job.route.name);
                let _ = tx.send(chunker.event(
                    Some((Delta::default(), Some("stop"))),
                    None,
                    Some(info),
                    None,
                ));
                if job.include_usage {
                    let _ = tx.send(chunker.event(
                        None,
                        None,
                        None,
                        Some(WireUsage::from(&report.usage)),
                    ));
                }
            }
            // An error after the stream began travels as an error object,
            // which the OpenAI clients raise.
            Err(e) => {
                let _ = tx.send(
                    Event::default().data(serde_json::to_string(&e.body()).unwrap_or_default()),
                );
            }
        }
        let _ = tx.send(Event::default().data("[DONE]"));
    });
    let stream = UnboundedReceiverStream::new(rx).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The reply in pieces of a word each (with the space before it), as a
/// model streams it.
fn pieces(reply: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in reply.chars() {
        if ch.is_whitespace() && !cur.trim().is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

async fn feedback(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: FeedbackRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::invalid(format!(
                "the body is not feedback ({e}): send {{\"episode_id\": N, \"correct\": true}} or \
                 {{\"episode_id\": N, \"answer\": \"...\"}}"
            ))
            .into_response()
        }
    };
    let fb = match (req.correct, req.answer) {
        (Some(true), None) => Feedback::Correct,
        (Some(false), None) => Feedback::Wrong,
        (None, Some(a)) if !a.trim().is_empty() => Feedback::Answer(a),
        _ => {
            return ApiError::invalid(
                "give exactly one of `correct` (true or false) and `answer` (the right answer)",
            )
            .into_response()
        }
    };
    let _one_at_a_time = state.feedback.lock().await;
    let engine = state.engine.clone();
    let id = req.episode_id;
    let result = tokio::task::spawn_blocking(move || engine.feedback(id, &fb)).await;
    match result {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(ReasonerError::Memory(MemoryError::NoEpisode(id)))) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("no episode {id} in this server's memory"),
        )
        .into_response(),
        Ok(Err(ReasonerError::Feedback(m))) => ApiError::invalid(m).into_response(),
        Ok(Err(e)) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("feedback stopped abnormally: {e}"),
        )
        .into_response(),
    }
}

async fn load_episode(state: &Arc<AppState>, id: i64) -> Result<serde_json::Value, ApiError> {
    let engine = state.engine.clone();
    match tokio::task::spawn_blocking(move || engine.episode(id)).await {
        Ok(Ok(Some(e))) => Ok(e),
        Ok(Ok(None)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("no episode {id} in this server's memory"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("reading the episode stopped abnormally: {e}"),
        )),
    }
}

async fn episode_json(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    match load_episode(&state, id).await {
        Ok(e) => Json(e).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn episode_page(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    match load_episode(&state, id).await {
        Ok(e) => Html(page::render(&e)).into_response(),
        Err(e) => e.into_response(),
    }
}

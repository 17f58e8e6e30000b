//! # metareason-server
//!
//! The meta-reasoning loop behind an OpenAI-compatible HTTP endpoint, so
//! that the official clients, `curl` and anything built on them work
//! unchanged:
//!
//! - `POST /v1/chat/completions`: the last user message is the task (earlier
//!   turns are its context); `model` picks the loop configuration
//!   ([`routes::ModelRoutes`]); every response carries a `metareason`
//!   object (decision, reason, rule, calibrated confidence, strategy,
//!   episode id, time and tokens per phase). An abstention or a refusal is
//!   an ordinary assistant message. With `stream: true` the loop's trace
//!   events arrive as they happen (chunks with no choices and a
//!   `metareason_event` field), then the reply.
//! - `GET /v1/models`: the configurations.
//! - `POST /v1/feedback`, `GET /v1/episodes/{id}`: learning and memory.
//! - `GET /episodes/{id}`: the trace page ([`page`]).
//!
//! Requests share the model and the memory file; at most
//! [`ServerConfig::max_concurrent`] loops run at once and
//! [`ServerConfig::max_queue`] wait, beyond which the answer is 429 with
//! `Retry-After`. A request's loop stops at its next model call once its
//! time or token limit runs out or its client goes away.
#![deny(missing_docs)]

pub mod engine;
pub mod http;
pub mod page;
pub mod routes;
pub mod wire;

pub use engine::{Engine, Limits};
pub use http::{router, serve, shutdown_signal, AppState, ServerConfig};
pub use routes::{ModelRoutes, Route, DEFAULT_ROUTE};

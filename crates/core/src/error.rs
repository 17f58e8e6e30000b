//! Errors that cross the model seam.

use thiserror::Error;

/// What can go wrong when a language model is asked for something.
///
/// Messages are written for the person at the terminal: each says what
/// happened and, where there is one, what to do about it.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The model file is missing, unreadable, or not a model.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The request is malformed (empty prompt, bad parameter).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The prompt does not fit in the context window.
    #[error(
        "the prompt has {prompt_tokens} tokens but the context holds {context_length}; \
         shorten the prompt or raise the context size (--ctx-size)"
    )]
    ContextOverflow {
        /// Tokens in the rendered prompt.
        prompt_tokens: usize,
        /// Tokens the context can hold per sequence.
        context_length: usize,
    },
    /// The engine failed while evaluating.
    #[error("the engine failed: {0}")]
    Engine(String),
    /// A remote server could not be reached or did not answer in time.
    #[error("cannot reach the model server: {0}")]
    Unreachable(String),
    /// A remote server answered with an error status.
    #[error("the model server answered {status}: {body}")]
    Server {
        /// HTTP status code.
        status: u16,
        /// What it said (truncated).
        body: String,
    },
    /// A remote server answered something this client cannot use.
    #[error("unexpected answer from the model server: {0}")]
    Protocol(String),
    /// The backend cannot do what was asked.
    #[error("not supported by this backend: {0}")]
    Unsupported(String),
    /// The caller stopped the work: a time or token limit ran out, or the
    /// client went away.
    #[error("stopped: {0}")]
    Cancelled(String),
}

//! # metareason-core
//!
//! The domain types and traits every other metareason crate builds on. This
//! crate does no IO: it knows nothing of files, processes, networks or any
//! particular engine.
//!
//! The central seam is [`LanguageModel`]: chat-templated generation with
//! token log-probabilities and top-k alternatives, `n` samples that share a
//! prompt, continuation of a partial assistant reply, and scoring of a forced
//! continuation. Backends live in their own crates (`metareason-llama`,
//! `metareason-openai`, `metareason-scripted`).
//!
//! ```
//! use metareason_core::{GenerateRequest, Prompt, SamplingParams};
//!
//! let request = GenerateRequest::new(
//!     Prompt::user("What is 6 * 7?").with_system("Answer with a number."),
//!     SamplingParams { max_tokens: 16, top_logprobs: 5, ..SamplingParams::default() },
//! )
//! .with_n(4);
//! assert!(request.validate().is_ok());
//! ```
#![deny(missing_docs)]

pub mod decision;
pub mod embed;
pub mod error;
pub mod judge;
pub mod kinds;
pub mod model;
pub mod template;

pub use decision::{Decision, Grounds, UnknownDecision};
pub use embed::{EmbedError, Embedder};

pub use error::ModelError;
pub use judge::StepJudge;
pub use kinds::{
    AnswerKind, ParseAnswerKindError, StrategyKind, UnknownName, UnknownStrategy, Verdict,
    VerifierKind,
};
pub use model::{
    softmax, ConfidenceFloor, FinishReason, GenerateRequest, Generation, LanguageModel, Message,
    ModelInfo, Prompt, Role, SamplingParams, ScoreRequest, Scored, Sequence, TokenLogprob,
    TopToken, Usage, MAX_TOP_LOGPROBS,
};

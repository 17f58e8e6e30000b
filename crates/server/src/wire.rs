//! The OpenAI chat-completions protocol as this server speaks it: requests
//! as clients send them (unknown fields ignored), responses and stream
//! chunks as clients parse them, plus the `metareason` extension object.

use metareason_core::{Grounds, Usage};
use metareason_memory::Decision;
use metareason_reasoner::{EpisodeReport, Phase};
use serde::{Deserialize, Serialize};

/// A message's content: a string, or an array of parts of which the text
/// parts count.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (`{"type": "text", "text": ...}`); others are refused.
    Parts(Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (other kinds, such as images, are not accepted).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

impl Content {
    /// The text, or why there is none.
    pub fn text(&self) -> Result<String, String> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => {
                let mut out = Vec::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => out.push(t.as_str()),
                        (kind, _) => {
                            return Err(format!(
                                "content parts of type '{kind}' are not supported: send text"
                            ))
                        }
                    }
                }
                Ok(out.join("\n"))
            }
        }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Its content (assistant messages with tool calls may have none).
    #[serde(default)]
    pub content: Option<Content>,
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The loop configuration (see [`crate::routes::ModelRoutes`]).
    pub model: String,
    /// The conversation; the last user message is the task.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature of the loop's sampled replies.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Most tokens of one reply of the model (`max_completion_tokens`
    /// is the newer name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Seed of every draw.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Replies wanted (only 1).
    #[serde(default)]
    pub n: Option<u32>,
    /// Strings at which the returned reply is cut.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Options of the stream.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Nucleus sampling is not a knob of the loop; accepted only at 1.
    #[serde(default)]
    pub top_p: Option<f32>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The strings.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireUsage {
    /// Prompt tokens evaluated or taken from the cache, over all calls.
    pub prompt_tokens: u64,
    /// Tokens generated, over all calls.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl From<&Usage> for WireUsage {
    fn from(u: &Usage) -> Self {
        let prompt = u.prompt_tokens + u.cached_prompt_tokens;
        Self {
            prompt_tokens: prompt,
            completion_tokens: u.generated_tokens,
            total_tokens: prompt + u.generated_tokens,
        }
    }
}

/// What metareason adds to every response: the decision and why, the
/// calibrated confidence, and the cost per phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetareasonInfo {
    /// Answer, abstain or refuse.
    pub decision: Decision,
    /// On what grounds: `unanswerable` blames the question, `no_answer`
    /// and `low_confidence` the attempt, `policy` a rule, `unlikely` the
    /// assessment before any attempt, `confident` an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grounds: Option<Grounds>,
    /// Why, in words and numbers.
    pub reason: String,
    /// The policy rule that fired, when one did.
    pub rule: Option<String>,
    /// Calibrated P(correct) of the answer found (None when nothing was
    /// attempted).
    pub confidence: Option<f64>,
    /// The answer found, also when it was withheld.
    pub candidate_answer: Option<String>,
    /// The strategy the loop chose.
    pub strategy: Option<metareason_core::StrategyKind>,
    /// The answer kind the task was solved under.
    pub answer_kind: String,
    /// The stored episode (for `/v1/feedback` and `/v1/episodes/{id}`).
    pub episode_id: Option<i64>,
    /// The loop configuration that ran.
    pub configuration: String,
    /// Wall time of the episode in seconds.
    pub seconds: f64,
    /// Time and tokens per phase.
    pub phases: Vec<Phase>,
}

impl MetareasonInfo {
    /// The summary of an episode run under `configuration`.
    pub fn of(report: &EpisodeReport, configuration: &str) -> Self {
        Self {
            decision: report.decision,
            grounds: report.grounds,
            reason: report.reason.clone(),
            rule: report.assessment.policy.fired.as_ref().map(|f| f.0.clone()),
            confidence: report.confidence,
            candidate_answer: report.candidate_answer.clone(),
            strategy: report.assessment.strategy,
            answer_kind: report.answer_kind.kind.to_string(),
            episode_id: report.episode_id,
            configuration: configuration.to_string(),
            seconds: report.seconds,
            phases: report.phases.clone(),
        }
    }
}

/// The assistant's message.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The reply (an answer, or the short reply of an abstention or refusal).
    pub content: String,
    /// Always null: the loop does not refuse through this field; a refusal
    /// is an ordinary reply with `metareason.decision = "refuse"`.
    pub refusal: Option<String>,
}

/// One choice of a response.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// 0.
    pub index: u32,
    /// The message.
    pub message: AssistantMessage,
    /// `stop` (the reply is whole) or `length` (cut at a stop string).
    pub finish_reason: &'static str,
    /// Not reported.
    pub logprobs: Option<()>,
}

/// A whole response.
#[derive(Debug, Clone, Serialize)]
pub struct ChatResponse {
    /// `chatcmpl-...`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The configuration asked for.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Tokens over every model call of the loop.
    pub usage: WireUsage,
    /// The decision and its evidence.
    pub metareason: MetareasonInfo,
}

/// What a stream chunk's choice carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    /// `assistant` in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// A piece of the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    /// 0.
    pub index: u32,
    /// The new piece.
    pub delta: Delta,
    /// Set on the last piece.
    pub finish_reason: Option<&'static str>,
    /// Not reported.
    pub logprobs: Option<()>,
}

/// One server-sent event of a streaming response. Trace events travel in
/// chunks with no choices and a `metareason_event` field, which standard
/// clients ignore.
#[derive(Debug, Clone, Serialize)]
pub struct ChatChunk {
    /// The same id in every chunk of a response.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The configuration asked for.
    pub model: String,
    /// Zero or one choice.
    pub choices: Vec<ChunkChoice>,
    /// Set in the usage chunk (with `stream_options.include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
    /// A trace event of the loop, as it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metareason_event: Option<serde_json::Value>,
    /// The decision, on the last chunk of the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metareason: Option<MetareasonInfo>,
}

/// An error in OpenAI's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong and what to do.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `not_found_error`, `timeout_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field, when one.
    pub param: Option<String>,
    /// A short code.
    pub code: Option<String>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The name to put in `model`.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds (the server's start).
    pub created: u64,
    /// `metareason`.
    pub owned_by: String,
    /// What the configuration does.
    pub description: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// The configurations.
    pub data: Vec<ModelEntry>,
}

/// `POST /v1/feedback`: the episode and either whether it was right or the
/// right answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The episode (from `metareason.episode_id`).
    pub episode_id: i64,
    /// Whether its answer was right.
    #[serde(default)]
    pub correct: Option<bool>,
    /// The right answer (compared after normalisation).
    #[serde(default)]
    pub answer: Option<String>,
}

//! The language-model interface: one trait that every backend implements.
//!
//! The trait is **synchronous** on purpose. The local engine is CPU-bound and
//! owns a single KV cache that must be driven from one thread; making it
//! `async` would only hide a blocking call behind a future. Callers that live
//! in an async runtime (the server) run calls on a blocking thread pool
//! (`tokio::task::spawn_blocking`); the HTTP backend uses a blocking client, so
//! many concurrent tasks are many threads, which is cheap next to the time a
//! model takes to answer. Backends are `Send + Sync` so one instance can be
//! shared behind an `Arc`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Who said a message in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name as chat templates and the OpenAI protocol spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// What the model is asked to continue: a chat, rendered with the model's own
/// chat template, followed by an optional partial assistant reply.
///
/// Step-wise search grows `assistant_prefix` one step at a time; backends with
/// a prefix cache re-use every token of it that is already evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// The conversation so far; the model answers the last user message.
    pub messages: Vec<Message>,
    /// Text the assistant reply already starts with; generation continues it.
    #[serde(default)]
    pub assistant_prefix: String,
}

impl Prompt {
    /// A prompt of one user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            messages: vec![Message::user(content)],
            assistant_prefix: String::new(),
        }
    }

    /// Adds a system message in front.
    pub fn with_system(mut self, content: impl Into<String>) -> Self {
        self.messages.insert(0, Message::system(content));
        self
    }

    /// Sets the partial assistant reply to continue from.
    pub fn with_assistant_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.assistant_prefix = prefix.into();
        self
    }

    /// The last user message: the task, for judges that see only the task.
    /// Empty when there is none.
    pub fn last_user(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| m.content.as_str())
    }

    /// Returns an error if the prompt has nothing in it to answer.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.messages.iter().all(|m| m.content.trim().is_empty())
            && self.assistant_prefix.trim().is_empty()
        {
            return Err(ModelError::InvalidRequest(
                "the prompt is empty: give a question or message to answer".into(),
            ));
        }
        Ok(())
    }
}

/// The largest number of alternatives reported per token.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// How tokens are drawn.
///
/// Log-probabilities reported with tokens are always those of the model's own
/// distribution (temperature 1, no truncation), as in the OpenAI protocol, so
/// that they can be compared across sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); higher flattens the distribution.
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose mass reaches this.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Seed of the sampler; sample `i` of a request uses a stream derived from it.
    pub seed: u64,
    /// Upper bound on generated tokens per sequence.
    pub max_tokens: u32,
    /// Generation ends when any of these strings appears; it is not included.
    pub stop: Vec<String>,
    /// How many alternatives to report per token (0 to [`MAX_TOP_LOGPROBS`]).
    pub top_logprobs: u8,
    /// Keep generating past the end-of-turn token (benchmarks use this to
    /// decode a fixed number of tokens).
    #[serde(default)]
    pub ignore_eos: bool,
    /// End a sequence early once its confidence sags below a floor
    /// (DeepConf's online cut); it then finishes with
    /// [`FinishReason::LowConfidence`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_floor: Option<ConfidenceFloor>,
}

/// A floor under a sequence's running confidence: once the mean token
/// confidence ([`TokenLogprob::confidence`]) of the last `window` tokens
/// falls below `threshold`, the sequence ends. The embedded engine stops
/// decoding there; other backends cut the finished sequence at the same
/// token ([`Sequence::apply_confidence_floor`]), which gives the same text
/// but saves no compute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceFloor {
    /// Tokens per window.
    pub window: u32,
    /// The least mean confidence of a window.
    pub threshold: f64,
}

impl ConfidenceFloor {
    /// Whether the last window of `tokens` falls below the floor (the
    /// check a live engine makes after each token).
    pub fn breached_by(&self, tokens: &[TokenLogprob]) -> bool {
        let w = self.window.max(1) as usize;
        tokens.len() >= w
            && tokens[tokens.len() - w..]
                .iter()
                .map(TokenLogprob::confidence)
                .sum::<f64>()
                / (w as f64)
                < self.threshold
    }

    /// The number of tokens after which a sequence with these token
    /// confidences is cut (None: it is not).
    pub fn cut_after(&self, confidences: &[f64]) -> Option<usize> {
        let w = self.window.max(1) as usize;
        let mut sum = 0.0;
        for (i, c) in confidences.iter().enumerate() {
            sum += c;
            if i >= w {
                sum -= confidences[i - w];
            }
            if i + 1 >= w && sum / (w as f64) < self.threshold {
                return Some(i + 1);
            }
        }
        None
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 40,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
            top_logprobs: 5,
            ignore_eos: false,
            confidence_floor: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with the given token limit.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens,
            ..Self::default()
        }
    }

    /// Returns an error if a value is out of range.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidRequest(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature must be 0 or more, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.max_tokens == 0 {
            return bad("max_tokens must be at least 1".into());
        }
        if usize::from(self.top_logprobs) > MAX_TOP_LOGPROBS {
            return bad(format!(
                "top_logprobs must be at most {MAX_TOP_LOGPROBS}, got {}",
                self.top_logprobs
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// A request for `n` samples of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// What to continue.
    pub prompt: Prompt,
    /// How to sample.
    pub params: SamplingParams,
    /// How many sequences to draw; they share the prompt's evaluation.
    pub n: usize,
}

impl GenerateRequest {
    /// One sequence of `prompt` under `params`.
    pub fn new(prompt: Prompt, params: SamplingParams) -> Self {
        Self {
            prompt,
            params,
            n: 1,
        }
    }

    /// Sets the number of sequences.
    pub fn with_n(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Returns an error if the request cannot be served.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.prompt.validate()?;
        self.params.validate()?;
        if self.n == 0 {
            return Err(ModelError::InvalidRequest("n must be at least 1".into()));
        }
        Ok(())
    }
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopToken {
    /// The token's text (lossy if its bytes are not UTF-8 on their own).
    pub text: String,
    /// Natural-log probability under the model.
    pub logprob: f32,
}

/// One token of a sequence with its probability and the alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text. A token may hold part of a multi-byte character; its
    /// text is then lossy and `bytes` holds the exact bytes.
    pub text: String,
    /// The token's exact bytes.
    pub bytes: Vec<u8>,
    /// Natural-log probability of this token under the model (≤ 0).
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<TopToken>,
}

impl TokenLogprob {
    /// The token's confidence in the sense of DeepConf: the negative mean
    /// log-probability of the alternatives reported at its position. High
    /// where the distribution is peaked (the runners-up are unlikely), low
    /// where the model hesitates. With fewer than two alternatives there is
    /// no runner-up to read: −ln(1 − p) of the token's own probability p
    /// stands in (also high when p is near 1).
    pub fn confidence(&self) -> f64 {
        if self.top.len() < 2 {
            let p = f64::from(self.logprob).exp().min(1.0 - 1e-6);
            return -(1.0 - p).ln();
        }
        -self.top.iter().map(|a| f64::from(a.logprob)).sum::<f64>() / self.top.len() as f64
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced its end-of-turn token or a stop string appeared.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
    /// The sequence's running confidence fell below the request's
    /// [`ConfidenceFloor`].
    LowConfidence,
}

/// One generated sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequence {
    /// The generated text (without stop string or end-of-turn token).
    pub text: String,
    /// The generated tokens, in order.
    pub tokens: Vec<TokenLogprob>,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// The stop string that ended it, when one did (`None` for the
    /// end-of-turn token or a length limit). Step-wise search tells a step
    /// boundary from the end of the reply by this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
}

impl Sequence {
    /// Cuts the sequence where `floor` would have ended it (a backend
    /// that cannot stop decoding on it applies it afterwards).
    pub fn apply_confidence_floor(&mut self, floor: &ConfidenceFloor) {
        if self.finish_reason == FinishReason::LowConfidence {
            return;
        }
        let c: Vec<f64> = self.tokens.iter().map(TokenLogprob::confidence).collect();
        if let Some(n) = floor.cut_after(&c) {
            if n < self.tokens.len() {
                self.tokens.truncate(n);
                let bytes: Vec<u8> = self.tokens.iter().flat_map(|t| t.bytes.clone()).collect();
                self.text = String::from_utf8_lossy(&bytes).into_owned();
            }
            self.finish_reason = FinishReason::LowConfidence;
            self.stop_sequence = None;
        }
    }

    /// Sum of token log-probabilities.
    pub fn total_logprob(&self) -> f64 {
        self.tokens.iter().map(|t| f64::from(t.logprob)).sum()
    }

    /// Mean token log-probability (0 for an empty sequence).
    pub fn mean_logprob(&self) -> f64 {
        if self.tokens.is_empty() {
            0.0
        } else {
            self.total_logprob() / self.tokens.len() as f64
        }
    }
}

/// What a call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens the model evaluated in this call.
    pub prompt_tokens: u64,
    /// Prompt tokens taken from the cache instead of being evaluated.
    pub cached_prompt_tokens: u64,
    /// Tokens generated, over all sequences.
    pub generated_tokens: u64,
    /// Wall-clock time of the call.
    #[serde(with = "duration_secs")]
    pub wall_time: Duration,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.cached_prompt_tokens += o.cached_prompt_tokens;
        self.generated_tokens += o.generated_tokens;
        self.wall_time += o.wall_time;
    }
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// The answer to a [`GenerateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// `n` sequences, in the order of their sample index.
    pub sequences: Vec<Sequence>,
    /// What the call cost.
    pub usage: Usage,
}

/// A request to score a given continuation of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// The context.
    pub prompt: Prompt,
    /// The text whose tokens are forced after the prompt.
    pub continuation: String,
    /// How many alternatives to report per forced token.
    pub top_logprobs: u8,
}

/// The log-probabilities of a forced continuation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The continuation's tokens with their log-probabilities.
    pub tokens: Vec<TokenLogprob>,
    /// What the call cost.
    pub usage: Usage,
}

impl Scored {
    /// Log-probability of the whole continuation.
    pub fn total_logprob(&self) -> f64 {
        self.tokens.iter().map(|t| f64::from(t.logprob)).sum()
    }
}

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// A name for traces and logs.
    pub name: String,
    /// Which backend serves it (`llama.cpp`, `openai`, `scripted`).
    pub backend: String,
    /// Context window per sequence, in tokens, where known.
    pub context_length: Option<u32>,
}

/// A language model with token log-probabilities.
///
/// Implementers write [`info`](Self::info), [`generate`](Self::generate) and
/// [`score`](Self::score); the rest are conveniences built on them.
pub trait LanguageModel: Send + Sync {
    /// Facts about the model.
    fn info(&self) -> ModelInfo;

    /// Draws `request.n` sequences from one prompt. Backends with a cache
    /// evaluate the prompt once and share it across the sequences.
    fn generate(&self, request: &GenerateRequest) -> Result<Generation, ModelError>;

    /// Log-probabilities of the tokens of `request.continuation` when forced
    /// after `request.prompt`.
    fn score(&self, request: &ScoreRequest) -> Result<Scored, ModelError>;

    /// One sequence; a convenience over [`generate`](Self::generate).
    fn generate_one(
        &self,
        prompt: &Prompt,
        params: &SamplingParams,
    ) -> Result<(Sequence, Usage), ModelError> {
        let request = GenerateRequest::new(prompt.clone(), params.clone());
        let mut g = self.generate(&request)?;
        let seq = g
            .sequences
            .pop()
            .ok_or_else(|| ModelError::Protocol("backend returned no sequence".into()))?;
        Ok((seq, g.usage))
    }

    /// The model's distribution over a closed set of continuations (such as
    /// `" Yes"` and `" No"`), renormalised over that set. Returns the
    /// probabilities in the order given and the summed usage.
    fn choice_probabilities(
        &self,
        prompt: &Prompt,
        choices: &[&str],
    ) -> Result<(Vec<f64>, Usage), ModelError> {
        if choices.is_empty() {
            return Err(ModelError::InvalidRequest(
                "choice_probabilities needs at least one choice".into(),
            ));
        }
        let mut usage = Usage::default();
        let mut logps = Vec::with_capacity(choices.len());
        for c in choices {
            let s = self.score(&ScoreRequest {
                prompt: prompt.clone(),
                continuation: (*c).to_string(),
                top_logprobs: 0,
            })?;
            usage += s.usage;
            logps.push(s.total_logprob());
        }
        Ok((softmax(&logps), usage))
    }
}

impl<T: LanguageModel + ?Sized> LanguageModel for std::sync::Arc<T> {
    fn info(&self) -> ModelInfo {
        (**self).info()
    }
    fn generate(&self, request: &GenerateRequest) -> Result<Generation, ModelError> {
        (**self).generate(request)
    }
    fn score(&self, request: &ScoreRequest) -> Result<Scored, ModelError> {
        (**self).score(request)
    }
}

impl<T: LanguageModel + ?Sized> LanguageModel for Box<T> {
    fn info(&self) -> ModelInfo {
        (**self).info()
    }
    fn generate(&self, request: &GenerateRequest) -> Result<Generation, ModelError> {
        (**self).generate(request)
    }
    fn score(&self, request: &ScoreRequest) -> Result<Scored, ModelError> {
        (**self).score(request)
    }
}

/// Numerically stable softmax of log-scores.
pub fn softmax(logps: &[f64]) -> Vec<f64> {
    let max = logps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return vec![1.0 / logps.len() as f64; logps.len()];
    }
    let exps: Vec<f64> = logps.iter().map(|l| (l - max).exp()).collect();
    let z: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / z).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_normalises_and_orders() {
        let p = softmax(&[(0.2f64).ln(), (0.6f64).ln()]);
        assert!((p[0] - 0.25).abs() < 1e-12);
        assert!((p[1] - 0.75).abs() < 1e-12);
    }

    #[test]
    fn softmax_of_all_minus_infinity_is_uniform() {
        assert_eq!(softmax(&[f64::NEG_INFINITY; 2]), vec![0.5, 0.5]);
    }

    #[test]
    fn params_validation_names_the_field() {
        let p = SamplingParams {
            top_logprobs: 21,
            ..SamplingParams::default()
        };
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("top_logprobs"), "{e}");
        let p = SamplingParams {
            temperature: -1.0,
            ..SamplingParams::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }

    #[test]
    fn empty_prompt_is_rejected() {
        let e = GenerateRequest::new(Prompt::user("   "), SamplingParams::default())
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("empty"));
        assert!(
            GenerateRequest::new(Prompt::user("hi"), SamplingParams::default())
                .with_n(0)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn usage_serialises_wall_time_in_seconds() {
        let u = Usage {
            wall_time: Duration::from_millis(1500),
            generated_tokens: 3,
            ..Usage::default()
        };
        let v: serde_json::Value = serde_json::to_value(u).unwrap();
        assert_eq!(v["wall_time"], serde_json::json!(1.5));
        let back: Usage = serde_json::from_value(v).unwrap();
        assert_eq!(back, u);
    }
}

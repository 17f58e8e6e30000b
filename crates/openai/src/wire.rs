//! The JSON shapes of the OpenAI-compatible protocol, and their mapping to
//! the core types.

use std::collections::BTreeMap;

use metareason_core::{ModelError, TokenLogprob, TopToken, Usage};
use serde::Deserialize;

#[derive(Deserialize)]
pub(crate) struct ChatResponse {
    pub choices: Vec<ChatChoice>,
    pub usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(crate) struct ChatChoice {
    #[serde(default)]
    pub index: usize,
    pub message: ChatMessage,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub stop_reason: Option<serde_json::Value>,
    pub logprobs: Option<ChatLogprobs>,
}

#[derive(Deserialize)]
pub(crate) struct ChatMessage {
    pub content: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ChatLogprobs {
    pub content: Option<Vec<ChatToken>>,
}

#[derive(Deserialize)]
pub(crate) struct ChatToken {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
    #[serde(default)]
    pub top_logprobs: Vec<ChatTop>,
}

#[derive(Deserialize)]
pub(crate) struct ChatTop {
    pub token: String,
    pub logprob: f32,
}

impl ChatToken {
    pub fn into_token(self) -> TokenLogprob {
        let mut top: Vec<TopToken> = self
            .top_logprobs
            .into_iter()
            .map(|t| TopToken {
                text: t.token,
                logprob: t.logprob.min(0.0),
            })
            .collect();
        top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        let bytes = self.bytes.unwrap_or_else(|| self.token.as_bytes().to_vec());
        TokenLogprob {
            text: self.token,
            bytes,
            logprob: self.logprob.min(0.0),
            top,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
pub(crate) struct PromptDetails {
    pub cached_tokens: Option<u64>,
}

impl WireUsage {
    pub fn into_usage(self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .min(self.prompt_tokens);
        Usage {
            prompt_tokens: self.prompt_tokens - cached,
            cached_prompt_tokens: cached,
            generated_tokens: self.completion_tokens,
            wall_time: Default::default(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CompletionResponse {
    pub choices: Vec<CompletionChoice>,
    pub usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(crate) struct CompletionChoice {
    pub logprobs: Option<CompletionLogprobs>,
}

/// The legacy `/completions` log-probability layout: parallel arrays.
#[derive(Deserialize)]
pub(crate) struct CompletionLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<Option<f32>>,
    #[serde(default)]
    pub top_logprobs: Option<Vec<Option<BTreeMap<String, f32>>>>,
    pub text_offset: Option<Vec<usize>>,
}

impl CompletionLogprobs {
    /// The tokens that overlap `[start, end)` of the echoed text: the forced
    /// continuation. A token that straddles `start` is included, as the
    /// in-process engine does.
    pub fn forced_tokens(
        self,
        start: usize,
        end: usize,
        k: usize,
    ) -> Result<Vec<TokenLogprob>, ModelError> {
        let offsets = self.text_offset.ok_or_else(|| {
            ModelError::Protocol(
                "the server echoed no text offsets, so the continuation's tokens cannot be found"
                    .into(),
            )
        })?;
        let n = self.tokens.len();
        if offsets.len() != n || self.token_logprobs.len() != n {
            return Err(ModelError::Protocol(
                "logprob arrays of different lengths".into(),
            ));
        }
        let tops = self.top_logprobs.unwrap_or_default();
        let mut out = Vec::new();
        for i in 0..n {
            let tok_start = offsets[i];
            let tok_end = offsets.get(i + 1).copied().unwrap_or(usize::MAX);
            if tok_end <= start || tok_start >= end {
                continue;
            }
            let logprob = self.token_logprobs[i].ok_or_else(|| {
                ModelError::Protocol("the server gave no log-probability for a prompt token".into())
            })?;
            let mut top: Vec<TopToken> = tops
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_default()
                .into_iter()
                .map(|(text, lp)| TopToken {
                    text,
                    logprob: lp.min(0.0),
                })
                .collect();
            top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
            top.truncate(k);
            out.push(TokenLogprob {
                bytes: self.tokens[i].as_bytes().to_vec(),
                text: self.tokens[i].clone(),
                logprob: logprob.min(0.0),
                top,
            });
        }
        if out.is_empty() {
            return Err(ModelError::Protocol(
                "the echoed prompt does not cover the continuation".into(),
            ));
        }
        Ok(out)
    }
}

//! A process reward model served over HTTP, as the external judge of the
//! step reward Q_t.
//!
//! Two protocols:
//!
//! - [`RewardProtocol::VllmPooling`]: vLLM's `/pooling` endpoint serving a
//!   process reward model such as Qwen2.5-Math-PRM-7B
//!   (`vllm serve Qwen/Qwen2.5-Math-PRM-7B --task reward`). The solution so
//!   far is sent as the assistant turn with a step separator (`<extra_0>` for
//!   the Qwen PRMs) after every step; the server answers one
//!   `[P(bad), P(good)]` pair per separator, and the last pair's P(good) is
//!   the reward of the newest step.
//! - [`RewardProtocol::Json`]: a minimal protocol for any reward model behind
//!   a small wrapper: `POST URL` with
//!   `{"model": M, "question": Q, "steps": [S1, …, Sn]}`, answered by
//!   `{"reward": r}` or `{"rewards": [r1, …, rn]}` (the last is used), every
//!   reward in [0, 1].

use metareason_core::StepJudge;
use metareason_core::{ModelError, Prompt, Usage};
use serde_json::{json, Value};

use crate::{OpenAiConfig, OpenAiModel};

/// How the reward server is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewardProtocol {
    /// vLLM's `/pooling` endpoint with a step separator after every step.
    VllmPooling {
        /// Marks the end of each step (`<extra_0>` for Qwen2.5-Math-PRM).
        separator: String,
    },
    /// metareason's JSON protocol (see the module documentation).
    Json,
}

impl RewardProtocol {
    /// The protocol named on the command line: `vllm` (alias
    /// `vllm-pooling`) or `json`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "vllm" | "vllm-pooling" => Some(Self::VllmPooling {
                separator: "<extra_0>".into(),
            }),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A step judge that asks a reward server.
pub struct RewardEndpoint {
    http: OpenAiModel,
    protocol: RewardProtocol,
}

impl RewardEndpoint {
    /// A judge at `config.base_url` (for [`RewardProtocol::VllmPooling`] the
    /// base up to `/v1`; for [`RewardProtocol::Json`] the full URL of the
    /// endpoint) asking for `config.model`. No request is made until the
    /// first step is judged.
    pub fn new(config: OpenAiConfig, protocol: RewardProtocol) -> Result<Self, ModelError> {
        Ok(Self {
            http: OpenAiModel::new(config)?,
            protocol,
        })
    }

    fn request(&self, task: &str, steps: &[&str]) -> (String, Value) {
        let model = &self.http.config.model;
        match &self.protocol {
            RewardProtocol::VllmPooling { separator } => {
                let solution: String = steps.iter().map(|s| format!("{s}{separator}")).collect();
                let base = self.http.config.base_url.trim_end_matches('/');
                let url = format!("{}/pooling", base.trim_end_matches("/v1"));
                (
                    url,
                    json!({
                        "model": model,
                        "messages": [
                            {"role": "user", "content": task},
                            {"role": "assistant", "content": solution},
                        ],
                        "add_generation_prompt": false,
                    }),
                )
            }
            RewardProtocol::Json => (
                self.http.config.base_url.clone(),
                json!({"model": model, "question": task, "steps": steps}),
            ),
        }
    }
}

/// The reward of the newest step in a server's answer.
fn newest_reward(protocol: &RewardProtocol, answer: &Value, steps: usize) -> Result<f64, String> {
    let r = match protocol {
        RewardProtocol::VllmPooling { .. } => {
            let rows = answer
                .pointer("/data/0/data")
                .and_then(Value::as_array)
                .ok_or("no data[0].data in the pooling answer; is the server running a reward model (vllm serve … --task reward)?")?;
            if rows.len() != steps {
                return Err(format!(
                    "{} step scores for {steps} steps; is the separator the one the reward \
                     model was trained with?",
                    rows.len()
                ));
            }
            match rows.last() {
                // [P(bad), P(good)] per step.
                Some(Value::Array(pair)) => pair.last().and_then(Value::as_f64),
                Some(v) => v.as_f64(),
                None => None,
            }
            .ok_or("a step score is not a number or a [P(bad), P(good)] pair")?
        }
        RewardProtocol::Json => match (answer.get("reward"), answer.get("rewards")) {
            (Some(r), _) => r.as_f64().ok_or("\"reward\" is not a number")?,
            (None, Some(Value::Array(rs))) => rs
                .last()
                .and_then(Value::as_f64)
                .ok_or("\"rewards\" is empty or its last entry is not a number")?,
            _ => return Err("the answer has neither \"reward\" nor \"rewards\"".into()),
        },
    };
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("reward {r} is outside [0, 1]"));
    }
    Ok(r)
}

impl StepJudge for RewardEndpoint {
    fn judge(
        &self,
        question: &Prompt,
        earlier: &[String],
        step: &str,
    ) -> Result<(f64, Usage), ModelError> {
        let task = question.last_user();
        let steps: Vec<&str> = earlier
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(step))
            .collect();
        let (url, body) = self.request(task, &steps);
        let answer = self.http.post_url(&url, &body)?;
        let reward = newest_reward(&self.protocol, &answer, steps.len())
            .map_err(|e| ModelError::Protocol(format!("reward server {url}: {e}")))?;
        // The reward server's tokens are not the reasoning model's: they are
        // not counted in the usage of the search.
        Ok((reward, Usage::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_answer_gives_the_last_steps_p_good() {
        let p = RewardProtocol::by_name("vllm").unwrap();
        let a = json!({"data": [{"index": 0, "data": [[0.1, 0.9], [0.7, 0.3]]}]});
        assert_eq!(newest_reward(&p, &a, 2), Ok(0.3));
        let flat = json!({"data": [{"data": [0.8, 0.25]}]});
        assert_eq!(newest_reward(&p, &flat, 2), Ok(0.25));
        let err = newest_reward(&p, &a, 3).unwrap_err();
        assert!(err.contains("2 step scores for 3 steps"), "{err}");
        assert!(newest_reward(&p, &json!({"data": []}), 1).is_err());
    }

    #[test]
    fn json_answer_takes_reward_or_the_last_of_rewards_and_checks_the_range() {
        let p = RewardProtocol::Json;
        assert_eq!(newest_reward(&p, &json!({"reward": 0.4}), 1), Ok(0.4));
        assert_eq!(
            newest_reward(&p, &json!({"rewards": [0.9, 0.6]}), 2),
            Ok(0.6)
        );
        let err = newest_reward(&p, &json!({"reward": 1.5}), 1).unwrap_err();
        assert!(err.contains("outside [0, 1]"), "{err}");
        assert!(newest_reward(&p, &json!({"score": 0.5}), 1).is_err());
        assert!(RewardProtocol::by_name("prm").is_none());
    }
}

//! # metareason-scripted
//!
//! A [`LanguageModel`] that answers from a script: deterministic text and
//! log-probabilities, so tests of search, verification and learning can
//! assert exact outcomes in microseconds.
//!
//! A script is a list of rules. A rule matches a prompt (by a substring of
//! the rendered chat, or of the partial assistant reply) and holds a queue of
//! replies; each generated sequence takes the next reply of the first
//! matching rule, and the last reply repeats once the queue is drained.
//! Scoring looks up the continuation in a table of scores.
//!
//! ```
//! use metareason_core::{LanguageModel, Prompt, SamplingParams};
//! use metareason_scripted::{Reply, ScriptedModel, When};
//!
//! let model = ScriptedModel::new()
//!     .on(When::PromptContains("6 * 7".into()), [Reply::text("42").logprob(-0.05)])
//!     .score(" Yes", -0.2)
//!     .score(" No", -1.8);
//! let (seq, _) = model.generate_one(&Prompt::user("What is 6 * 7?"), &SamplingParams::greedy(8))?;
//! assert_eq!(seq.text, "42");
//! let (p, _) = model.choice_probabilities(&Prompt::user("Sure?"), &[" Yes", " No"])?;
//! assert!(p[0] > 0.8);
//! # Ok::<(), metareason_core::ModelError>(())
//! ```
#![deny(missing_docs)]

use std::sync::Mutex;
use std::time::Duration;

use metareason_core::{
    FinishReason, GenerateRequest, Generation, LanguageModel, ModelError, ModelInfo, Prompt,
    ScoreRequest, Scored, Sequence, TokenLogprob, TopToken, Usage,
};

/// Which prompts a rule answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Every prompt.
    Always,
    /// The rendered messages contain this text.
    PromptContains(String),
    /// The partial assistant reply contains this text.
    PrefixContains(String),
    /// The partial assistant reply ends with this text.
    PrefixEndsWith(String),
}

impl When {
    fn matches(&self, prompt: &Prompt) -> bool {
        match self {
            When::Always => true,
            When::PromptContains(s) => prompt.messages.iter().any(|m| m.content.contains(s)),
            When::PrefixContains(s) => prompt.assistant_prefix.contains(s),
            When::PrefixEndsWith(s) => prompt.assistant_prefix.ends_with(s),
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Tokens with their log-probabilities.
    tokens: Vec<(String, f32)>,
    /// Alternatives reported at every position besides the chosen token.
    alternatives: Vec<(String, f32)>,
}

impl Reply {
    /// A reply cut into word tokens (each word keeps its leading space), every
    /// token with log-probability -0.1.
    pub fn text(text: &str) -> Self {
        let mut tokens = Vec::new();
        let mut cur = String::new();
        for ch in text.chars() {
            if (ch == ' ' || ch == '\n') && !cur.is_empty() && !cur.ends_with([' ', '\n']) {
                tokens.push((std::mem::take(&mut cur), -0.1));
            }
            cur.push(ch);
        }
        if !cur.is_empty() {
            tokens.push((cur, -0.1));
        }
        Self {
            tokens,
            alternatives: Vec::new(),
        }
    }

    /// Explicit tokens and log-probabilities.
    pub fn tokens<S: Into<String>>(tokens: impl IntoIterator<Item = (S, f32)>) -> Self {
        Self {
            tokens: tokens.into_iter().map(|(t, l)| (t.into(), l)).collect(),
            alternatives: Vec::new(),
        }
    }

    /// Sets every token's log-probability.
    pub fn logprob(mut self, lp: f32) -> Self {
        for t in &mut self.tokens {
            t.1 = lp;
        }
        self
    }

    /// Alternatives reported at each position (besides the chosen token).
    pub fn alternatives<S: Into<String>>(
        mut self,
        alts: impl IntoIterator<Item = (S, f32)>,
    ) -> Self {
        self.alternatives = alts.into_iter().map(|(t, l)| (t.into(), l)).collect();
        self
    }

    /// The reply's full text.
    pub fn full_text(&self) -> String {
        self.tokens.iter().map(|t| t.0.as_str()).collect()
    }
}

struct Rule {
    when: When,
    replies: Vec<Reply>,
    next: usize,
}

/// A record of one call, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A generate call.
    Generate(GenerateRequest),
    /// A score call.
    Score(ScoreRequest),
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    calls: Vec<Call>,
    /// Word tokens of prompts seen, to emulate a prefix cache in usage.
    seen: Vec<Vec<String>>,
}

/// The scripted model. See the crate docs.
#[derive(Default)]
pub struct ScriptedModel {
    state: Mutex<State>,
    scores: Vec<(String, f32)>,
    prompt_scores: Vec<(String, String, f32)>,
    default_score: f32,
}

fn words(prompt: &Prompt) -> Vec<String> {
    let mut s = String::new();
    for m in &prompt.messages {
        s.push_str(m.role.as_str());
        s.push('\n');
        s.push_str(&m.content);
        s.push('\n');
    }
    s.push_str(&prompt.assistant_prefix);
    s.split_inclusive([' ', '\n']).map(str::to_string).collect()
}

impl ScriptedModel {
    /// An empty script: every generate call fails until a rule is added;
    /// unknown continuations score -10 per call.
    pub fn new() -> Self {
        Self {
            default_score: -10.0,
            ..Self::default()
        }
    }

    /// Adds a rule; rules are tried in the order added.
    pub fn on(self, when: When, replies: impl IntoIterator<Item = Reply>) -> Self {
        let replies: Vec<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a rule needs at least one reply");
        self.state.lock().expect("fresh mutex").rules.push(Rule {
            when,
            replies,
            next: 0,
        });
        self
    }

    /// The total log-probability that scoring `continuation` returns.
    pub fn score(mut self, continuation: &str, logprob: f32) -> Self {
        self.scores.push((continuation.to_string(), logprob));
        self
    }

    /// The total log-probability of `continuation` after a prompt whose
    /// rendered text contains `prompt_contains`; tried before [`Self::score`]
    /// entries, in the order added.
    pub fn score_if(mut self, prompt_contains: &str, continuation: &str, logprob: f32) -> Self {
        self.prompt_scores.push((
            prompt_contains.to_string(),
            continuation.to_string(),
            logprob,
        ));
        self
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state
            .lock()
            .map(|s| s.calls.clone())
            .unwrap_or_default()
    }

    /// Number of generated sequences so far.
    pub fn sequences_generated(&self) -> usize {
        self.calls()
            .iter()
            .map(|c| match c {
                Call::Generate(g) => g.n,
                Call::Score(_) => 0,
            })
            .sum()
    }

    fn usage_for(state: &mut State, prompt: &Prompt) -> Usage {
        let w = words(prompt);
        let cached = state
            .seen
            .iter()
            .map(|s| s.iter().zip(&w).take_while(|(a, b)| a == b).count())
            .max()
            .unwrap_or(0)
            .min(w.len().saturating_sub(1));
        state.seen.push(w.clone());
        Usage {
            prompt_tokens: (w.len() - cached) as u64,
            cached_prompt_tokens: cached as u64,
            generated_tokens: 0,
            wall_time: Duration::ZERO,
        }
    }
}

fn render(reply: &Reply, req: &GenerateRequest) -> Sequence {
    let k = usize::from(req.params.top_logprobs);
    let mut text = String::new();
    let mut tokens = Vec::new();
    let mut finish = FinishReason::Stop;
    for (i, (t, lp)) in reply.tokens.iter().enumerate() {
        if i >= req.params.max_tokens as usize {
            finish = FinishReason::Length;
            break;
        }
        let before = text.len();
        text.push_str(t);
        let stop_at = req
            .params
            .stop
            .iter()
            .filter_map(|s| {
                text[before.saturating_sub(s.len())..]
                    .find(s.as_str())
                    .map(|p| p + before.saturating_sub(s.len()))
            })
            .min();
        let mut top = vec![TopToken {
            text: t.clone(),
            logprob: *lp,
        }];
        top.extend(reply.alternatives.iter().map(|(a, l)| TopToken {
            text: a.clone(),
            logprob: *l,
        }));
        top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        top.truncate(k);
        if let Some(cut) = stop_at {
            text.truncate(cut);
            if cut > before {
                tokens.push(TokenLogprob {
                    text: t.clone(),
                    bytes: t.as_bytes().to_vec(),
                    logprob: *lp,
                    top,
                });
            }
            let stop_sequence = req
                .params
                .stop
                .iter()
                .find(|s| reply.full_text().contains(s.as_str()))
                .cloned();
            return Sequence {
                text,
                tokens,
                finish_reason: FinishReason::Stop,
                stop_sequence,
            };
        }
        tokens.push(TokenLogprob {
            text: t.clone(),
            bytes: t.as_bytes().to_vec(),
            logprob: *lp,
            top,
        });
    }
    Sequence {
        text,
        tokens,
        finish_reason: finish,
        stop_sequence: None,
    }
}

impl LanguageModel for ScriptedModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "scripted".into(),
            backend: "scripted".into(),
            context_length: None,
        }
    }

    fn generate(&self, req: &GenerateRequest) -> Result<Generation, ModelError> {
        req.validate()?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| ModelError::Engine("scripted model poisoned".into()))?;
        state.calls.push(Call::Generate(req.clone()));
        let mut usage = Self::usage_for(&mut state, &req.prompt);
        let rule = state
            .rules
            .iter_mut()
            .find(|r| r.when.matches(&req.prompt))
            .ok_or_else(|| {
                ModelError::Unsupported(format!(
                    "the script has no rule for this prompt: {:?}",
                    req.prompt
                ))
            })?;
        let mut sequences = Vec::with_capacity(req.n);
        for _ in 0..req.n {
            let reply = &rule.replies[rule.next.min(rule.replies.len() - 1)];
            rule.next += 1;
            let mut seq = render(reply, req);
            if let Some(floor) = &req.params.confidence_floor {
                seq.apply_confidence_floor(floor);
            }
            sequences.push(seq);
        }
        usage.generated_tokens = sequences.iter().map(|s| s.tokens.len() as u64).sum();
        Ok(Generation { sequences, usage })
    }

    fn score(&self, req: &ScoreRequest) -> Result<Scored, ModelError> {
        req.prompt.validate()?;
        let mut state = self
            .state
            .lock()
            .map_err(|_| ModelError::Engine("scripted model poisoned".into()))?;
        state.calls.push(Call::Score(req.clone()));
        let usage = Self::usage_for(&mut state, &req.prompt);
        let rendered = words(&req.prompt).concat();
        let lp = self
            .prompt_scores
            .iter()
            .find(|(p, c, _)| *c == req.continuation && rendered.contains(p.as_str()))
            .map(|(_, _, l)| *l)
            .or_else(|| {
                self.scores
                    .iter()
                    .find(|(c, _)| *c == req.continuation)
                    .map(|(_, l)| *l)
            })
            .unwrap_or(self.default_score);
        Ok(Scored {
            tokens: vec![TokenLogprob {
                text: req.continuation.clone(),
                bytes: req.continuation.as_bytes().to_vec(),
                logprob: lp,
                top: Vec::new(),
            }],
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use metareason_core::SamplingParams;

    use super::*;

    fn greedy(max: u32) -> SamplingParams {
        SamplingParams::greedy(max)
    }

    #[test]
    fn replies_are_consumed_in_order_and_the_last_repeats() {
        let m = ScriptedModel::new().on(When::Always, [Reply::text("a"), Reply::text("b")]);
        let g = m
            .generate(&GenerateRequest::new(Prompt::user("q"), greedy(5)).with_n(3))
            .unwrap();
        let texts: Vec<_> = g.sequences.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "b"]);
        assert_eq!(m.sequences_generated(), 3);
    }

    #[test]
    fn max_tokens_and_stop_strings_are_honoured() {
        let m = ScriptedModel::new().on(When::Always, [Reply::text("one two three\n\nfour")]);
        let (s, _) = m.generate_one(&Prompt::user("q"), &greedy(2)).unwrap();
        assert_eq!(s.text, "one two");
        assert_eq!(s.finish_reason, FinishReason::Length);
        let p = SamplingParams {
            stop: vec!["\n\n".into()],
            ..greedy(50)
        };
        let (s, _) = m.generate_one(&Prompt::user("q"), &p).unwrap();
        assert_eq!(s.text, "one two three");
        assert_eq!(s.finish_reason, FinishReason::Stop);
    }

    #[test]
    fn rules_match_on_prefix_and_usage_counts_cached_words() {
        let m = ScriptedModel::new()
            .on(
                When::PrefixEndsWith("Step 1.".into()),
                [Reply::text(" Step 2.")],
            )
            .on(When::Always, [Reply::text("Step 1.")]);
        let p = Prompt::user("solve this");
        let (s1, u1) = m.generate_one(&p, &greedy(9)).unwrap();
        assert_eq!(s1.text, "Step 1.");
        assert_eq!(u1.cached_prompt_tokens, 0);
        let (s2, u2) = m
            .generate_one(&p.clone().with_assistant_prefix(s1.text), &greedy(9))
            .unwrap();
        assert_eq!(s2.text, " Step 2.");
        assert!(u2.cached_prompt_tokens > 0);
    }

    #[test]
    fn unscripted_prompt_is_an_error() {
        let m = ScriptedModel::new().on(When::PromptContains("x".into()), [Reply::text("y")]);
        assert!(m.generate_one(&Prompt::user("q"), &greedy(3)).is_err());
    }
}

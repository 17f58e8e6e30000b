//! Search policies over reasoning: which samples or steps to generate, and
//! which candidate to keep. In the shape of llm-reasoners: a step model
//! ([`step_model`]: proposes next steps, rolls a partial reply out to its
//! end, scores and judges steps) under one token [`Budget`], and the
//! searches over it, each in its own module: [`sampling`] (greedy,
//! best-of-N, self-consistency, adaptive consistency, DeepConf), [`beam`]
//! and [`mcts`].
//!
//! Policies that work on whole replies score each reply's steps after the
//! fact; policies that work on steps (beam, MCTS) generate one step at a
//! time, continuing a partial assistant reply, so the backend's prefix
//! cache serves every shared prefix.

mod beam;
pub mod budget;
pub(crate) mod mcts;
mod sampling;
pub mod step_model;
mod votes;

use metareason_strategy::answer::Extract;
use std::collections::BTreeMap;

use metareason_core::{
    FinishReason, LanguageModel, ModelError, Prompt, SamplingParams, Sequence, Usage,
};
use metareason_strategy::answer::{Answer, AnswerKind};
use metareason_strategy::Strategy;
use serde::{Deserialize, Serialize};

pub use budget::Budget;
pub use votes::{best_by_score, majority, unify_answers, vote, weighted_majority, weighted_votes};

use crate::confidence::TraceConfidence;
use crate::judge::StepJudge;
use crate::reward::{tokens_per_step, RewardWeights, StepSignals};
use crate::stopping::StopRule;
use crate::Event;

/// How to search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum SearchPolicy {
    /// One reply, argmax decoding.
    Greedy,
    /// `n` sampled replies; the one with the best mean step reward wins.
    BestOfN {
        /// Replies drawn.
        n: usize,
    },
    /// `n` sampled replies; the most frequent answer wins.
    SelfConsistency {
        /// Replies drawn.
        n: usize,
    },
    /// Replies drawn `batch` at a time until the stopping rule is sure of
    /// the majority answer, or `max_samples` are drawn.
    Adaptive {
        /// Upper bound on replies.
        max_samples: usize,
        /// Replies drawn per round (they share the prompt's evaluation).
        batch: usize,
        /// When to stop.
        rule: StopRule,
    },
    /// DeepConf online (Fu et al. 2025, "Deep Think with Confidence"):
    /// `warmup` replies run whole and set a floor, the quantile `1 - keep`
    /// of their lowest group confidence; every later reply is cut once its
    /// sliding-window confidence falls below the floor and does not vote;
    /// votes are weighted by lowest group confidence, and sampling stops
    /// when the rule is sure of the weighted majority or at `max_samples`.
    DeepConf {
        /// Replies that run whole and set the floor.
        warmup: usize,
        /// Upper bound on replies.
        max_samples: usize,
        /// Share of warm-up confidence kept above the floor (0.9: the
        /// floor is the warm-up's 10th percentile; 0.1: its 90th).
        keep: f64,
        /// When to stop.
        rule: StopRule,
    },
    /// Step-level beam search: keep the `width` best partial replies by
    /// mean step reward, extending each with `expansions` sampled steps.
    Beam {
        /// Partial replies kept.
        width: usize,
        /// Sampled next steps per kept reply.
        expansions: usize,
        /// Most steps per reply.
        max_steps: usize,
    },
    /// Monte Carlo tree search over steps (UCT or PUCT), valued by rollouts.
    Mcts {
        /// Selection-expansion-rollout rounds.
        iterations: usize,
        /// Children per expanded node.
        expansions: usize,
        /// Exploration constant of the selection rule.
        exploration: f64,
        /// Most steps per reply.
        max_steps: usize,
        /// How a child is selected.
        #[serde(default)]
        selection: TreeSelection,
    },
}

/// How MCTS selects the child to descend into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TreeSelection {
    /// UCT: mean value + c·sqrt(ln N / n); every child is tried once
    /// before any is tried twice.
    #[default]
    Uct,
    /// PUCT: mean value + c·P·sqrt(N) / (1 + n), with the prior P of a
    /// child its step reward Q_t normalised over its siblings; an unvisited
    /// child is valued at its parent's mean. The step reward decides which
    /// sibling is rolled out first.
    Puct,
}

impl SearchPolicy {
    /// A short name for traces and tables.
    pub fn name(&self) -> &'static str {
        match self {
            SearchPolicy::Greedy => "greedy",
            SearchPolicy::BestOfN { .. } => "best_of_n",
            SearchPolicy::SelfConsistency { .. } => "self_consistency",
            SearchPolicy::Adaptive { .. } => "adaptive",
            SearchPolicy::DeepConf { .. } => "deepconf",
            SearchPolicy::Beam { .. } => "beam",
            SearchPolicy::Mcts { .. } => "mcts",
        }
    }
}

/// Settings shared by all policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchSettings {
    /// Sampling temperature for every policy but greedy.
    pub temperature: f32,
    /// Seed of every draw.
    pub seed: u64,
    /// Most tokens of one reply.
    pub max_tokens: u32,
    /// Most tokens of one step (step-level policies).
    pub max_step_tokens: u32,
    /// Most tokens generated over the whole search; 0 for no limit.
    pub budget_tokens: u64,
    /// Alternatives requested per token (for entropy signals).
    pub top_logprobs: u8,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            seed: 0,
            max_tokens: 512,
            max_step_tokens: 128,
            budget_tokens: 0,
            top_logprobs: 5,
        }
    }
}

/// A step with its signals and reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredStep {
    /// The step's text.
    pub text: String,
    /// What its tokens say.
    pub signals: StepSignals,
    /// Q_t.
    pub reward: f64,
}

/// A complete (or budget-cut) reply the search produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The reply.
    pub text: String,
    /// Its steps, scored.
    pub steps: Vec<ScoredStep>,
    /// The extracted answer, when there is one.
    pub answer: Option<Answer>,
    /// Mean step reward (0 without steps).
    pub score: f64,
    /// Mean token log-probability of the reply.
    pub mean_logprob: f64,
    /// Tokens generated for it.
    pub tokens: u64,
    /// Whether the reply ended by itself (not cut by a limit).
    pub complete: bool,
    /// DeepConf-style confidence of the whole reply from its tokens
    /// (default for replies assembled step by step).
    #[serde(default)]
    pub confidence: TraceConfidence,
}

/// What a search returns: every candidate, the chosen one, the votes, the cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchOutcome {
    /// The policy that ran.
    pub policy: SearchPolicy,
    /// Every candidate, in the order produced.
    pub candidates: Vec<Candidate>,
    /// Index of the chosen candidate.
    pub chosen: usize,
    /// Normalised answer -> number of candidates giving it.
    pub votes: BTreeMap<String, usize>,
    /// Share of candidates agreeing with the chosen answer.
    pub agreement: f64,
    /// Total cost.
    pub usage: Usage,
    /// What happened, in order.
    pub events: Vec<Event>,
}

impl SearchOutcome {
    /// The chosen candidate.
    pub fn best(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }
}

/// Turns a reply into steps and scores.
pub fn score_reply(
    seq: &Sequence,
    strategy: &Strategy,
    kind: &AnswerKind,
    weights: &RewardWeights,
) -> Candidate {
    let steps: Vec<ScoredStep> = tokens_per_step(&seq.tokens, &seq.text, &strategy.step_delimiter)
        .into_iter()
        .map(|(text, toks)| {
            let signals = StepSignals::from_tokens(toks);
            ScoredStep {
                reward: weights.reward(&signals),
                text,
                signals,
            }
        })
        .collect();
    candidate(seq.text.clone(), steps, seq, kind)
}

/// Mean reward of the non-empty steps (0 without any).
pub fn mean_reward(steps: &[ScoredStep]) -> f64 {
    let r: Vec<f64> = steps
        .iter()
        .filter(|s| !s.text.trim().is_empty())
        .map(|s| s.reward)
        .collect();
    if r.is_empty() {
        0.0
    } else {
        r.iter().sum::<f64>() / r.len() as f64
    }
}

fn candidate(text: String, steps: Vec<ScoredStep>, seq: &Sequence, kind: &AnswerKind) -> Candidate {
    let score = mean_reward(&steps);
    let complete = seq.finish_reason == FinishReason::Stop;
    Candidate {
        // A reply cut short answers only where it states its answer: its
        // last number is wherever the cut fell ("6" of "6 * 7 = 42" cut
        // after one token). Prose cut by the token limit answers with what
        // it has said; cut by a confidence floor it has no answer.
        answer: match seq.finish_reason {
            FinishReason::Stop => kind.extract(&text),
            FinishReason::Length => kind.extract_cut(&text),
            FinishReason::LowConfidence => kind.extract_marked(&text),
        },
        text,
        score,
        mean_logprob: seq.mean_logprob(),
        tokens: seq.tokens.len() as u64,
        complete,
        confidence: TraceConfidence::of(&seq.tokens),
        steps,
    }
}

/// Runs searches for one task.
pub struct Searcher<'a> {
    /// The model.
    pub model: &'a dyn LanguageModel,
    /// The strategy whose prompt and step format are used.
    pub strategy: &'a Strategy,
    /// The kind of answer sought.
    pub kind: &'a AnswerKind,
    /// Step-reward weights (owned by the meta level).
    pub weights: &'a RewardWeights,
    /// Shared settings.
    pub settings: &'a SearchSettings,
    /// An optional judge whose P(correct) joins each step's reward.
    pub judge: Option<&'a dyn StepJudge>,
}

impl Searcher<'_> {
    fn params(
        &self,
        temperature: f32,
        max_tokens: u32,
        seed: u64,
        stop: Vec<String>,
    ) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p: 0.95,
            top_k: 40,
            seed,
            max_tokens,
            stop,
            top_logprobs: self.settings.top_logprobs,
            ignore_eos: false,
            confidence_floor: None,
        }
    }

    /// Parameters of a rollout that completes a reply.
    pub(crate) fn rollout_params(&self, round: u64) -> SamplingParams {
        self.params(
            self.settings.temperature,
            self.settings.max_tokens,
            self.settings.seed.wrapping_add(round.wrapping_mul(104_729)),
            Vec::new(),
        )
    }

    /// Runs `policy` on `prompt` (the strategy's rendered prompt).
    pub fn run(&self, policy: &SearchPolicy, prompt: &Prompt) -> Result<SearchOutcome, ModelError> {
        let mut budget = Budget::new(self.settings.budget_tokens);
        let mut events = Vec::new();
        let candidates = match policy {
            SearchPolicy::Greedy => self.sample(prompt, 1, 0.0, 0, &mut budget)?,
            SearchPolicy::BestOfN { n } | SearchPolicy::SelfConsistency { n } => self.sample(
                prompt,
                (*n).max(1),
                self.settings.temperature,
                0,
                &mut budget,
            )?,
            SearchPolicy::Adaptive {
                max_samples,
                batch,
                rule,
            } => self.adaptive(prompt, *max_samples, *batch, rule, &mut budget, &mut events)?,
            SearchPolicy::DeepConf {
                warmup,
                max_samples,
                keep,
                rule,
            } => self.deepconf(
                prompt,
                (*warmup, *max_samples, *keep),
                rule,
                &mut budget,
                &mut events,
            )?,
            SearchPolicy::Beam {
                width,
                expansions,
                max_steps,
            } => self.beam(
                prompt,
                *width,
                *expansions,
                *max_steps,
                &mut budget,
                &mut events,
            )?,
            SearchPolicy::Mcts {
                iterations,
                expansions,
                exploration,
                max_steps,
                selection,
            } => mcts::run(
                self,
                prompt,
                mcts::MctsConfig {
                    iterations: *iterations,
                    expansions: *expansions,
                    exploration: *exploration,
                    max_steps: *max_steps,
                    selection: *selection,
                },
                &mut budget,
                &mut events,
            )?,
        };
        if candidates.is_empty() {
            return Err(ModelError::Engine(
                "the search produced no candidate".into(),
            ));
        }
        let mut candidates = candidates;
        unify_answers(self.kind, &mut candidates);
        let votes = vote(&candidates);
        let chosen = match policy {
            SearchPolicy::Greedy => 0,
            SearchPolicy::BestOfN { .. } | SearchPolicy::Beam { .. } => best_by_score(&candidates),
            SearchPolicy::SelfConsistency { .. }
            | SearchPolicy::Adaptive { .. }
            | SearchPolicy::Mcts { .. } => majority(&candidates, &votes),
            SearchPolicy::DeepConf { .. } => weighted_majority(&candidates),
        };
        let agreement = candidates[chosen]
            .answer
            .as_ref()
            .and_then(|a| votes.get(&a.normalized))
            .map_or(0.0, |&c| c as f64 / candidates.len() as f64);
        events.push(Event::Chosen {
            candidate: chosen,
            reason: format!(
                "{}: score {:.3}, agreement {:.2} over {} candidate(s)",
                policy.name(),
                candidates[chosen].score,
                agreement,
                candidates.len()
            ),
        });
        Ok(SearchOutcome {
            policy: policy.clone(),
            candidates,
            chosen,
            votes,
            agreement,
            usage: budget.used,
            events,
        })
    }
}

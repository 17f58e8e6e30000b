//! Search policies over reasoning: which samples or steps to generate, and
//! which candidate to keep.
//!
//! Policies that work on whole replies (greedy, best-of-N,
//! self-consistency, adaptive self-consistency) score each reply's steps
//! after the fact; policies that work on steps (beam, MCTS) generate one
//! step at a time, continuing a partial assistant reply, so the backend's
//! prefix cache serves every shared prefix.

use std::collections::BTreeMap;

use metareason_core::{
    ConfidenceFloor, FinishReason, GenerateRequest, LanguageModel, ModelError, Prompt,
    SamplingParams, Sequence, Usage,
};
use metareason_strategy::answer::{Answer, AnswerKind};
use metareason_strategy::Strategy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::confidence::{quantile, TraceConfidence, GROUP_TOKENS};
use crate::judge::StepJudge;
use crate::reward::{tokens_per_step, RewardWeights, StepSignals};
use crate::stopping::rescaled_votes;
use crate::stopping::StopRule;
use crate::{Event, TreeNode};

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
        // A reply cut short (by the token limit or a confidence floor)
        // answers only where it states its answer: its last number is
        // wherever the cut fell ("6" of "6 * 7 = 42" cut after one token).
        answer: if complete {
            kind.extract(&text)
        } else {
            kind.extract_marked(&text)
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

struct Budget {
    limit: u64,
    used: Usage,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.limit > 0 && self.used.generated_tokens >= self.limit
    }
    fn remaining_tokens(&self, want: u32) -> u32 {
        self.remaining_per(1, want)
    }

    /// At most `want` tokens for each of `n` sequences drawn at once, so
    /// that together they stay within what is left.
    fn remaining_per(&self, n: usize, want: u32) -> u32 {
        if self.limit == 0 {
            return want;
        }
        let left = self.limit.saturating_sub(self.used.generated_tokens) / n.max(1) as u64;
        want.min(left.min(u64::from(u32::MAX)) as u32).max(1)
    }
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
        let mut budget = Budget {
            limit: self.settings.budget_tokens,
            used: Usage::default(),
        };
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
            } => crate::mcts::run(
                self,
                prompt,
                crate::mcts::MctsConfig {
                    iterations: *iterations,
                    expansions: *expansions,
                    exploration: *exploration,
                    max_steps: *max_steps,
                    selection: *selection,
                },
                &mut budget.used,
                budget.limit,
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

    fn sample(
        &self,
        prompt: &Prompt,
        n: usize,
        temperature: f32,
        seed_offset: u64,
        budget: &mut Budget,
    ) -> Result<Vec<Candidate>, ModelError> {
        // Under a budget, no more sequences than tokens left.
        let n = if budget.limit > 0 {
            let left = budget.limit.saturating_sub(budget.used.generated_tokens);
            n.min(usize::try_from(left).unwrap_or(usize::MAX).max(1))
        } else {
            n
        };
        let max = budget.remaining_per(n, self.settings.max_tokens);
        let req = GenerateRequest::new(
            prompt.clone(),
            self.params(
                temperature,
                max,
                self.settings.seed.wrapping_add(seed_offset),
                Vec::new(),
            ),
        )
        .with_n(n);
        let g = self.model.generate(&req)?;
        budget.used += g.usage;
        g.sequences
            .iter()
            .map(|s| {
                let mut c = score_reply(s, self.strategy, self.kind, self.weights);
                self.judge_steps(prompt, &[], &mut c.steps, &mut budget.used)?;
                c.score = mean_reward(&c.steps);
                Ok(c)
            })
            .collect()
    }

    /// Asks the judge about each of `steps` (after `earlier`) and folds its
    /// answer into the step rewards. Does nothing without a judge.
    pub(crate) fn judge_steps(
        &self,
        prompt: &Prompt,
        earlier: &[ScoredStep],
        steps: &mut [ScoredStep],
        used: &mut Usage,
    ) -> Result<(), ModelError> {
        let Some(judge) = self.judge else {
            return Ok(());
        };
        let mut before: Vec<String> = earlier.iter().map(|s| s.text.clone()).collect();
        for step in steps.iter_mut() {
            if step.text.trim().is_empty() {
                continue;
            }
            let (p, u) = judge.judge(prompt, &before, &step.text)?;
            // Judging is prompt work, not generation: it does not count
            // against the generation budget.
            used.prompt_tokens += u.prompt_tokens;
            used.cached_prompt_tokens += u.cached_prompt_tokens;
            step.signals.judge = Some(p);
            step.reward = self.weights.reward(&step.signals);
            before.push(step.text.clone());
        }
        Ok(())
    }

    fn adaptive(
        &self,
        prompt: &Prompt,
        max_samples: usize,
        batch: usize,
        rule: &StopRule,
        budget: &mut Budget,
        events: &mut Vec<Event>,
    ) -> Result<Vec<Candidate>, ModelError> {
        let batch = batch.max(1);
        let mut all: Vec<Candidate> = Vec::new();
        let mut round = 0u64;
        while all.len() < max_samples.max(1) {
            if budget.exhausted() {
                events.push(Event::BudgetExhausted {
                    tokens: budget.used.generated_tokens,
                });
                break;
            }
            let n = batch.min(max_samples - all.len());
            // Each round draws fresh seeds so rounds do not repeat each other.
            let got = self.sample(prompt, n, self.settings.temperature, round * 1000, budget)?;
            round += 1;
            all.extend(got);
            unify_answers(self.kind, &mut all);
            let votes = vote(&all);
            let confidence = rule.confidence(&votes);
            let stop = rule.should_stop(&votes);
            events.push(Event::Vote {
                samples: all.len(),
                votes: votes.clone(),
                confidence,
                stop,
            });
            if stop {
                break;
            }
        }
        Ok(all)
    }

    fn deepconf(
        &self,
        prompt: &Prompt,
        (warmup, max_samples, keep): (usize, usize, f64),
        rule: &StopRule,
        budget: &mut Budget,
        events: &mut Vec<Event>,
    ) -> Result<Vec<Candidate>, ModelError> {
        let max_samples = max_samples.max(1);
        let warmup = warmup.clamp(1, max_samples);
        let mut all = self.sample(prompt, warmup, self.settings.temperature, 0, budget)?;
        let warm: Vec<f64> = all.iter().map(|c| c.confidence.lowest_group).collect();
        let floor = ConfidenceFloor {
            window: GROUP_TOKENS as u32,
            threshold: quantile(&warm, 1.0 - keep).unwrap_or(f64::NEG_INFINITY),
        };
        events.push(Event::ConfidenceFloor {
            warmup: warm.len(),
            threshold: floor.threshold,
        });
        let mut round = 1u64;
        loop {
            unify_answers(self.kind, &mut all);
            let weighted = weighted_votes(&all);
            let confidence = rule.confidence_weighted(&weighted);
            let stop = confidence >= rule.threshold() || all.len() >= max_samples;
            events.push(Event::Vote {
                samples: all.len(),
                votes: vote(&all),
                confidence,
                stop,
            });
            if stop {
                break;
            }
            if budget.exhausted() {
                events.push(Event::BudgetExhausted {
                    tokens: budget.used.generated_tokens,
                });
                break;
            }
            let max = budget.remaining_tokens(self.settings.max_tokens);
            let mut params = self.params(
                self.settings.temperature,
                max,
                self.settings.seed.wrapping_add(round * 1000),
                Vec::new(),
            );
            params.confidence_floor = Some(floor);
            round += 1;
            let g = self
                .model
                .generate(&GenerateRequest::new(prompt.clone(), params))?;
            budget.used += g.usage;
            for seq in &g.sequences {
                let mut c = score_reply(seq, self.strategy, self.kind, self.weights);
                if seq.finish_reason == FinishReason::LowConfidence {
                    // A reply cut short has no answer worth a vote.
                    c.answer = None;
                }
                all.push(c);
            }
        }
        Ok(all)
    }

    /// One step from `prefix`: `n` sampled continuations up to the step delimiter.
    pub(crate) fn steps_from(
        &self,
        prompt: &Prompt,
        earlier: &[ScoredStep],
        n: usize,
        seed: u64,
        used: &mut Usage,
        limit: u64,
    ) -> Result<Vec<StepDraft>, ModelError> {
        let max = tokens_left(used, limit, self.settings.max_step_tokens);
        let req = GenerateRequest::new(
            prompt
                .clone()
                .with_assistant_prefix(self.prefix_of(earlier)),
            self.params(
                self.settings.temperature,
                max,
                seed,
                vec![self.strategy.step_delimiter.clone()],
            ),
        )
        .with_n(n);
        let g = self.model.generate(&req)?;
        *used += g.usage;
        let mut drafts: Vec<StepDraft> = g
            .sequences
            .into_iter()
            .map(|s| {
                let signals = StepSignals::from_tokens(&s.tokens);
                // A step that ended without its delimiter ended the reply.
                let ended = s.stop_sequence.is_none();
                StepDraft {
                    step: ScoredStep {
                        reward: self.weights.reward(&signals),
                        text: s.text.clone(),
                        signals,
                    },
                    ended,
                    tokens: s.tokens.len() as u64,
                    logprob_sum: s.total_logprob(),
                }
            })
            .collect();
        for d in &mut drafts {
            self.judge_steps(prompt, earlier, std::slice::from_mut(&mut d.step), used)?;
        }
        Ok(drafts)
    }

    /// Completes a partial reply (`steps`) with one sampled rollout and
    /// returns the whole reply as a candidate: the steps so far keep their
    /// rewards, the rollout's steps are scored (and judged) as they come.
    pub(crate) fn complete_from(
        &self,
        prompt: &Prompt,
        steps: Vec<ScoredStep>,
        round: u64,
        used: &mut Usage,
        limit: u64,
    ) -> Result<Candidate, ModelError> {
        let prefix = self.prefix_of(&steps);
        let mut params = self.rollout_params(round);
        params.max_tokens = tokens_left(used, limit, params.max_tokens);
        let g = self.model.generate(&GenerateRequest::new(
            prompt.clone().with_assistant_prefix(prefix.clone()),
            params,
        ))?;
        *used += g.usage;
        let seq = &g.sequences[0];
        let mut rollout = score_reply(seq, self.strategy, self.kind, self.weights);
        self.judge_steps(prompt, &steps, &mut rollout.steps, used)?;
        let mut all = steps;
        all.extend(rollout.steps);
        let mut c = self.assemble(all, rollout.complete, rollout.tokens, seq.total_logprob());
        c.text = format!("{prefix}{}", seq.text);
        c.answer = self.kind.extract(&c.text);
        Ok(c)
    }

    /// The partial reply that a path of steps spells.
    pub(crate) fn prefix_of(&self, steps: &[ScoredStep]) -> String {
        let d = &self.strategy.step_delimiter;
        steps.iter().map(|s| format!("{}{d}", s.text)).collect()
    }

    /// Assembles a candidate from steps built one at a time.
    pub(crate) fn assemble(
        &self,
        steps: Vec<ScoredStep>,
        complete: bool,
        tokens: u64,
        logprob_sum: f64,
    ) -> Candidate {
        let delimiter = &self.strategy.step_delimiter;
        let text = steps
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(delimiter);
        let steps: Vec<ScoredStep> = steps
            .into_iter()
            .filter(|s| !s.text.trim().is_empty())
            .collect();
        let score = mean_reward(&steps);
        Candidate {
            answer: self.kind.extract(&text),
            text,
            score,
            mean_logprob: if tokens == 0 {
                0.0
            } else {
                logprob_sum / tokens as f64
            },
            tokens,
            complete,
            confidence: TraceConfidence::default(),
            steps,
        }
    }

    fn beam(
        &self,
        prompt: &Prompt,
        width: usize,
        expansions: usize,
        max_steps: usize,
        budget: &mut Budget,
        events: &mut Vec<Event>,
    ) -> Result<Vec<Candidate>, ModelError> {
        #[derive(Clone)]
        struct Node {
            steps: Vec<ScoredStep>,
            /// The reply ended by itself or stated its final answer.
            finished: bool,
            tokens: u64,
            logprob_sum: f64,
            /// Its node in the drawn tree (none until it is kept or pruned).
            id: Option<usize>,
            parent: usize,
        }
        let mut tree = vec![TreeNode::root()];
        // Blank lines are not steps of reasoning: they neither count towards
        // the depth limit nor dilute the mean reward.
        let open = |n: &Node| !n.finished && depth_of_steps(&n.steps) < max_steps;
        let mean = |n: &Node| mean_reward(&n.steps);
        let mut beam = vec![Node {
            steps: Vec::new(),
            finished: false,
            tokens: 0,
            logprob_sum: 0.0,
            id: Some(0),
            parent: 0,
        }];
        let mut rng_seed = ChaCha8Rng::seed_from_u64(self.settings.seed);
        // Every round adds a step (perhaps blank) to every open node; a
        // model that writes only blank lines stops at twice the depth limit.
        let mut round = 0;
        while beam.iter().any(open) && round < 2 * max_steps.max(1) {
            if budget.exhausted() {
                events.push(Event::BudgetExhausted {
                    tokens: budget.used.generated_tokens,
                });
                break;
            }
            let mut children = Vec::new();
            for node in &beam {
                if !open(node) {
                    children.push(node.clone());
                    continue;
                }
                let seed = rand::Rng::gen::<u64>(&mut rng_seed);
                let drafts = self.steps_from(
                    prompt,
                    &node.steps,
                    expansions.max(1),
                    seed,
                    &mut budget.used,
                    budget.limit,
                )?;
                for d in drafts {
                    let mut child = node.clone();
                    // Only an explicitly stated answer finishes a reply: a
                    // step that mentions "answer" and a number does not.
                    child.finished = d.ended || self.kind.extract_marked(&d.step.text).is_some();
                    child.tokens += d.tokens;
                    child.logprob_sum += d.logprob_sum;
                    child.parent = node.id.unwrap_or(0);
                    child.id = None;
                    child.steps.push(d.step);
                    children.push(child);
                }
            }
            // Sampled steps often repeat each other; a duplicate path would
            // take a place in the beam from a different one.
            let mut seen = std::collections::HashSet::new();
            children.retain(|c| seen.insert(self.prefix_of(&c.steps)));
            children.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
            for (rank, c) in children.iter_mut().enumerate() {
                if c.id.is_none() {
                    let step = c.steps.last().expect("a new child has a step");
                    let mut t = TreeNode::child(c.parent, step);
                    t.value = mean(c);
                    t.kept = rank < width.max(1);
                    tree.push(t);
                    c.id = Some(tree.len() - 1);
                }
            }
            let kept: Vec<f64> = children.iter().take(width.max(1)).map(mean).collect();
            events.push(Event::BeamStep {
                depth: round,
                children: children.len(),
                kept_scores: kept,
            });
            children.truncate(width.max(1));
            beam = children;
            round += 1;
        }
        // A survivor cut by the depth limit has no final answer yet: a
        // rollout finishes it (budget permitting), so that every candidate
        // is a whole reply and not a guess from its last number.
        let mut out = Vec::with_capacity(beam.len());
        for (k, n) in beam.iter().enumerate() {
            if let Some(t) = n.id.and_then(|id| tree.get_mut(id)) {
                t.candidates.push(k);
            }
        }
        events.push(Event::Tree {
            search: "beam".into(),
            nodes: tree,
        });
        for (k, n) in beam.into_iter().enumerate() {
            if n.finished || budget.exhausted() {
                out.push(self.assemble(n.steps, n.finished, n.tokens, n.logprob_sum));
                continue;
            }
            let (tokens, logprob_sum) = (n.tokens, n.logprob_sum);
            let mut c =
                self.complete_from(prompt, n.steps, k as u64, &mut budget.used, budget.limit)?;
            c.mean_logprob = (logprob_sum + c.mean_logprob * c.tokens as f64)
                / (tokens + c.tokens).max(1) as f64;
            c.tokens += tokens;
            events.push(Event::BeamFinished {
                beam: k,
                rollout_tokens: c.tokens - tokens,
            });
            out.push(c);
        }
        Ok(out)
    }
}

/// At most `want` tokens, fewer when a generation budget (`limit`, 0 for
/// none) is nearly used up; at least 1.
fn tokens_left(used: &Usage, limit: u64, want: u32) -> u32 {
    let left = if limit == 0 {
        u64::MAX
    } else {
        limit.saturating_sub(used.generated_tokens)
    };
    u64::from(want).min(left.max(1)) as u32
}

/// Steps that are not blank lines.
fn depth_of_steps(steps: &[ScoredStep]) -> usize {
    steps.iter().filter(|s| !s.text.trim().is_empty()).count()
}

/// A step generated during a step-level search.
pub(crate) struct StepDraft {
    pub step: ScoredStep,
    pub ended: bool,
    pub tokens: u64,
    pub logprob_sum: f64,
}

/// Puts answers that say the same thing under one text, the first of their
/// group's ([`AnswerKind::meaning_groups`]), so that votes count meanings:
/// "shakespeare" and "william shakespeare" are one answer. The raw text of
/// each answer is kept.
pub fn unify_answers(kind: &AnswerKind, candidates: &mut [Candidate]) {
    let answers: Vec<(usize, String)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, c.answer.as_ref()?.normalized.clone())))
        .collect();
    let texts: Vec<&str> = answers.iter().map(|(_, a)| a.as_str()).collect();
    let groups = kind.meaning_groups(&texts);
    for (j, &head) in groups.iter().enumerate() {
        if head != j {
            let text = answers[head].1.clone();
            if let Some(a) = candidates[answers[j].0].answer.as_mut() {
                a.normalized = text;
            }
        }
    }
}

/// Votes per answer weighted by each reply's lowest group confidence and
/// rescaled to the number of replies with an answer.
pub fn weighted_votes(candidates: &[Candidate]) -> BTreeMap<String, f64> {
    rescaled_votes(candidates.iter().filter_map(|c| {
        c.answer
            .as_ref()
            .map(|a| (a.normalized.as_str(), c.confidence.lowest_group.max(1e-3)))
    }))
}

/// The candidate of the answer with the largest confidence-weighted vote
/// (ties to the best step-reward score); the first candidate when none has
/// an answer.
pub fn weighted_majority(candidates: &[Candidate]) -> usize {
    crate::stopping::weighted_winner(
        candidates,
        |c| c.answer.as_ref().map(|a| a.normalized.as_str()),
        |c| c.confidence.lowest_group.max(1e-3),
        |c| c.score,
    )
    .unwrap_or(0)
}

/// Votes per (normalised) answer.
pub fn vote(candidates: &[Candidate]) -> BTreeMap<String, usize> {
    let mut votes = BTreeMap::new();
    for c in candidates {
        if let Some(a) = &c.answer {
            *votes.entry(a.normalized.clone()).or_insert(0) += 1;
        }
    }
    votes
}

/// The candidate with an answer and the best mean step reward.
pub fn best_by_score(c: &[Candidate]) -> usize {
    // Candidates with an answer first, then by score; ties to the earliest.
    let mut best = 0;
    for i in 1..c.len() {
        let key = |j: usize| (c[j].answer.is_some(), c[j].score);
        let (ha, sa) = key(i);
        let (hb, sb) = key(best);
        if (ha && !hb) || (ha == hb && sa > sb) {
            best = i;
        }
    }
    best
}

/// The best-scored candidate among those giving the most-voted answer.
pub fn majority(c: &[Candidate], votes: &BTreeMap<String, usize>) -> usize {
    let Some(top) = votes.values().copied().max() else {
        return best_by_score(c);
    };
    // Among answers with the most votes, the one whose best candidate scores
    // highest; the chosen candidate is that best one.
    let mut best: Option<usize> = None;
    for (i, cand) in c.iter().enumerate() {
        let Some(a) = &cand.answer else { continue };
        if votes[&a.normalized] != top {
            continue;
        }
        if best.is_none_or(|b| cand.score > c[b].score) {
            best = Some(i);
        }
    }
    best.unwrap_or(0)
}

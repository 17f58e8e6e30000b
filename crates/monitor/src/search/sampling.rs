//! Searches over whole replies: greedy, best-of-N and self-consistency
//! (one batch of samples), adaptive consistency (samples until the
//! stopping rule is sure of the majority) and DeepConf (warm-up replies
//! set a confidence floor; later replies are cut where they fall below it
//! and the votes are weighted by confidence).

use metareason_core::{ConfidenceFloor, FinishReason, GenerateRequest, ModelError, Prompt};

use super::budget::Budget;
use super::votes::{unify_answers, vote, weighted_votes};
use super::{mean_reward, score_reply, Candidate, Searcher};
use crate::confidence::{quantile, GROUP_TOKENS};
use crate::stopping::StopRule;
use crate::Event;

impl Searcher<'_> {
    /// `n` whole replies at `temperature`, scored (and judged) step by step.
    pub(super) fn sample(
        &self,
        prompt: &Prompt,
        n: usize,
        temperature: f32,
        seed_offset: u64,
        budget: &mut Budget,
    ) -> Result<Vec<Candidate>, ModelError> {
        // Under a budget, no more sequences than tokens left.
        let n = budget.sequences(n);
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
        budget.charge(g.usage);
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

    /// Adaptive consistency: batches of samples until the rule is sure.
    pub(super) fn adaptive(
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

    /// DeepConf online: warm-up replies, then replies cut below the floor.
    pub(super) fn deepconf(
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
            let max = budget.remaining(self.settings.max_tokens);
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
            budget.charge(g.usage);
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
}

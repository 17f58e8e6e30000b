//! The step model of the step-level searches: it proposes next steps from a
//! partial reply, rolls a partial reply out to its end, scores every step
//! (and asks the judge about it), and spells and assembles paths of steps.
//! Beam search and MCTS are written against it alone.

use metareason_core::{GenerateRequest, ModelError, Prompt, Usage};
use metareason_strategy::answer::Extract;

use super::budget::Budget;
use super::{mean_reward, score_reply, Candidate, ScoredStep, Searcher};
use crate::confidence::TraceConfidence;
use crate::reward::StepSignals;

/// A step generated during a step-level search.
pub(crate) struct StepDraft {
    pub step: ScoredStep,
    pub ended: bool,
    pub tokens: u64,
    pub logprob_sum: f64,
}

/// Steps that are not blank lines.
pub(crate) fn depth_of_steps(steps: &[ScoredStep]) -> usize {
    steps.iter().filter(|s| !s.text.trim().is_empty()).count()
}

impl Searcher<'_> {
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

    /// One step from `prefix`: `n` sampled continuations up to the step delimiter.
    pub(crate) fn steps_from(
        &self,
        prompt: &Prompt,
        earlier: &[ScoredStep],
        n: usize,
        seed: u64,
        budget: &mut Budget,
    ) -> Result<Vec<StepDraft>, ModelError> {
        let max = budget.remaining(self.settings.max_step_tokens);
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
        budget.charge(g.usage);
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
            self.judge_steps(
                prompt,
                earlier,
                std::slice::from_mut(&mut d.step),
                &mut budget.used,
            )?;
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
        budget: &mut Budget,
    ) -> Result<Candidate, ModelError> {
        let prefix = self.prefix_of(&steps);
        let mut params = self.rollout_params(round);
        params.max_tokens = budget.remaining(params.max_tokens);
        let g = self.model.generate(&GenerateRequest::new(
            prompt.clone().with_assistant_prefix(prefix.clone()),
            params,
        ))?;
        budget.charge(g.usage);
        let seq = &g.sequences[0];
        let mut rollout = score_reply(seq, self.strategy, self.kind, self.weights);
        self.judge_steps(prompt, &steps, &mut rollout.steps, &mut budget.used)?;
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
}

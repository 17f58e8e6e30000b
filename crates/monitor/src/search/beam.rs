//! Step-level beam search: the `width` partial replies of best mean step
//! reward are kept; each is extended by `expansions` sampled next steps;
//! a survivor cut by the depth limit is finished by a rollout.

use metareason_core::{ModelError, Prompt};
use metareason_strategy::answer::Extract;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::budget::Budget;
use super::step_model::depth_of_steps;
use super::{mean_reward, Candidate, ScoredStep, Searcher};
use crate::{Event, TreeNode};

impl Searcher<'_> {
    /// Beam search over steps.
    pub(super) fn beam(
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
                let drafts =
                    self.steps_from(prompt, &node.steps, expansions.max(1), seed, budget)?;
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
            let mut c = self.complete_from(prompt, n.steps, k as u64, budget)?;
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

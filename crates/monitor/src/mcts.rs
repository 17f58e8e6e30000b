//! Monte Carlo tree search over reasoning steps (UCT).
//!
//! A node is a partial reply (a path of steps). Each iteration selects a
//! leaf by UCT, expands it with sampled next steps, completes the reply from
//! one new child with a sampled rollout, and backs the rollout's mean step
//! reward up the path. Every rollout is a candidate; the answer is chosen by
//! vote over rollouts. Every prefix is a partial assistant reply, so the
//! backend's prefix cache serves it.

use metareason_core::{ModelError, Prompt, Usage};

use crate::search::{Candidate, ScoredStep, Searcher};
use crate::Event;

/// MCTS settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MctsConfig {
    pub iterations: usize,
    pub expansions: usize,
    pub exploration: f64,
    pub max_steps: usize,
}

struct Node {
    parent: Option<usize>,
    step: Option<ScoredStep>,
    children: Vec<usize>,
    visits: u32,
    value_sum: f64,
    ended: bool,
    depth: usize,
}

fn path(nodes: &[Node], mut i: usize) -> Vec<ScoredStep> {
    let mut steps = Vec::new();
    while let Some(p) = nodes[i].parent {
        if let Some(s) = &nodes[i].step {
            steps.push(s.clone());
        }
        i = p;
    }
    steps.reverse();
    steps
}

pub(crate) fn run(
    s: &Searcher<'_>,
    prompt: &Prompt,
    cfg: MctsConfig,
    used: &mut Usage,
    limit: u64,
    events: &mut Vec<Event>,
) -> Result<Vec<Candidate>, ModelError> {
    let mut nodes = vec![Node {
        parent: None,
        step: None,
        children: Vec::new(),
        visits: 0,
        value_sum: 0.0,
        ended: false,
        depth: 0,
    }];
    let mut candidates = Vec::new();
    let exhausted = |u: &Usage| limit > 0 && u.generated_tokens >= limit;
    for it in 0..cfg.iterations.max(1) {
        if exhausted(used) {
            events.push(Event::BudgetExhausted {
                tokens: used.generated_tokens,
            });
            break;
        }
        // Selection.
        let mut i = 0;
        while !nodes[i].children.is_empty() && !nodes[i].ended {
            let parent_visits = f64::from(nodes[i].visits.max(1));
            i = *nodes[i]
                .children
                .iter()
                .max_by(|&&a, &&b| {
                    let uct = |c: usize| {
                        let n = &nodes[c];
                        if n.visits == 0 {
                            return f64::INFINITY;
                        }
                        n.value_sum / f64::from(n.visits)
                            + cfg.exploration * (parent_visits.ln() / f64::from(n.visits)).sqrt()
                    };
                    uct(a).total_cmp(&uct(b)).then(b.cmp(&a))
                })
                .expect("non-empty");
        }
        // Expansion.
        let expandable = i == 0 || nodes[i].visits > 0;
        if !nodes[i].ended && nodes[i].depth < cfg.max_steps && expandable {
            let earlier = path(&nodes, i);
            let drafts = s.steps_from(
                prompt,
                &earlier,
                cfg.expansions.max(1),
                s.settings.seed ^ ((it as u64 + 1) * 7919),
                used,
                limit,
            )?;
            let depth = nodes[i].depth + 1;
            let mut first = None;
            for d in drafts {
                let answered = s.kind.extract_marked(&d.step.text).is_some();
                // A blank line is not a step of reasoning: it does not count
                // towards the depth limit.
                let depth = depth - usize::from(d.step.text.trim().is_empty());
                nodes.push(Node {
                    parent: Some(i),
                    step: Some(d.step),
                    children: Vec::new(),
                    visits: 0,
                    value_sum: 0.0,
                    ended: d.ended || answered,
                    depth,
                });
                let id = nodes.len() - 1;
                nodes[i].children.push(id);
                first.get_or_insert(id);
            }
            if let Some(f) = first {
                i = f;
            }
        }
        // Simulation: complete the reply from node i.
        let steps = path(&nodes, i);
        let candidate = if nodes[i].ended || exhausted(used) {
            s.assemble(steps, nodes[i].ended, 0, 0.0)
        } else {
            s.complete_from(prompt, steps, it as u64, used, limit)?
        };
        let value = candidate.score;
        candidates.push(candidate);
        // Backpropagation.
        let mut j = Some(i);
        while let Some(k) = j {
            nodes[k].visits += 1;
            nodes[k].value_sum += value;
            j = nodes[k].parent;
        }
        events.push(Event::MctsIteration {
            iteration: it,
            depth: nodes[i].depth,
            value,
            tree_size: nodes.len(),
        });
    }
    Ok(candidates)
}

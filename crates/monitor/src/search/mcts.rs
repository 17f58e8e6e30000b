//! Monte Carlo tree search over reasoning steps (UCT or PUCT).
//!
//! A node is a partial reply (a path of steps). Each iteration selects a
//! leaf by UCT or PUCT, expands it with sampled next steps, completes the
//! reply from one new child (the first under UCT, the one with the highest
//! step reward under PUCT) with a sampled rollout, and backs the rollout's mean step
//! reward up the path. Every rollout is a candidate; the answer is chosen by
//! vote over rollouts. Every prefix is a partial assistant reply, so the
//! backend's prefix cache serves it.

use metareason_core::{ModelError, Prompt};
use metareason_strategy::answer::Extract;

use super::budget::Budget;
use super::{Candidate, ScoredStep, Searcher, TreeSelection};
use crate::{Event, TreeNode};

/// MCTS settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MctsConfig {
    pub iterations: usize,
    pub expansions: usize,
    pub exploration: f64,
    pub max_steps: usize,
    pub selection: TreeSelection,
}

struct Node {
    parent: Option<usize>,
    step: Option<ScoredStep>,
    children: Vec<usize>,
    visits: u32,
    value_sum: f64,
    ended: bool,
    depth: usize,
    /// Candidates whose rollout started here.
    rollouts: Vec<usize>,
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

fn reward(n: &Node) -> f64 {
    n.step.as_ref().map_or(0.0, |s| s.reward)
}

/// The selection score of child `c` of node `p`.
fn selection_score(nodes: &[Node], p: usize, c: usize, cfg: MctsConfig) -> f64 {
    let (parent, n) = (&nodes[p], &nodes[c]);
    let mean = |n: &Node| n.value_sum / f64::from(n.visits.max(1));
    match cfg.selection {
        TreeSelection::Uct => {
            if n.visits == 0 {
                return f64::INFINITY;
            }
            let parent_visits = f64::from(parent.visits.max(1));
            mean(n) + cfg.exploration * (parent_visits.ln() / f64::from(n.visits)).sqrt()
        }
        TreeSelection::Puct => {
            let total: f64 = parent.children.iter().map(|&s| reward(&nodes[s])).sum();
            let prior = if total > 0.0 {
                reward(n) / total
            } else {
                1.0 / parent.children.len() as f64
            };
            // First-play urgency: an unvisited child is valued at its
            // parent's mean, so the prior decides among unvisited children.
            let q = if n.visits == 0 { mean(parent) } else { mean(n) };
            q + cfg.exploration * prior * f64::from(parent.visits.max(1)).sqrt()
                / (1.0 + f64::from(n.visits))
        }
    }
}

pub(crate) fn run(
    s: &Searcher<'_>,
    prompt: &Prompt,
    cfg: MctsConfig,
    budget: &mut Budget,
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
        rollouts: Vec::new(),
    }];
    let mut candidates = Vec::new();
    for it in 0..cfg.iterations.max(1) {
        if budget.exhausted() {
            events.push(Event::BudgetExhausted {
                tokens: budget.used.generated_tokens,
            });
            break;
        }
        // Selection.
        let mut i = 0;
        while !nodes[i].children.is_empty() && !nodes[i].ended {
            let children = &nodes[i].children;
            let score = |c: usize| selection_score(&nodes, i, c, cfg);
            i = *children
                .iter()
                .max_by(|&&a, &&b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
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
                budget,
            )?;
            let depth = nodes[i].depth + 1;
            let start = nodes.len();
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
                    rollouts: Vec::new(),
                });
                let id = nodes.len() - 1;
                nodes[i].children.push(id);
            }
            let mut new = start..nodes.len();
            let pick = match cfg.selection {
                TreeSelection::Uct => new.next(),
                // The new child the step reward likes best (the first on ties).
                TreeSelection::Puct => new.max_by(|&a, &b| {
                    reward(&nodes[a])
                        .total_cmp(&reward(&nodes[b]))
                        .then(b.cmp(&a))
                }),
            };
            if let Some(f) = pick {
                i = f;
            }
        }
        // Simulation: complete the reply from node i.
        let steps = path(&nodes, i);
        let candidate = if nodes[i].ended || budget.exhausted() {
            s.assemble(steps, nodes[i].ended, 0, 0.0)
        } else {
            s.complete_from(prompt, steps, it as u64, budget)?
        };
        let value = candidate.score;
        nodes[i].rollouts.push(candidates.len());
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
    events.push(Event::Tree {
        search: "mcts".into(),
        nodes: nodes.iter().map(tree_node).collect(),
    });
    Ok(candidates)
}

fn tree_node(n: &Node) -> TreeNode {
    let mut t = match (&n.step, n.parent) {
        (Some(step), Some(p)) => TreeNode::child(p, step),
        _ => TreeNode::root(),
    };
    t.visits = n.visits;
    t.value = n.value_sum / f64::from(n.visits.max(1));
    t.candidates = n.rollouts.clone();
    t
}

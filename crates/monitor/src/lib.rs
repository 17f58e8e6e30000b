//! # metareason-monitor
//!
//! The monitoring module: while a task runs, every reasoning step gets a
//! reward Q_t from intrinsic signals of its tokens ([`reward`]), and a search
//! policy decides which replies or steps to generate and which to keep
//! ([`search`], [`stopping`]). Searches talk to the model only through the
//! `LanguageModel` trait: this crate never names a backend.
#![deny(missing_docs)]

pub mod confidence;
pub mod judge;
pub mod reward;
pub mod search;
pub mod stopping;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use confidence::{ConfidenceMeasure, TraceConfidence};
pub use judge::{ModelJudge, StepJudge};
pub use reward::{RewardWeights, StepSignals};
pub use search::{
    Candidate, ScoredStep, SearchOutcome, SearchPolicy, SearchSettings, Searcher, TreeSelection,
};
pub use stopping::StopRule;

/// One node of a search tree: a partial reply ending in `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Index of the parent node (none for the root).
    pub parent: Option<usize>,
    /// The step this node adds (its first 200 characters; empty at the root).
    pub step: String,
    /// The step's reward.
    pub reward: f64,
    /// MCTS visits (0 under beam search).
    pub visits: u32,
    /// Mean backed-up value (MCTS) or mean step reward of the path (beam).
    pub value: f64,
    /// Whether beam search kept it (always true under MCTS).
    pub kept: bool,
    /// Candidates (indices into the outcome's candidates) completed from here.
    pub candidates: Vec<usize>,
}

impl TreeNode {
    fn new(parent: Option<usize>, step: &str, reward: f64) -> Self {
        Self {
            parent,
            step: step.chars().take(200).collect(),
            reward,
            visits: 0,
            value: 0.0,
            kept: true,
            candidates: Vec::new(),
        }
    }

    /// The root: the empty reply.
    pub(crate) fn root() -> Self {
        Self::new(None, "", 0.0)
    }

    /// A node for `step` under `parent`.
    pub(crate) fn child(parent: usize, step: &ScoredStep) -> Self {
        Self::new(Some(parent), &step.text, step.reward)
    }
}

/// Something that happened during a search, for the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// DeepConf's warm-up set the confidence floor of later replies.
    ConfidenceFloor {
        /// Warm-up replies.
        warmup: usize,
        /// The floor of the sliding-window confidence.
        threshold: f64,
    },
    /// Adaptive consistency counted votes after a round.
    Vote {
        /// Samples so far.
        samples: usize,
        /// Votes per answer.
        votes: BTreeMap<String, usize>,
        /// Posterior that the leader is the majority answer.
        confidence: f64,
        /// Whether the rule said stop.
        stop: bool,
    },
    /// Beam search kept the best partial replies of a depth.
    BeamStep {
        /// Depth (0-based).
        depth: usize,
        /// Children scored.
        children: usize,
        /// Mean step rewards of the kept ones.
        kept_scores: Vec<f64>,
    },
    /// A beam cut by the depth limit was finished by a rollout.
    BeamFinished {
        /// Rank of the beam among the survivors (0-based).
        beam: usize,
        /// Tokens the rollout generated.
        rollout_tokens: u64,
    },
    /// One MCTS iteration.
    MctsIteration {
        /// Iteration (0-based).
        iteration: usize,
        /// Depth of the simulated node.
        depth: usize,
        /// The rollout's value.
        value: f64,
        /// Nodes in the tree.
        tree_size: usize,
    },
    /// The tree a step-level search built (beam or MCTS), for drawing.
    Tree {
        /// `beam` or `mcts`.
        search: String,
        /// Every node; the root (the empty reply) is the first.
        nodes: Vec<TreeNode>,
    },
    /// The token budget ran out.
    BudgetExhausted {
        /// Tokens generated.
        tokens: u64,
    },
    /// The search picked its answer.
    Chosen {
        /// Index of the candidate.
        candidate: usize,
        /// Why.
        reason: String,
    },
}

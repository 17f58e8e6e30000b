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
mod mcts;
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

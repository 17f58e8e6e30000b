//! What the loop reports while it runs: one event per phase, as it ends, to
//! an observer (the server streams them; a CLI could draw them). The whole
//! episode is the [`crate::EpisodeReport`]; events are its running summary.

use metareason_core::{Grounds, Usage};
use metareason_memory::Decision;
use metareason_solver::Attempt;
use metareason_strategy::StrategyKind;
use serde::{Deserialize, Serialize};

use crate::escalate::EscalationRound;

/// Receives the loop's events. Called on the loop's own thread, in order;
/// an observer that does slow work should hand the event on (a channel).
pub trait TraceObserver: Send + Sync {
    /// One event.
    fn on_event(&self, event: &TraceEvent);
}

/// One scored step of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// The step's text.
    pub text: String,
    /// Its reward Q_t.
    pub reward: f64,
}

/// A verifier's finding about an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingEvent {
    /// The verifier.
    pub verifier: String,
    /// Its verdict.
    pub verdict: String,
    /// The step it concerns (0-based), when one.
    pub step: Option<usize>,
    /// What it found.
    pub message: String,
}

/// A strategy the loop could take, with its prospects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionEvent {
    /// The strategy.
    pub strategy: StrategyKind,
    /// P(success) under its posterior.
    pub p_success: f64,
}

/// One event of a running episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TraceEvent {
    /// The loop took the task (before any model call).
    Started {
        /// The task.
        task: String,
    },
    /// The answer kind the task is solved under.
    AnswerKind {
        /// Its name.
        kind: String,
        /// How it was chosen.
        how: String,
    },
    /// Self-awareness decided whether and how to attempt the task.
    Assessed {
        /// Answer (attempt), abstain or refuse.
        decision: Decision,
        /// Why.
        reason: String,
        /// The policy rule that fired, when one did.
        rule: Option<String>,
        /// P(answerable), when estimated.
        p_answerable: Option<f64>,
        /// The strategies weighed.
        options: Vec<OptionEvent>,
        /// The strategy chosen, when attempting.
        strategy: Option<StrategyKind>,
        /// Its cost.
        usage: Usage,
    },
    /// An attempt ended (the first solve's attempts: strategies tried,
    /// revisions, switches).
    Attempt {
        /// Which phase it belongs to (`solve` or `cross_check`).
        phase: String,
        /// The strategy.
        strategy: StrategyKind,
        /// Its answer, normalised.
        answer: Option<String>,
        /// The chosen reply's steps with their rewards.
        steps: Vec<StepEvent>,
        /// What the verifiers found.
        findings: Vec<FindingEvent>,
        /// The solver's estimate for it.
        confidence: f64,
        /// Replies it drew.
        replies: usize,
    },
    /// A revision round of the first solve.
    Revision {
        /// Round (0-based).
        round: usize,
        /// The step it started from.
        from_step: usize,
        /// Whether it replaced the attempt.
        accepted: bool,
        /// Confidence before and after.
        confidence_before: f64,
        /// Confidence of the revision.
        confidence_after: f64,
    },
    /// The first answer's calibrated confidence, before any escalation.
    FirstAnswer {
        /// The answer.
        answer: Option<String>,
        /// Calibrated P(correct).
        confidence: f64,
    },
    /// One escalation round considered (drawn or not, with the numbers that
    /// decided it).
    Escalation {
        /// Round number (0-based).
        round: usize,
        /// The round.
        detail: EscalationRound,
    },
    /// The cross-check with a second strategy.
    CrossCheck {
        /// The second strategy.
        strategy: StrategyKind,
        /// Its answer.
        answer: Option<String>,
        /// Whether it agrees.
        agrees: Option<bool>,
    },
    /// The decision.
    Decided {
        /// Answer, abstain or refuse.
        decision: Decision,
        /// On what grounds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grounds: Option<Grounds>,
        /// The answer given (None when declining).
        answer: Option<String>,
        /// Calibrated P(correct) of the answer found.
        confidence: Option<f64>,
        /// Why.
        reason: String,
    },
    /// The episode was stored in memory.
    Stored {
        /// Its id.
        episode_id: i64,
    },
}

impl TraceEvent {
    /// The event's name (its `event` tag).
    pub fn name(&self) -> &'static str {
        match self {
            TraceEvent::Started { .. } => "started",
            TraceEvent::AnswerKind { .. } => "answer_kind",
            TraceEvent::Assessed { .. } => "assessed",
            TraceEvent::Attempt { .. } => "attempt",
            TraceEvent::Revision { .. } => "revision",
            TraceEvent::FirstAnswer { .. } => "first_answer",
            TraceEvent::Escalation { .. } => "escalation",
            TraceEvent::CrossCheck { .. } => "cross_check",
            TraceEvent::Decided { .. } => "decided",
            TraceEvent::Stored { .. } => "stored",
        }
    }

    /// The event of a finished attempt.
    pub fn attempt(phase: &str, a: &Attempt) -> Self {
        let best = a.outcome.best();
        TraceEvent::Attempt {
            phase: phase.to_string(),
            strategy: a.strategy,
            answer: best.answer.as_ref().map(|x| x.normalized.clone()),
            steps: best
                .steps
                .iter()
                .map(|s| StepEvent {
                    text: s.text.clone(),
                    reward: s.reward,
                })
                .collect(),
            findings: a
                .findings
                .iter()
                .map(|f| FindingEvent {
                    verifier: f.verifier.name().to_string(),
                    verdict: f.verdict.name().to_string(),
                    step: f.step,
                    message: f.message.clone(),
                })
                .collect(),
            confidence: a.confidence,
            replies: a.outcome.candidates.len(),
        }
    }
}

/// Time and model usage of one phase of an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `answer_kind`, `assessment`, `solve`, `escalation`, `cross_check`,
    /// `baselines` or `memory`.
    pub name: String,
    /// Wall time of the phase in seconds (model calls, programs, checks).
    pub seconds: f64,
    /// The model calls it made.
    pub usage: Usage,
}

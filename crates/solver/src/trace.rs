//! The record of one solve, serialised as JSON with a versioned schema
//! (documented in `docs/trace-schema.md`).

use metareason_core::{ModelInfo, Prompt, Usage};
use metareason_monitor::SearchOutcome;
use metareason_sandbox::Run;
use metareason_strategy::answer::AnswerKind;
use metareason_strategy::StrategyKind;
use metareason_verify::Finding;
use serde::{Deserialize, Serialize};

/// The schema identifier every trace carries. Bump the number on any change
/// that breaks a reader.
pub const TRACE_SCHEMA: &str = "metareason.trace/1";

/// One strategy's try at the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The strategy used.
    pub strategy: StrategyKind,
    /// The prompt it rendered.
    pub prompt: Prompt,
    /// The search, with every candidate and its scored steps.
    pub outcome: SearchOutcome,
    /// What the verifiers found about the chosen candidate.
    pub findings: Vec<Finding>,
    /// Estimated probability that the chosen answer is right.
    pub confidence: f64,
    /// The program that ran and what it did (program-aided strategies).
    pub program: Option<(String, Run)>,
}

/// A switch to another strategy, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    /// The strategy left.
    pub from: StrategyKind,
    /// The strategy taken up.
    pub to: StrategyKind,
    /// Why.
    pub reason: String,
    /// The step rewards that led to it.
    pub rewards: Vec<f64>,
}

/// A backtrack after collapsing step rewards: the steps before the collapse
/// were kept and the rest resampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backtrack {
    /// The strategy it happened under.
    pub strategy: StrategyKind,
    /// The collapsed step (0-based); steps before it were kept.
    pub at_step: usize,
    /// The numbers behind the collapse.
    pub reason: String,
    /// Step rewards before.
    pub rewards_before: Vec<f64>,
    /// Step rewards of the best resampled continuation (kept steps included).
    pub rewards_after: Vec<f64>,
    /// Whether the continuation replaced the collapsed one (it no longer collapses).
    pub accepted: bool,
}

/// One round of regulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// Round (0-based).
    pub round: usize,
    /// The step revision started from (0-based; earlier steps were kept).
    pub from_step: usize,
    /// The finding that prompted it.
    pub finding: Finding,
    /// Confidence of the attempt revised.
    pub confidence_before: f64,
    /// Confidence of the revision.
    pub confidence_after: f64,
    /// Whether the revision replaced the attempt (only when confidence rose).
    pub accepted: bool,
    /// The revised attempt.
    pub attempt: Option<Attempt>,
}

/// Everything about one solve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// [`TRACE_SCHEMA`].
    pub schema: String,
    /// The task.
    pub question: String,
    /// The model.
    pub model: ModelInfo,
    /// The kind of answer sought.
    pub answer_kind: AnswerKind,
    /// The final answer, normalised (`None`: no answer found).
    pub answer: Option<String>,
    /// Estimated probability that it is right (uncalibrated until the meta
    /// level fits its calibration model).
    pub confidence: f64,
    /// Index into `attempts` of the one that answers.
    pub final_attempt: usize,
    /// Every attempt, in order: strategies tried, accepted revisions, then
    /// strategies switched to because a check still failed after revision.
    pub attempts: Vec<Attempt>,
    /// Strategy switches.
    pub switches: Vec<Switch>,
    /// Backtracks after collapses.
    #[serde(default)]
    pub backtracks: Vec<Backtrack>,
    /// Revision rounds.
    pub revisions: Vec<Revision>,
    /// Total cost.
    pub usage: Usage,
}

impl Trace {
    /// A readable summary: strategy, steps with rewards, findings, revisions, cost.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let a = &self.attempts[self.final_attempt];
        let best = a.outcome.best();
        out.push_str(&format!(
            "task level: answer {}   uncalibrated estimate {:.2}\n",
            self.answer.as_deref().unwrap_or("(none)"),
            self.confidence
        ));
        out.push_str(&format!(
            "strategy: {}   search: {}   candidates: {}   agreement: {:.2}\n",
            a.strategy,
            a.outcome.policy.name(),
            a.outcome.candidates.len(),
            a.outcome.agreement
        ));
        out.push_str("steps:\n");
        for (i, s) in best.steps.iter().enumerate() {
            let text: String = s.text.chars().take(110).collect();
            out.push_str(&format!("  {:>2}. [{:.2}] {}\n", i + 1, s.reward, text));
        }
        if !a.findings.is_empty() {
            out.push_str("findings:\n");
            for f in &a.findings {
                let at = f
                    .step
                    .map(|s| format!(" (step {})", s + 1))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {:?} {:?}{at}: {}\n",
                    f.verifier, f.verdict, f.message
                ));
            }
        }
        for b in &self.backtracks {
            out.push_str(&format!(
                "backtrack ({}): at step {}: {}; {}\n",
                b.strategy,
                b.at_step + 1,
                b.reason,
                if b.accepted {
                    "recovered"
                } else {
                    "still collapsed"
                }
            ));
        }
        for s in &self.switches {
            out.push_str(&format!("switch: {} -> {}: {}\n", s.from, s.to, s.reason));
        }
        for r in &self.revisions {
            out.push_str(&format!(
                "revision {}: from step {} ({}); confidence {:.2} -> {:.2}, {}\n",
                r.round + 1,
                r.from_step + 1,
                r.finding.message,
                r.confidence_before,
                r.confidence_after,
                if r.accepted { "accepted" } else { "rejected" }
            ));
        }
        let u = &self.usage;
        out.push_str(&format!(
            "tokens: {} generated, {} prompt evaluated, {} prompt re-used   time: {:.1}s\n",
            u.generated_tokens,
            u.prompt_tokens,
            u.cached_prompt_tokens,
            u.wall_time.as_secs_f64()
        ));
        out
    }
}

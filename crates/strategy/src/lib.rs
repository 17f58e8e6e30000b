//! # metareason-strategy
//!
//! Strategies — the skills F chooses among — as data. Each strategy is a
//! TOML file in `strategies/` (compiled in) that declares its prompt
//! template, how its output splits into steps, where its answer comes from
//! and how many tokens it is expected to cost. The code here only renders
//! templates, splits steps and extracts answers ([`answer`]).
//!
//! ```
//! use metareason_strategy::{answer::AnswerKind, StrategyKind};
//!
//! let cot = StrategyKind::ChainOfThought.strategy();
//! let prompt = cot.prompt("What is 6 * 7?", &AnswerKind::Number, &[]);
//! assert!(prompt.messages[1].content.contains("What is 6 * 7?"));
//! let steps = cot.split_steps("6 * 7 = 42\n\nThe answer is 42.");
//! assert_eq!(steps.len(), 2);
//! ```
#![deny(missing_docs)]

pub mod answer;

use std::sync::OnceLock;

use answer::AnswerKind;
use metareason_core::{Message, Prompt};
use serde::{Deserialize, Serialize};

/// The strategies metareason knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StrategyKind {
    /// Answer at once.
    Direct,
    /// Step-by-step reasoning.
    ChainOfThought,
    /// Decompose, then solve the parts.
    PlanThenSolve,
    /// Write a program; the sandbox runs it.
    ProgramAided,
    /// Follow retrieved templates and solved examples.
    ExampleGuided,
}

impl StrategyKind {
    /// Every strategy, in a fixed order.
    pub const ALL: [StrategyKind; 5] = [
        StrategyKind::Direct,
        StrategyKind::ChainOfThought,
        StrategyKind::PlanThenSolve,
        StrategyKind::ProgramAided,
        StrategyKind::ExampleGuided,
    ];

    /// The name used on the command line and in traces.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Direct => "direct",
            StrategyKind::ChainOfThought => "chain_of_thought",
            StrategyKind::PlanThenSolve => "plan_then_solve",
            StrategyKind::ProgramAided => "program_aided",
            StrategyKind::ExampleGuided => "example_guided",
        }
    }

    /// Parses a name (`cot` and `pal` are accepted as short forms).
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.trim().to_lowercase().replace('-', "_");
        match n.as_str() {
            "cot" => return Some(StrategyKind::ChainOfThought),
            "pal" | "program" => return Some(StrategyKind::ProgramAided),
            "plan" => return Some(StrategyKind::PlanThenSolve),
            _ => {}
        }
        Self::ALL.into_iter().find(|k| k.name() == n)
    }

    /// The strategy's definition.
    pub fn strategy(self) -> &'static Strategy {
        static ALL: OnceLock<Vec<Strategy>> = OnceLock::new();
        let all = ALL.get_or_init(|| {
            Self::ALL
                .iter()
                .map(|&k| {
                    Strategy::from_toml(k, source_of(k)).expect("built-in strategy files parse")
                })
                .collect()
        });
        &all[Self::ALL.iter().position(|&k| k == self).expect("listed")]
    }
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn source_of(k: StrategyKind) -> &'static str {
    match k {
        StrategyKind::Direct => include_str!("../strategies/direct.toml"),
        StrategyKind::ChainOfThought => include_str!("../strategies/chain_of_thought.toml"),
        StrategyKind::PlanThenSolve => include_str!("../strategies/plan_then_solve.toml"),
        StrategyKind::ProgramAided => include_str!("../strategies/program_aided.toml"),
        StrategyKind::ExampleGuided => include_str!("../strategies/example_guided.toml"),
    }
}

/// Where a strategy's answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// Extracted from the reasoning text.
    Text,
    /// Printed by the program the reply contains, run in the sandbox.
    Program,
}

/// A strategy's definition, as read from its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    /// Which strategy this is.
    #[serde(skip_deserializing, default = "default_kind")]
    pub kind: StrategyKind,
    /// One line for people.
    pub description: String,
    /// The system message.
    pub system: String,
    /// The user message; `{question}`, `{answer_format}` and `{examples}`
    /// are filled in.
    pub user: String,
    /// What separates steps in the output.
    pub step_delimiter: String,
    /// Where the answer comes from.
    pub answer_source: AnswerSource,
    /// Tokens a typical reply costs (the prior of the cost model).
    pub expected_tokens: u32,
}

fn default_kind() -> StrategyKind {
    StrategyKind::ChainOfThought
}

/// A strategy file that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("strategy {name}: {message}")]
pub struct StrategyError {
    name: String,
    message: String,
}

impl Strategy {
    /// Reads a strategy definition.
    pub fn from_toml(kind: StrategyKind, text: &str) -> Result<Self, StrategyError> {
        let mut s: Strategy = toml::from_str(text).map_err(|e| StrategyError {
            name: kind.name().into(),
            message: e.to_string(),
        })?;
        if !s.user.contains("{question}") {
            return Err(StrategyError {
                name: kind.name().into(),
                message: "the user template has no {question}".into(),
            });
        }
        s.kind = kind;
        Ok(s)
    }

    /// The prompt for a question. `examples` are solved examples or thought
    /// templates (used by templates with `{examples}`).
    pub fn prompt(&self, question: &str, kind: &AnswerKind, examples: &[String]) -> Prompt {
        let examples = if examples.is_empty() {
            "(none available)".to_string()
        } else {
            examples
                .iter()
                .enumerate()
                .map(|(i, e)| format!("Example {}:\n{}", i + 1, e.trim()))
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        let user = self
            .user
            .replace("{answer_format}", answer_format(kind))
            .replace("{examples}", &examples)
            .replace("{question}", question.trim());
        Prompt {
            messages: vec![Message::system(self.system.clone()), Message::user(user)],
            assistant_prefix: String::new(),
        }
    }

    /// Splits a reply into non-empty steps.
    pub fn split_steps(&self, text: &str) -> Vec<String> {
        text.split(self.step_delimiter.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn answer_format(kind: &AnswerKind) -> &'static str {
    match kind {
        AnswerKind::Number => "NUMBER",
        AnswerKind::Choice { .. } => "LETTER",
        AnswerKind::YesNo => "Yes or No",
        AnswerKind::Text => "ANSWER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_strategy_parses_and_renders() {
        for k in StrategyKind::ALL {
            let s = k.strategy();
            assert_eq!(s.kind, k);
            let p = s.prompt("Q?", &AnswerKind::Number, &["worked example".into()]);
            let user = &p.messages[1].content;
            assert!(user.contains("Q?"), "{k}: {user}");
            assert!(!user.contains('{'), "{k}: unfilled placeholder in {user}");
            assert!(s.expected_tokens > 0);
        }
        assert_eq!(
            StrategyKind::ProgramAided.strategy().answer_source,
            AnswerSource::Program
        );
    }

    #[test]
    fn names_round_trip_and_short_forms_parse() {
        for k in StrategyKind::ALL {
            assert_eq!(StrategyKind::parse(k.name()), Some(k));
        }
        assert_eq!(
            StrategyKind::parse("CoT"),
            Some(StrategyKind::ChainOfThought)
        );
        assert_eq!(
            StrategyKind::parse("program-aided"),
            Some(StrategyKind::ProgramAided)
        );
        assert_eq!(StrategyKind::parse("guess"), None);
    }

    #[test]
    fn a_template_without_question_is_rejected() {
        let e = Strategy::from_toml(
            StrategyKind::Direct,
            "description='d'\nsystem='s'\nuser='no slot'\nstep_delimiter='\\n'\nanswer_source='text'\nexpected_tokens=5",
        )
        .unwrap_err();
        assert!(e.to_string().contains("{question}"));
    }
}

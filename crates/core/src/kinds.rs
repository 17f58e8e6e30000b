//! The shared vocabulary of the loop: which strategy reasons, what shape the
//! answer has, which verifier checked it and what it found. Every crate
//! names these by the types here — in traces, the memory database, bench
//! results, the command line and the server — so a name that is none of
//! them is an error where it is read, never a silent default.
//!
//! Behaviour lives with the module that owns it: a strategy's prompt and
//! answer extraction in `metareason-strategy`, the checks in
//! `metareason-verify`. With the `clap` feature the plain enums are clap
//! `ValueEnum`s, so the command line offers exactly these names.
//!
//! ```
//! use metareason_core::{AnswerKind, StrategyKind};
//!
//! assert_eq!("cot".parse::<StrategyKind>().unwrap(), StrategyKind::ChainOfThought);
//! assert!("guess".parse::<StrategyKind>().is_err());
//! let k: AnswerKind = "choice:abc".parse().unwrap();
//! assert_eq!(k.to_string(), "choice:ABC");
//! ```

use serde::{Deserialize, Serialize};

/// The strategies metareason knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "clap", value(rename_all = "snake_case"))]
pub enum StrategyKind {
    /// Answer at once.
    Direct,
    /// Step-by-step reasoning.
    #[cfg_attr(feature = "clap", value(alias = "cot"))]
    ChainOfThought,
    /// Decompose, then solve the parts.
    #[cfg_attr(feature = "clap", value(alias = "plan"))]
    PlanThenSolve,
    /// Write a program; the sandbox runs it.
    #[cfg_attr(feature = "clap", value(alias = "pal", alias = "program"))]
    ProgramAided,
    /// Follow retrieved templates and solved examples.
    ExampleGuided,
    /// Answer a request or an open question in prose (free-text answers).
    Respond,
}

impl StrategyKind {
    /// Every strategy, in a fixed order.
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::Direct,
        StrategyKind::ChainOfThought,
        StrategyKind::PlanThenSolve,
        StrategyKind::ProgramAided,
        StrategyKind::ExampleGuided,
        StrategyKind::Respond,
    ];

    /// The name used on the command line, in traces and in the database.
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Direct => "direct",
            StrategyKind::ChainOfThought => "chain_of_thought",
            StrategyKind::PlanThenSolve => "plan_then_solve",
            StrategyKind::ProgramAided => "program_aided",
            StrategyKind::ExampleGuided => "example_guided",
            StrategyKind::Respond => "respond",
        }
    }

    /// Parses a name (`cot`, `pal`/`program` and `plan` are accepted as
    /// short forms; case and `-`/`_` do not matter).
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
}

impl std::fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A strategy name that is none of [`StrategyKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy '{0}': use one of {names} (or cot, plan, pal)", names = StrategyKind::ALL.map(StrategyKind::name).join(", "))]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for StrategyKind {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::parse(s).ok_or_else(|| UnknownStrategy(s.to_string()))
    }
}

/// What shape the answer to a task has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AnswerKind {
    /// A number (integers, decimals, fractions, negatives, with or without
    /// thousands separators, currency or units).
    #[default]
    Number,
    /// One of several labelled options (`A`, `B`, ...).
    Choice {
        /// The labels allowed, upper-case.
        labels: Vec<String>,
    },
    /// Yes or no.
    YesNo,
    /// A short free text (a name, date, place or phrase), compared case- and
    /// punctuation-insensitively and voted on by meaning.
    Text,
    /// A free-form reply (an explanation, instructions, advice, a piece of
    /// writing): the whole reply is the answer; nothing is extracted.
    FreeText,
}

/// An answer kind that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown answer kind '{0}': use number, yes_no, text, free_text or choice:ABCD")]
pub struct ParseAnswerKindError(pub String);

impl std::str::FromStr for AnswerKind {
    type Err = ParseAnswerKindError;

    /// `number`, `yes_no` (or `yesno`), `text` (or `short_text`),
    /// `free_text` (or `free`), `choice:ABCD` (the labels, one letter each).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_lowercase().replace('-', "_");
        Ok(match t.as_str() {
            "number" => AnswerKind::Number,
            "yesno" | "yes_no" => AnswerKind::YesNo,
            "text" | "short_text" => AnswerKind::Text,
            "free_text" | "free" | "freetext" => AnswerKind::FreeText,
            _ => {
                let labels = t
                    .strip_prefix("choice:")
                    .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphabetic()))
                    .ok_or_else(|| ParseAnswerKindError(s.to_string()))?;
                AnswerKind::Choice {
                    labels: labels
                        .chars()
                        .map(|c| c.to_ascii_uppercase().to_string())
                        .collect(),
                }
            }
        })
    }
}

impl std::fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AnswerKind::Number => f.write_str("number"),
            AnswerKind::YesNo => f.write_str("yes_no"),
            AnswerKind::Text => f.write_str("text"),
            AnswerKind::FreeText => f.write_str("free_text"),
            AnswerKind::Choice { labels } => write!(f, "choice:{}", labels.concat()),
        }
    }
}

/// Which verifier produced a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifierKind {
    /// Exact re-computation of written arithmetic.
    Arithmetic,
    /// Running a generated program in the sandbox.
    Program,
    /// Answer kind and format.
    Format,
    /// The model's own critique.
    Critique,
}

impl VerifierKind {
    /// Every verifier, in a fixed order.
    pub const ALL: [VerifierKind; 4] = [
        VerifierKind::Arithmetic,
        VerifierKind::Program,
        VerifierKind::Format,
        VerifierKind::Critique,
    ];

    /// The verifier's name, as in the trace and the database.
    pub fn name(self) -> &'static str {
        match self {
            VerifierKind::Arithmetic => "arithmetic",
            VerifierKind::Program => "program",
            VerifierKind::Format => "format",
            VerifierKind::Critique => "critique",
        }
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The check passed.
    Pass,
    /// The check found an error.
    Fail,
}

impl Verdict {
    /// The verdict's name, as in the trace and the database.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// A verifier or verdict name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{name}': use one of {expected}")]
pub struct UnknownName {
    /// What was named (`verifier`, `verdict`).
    pub what: &'static str,
    /// The name read.
    pub name: String,
    /// The names allowed.
    pub expected: &'static str,
}

impl std::str::FromStr for VerifierKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = s.trim().to_lowercase();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == n)
            .ok_or_else(|| UnknownName {
                what: "verifier",
                name: s.to_string(),
                expected: "arithmetic, program, format, critique",
            })
    }
}

impl std::str::FromStr for Verdict {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_lowercase().as_str() {
            "pass" => Ok(Verdict::Pass),
            "fail" => Ok(Verdict::Fail),
            _ => Err(UnknownName {
                what: "verdict",
                name: s.to_string(),
                expected: "pass, fail",
            }),
        }
    }
}

impl std::fmt::Display for VerifierKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_unknown_names_are_errors() {
        for k in StrategyKind::ALL {
            assert_eq!(k.name().parse::<StrategyKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!("CoT".parse(), Ok(StrategyKind::ChainOfThought));
        assert_eq!("program-aided".parse(), Ok(StrategyKind::ProgramAided));
        let e = "guess".parse::<StrategyKind>().unwrap_err();
        assert!(e.to_string().contains("chain_of_thought"), "{e}");
        for v in VerifierKind::ALL {
            assert_eq!(v.name().parse::<VerifierKind>(), Ok(v));
        }
        assert!("oracle".parse::<VerifierKind>().is_err());
        assert_eq!("FAIL".parse::<Verdict>(), Ok(Verdict::Fail));
        assert!("maybe".parse::<Verdict>().is_err());
        for k in [
            AnswerKind::Number,
            AnswerKind::YesNo,
            AnswerKind::Text,
            AnswerKind::FreeText,
            AnswerKind::Choice {
                labels: vec!["A".into(), "B".into()],
            },
        ] {
            assert_eq!(k.to_string().parse::<AnswerKind>(), Ok(k));
        }
        assert!("choice:".parse::<AnswerKind>().is_err());
        assert!("essay".parse::<AnswerKind>().is_err());
    }
}

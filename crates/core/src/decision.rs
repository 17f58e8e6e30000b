//! What the loop decided about a task, and on what grounds: shared by the
//! loop that decides, the memory that stores it, and the benchmarks and
//! interfaces that report it.

use serde::{Deserialize, Serialize};

/// What the agent decided to do with a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// It answered.
    Answer,
    /// It declined because it expected to be wrong.
    Abstain,
    /// It declined because the mission policy forbids the task.
    Refuse,
}

impl Decision {
    /// Every decision.
    pub const ALL: [Decision; 3] = [Decision::Answer, Decision::Abstain, Decision::Refuse];

    /// Its name, as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Answer => "answer",
            Decision::Abstain => "abstain",
            Decision::Refuse => "refuse",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// A name that is not a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown decision '{0}': answer, abstain or refuse")]
pub struct UnknownDecision(pub String);

impl std::str::FromStr for Decision {
    type Err = UnknownDecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDecision(s.to_string()))
    }
}

/// Why the loop answered, declined or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grounds {
    /// A rule of the mission policy fired.
    Policy,
    /// The question itself looks unanswerable: declined before the
    /// attempt by the answerability posterior, or the model's own answer
    /// says it cannot be answered.
    Unanswerable,
    /// Before the attempt, answering was not expected to pay (low
    /// expected utility of every strategy, or none available).
    Unlikely,
    /// The attempt found no answer.
    NoAnswer,
    /// The answer found is less likely to be right than the policy's
    /// costs require.
    LowConfidence,
    /// The answer found is likely enough to be right: answered.
    Confident,
}

impl Grounds {
    /// Every ground, in order.
    pub const ALL: [Grounds; 6] = [
        Grounds::Policy,
        Grounds::Unanswerable,
        Grounds::Unlikely,
        Grounds::NoAnswer,
        Grounds::LowConfidence,
        Grounds::Confident,
    ];

    /// Its name, as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            Grounds::Policy => "policy",
            Grounds::Unanswerable => "unanswerable",
            Grounds::Unlikely => "unlikely",
            Grounds::NoAnswer => "no_answer",
            Grounds::LowConfidence => "low_confidence",
            Grounds::Confident => "confident",
        }
    }

    /// Whether these grounds are a property of the question (it cannot be
    /// answered) rather than of an attempt.
    pub fn blames_the_question(self) -> bool {
        self == Grounds::Unanswerable
    }
}

impl std::fmt::Display for Grounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Grounds {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grounds::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown grounds '{s}': use one of {}",
                    Grounds::ALL.map(Grounds::name).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounds_have_one_name_each_that_parses_back() {
        for g in Grounds::ALL {
            assert_eq!(g.name().parse::<Grounds>(), Ok(g));
            assert_eq!(
                serde_json::to_string(&g).unwrap(),
                format!("\"{}\"", g.name())
            );
        }
        assert!("maybe".parse::<Grounds>().is_err());
    }

    #[test]
    fn decisions_have_one_name_each_that_parses_back() {
        for d in Decision::ALL {
            assert_eq!(d.name().parse::<Decision>(), Ok(d));
            assert_eq!(d.to_string(), d.name());
        }
        assert!("maybe".parse::<Decision>().is_err());
    }
}

//! The decision: what the loop tells the user, and on what grounds.
//!
//! Two different things stop an answer, and the user is told which:
//! the *question* cannot be answered (a false premise, something nobody
//! knows, missing context — a property of the question, judged before the
//! attempt by the answerability posterior, or said by the model's own
//! answer), or *this attempt* failed (no answer found, or one not likely
//! enough to be right — a property of the attempt). [`decide`] is the rule
//! after an attempt, a pure function of what the attempt found and the
//! policy's costs; [`grounds_of_assessment`] names the grounds of a
//! decision taken before any attempt.

use metareason_awareness::{Assessment, Costs};
use metareason_core::{Decision, Grounds};

/// The grounds of a decision self-awareness took before any attempt.
pub fn grounds_of_assessment(a: &Assessment) -> Grounds {
    if a.decision == Decision::Answer {
        Grounds::Confident
    } else if a.policy.fired.is_some() {
        Grounds::Policy
    } else if a.answerability.as_ref().is_some_and(|v| v.declined) {
        Grounds::Unanswerable
    } else {
        Grounds::Unlikely
    }
}

/// What an attempt found, as the decision reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found<'a> {
    /// The answer found (normalised), if any.
    pub answer: Option<&'a str>,
    /// Its calibrated P(correct).
    pub confidence: f64,
}

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// Answer or abstain (refusals are taken before attempts).
    pub decision: Decision,
    /// On what grounds.
    pub grounds: Grounds,
    /// Why, in words and numbers (appended to the assessment's reason).
    pub reason: String,
    /// What the user is told when not answering (an answer is shown as
    /// the model wrote it, which the caller has).
    pub reply: Option<String>,
}

/// Decides after an attempt under `costs`: no answer or the model's own
/// "cannot be answered" is never shown as an answer; an answer below the
/// costs' answer threshold is withheld when `abstain_after`; otherwise it
/// is given.
pub fn decide(found: &Found<'_>, costs: &Costs, abstain_after: bool) -> Decided {
    let threshold = costs.answer_threshold();
    let confidence = found.confidence;
    let abstain = |grounds: Grounds, reason: String, reply: String| Decided {
        decision: Decision::Abstain,
        grounds,
        reason,
        reply: Some(reply),
    };
    match found.answer {
        None => abstain(
            Grounds::NoAnswer,
            "no answer could be found".into(),
            crate::prompts::NO_ANSWER.into(),
        ),
        Some(answer) if crate::declines(answer) => abstain(
            Grounds::Unanswerable,
            "the model itself says the question cannot be answered".into(),
            crate::prompts::MODEL_SAYS_UNANSWERABLE.into(),
        ),
        Some(answer) if abstain_after && confidence < threshold => abstain(
            Grounds::LowConfidence,
            format!(
                "the answer's calibrated confidence {confidence:.2} is below the answer \
                 threshold {threshold:.2} set by the costs (wrong {}, abstain {})",
                costs.cost_wrong, costs.cost_abstain
            ),
            metareason_core::template::fill(
                crate::prompts::NOT_SURE,
                &[
                    ("answer", answer),
                    ("confidence", &format!("{confidence:.2}")),
                ],
            ),
        ),
        Some(_) => Decided {
            decision: Decision::Answer,
            grounds: Grounds::Confident,
            reason: format!(
                "calibrated confidence {confidence:.2} (answer threshold {threshold:.2})"
            ),
            reply: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(answer: Option<&str>, confidence: f64) -> Found<'_> {
        Found { answer, confidence }
    }

    #[test]
    fn an_answer_is_given_only_above_the_costs_threshold() {
        let costs = Costs::default();
        let t = costs.answer_threshold();
        let above = decide(&found(Some("42"), t + 0.01), &costs, true);
        assert_eq!(above.decision, Decision::Answer);
        assert_eq!(above.grounds, Grounds::Confident);
        assert!(above.reply.is_none());
        let below = decide(&found(Some("42"), t - 0.01), &costs, true);
        assert_eq!(below.decision, Decision::Abstain);
        assert_eq!(below.grounds, Grounds::LowConfidence);
        let reply = below.reply.unwrap();
        assert!(
            reply.contains("42") && reply.contains(&format!("{:.2}", t - 0.01)),
            "{reply}"
        );
        // Withholding after the attempt switched off: the guess is given.
        let forced = decide(&found(Some("42"), t - 0.01), &costs, false);
        assert_eq!(forced.decision, Decision::Answer);
    }

    #[test]
    fn the_question_is_blamed_only_when_the_model_says_it_cannot_be_answered() {
        let costs = Costs::default();
        let unknown = decide(&found(Some("unknown"), 0.99), &costs, false);
        assert_eq!(unknown.decision, Decision::Abstain);
        assert_eq!(unknown.grounds, Grounds::Unanswerable);
        assert!(unknown.grounds.blames_the_question());
        let none = decide(&found(None, 0.99), &costs, false);
        assert_eq!(none.decision, Decision::Abstain);
        assert_eq!(none.grounds, Grounds::NoAnswer);
        assert!(!none.grounds.blames_the_question());
        assert!(!decide(&found(Some("7"), 0.01), &costs, true)
            .grounds
            .blames_the_question());
    }
}

//! Answer kind and format: is there an answer, and is it of the kind the
//! task asks for?

use metareason_strategy::answer::AnswerKind;
use metareason_strategy::answer::Extract;

use crate::{Finding, Verdict, VerifierKind};

/// Checks that `text` holds an answer of `kind`, preferably marked
/// explicitly (`The answer is ...`).
pub fn check_format(kind: &AnswerKind, text: &str) -> Finding {
    let explicit = {
        let t = text.to_lowercase();
        t.contains("the answer is")
            || t.contains("answer:")
            || t.contains("####")
            || t.contains("\\boxed{")
    };
    if *kind == AnswerKind::FreeText {
        // A free-text reply is its own answer: only an empty one fails.
        let empty = kind.extract(text).is_none();
        return Finding {
            verifier: VerifierKind::Format,
            verdict: if empty { Verdict::Fail } else { Verdict::Pass },
            step: None,
            message: if empty {
                "the reply is empty".into()
            } else {
                "a free-text reply was given".into()
            },
            confidence: if empty { 0.95 } else { 0.5 },
        };
    }
    match kind.extract(text) {
        None => Finding {
            verifier: VerifierKind::Format,
            verdict: Verdict::Fail,
            step: None,
            message: format!("no {} answer could be found in the reasoning", kind_name(kind)),
            confidence: 0.95,
        },
        Some(a) if !explicit => Finding {
            verifier: VerifierKind::Format,
            verdict: Verdict::Pass,
            step: None,
            message: format!(
                "no explicit final answer; took '{}' from the text, which may be an intermediate value",
                a.raw
            ),
            confidence: 0.5,
        },
        Some(a) => Finding {
            verifier: VerifierKind::Format,
            verdict: Verdict::Pass,
            step: None,
            message: format!("final answer '{}' is a {}", a.normalized, kind_name(kind)),
            confidence: 0.9,
        },
    }
}

fn kind_name(kind: &AnswerKind) -> &'static str {
    match kind {
        AnswerKind::Number => "number",
        AnswerKind::Choice { .. } => "choice",
        AnswerKind::YesNo => "yes/no",
        AnswerKind::Text => "short text",
        AnswerKind::FreeText => "free-text",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_vague_and_explicit_answers() {
        let f = check_format(&AnswerKind::Number, "I am not sure.");
        assert!(f.is_failure());
        let f = check_format(&AnswerKind::Number, "so 12 then 14");
        assert!(!f.is_failure());
        assert!(f.confidence < 0.6 && f.message.contains("no explicit"));
        let f = check_format(&AnswerKind::Number, "The answer is 14.");
        assert!(!f.is_failure() && f.confidence > 0.8);
    }
}

//! Whether an answer matches an item's reference, by the reference's
//! answer kind. Numbers, yes/no and choices compare their normalised forms;
//! a short-text reference is matched when the answer says at least what it
//! says (every word of the reference is in the answer: "William
//! Shakespeare" is right for the reference "Shakespeare", "1809" is not
//! right for "February 12, 1809"), or when both are the same number
//! ("161,548 people" and "161548").

use metareason_strategy::answer::Extract;
use metareason_strategy::answer::{parse_number, AnswerKind};

/// Whether `answer` (as the system gave it, normalised or raw) is right for
/// `reference` under `kind`.
pub fn is_correct(kind: &AnswerKind, reference: &str, answer: &str) -> bool {
    match kind {
        AnswerKind::Text | AnswerKind::FreeText => {
            let (Some(r), Some(a)) = (
                AnswerKind::Text.normalize_reference(reference),
                AnswerKind::Text.normalize_reference(answer),
            ) else {
                return false;
            };
            if r.is_empty() || a.is_empty() {
                return false;
            }
            if r == a {
                return true;
            }
            let a_words: Vec<&str> = a.split_whitespace().collect();
            if r.split_whitespace().all(|w| a_words.contains(&w)) {
                return true;
            }
            matches!(
                (parse_number(reference), parse_number(answer)),
                (Some(x), Some(y)) if x == y && only_number(&r) && only_number(&a)
            )
        }
        other => {
            let want = other.normalize_reference(reference);
            let got = other.normalize_reference(answer);
            want.is_some() && want == got
        }
    }
}

/// A normalised text that is one number, perhaps with a unit word or two
/// ("161 548 people"), so that "born 1809 died 1865" is not read as 1809.
fn only_number(normalized: &str) -> bool {
    let words: Vec<&str> = normalized.split_whitespace().collect();
    let numeric = words
        .iter()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .count();
    numeric >= 1 && words.len() - numeric <= 2 && {
        // Digits in one run: "161 548" from "161,548".
        let first = words
            .iter()
            .position(|w| w.chars().all(|c| c.is_ascii_digit()));
        let last = words
            .iter()
            .rposition(|w| w.chars().all(|c| c.is_ascii_digit()));
        matches!((first, last), (Some(f), Some(l)) if l + 1 - f == numeric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_right_when_the_answer_says_what_the_reference_says() {
        let t = AnswerKind::Text;
        assert!(is_correct(&t, "Shakespeare", "william shakespeare"));
        assert!(is_correct(&t, "February 12, 1809", "february 12 1809"));
        assert!(!is_correct(&t, "February 12, 1809", "1809"));
        assert!(is_correct(&t, "161,548 people", "161548"));
        assert!(!is_correct(&t, "161,548 people", "born 161 died 548"));
        assert!(!is_correct(&t, "Paris", "london"));
        assert!(!is_correct(&t, "Paris", ""));
    }

    #[test]
    fn numbers_choices_and_yes_no_compare_normalised() {
        assert!(is_correct(&AnswerKind::Number, "1,200", "1200"));
        assert!(!is_correct(&AnswerKind::Number, "1,200", "120"));
        assert!(is_correct(&AnswerKind::YesNo, "True", "yes"));
        let c = AnswerKind::Choice {
            labels: vec!["A".into(), "B".into()],
        };
        assert!(is_correct(&c, "(B)", "B"));
    }
}

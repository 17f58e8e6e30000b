//! What kind of answer a task asks for, read from its wording by cheap
//! rules. A guess says whether the rules are sure; when they are not, the
//! caller may ask the model (self-awareness does, by its choice
//! probabilities) and the user may always say (`--answer`).

use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::answer::AnswerKind;

/// The rules' guess of a task's answer kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindGuess {
    /// The kind guessed.
    pub kind: AnswerKind,
    /// The rule that decided, for the trace.
    pub rule: String,
    /// Whether the rule is specific enough to trust without asking the model.
    pub sure: bool,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// The part of a task that asks: the text after `Question:` up to a
/// `Context:` when the task is laid out that way, else the last sentence
/// that ends with a question mark, else the whole task.
pub fn question_part(task: &str) -> &str {
    static LAYOUT: OnceLock<Regex> = OnceLock::new();
    let layout = re(
        &LAYOUT,
        r"(?is)question\s*:\s*(.*?)\s*(?:\n\s*context\s*:|$)",
    );
    if let Some(c) = layout.captures(task) {
        let q = c.get(1).map_or("", |m| m.as_str()).trim();
        if !q.is_empty() {
            return q;
        }
    }
    let t = task.trim();
    if let Some(end) = t.rfind('?') {
        let head = &t[..end];
        let start = head.rfind(['.', '!', '?', '\n']).map_or(0, |i| i + 1);
        let q = t[start..=end].trim();
        if !q.is_empty() {
            return q;
        }
    }
    t
}

/// Option labels laid out one per line (`A) ...`, `(B) ...`, `C. ...`),
/// consecutive from A; at least two.
fn choice_labels(task: &str) -> Option<Vec<String>> {
    static OPT: OnceLock<Regex> = OnceLock::new();
    let opt = re(&OPT, r"(?m)^\s*\(?([A-Ha-h])[\).:]\s+\S");
    let mut labels: Vec<char> = Vec::new();
    for c in opt.captures_iter(task) {
        let l = c[1].chars().next()?.to_ascii_uppercase();
        let next = (b'A' + labels.len() as u8) as char;
        if l == next {
            labels.push(l);
        }
    }
    (labels.len() >= 2).then(|| labels.into_iter().map(String::from).collect())
}

/// Guesses the answer kind of `task` from its wording.
pub fn guess_answer_kind(task: &str) -> KindGuess {
    let sure = |kind, rule: &str| KindGuess {
        kind,
        rule: rule.to_string(),
        sure: true,
    };
    let unsure = |kind, rule: &str| KindGuess {
        kind,
        rule: rule.to_string(),
        sure: false,
    };
    if let Some(labels) = choice_labels(task) {
        return sure(
            AnswerKind::Choice { labels },
            "options laid out as A), B), ...",
        );
    }
    let q = question_part(task);
    let lower = q.to_lowercase();
    let l = lower.trim_start_matches(|c: char| !c.is_alphanumeric());

    static REQUEST: OnceLock<Regex> = OnceLock::new();
    let request = re(
        &REQUEST,
        r"^(?:please\s+)?(?:explain|describe|write|compose|draft|summari[sz]e|tell me (?:about|how|why|a)|give me|suggest|recommend|list|compare|discuss|outline|translate|rewrite|help me|teach me|show me how|plan|create|make me|brainstorm|how do (?:i|you|we)|how can (?:i|you|we)|how should (?:i|we)|how to|how does|how do|what should (?:i|we)|what are (?:some|good|the best|the benefits|the advantages|the differences|the pros|the main)|what is the (?:best way|difference|purpose|point|meaning)|why\b|(?:can|could|would|will) you\b|is it (?:safe|ok|okay|bad|good|normal|possible) to)",
    );
    if request.is_match(l) {
        return sure(
            AnswerKind::FreeText,
            "a request or an open question (explain, write, advise, how to, why)",
        );
    }

    static ARITH: OnceLock<Regex> = OnceLock::new();
    let arith = re(
        &ARITH,
        r"\d\s*(?:[-+*/×÷^]|times|plus|minus|divided by)\s*\d",
    );
    static QUANTITY: OnceLock<Regex> = OnceLock::new();
    let quantity = re(
        &QUANTITY,
        r"\b(?:how (?:many|much|long|far|old|tall|fast|often|heavy|big)|what (?:percentage|percent|fraction|is the (?:total|sum|product|average|cost|price|number|area|perimeter|value|probability|ratio))|calculate|compute|evaluate|solve for)\b",
    );
    if arith.is_match(l) || quantity.is_match(l) {
        return sure(AnswerKind::Number, "asks for a quantity or a calculation");
    }

    static YESNO: OnceLock<Regex> = OnceLock::new();
    let yesno = re(
        &YESNO,
        r"^(?:is|are|was|were|do|does|did|can|could|will|would|should|shall|has|have|had|may|might|must|am|isn't|aren't|wasn't|weren't|doesn't|don't|didn't|can't|won't)\b",
    );
    if yesno.is_match(l) {
        return if lower.contains(" or ") {
            unsure(AnswerKind::Text, "a yes/no form that offers alternatives")
        } else {
            sure(AnswerKind::YesNo, "a yes/no question")
        };
    }

    static SHORT: OnceLock<Regex> = OnceLock::new();
    let short = re(
        &SHORT,
        r"^(?:who|whom|whose|where|when|which|in (?:what|which) (?:year|country|city|month|century)|what (?:year|country|city|day|date|time|colou?r|language|team|company|kind|type)|name (?:the|a|an|one)|what (?:is|was|are|were) (?:the )?(?:name|capital|title|author|currency|population|symbol|abbreviation|formula|chemical|largest|smallest|highest|longest|tallest|first|last|main|official)|what does .* stand for)",
    );
    if short.is_match(l) {
        return sure(AnswerKind::Text, "asks for a name, place, date or term");
    }
    static DEFINE: OnceLock<Regex> = OnceLock::new();
    let define = re(&DEFINE, r"^what (?:is|are) (?:a |an )?[\w\s'-]{1,40}\?*$");
    if define.is_match(l) {
        return unsure(AnswerKind::FreeText, "asks what something is");
    }
    if l.starts_with("what") || l.starts_with("which") {
        return unsure(AnswerKind::Text, "a what-question");
    }
    static NUMBERS: OnceLock<Regex> = OnceLock::new();
    let numbers = re(&NUMBERS, r"\d");
    if numbers.find_iter(task).count() >= 2 {
        return unsure(AnswerKind::Number, "numbers in the task, no clear question");
    }
    if !q.trim_end().ends_with('?') {
        return unsure(AnswerKind::FreeText, "not a question: a request");
    }
    unsure(AnswerKind::Text, "no rule matched")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(task: &str) -> AnswerKind {
        guess_answer_kind(task).kind
    }

    #[test]
    fn everyday_questions_get_their_kind() {
        assert_eq!(kind("Who wrote Hamlet?"), AnswerKind::Text);
        assert_eq!(kind("What does CPU stand for?"), AnswerKind::Text);
        assert_eq!(kind("What is the capital of Australia?"), AnswerKind::Text);
        assert_eq!(
            kind("When did Neil Armstrong land on the moon?"),
            AnswerKind::Text
        );
        assert_eq!(kind("Is 91 a prime number?"), AnswerKind::YesNo);
        assert_eq!(
            kind("Does water boil at a lower temperature on a mountain?"),
            AnswerKind::YesNo
        );
        assert_eq!(kind("What is 17 * 23?"), AnswerKind::Number);
        assert_eq!(
            kind("A farmer has 17 sheep and buys 5 more. How many sheep does he have?"),
            AnswerKind::Number
        );
        assert_eq!(kind("Explain how vaccines work."), AnswerKind::FreeText);
        assert_eq!(kind("How do I stop a nosebleed?"), AnswerKind::FreeText);
        assert_eq!(kind("Why is the sky blue?"), AnswerKind::FreeText);
        assert_eq!(kind("Write a haiku about autumn."), AnswerKind::FreeText);
        assert_eq!(
            kind("Can you recommend a good book on statistics?"),
            AnswerKind::FreeText
        );
    }

    #[test]
    fn options_make_a_multiple_choice_question() {
        let g = guess_answer_kind("Which planet is largest?\nA) Mars\nB) Jupiter\nC) Venus");
        assert!(g.sure);
        assert_eq!(
            g.kind,
            AnswerKind::Choice {
                labels: vec!["A".into(), "B".into(), "C".into()]
            }
        );
    }

    #[test]
    fn a_question_with_context_is_read_from_its_question() {
        let t = "Question: Who did some early female settlers marry?\n Context: Some early male settlers married in 1614 and 1620.";
        assert_eq!(
            question_part(t),
            "Who did some early female settlers marry?"
        );
        assert_eq!(kind(t), AnswerKind::Text);
    }

    #[test]
    fn a_word_problem_is_read_from_its_last_question() {
        let t = "Janet's ducks lay 16 eggs per day. She eats three. How much in dollars does she make every day?";
        assert_eq!(
            question_part(t),
            "How much in dollars does she make every day?"
        );
        assert!(guess_answer_kind(t).sure);
    }

    #[test]
    fn unclear_wording_is_not_sure() {
        assert!(!guess_answer_kind("What is entropy?").sure);
        assert!(!guess_answer_kind("Tea or coffee?").sure);
    }
}

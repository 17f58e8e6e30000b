//! Answer kinds, extraction of the final answer from a reasoning text, and
//! normalisation so that `$1,200.00`, `1200` and `1200 dollars` compare equal.

use std::sync::OnceLock;

use num_rational::Ratio;
use num_traits::{Signed, Zero};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// An exact rational number.
pub type Rational = Ratio<i128>;

pub use metareason_core::kinds::{AnswerKind, ParseAnswerKindError};

/// An extracted, normalised answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The text as the model wrote it.
    pub raw: String,
    /// The canonical form answers are compared and voted on by.
    pub normalized: String,
}

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// A number as written in text: optional sign and currency, digits with
/// optional thousands separators, optional decimals, optional fraction.
const NUMBER: &str =
    r"-?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\$?\.\d+";

/// Parses a number as people write it: `1,234.50`, `$3`, `-2.5`, `3/4`,
/// `1 1/2`, `50%` (as 50), `12 apples`. Returns `None` for text without one.
pub fn parse_number(text: &str) -> Option<Rational> {
    static MIXED: OnceLock<Regex> = OnceLock::new();
    static ANY: OnceLock<Regex> = OnceLock::new();
    let t = text.trim();
    let mixed = re(&MIXED, r"^(-?)(\d+)\s+(\d+)\s*/\s*(\d+)\b");
    if let Some(c) = mixed.captures(t) {
        let whole: i128 = c[2].parse().ok()?;
        let num: i128 = c[3].parse().ok()?;
        let den: i128 = c[4].parse().ok()?;
        if den == 0 {
            return None;
        }
        let v = Rational::from_integer(whole) + Rational::new(num, den);
        return Some(if &c[1] == "-" { -v } else { v });
    }
    let m = re(&ANY, NUMBER).find(t)?;
    parse_plain(m.as_str())
}

/// Parses one number token matched by [`NUMBER`].
fn parse_plain(s: &str) -> Option<Rational> {
    let s: String = s
        .chars()
        .filter(|c| !matches!(c, '$' | ',' | ' '))
        .collect();
    if let Some((a, b)) = s.split_once('/') {
        let a = parse_decimal(a)?;
        let b = parse_decimal(b)?;
        if b.is_zero() {
            return None;
        }
        return Some(a / b);
    }
    parse_decimal(&s)
}

/// Parses `-12.345` exactly.
pub fn parse_decimal(s: &str) -> Option<Rational> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || frac.len() > 18 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let n: i128 = digits.parse().ok()?;
    let v = Rational::new(n, 10i128.checked_pow(frac.len() as u32)?);
    Some(if neg { -v } else { v })
}

/// The canonical text of a number: integers plainly, others as a decimal
/// rounded to 6 places with trailing zeros cut.
pub fn format_number(v: &Rational) -> String {
    if v.is_integer() {
        return v.to_integer().to_string();
    }
    let f = *v.numer() as f64 / *v.denom() as f64;
    let s = format!("{f:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Whether two numbers are equal up to the rounding the writer evidently
/// used (half a unit of the last decimal of `written`).
pub fn close_enough(exact: &Rational, written: &Rational, written_text: &str) -> bool {
    if exact == written {
        return true;
    }
    let decimals = written_text
        .rsplit_once('.')
        .map(|(_, f)| f.chars().take_while(char::is_ascii_digit).count())
        .unwrap_or(0);
    if decimals == 0 {
        return false;
    }
    let half_unit = Rational::new(1, 2 * 10i128.pow(decimals as u32));
    (exact - written).abs() <= half_unit
}

/// Answer extraction and comparison for each [`AnswerKind`]: how the
/// final answer is found in a reply, normalised, and grouped by meaning.
pub trait Extract {
    /// The final answer only when the text states it with an explicit marker
    /// (`The answer is X`, `Answer: X`, `#### X`, `\boxed{X}`): how a
    /// step-level search tells a finished reply from a step that merely
    /// mentions a number, such as "to answer this, note the 22 apples".
    fn extract_marked(&self, text: &str) -> Option<Answer>;

    /// The answer of a reply the token limit cut short. A token-like answer
    /// counts only where the reply states it (its last number is wherever
    /// the cut fell); prose answers with what it has said, up to its last
    /// complete sentence or paragraph, since an explanation cut mid-way is
    /// still an answer, where none at all would withhold it.
    fn extract_cut(&self, text: &str) -> Option<Answer>;

    /// Finds the final answer in a reasoning text: an explicit marker first
    /// (`#### X`, `\boxed{X}`, `The answer is X`, `Answer: X`), then, for
    /// numbers, the last number written.
    fn extract(&self, text: &str) -> Option<Answer>;

    /// Normalises a reference answer (from a dataset) the way extracted
    /// answers are normalised, so the two compare with `==`.
    fn normalize_reference(&self, reference: &str) -> Option<String>;

    /// Whether two normalised answers of this kind say the same thing. For
    /// short text: equal, or every content word of one is in the other
    /// ("shakespeare" and "william shakespeare"; "paris" and "paris
    /// france"), the cheap first stage of clustering answers by meaning. For
    /// the other kinds: equal.
    fn same_meaning(&self, a: &str, b: &str) -> bool;

    /// Groups answers that say the same thing: for each answer, the index of
    /// the first answer of its group, whose text the group is voted under.
    /// Greedy in order, so the result does not depend on a hash.
    fn meaning_groups(&self, answers: &[&str]) -> Vec<usize>;
}

impl Extract for AnswerKind {
    fn extract_marked(&self, text: &str) -> Option<Answer> {
        let marked = marked_answer(text)?;
        self.extract(&marked)
    }

    fn extract_cut(&self, text: &str) -> Option<Answer> {
        match self {
            AnswerKind::FreeText => self.extract(complete_part(text)),
            _ => self.extract_marked(text),
        }
    }

    fn extract(&self, text: &str) -> Option<Answer> {
        let marked = marked_answer(text);
        match self {
            AnswerKind::Number => {
                let candidate = marked
                    .as_deref()
                    .and_then(|m| number_in(m).map(|v| (m.to_string(), v)))
                    .or_else(|| last_number(text))?;
                Some(Answer {
                    normalized: format_number(&candidate.1),
                    raw: candidate.0,
                })
            }
            AnswerKind::YesNo => {
                static YN: OnceLock<Regex> = OnceLock::new();
                let yn = re(&YN, r"(?i)\b(yes|no)\b");
                let from = marked.as_deref().unwrap_or(text);
                let m = if marked.is_some() {
                    yn.find(from)
                } else {
                    yn.find_iter(from).last()
                }?;
                Some(Answer {
                    raw: m.as_str().into(),
                    normalized: m.as_str().to_lowercase(),
                })
            }
            AnswerKind::Choice { labels } => {
                static LABEL: OnceLock<Regex> = OnceLock::new();
                let lab = re(&LABEL, r"\(?\b([A-Za-z])\b\)?");
                let ok = |s: &str| labels.iter().any(|l| l.eq_ignore_ascii_case(s));
                let from = marked.as_deref().unwrap_or(text);
                let found: Vec<String> = lab
                    .captures_iter(from)
                    .map(|c| c[1].to_uppercase())
                    .filter(|s| ok(s))
                    .collect();
                let pick = if marked.is_some() {
                    found.first()
                } else {
                    found.last()
                }?;
                Some(Answer {
                    raw: pick.clone(),
                    normalized: pick.clone(),
                })
            }
            AnswerKind::Text => {
                // Without a marker, the last line that says something once
                // a bare marker ("The answer is") is taken off it.
                let raw = marked.or_else(|| {
                    text.lines()
                        .rev()
                        .map(strip_marker)
                        .find(|l| !normalize_text(l).is_empty())
                        .map(str::to_string)
                })?;
                let normalized = normalize_text(&raw);
                if normalized.is_empty() {
                    return None;
                }
                Some(Answer { raw, normalized })
            }
            AnswerKind::FreeText => {
                // The reply itself, as written: prose is shown, not voted on.
                let raw = strip_marker(text.trim()).trim().to_string();
                if normalize_text(&raw).is_empty() {
                    return None;
                }
                Some(Answer {
                    normalized: raw.clone(),
                    raw,
                })
            }
        }
    }

    fn normalize_reference(&self, reference: &str) -> Option<String> {
        match self {
            AnswerKind::Number => number_in(reference).map(|v| format_number(&v)),
            AnswerKind::YesNo => {
                let r = reference.trim().to_lowercase();
                match r.as_str() {
                    "yes" | "true" => Some("yes".into()),
                    "no" | "false" => Some("no".into()),
                    _ => None,
                }
            }
            AnswerKind::Choice { .. } => {
                Some(reference.trim().trim_matches(['(', ')']).to_uppercase())
            }
            AnswerKind::Text | AnswerKind::FreeText => Some(normalize_text(reference)),
        }
    }

    fn same_meaning(&self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        match self {
            AnswerKind::Text => {
                let words = |s: &str| -> Vec<String> {
                    s.split_whitespace()
                        .filter(|w| !STOPWORDS.contains(w))
                        .map(str::to_string)
                        .collect()
                };
                let (wa, wb) = (words(a), words(b));
                let (short, long) = if wa.len() <= wb.len() {
                    (wa, wb)
                } else {
                    (wb, wa)
                };
                !short.is_empty() && short.iter().all(|w| long.contains(w))
            }
            _ => false,
        }
    }

    fn meaning_groups(&self, answers: &[&str]) -> Vec<usize> {
        let mut heads: Vec<usize> = Vec::new();
        let mut group = Vec::with_capacity(answers.len());
        for (i, a) in answers.iter().enumerate() {
            match heads.iter().find(|&&h| self.same_meaning(answers[h], a)) {
                Some(&h) => group.push(h),
                None => {
                    heads.push(i);
                    group.push(i);
                }
            }
        }
        group
    }
}

/// Words that carry no meaning of their own when short answers are compared.
const STOPWORDS: &[&str] = &[
    "of", "in", "on", "at", "to", "for", "by", "and", "or", "is", "was", "it", "its", "as", "with",
];

/// A line without a leading answer marker ("The answer is", "Answer:").
fn strip_marker(line: &str) -> &str {
    static LEAD: OnceLock<Regex> = OnceLock::new();
    let lead = re(
        &LEAD,
        r"(?i)^\s*(?:(?:the\s+)?final answer\s*(?:is|:)|the answer is|answer\s*:)\s*:?\s*",
    );
    match lead.find(line) {
        Some(m) => &line[m.end()..],
        None => line,
    }
}

fn normalize_text(s: &str) -> String {
    let lowered = s.to_lowercase();
    let words: Vec<&str> = lowered
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !matches!(*w, "the" | "a" | "an"))
        .collect();
    words.join(" ")
}

/// The text after the last explicit answer marker, up to the end of its
/// line (or on the next line, for "the answer is:" followed by a line
/// break). A marker that only repeats the prompt's placeholder ("The answer
/// is SHORT ANSWER.", which the default model writes after its real answer)
/// is skipped for the one before it.
fn marked_answer(text: &str) -> Option<String> {
    static MARKERS: OnceLock<Regex> = OnceLock::new();
    let m = re(
        &MARKERS,
        r"(?i)(?:####\s*|\\boxed\{|final answer\s*(?:is|:)\s*|the answer is\s*:?\s*|answer\s*:\s*)",
    );
    let markers: Vec<_> = m.find_iter(text).collect();
    for marker in markers.iter().rev() {
        let rest = &text[marker.end()..];
        let found = if marker.as_str().ends_with('{') {
            // `\boxed{...}`: up to the brace that closes it, so that the
            // LaTeX around it ("\(\boxed{8}\)") is not part of the answer.
            braced(rest).unwrap_or_else(|| rest.lines().next().unwrap_or(""))
        } else {
            let mut lines = rest.lines();
            let first = lines.next().unwrap_or("").trim();
            if first.is_empty() || first == ":" {
                lines.map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
            } else {
                first
            }
        };
        let line = unwrap_latex(found);
        if line.is_empty() || is_placeholder(&line) {
            continue;
        }
        return Some(line);
    }
    None
}

/// The text before the `}` that closes an already opened brace.
fn braced(rest: &str) -> Option<&str> {
    let mut depth = 1usize;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..i]);
                }
            }
            '\n' => return None,
            _ => {}
        }
    }
    None
}

/// An answer without the sentence's closing punctuation and the LaTeX
/// math delimiters, box and text wrappers a model writes around it (`\(\boxed{8}\)`,
/// `$18$`, `\[ 3 \]`, `\text{Paris}`).
fn unwrap_latex(text: &str) -> String {
    let mut t = text.trim();
    loop {
        let before = t;
        t = t.trim_end_matches(['.', '!']).trim();
        for (open, close) in [("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")] {
            if let Some(inner) = t.strip_prefix(open).and_then(|x| x.strip_suffix(close)) {
                t = inner.trim();
            }
        }
        // A closing delimiter whose opening one came before the marker.
        for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
            if !t.contains(open) {
                t = t.strip_suffix(close).unwrap_or(t).trim();
            }
        }
        for wrapper in ["\\boxed{", "\\text{", "\\mathrm{"] {
            if let Some(inner) = t.strip_prefix(wrapper).and_then(|x| x.strip_suffix('}')) {
                t = inner.trim();
            }
        }
        if t == before {
            break;
        }
    }
    // A lone closing brace left by an unbalanced box.
    t.strip_suffix('}')
        .filter(|x| !x.contains('{'))
        .unwrap_or(t)
        .trim()
        .to_string()
}

/// The answer formats the strategy prompts ask for, as a model may echo
/// them instead of an answer.
fn is_placeholder(text: &str) -> bool {
    let t = text
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_lowercase();
    matches!(
        t.as_str(),
        "short answer" | "answer" | "number" | "letter" | "yes or no" | "your answer"
    )
}

fn number_in(text: &str) -> Option<Rational> {
    // `\frac{a}{b}` as written in LaTeX answers.
    static FRAC: OnceLock<Regex> = OnceLock::new();
    let frac = re(&FRAC, r"\\d?frac\{(-?\d+)\}\{(\d+)\}?");
    if let Some(c) = frac.captures(text) {
        let a: i128 = c[1].parse().ok()?;
        let b: i128 = c[2].parse().ok()?;
        if b != 0 {
            return Some(Rational::new(a, b));
        }
    }
    parse_number(text)
}

fn last_number(text: &str) -> Option<(String, Rational)> {
    static ANY: OnceLock<Regex> = OnceLock::new();
    let m = re(&ANY, NUMBER).find_iter(text).last()?;
    let v = parse_plain(m.as_str())?;
    Some((m.as_str().trim().to_string(), v))
}

/// The part of a cut reply that ends a sentence, a list item or a paragraph
/// (the whole text when none does).
fn complete_part(text: &str) -> &str {
    let text = text.trim_end();
    let mut end = None;
    let mut line_start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '\n' => {
                // A line that ends (a list item, a heading) is complete too.
                if i > 0 {
                    end = Some(i);
                }
                line_start = i + 1;
            }
            '.' | '!' | '?' => {
                let next = text[i + c.len_utf8()..].chars().next();
                // "2." opening a numbered item ends nothing.
                let opening = text[line_start..i].trim();
                let marker = !opening.is_empty() && opening.chars().all(|d| d.is_ascii_digit());
                if next.is_none_or(char::is_whitespace) && !marker {
                    end = Some(i + c.len_utf8());
                }
            }
            _ => {}
        }
    }
    match end {
        Some(e) if !text[..e].trim().is_empty() => text[..e].trim_end(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> String {
        AnswerKind::Number.extract(text).unwrap().normalized
    }

    #[test]
    fn latex_around_a_marked_answer_is_not_part_of_it() {
        // The default model's reply to "17 sheep, all but 9 run away"
        // ended `- The answer is \(\boxed{8}\).` and the answer shown was
        // `8}\)`.
        let n = AnswerKind::Number;
        let a = n
            .extract("- \\(17 - 9 = 8\\)\n- The answer is \\(\\boxed{8}\\).")
            .unwrap();
        assert_eq!((a.raw.as_str(), a.normalized.as_str()), ("8", "8"));
        let a = n.extract("so \\[\\boxed{\\frac{1}{2}}\\]").unwrap();
        assert_eq!(
            (a.raw.as_str(), a.normalized.as_str()),
            ("\\frac{1}{2}", "0.5")
        );
        let a = n.extract("The answer is $18$.").unwrap();
        assert_eq!(a.raw, "18");
        let t = AnswerKind::Text
            .extract("The answer is \\(\\boxed{\\text{Paris}}\\).")
            .unwrap();
        assert_eq!(t.raw, "Paris");
        let t = AnswerKind::Text
            .extract("The answer is: \\(\\boxed{Paris}\\)!")
            .unwrap();
        assert_eq!(t.raw, "Paris");
    }

    #[test]
    fn only_a_marked_answer_counts_as_final() {
        let n = AnswerKind::Number;
        assert_eq!(
            n.extract_marked("The answer is 1,200."),
            n.extract("The answer is 1,200.")
        );
        assert_eq!(n.extract_marked("#### 7").unwrap().normalized, "7");
        // A step that mentions "answer" and a number is not a final answer.
        assert!(n
            .extract_marked("To find the answer, we need 22 apples.")
            .is_none());
        assert!(n.extract_marked("Step 2: 48 / 2 = 24").is_none());
        assert!(n.extract_marked("The answer is unclear.").is_none());
        let yn = AnswerKind::YesNo;
        assert_eq!(yn.extract_marked("Answer: yes").unwrap().normalized, "yes");
    }

    #[test]
    fn prose_cut_by_the_token_limit_answers_with_its_complete_part() {
        let f = AnswerKind::FreeText;
        // Cut mid-sentence: the answer ends at the last complete sentence.
        let cut =
            "A credit score sums up how you repay debt. Lenders use it to decide whether to le";
        assert_eq!(
            f.extract_cut(cut).unwrap().raw,
            "A credit score sums up how you repay debt."
        );
        // Cut inside a list: the items that ended stay, the cut one goes.
        let list = "To back up photos:\n1. Turn on cloud backup.\n2. Copy them to a comp";
        assert_eq!(
            f.extract_cut(list).unwrap().raw,
            "To back up photos:\n1. Turn on cloud backup."
        );
        // "e.g." inside a word run is not a sentence end; nothing complete: all of it.
        assert_eq!(
            f.extract_cut("Use e.g.the cloud").unwrap().raw,
            "Use e.g.the cloud"
        );
        // A token-like answer still needs its marker when cut.
        assert!(AnswerKind::Number.extract_cut("6 * 7 = 4").is_none());
        assert_eq!(
            AnswerKind::Number
                .extract_cut("The answer is 42. Che")
                .unwrap()
                .normalized,
            "42"
        );
    }

    #[test]
    fn numbers_normalise_across_notations() {
        assert_eq!(num("The answer is $1,200."), "1200");
        assert_eq!(num("#### 72"), "72");
        assert_eq!(num("so she has \\boxed{18} eggs"), "18");
        assert_eq!(num("Answer: -3.50 dollars"), "-3.5");
        assert_eq!(num("The answer is 3/4"), "0.75");
        assert_eq!(num("The answer is 1 1/2 cups"), "1.5");
        assert_eq!(num("The answer is \\frac{7}{2}"), "3.5");
        assert_eq!(num("She pays 5 + 3 = 8 dollars, then 8 * 2 = 16."), "16");
        assert_eq!(num("It is 50% of the total, so 25"), "25");
        assert_eq!(num("The answer is 0.333333333"), "0.333333");
        assert!(AnswerKind::Number.extract("no digits here").is_none());
    }

    #[test]
    fn an_echoed_placeholder_is_not_the_answer() {
        // The default model writes its answer, then the prompt's format line.
        let reply = "The answer is William Shakespeare.\nThe answer is SHORT ANSWER.";
        assert_eq!(
            AnswerKind::Text.extract(reply).unwrap().normalized,
            "william shakespeare"
        );
        assert_eq!(
            AnswerKind::Text
                .extract("Therefore, the answer is:\nCentral Processing Unit")
                .unwrap()
                .normalized,
            "central processing unit"
        );
        assert!(AnswerKind::Number
            .extract_marked("The answer is NUMBER.")
            .is_none());
    }

    #[test]
    fn the_last_marker_wins() {
        assert_eq!(num("The answer is 4. Wait, recheck. The answer is 5."), "5");
    }

    #[test]
    fn yes_no_choice_and_text() {
        let yn = AnswerKind::YesNo;
        assert_eq!(
            yn.extract("Let me think... no wait. The answer is Yes.")
                .unwrap()
                .normalized,
            "yes"
        );
        assert_eq!(yn.extract("Birds fly? No.").unwrap().normalized, "no");
        let ch = AnswerKind::Choice {
            labels: vec!["A".into(), "B".into(), "C".into(), "D".into()],
        };
        assert_eq!(
            ch.extract("Between (A) and (C), the answer is (C).")
                .unwrap()
                .normalized,
            "C"
        );
        assert_eq!(ch.extract("I pick b").unwrap().normalized, "B");
        let tx = AnswerKind::Text;
        assert_eq!(
            tx.extract("Answer: The Eiffel Tower!").unwrap().normalized,
            "eiffel tower"
        );
        assert_eq!(
            tx.normalize_reference("eiffel  tower").unwrap(),
            "eiffel tower"
        );
    }

    #[test]
    fn references_normalise_like_answers() {
        assert_eq!(
            AnswerKind::Number.normalize_reference("1,000").unwrap(),
            "1000"
        );
        assert_eq!(
            AnswerKind::YesNo.normalize_reference("True").unwrap(),
            "yes"
        );
    }

    #[test]
    fn rounding_tolerance_follows_the_written_decimals() {
        let exact = Rational::new(10, 3);
        assert!(close_enough(
            &exact,
            &parse_decimal("3.33").unwrap(),
            "3.33"
        ));
        assert!(!close_enough(&exact, &parse_decimal("3.2").unwrap(), "3.2"));
        assert!(!close_enough(&exact, &Rational::from_integer(3), "3"));
    }
}

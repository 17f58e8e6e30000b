//! Exact re-computation of the arithmetic written in reasoning steps.
//!
//! Finds claims of the form `EXPR = NUMBER` (`48/2 = 24`, `<<48/2=24>>`,
//! `$3 × 4 = $12`, `(5 + 7) * 2 = 24`), evaluates `EXPR` with exact rationals
//! and compares; a result written with decimals may be rounded to those
//! decimals. Anything it cannot parse it leaves alone: it flags only what it
//! can prove wrong.

use std::sync::OnceLock;

use metareason_strategy::answer::{close_enough, format_number, parse_decimal, Rational};
use num_traits::{CheckedAdd, CheckedDiv, CheckedMul, CheckedSub, Zero};
use regex::Regex;

/// One arithmetic claim found in a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The expression as written.
    pub expression: String,
    /// The result as written.
    pub written: String,
    /// The exact value of the expression.
    pub exact: Rational,
    /// Whether the written result matches.
    pub correct: bool,
}

impl Claim {
    /// A one-line description for findings and critiques.
    pub fn describe(&self) -> String {
        if self.correct {
            format!("{} = {} is correct", self.expression, self.written)
        } else {
            format!(
                "{} = {} is wrong: it equals {}",
                self.expression,
                self.written,
                format_number(&self.exact)
            )
        }
    }
}

fn claim_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // An expression: numbers (with $, commas, decimals) joined by at least
    // one operator, optional parentheses; then `=`; then a number.
    RE.get_or_init(|| {
        Regex::new(
            r"(?x)
            (?P<expr>
              [(\s]*\$?\s*-?\d[\d,]*(?:\.\d+)?%?\s*\)*
              (?:\s*[-+*/×÷x]\s*[(\s]*\$?\s*-?\d[\d,]*(?:\.\d+)?%?\s*\)*)+
            )
            \s*=\s*
            (?P<result>-?\$?\s*-?\d[\d,]*(?:\.\d+)?)",
        )
        .expect("valid regex")
    })
}

/// Rewrites LaTeX arithmetic (`\frac{a}{b}`, `\times`, `\cdot`, `\div`)
/// into plain operators, as models often write it.
fn delatex(text: &str) -> String {
    static FRAC: OnceLock<Regex> = OnceLock::new();
    let frac = FRAC.get_or_init(|| {
        Regex::new(r"\\d?frac\{([\d.,\s+\-*/]+)\}\{([\d.,\s+\-*/]+)\}").expect("valid regex")
    });
    let t = frac.replace_all(text, "(($1)/($2))");
    t.replace("\\times", "*")
        .replace("\\cdot", "*")
        .replace("\\div", "/")
}

/// Every arithmetic claim in `text` that parses, in order.
pub fn claims(text: &str) -> Vec<Claim> {
    let text = delatex(text);
    let text = text.as_str();
    let mut out = Vec::new();
    for c in claim_regex().captures_iter(text) {
        let expr = c["expr"].trim();
        let written = c["result"].trim();
        let Some(exact) = evaluate(expr) else {
            continue;
        };
        let clean: String = written
            .chars()
            .filter(|ch| !matches!(ch, '$' | ',' | ' '))
            .collect();
        let Some(value) = parse_decimal(&clean) else {
            continue;
        };
        out.push(Claim {
            expression: expr.to_string(),
            written: written.to_string(),
            correct: close_enough(&exact, &value, &clean),
            exact,
        });
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Rational),
    Op(char),
    Open,
    Close,
}

fn lex(expr: &str) -> Option<Vec<Tok>> {
    let mut toks = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '$' => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
            }
            '+' | '-' | '*' | '/' => {
                toks.push(Tok::Op(c));
                i += 1;
            }
            '×' | 'x' => {
                toks.push(Tok::Op('*'));
                i += 1;
            }
            '÷' => {
                toks.push(Tok::Op('/'));
                i += 1;
            }
            d if d.is_ascii_digit() || d == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == ',')
                {
                    i += 1;
                }
                let s: String = chars[start..i].iter().filter(|&&c| c != ',').collect();
                let mut v = parse_decimal(&s)?;
                if i < chars.len() && chars[i] == '%' {
                    v /= Rational::from_integer(100);
                    i += 1;
                }
                toks.push(Tok::Num(v));
            }
            _ => return None,
        }
    }
    Some(toks)
}

/// Evaluates `+ - * /` with parentheses and unary minus, exactly. `None` for
/// anything malformed, a division by zero or an overflow.
pub fn evaluate(expr: &str) -> Option<Rational> {
    let toks = lex(expr)?;
    let mut pos = 0;
    let v = sum(&toks, &mut pos)?;
    (pos == toks.len()).then_some(v)
}

fn sum(t: &[Tok], p: &mut usize) -> Option<Rational> {
    let mut v = product(t, p)?;
    while let Some(Tok::Op(op @ ('+' | '-'))) = t.get(*p) {
        *p += 1;
        let r = product(t, p)?;
        v = if *op == '+' {
            v.checked_add(&r)?
        } else {
            v.checked_sub(&r)?
        };
    }
    Some(v)
}

fn product(t: &[Tok], p: &mut usize) -> Option<Rational> {
    let mut v = unary(t, p)?;
    while let Some(Tok::Op(op @ ('*' | '/'))) = t.get(*p) {
        *p += 1;
        let r = unary(t, p)?;
        v = if *op == '*' {
            v.checked_mul(&r)?
        } else {
            if r.is_zero() {
                return None;
            }
            v.checked_div(&r)?
        };
    }
    Some(v)
}

fn unary(t: &[Tok], p: &mut usize) -> Option<Rational> {
    match t.get(*p)? {
        Tok::Op('-') => {
            *p += 1;
            Some(-unary(t, p)?)
        }
        Tok::Num(v) => {
            *p += 1;
            Some(*v)
        }
        Tok::Open => {
            *p += 1;
            let v = sum(t, p)?;
            if t.get(*p) != Some(&Tok::Close) {
                return None;
            }
            *p += 1;
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_exactly_with_precedence_and_parentheses() {
        assert_eq!(evaluate("2 + 3 * 4"), Some(Rational::from_integer(14)));
        assert_eq!(evaluate("(2 + 3) * 4"), Some(Rational::from_integer(20)));
        assert_eq!(evaluate("1/3 + 1/3 + 1/3"), Some(Rational::from_integer(1)));
        assert_eq!(evaluate("-4 + 10"), Some(Rational::from_integer(6)));
        assert_eq!(evaluate("$1,200 × 2"), Some(Rational::from_integer(2400)));
        assert_eq!(evaluate("50% * 80"), Some(Rational::from_integer(40)));
        assert_eq!(evaluate("5 / 0"), None);
        assert_eq!(evaluate("5 +"), None);
    }

    #[test]
    fn finds_and_checks_claims_in_prose_and_gsm8k_markup() {
        let c = claims("Natalia sold 48/2 = <<48/2=24>>24 clips in May.");
        assert!(!c.is_empty());
        assert!(c.iter().all(|c| c.correct), "{c:?}");

        let c = claims("She earns $12 × 3 = $36 and spends 36 - 10 = 25.");
        assert_eq!(c.len(), 2);
        assert!(c[0].correct);
        assert!(!c[1].correct);
        assert!(c[1].describe().contains("equals 26"), "{}", c[1].describe());
    }

    #[test]
    fn rounded_results_are_accepted_to_their_decimals() {
        let c = claims("Each gets 10 / 3 = 3.33 pizzas.");
        assert_eq!(c.len(), 1);
        assert!(c[0].correct);
        let c = claims("Each gets 10 / 3 = 3.4 pizzas.");
        assert!(!c[0].correct);
    }

    #[test]
    fn latex_arithmetic_is_checked() {
        let c = claims("\\text{May} = \\frac{48}{2} = 24 and 3 \\times 4 = 13");
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].correct);
        assert!(!c[1].correct);
    }

    #[test]
    fn text_without_arithmetic_has_no_claims() {
        assert!(claims("Let x be the number of apples. Then x = 5.").is_empty());
        assert!(claims("The year 2023 = a good year").is_empty());
    }
}

//! # metareason-verify
//!
//! The evaluation module's verifiers: each looks at a finished reasoning
//! (its steps and its extracted answer) and returns structured
//! [`Finding`]s — which step, what is wrong, how sure — that regulation and
//! the calibrated confidence use.
//!
//! - [`arithmetic`]: expressions written in steps, recomputed exactly;
//! - [`program`]: a model-written program run in the sandbox, its output
//!   taken as the answer;
//! - [`format`]: the answer exists and has the kind the task asks for.
#![deny(missing_docs)]

pub mod arithmetic;
pub mod format;
pub mod program;

use serde::{Deserialize, Serialize};

pub use metareason_core::kinds::{Verdict, VerifierKind};

/// What a verifier found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Who found it.
    pub verifier: VerifierKind,
    /// Pass or fail.
    pub verdict: Verdict,
    /// The step it concerns (0-based), when it concerns one.
    pub step: Option<usize>,
    /// What is wrong (or what was checked), for people and for critique prompts.
    pub message: String,
    /// How sure the verifier is that the verdict is right, in [0, 1].
    pub confidence: f64,
}

impl Finding {
    /// Whether this finding reports an error.
    pub fn is_failure(&self) -> bool {
        self.verdict == Verdict::Fail
    }
}

/// Runs the arithmetic verifier over steps: one failing finding for the
/// first wrong claim (regulation revises from there), or one passing
/// finding summarising the claims checked. No finding when there is no
/// arithmetic to check.
pub fn check_arithmetic(steps: &[String]) -> Vec<Finding> {
    let mut checked = 0;
    for (i, step) in steps.iter().enumerate() {
        for claim in arithmetic::claims(step) {
            checked += 1;
            if !claim.correct {
                return vec![Finding {
                    verifier: VerifierKind::Arithmetic,
                    verdict: Verdict::Fail,
                    step: Some(i),
                    message: claim.describe(),
                    confidence: 0.99,
                }];
            }
        }
    }
    if checked == 0 {
        return Vec::new();
    }
    vec![Finding {
        verifier: VerifierKind::Arithmetic,
        verdict: Verdict::Pass,
        step: None,
        message: format!("{checked} arithmetic claim(s) recomputed exactly; all correct"),
        // Correct arithmetic says little about a correct plan.
        confidence: 0.6,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_wrong_step_is_flagged() {
        let steps = vec![
            "Step 1: 3 * 4 = 12 apples.".to_string(),
            "Step 2: 12 + 5 = 17 apples.".to_string(),
            "Step 3: 17 - 2 = 16 apples.".to_string(),
            "Step 4: 16 * 2 = 33.".to_string(),
        ];
        let f = check_arithmetic(&steps);
        assert_eq!(f.len(), 1);
        assert!(f[0].is_failure());
        assert_eq!(f[0].step, Some(2));
        assert!(f[0].message.contains("equals 15"), "{}", f[0].message);
    }

    #[test]
    fn a_correct_chain_passes() {
        let steps = vec![
            "Natalia sold 48/2 = <<48/2=24>>24 clips in May.".to_string(),
            "Altogether she sold 48+24 = <<48+24=72>>72 clips.".to_string(),
        ];
        let f = check_arithmetic(&steps);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].verdict, Verdict::Pass);
        assert!(f[0].message.starts_with("2 arithmetic"), "{}", f[0].message);
    }

    #[test]
    fn no_arithmetic_no_finding() {
        assert!(check_arithmetic(&["Paris is the capital.".to_string()]).is_empty());
    }
}

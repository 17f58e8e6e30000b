//! Program-aided answers: the model writes a Python program, the sandbox
//! runs it, and what it prints is the answer.

use std::sync::OnceLock;

use metareason_sandbox::{Ending, Run, Sandbox, SandboxError};
use regex::Regex;

use crate::{Finding, Verdict, VerifierKind};

/// The program in a model's reply: the last fenced code block (```python
/// or plain ```), else the whole reply when it looks like code.
pub fn extract_program(reply: &str) -> Option<String> {
    static FENCE: OnceLock<Regex> = OnceLock::new();
    let fence = FENCE.get_or_init(|| {
        Regex::new(r"(?s)```(?:python|py)?[ \t]*\n(.*?)(?:```|$)").expect("valid regex")
    });
    let code = fence
        .captures_iter(reply)
        .filter_map(|c| c.get(1).map(|m| m.as_str().trim().to_string()))
        .filter(|c| !c.is_empty())
        .last();
    code.or_else(|| {
        let t = reply.trim();
        (t.contains("print(") && !t.is_empty()).then(|| t.to_string())
    })
}

/// The outcome of running a generated program.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramOutcome {
    /// The program that ran.
    pub program: String,
    /// What the sandbox reported.
    pub run: Run,
    /// The finding for the trace.
    pub finding: Finding,
}

/// Runs the program found in `reply`; the finding fails when there is no
/// program, it fails, it prints nothing, or it hits a limit.
pub fn run_program(sandbox: &Sandbox, reply: &str) -> Result<Option<ProgramOutcome>, SandboxError> {
    let Some(program) = extract_program(reply) else {
        return Ok(None);
    };
    let run = sandbox.run_python(&program)?;
    let (verdict, message) = match run.ending {
        Ending::Exited(0) if run.stdout.trim().is_empty() => (
            Verdict::Fail,
            "the program ran but printed nothing".to_string(),
        ),
        Ending::Exited(0) => (
            Verdict::Pass,
            format!("the program printed {}", last_line(&run.stdout)),
        ),
        Ending::Exited(code) => (
            Verdict::Fail,
            format!(
                "the program failed (exit {code}): {}",
                last_line(&run.stderr)
            ),
        ),
        other => (Verdict::Fail, format!("the program was stopped: {other:?}")),
    };
    Ok(Some(ProgramOutcome {
        finding: Finding {
            verifier: VerifierKind::Program,
            verdict,
            step: None,
            message,
            confidence: 0.9,
        },
        program,
        run,
    }))
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_fenced_block_is_the_program() {
        let reply =
            "Plan first.\n```python\nx = 1\n```\nBetter:\n```python\nprint(6 * 7)\n```\nDone.";
        assert_eq!(extract_program(reply).unwrap(), "print(6 * 7)");
        assert_eq!(extract_program("```\nprint(1)").unwrap(), "print(1)");
        assert!(extract_program("The answer is 4.").is_none());
    }
}

//! Program-aided answers: the model writes a Python program, the sandbox
//! runs it, and what it prints is the answer.

use metareason_sandbox::{Ending, Run, Sandbox, SandboxError};

use crate::{Finding, Verdict, VerifierKind};

/// The program in a model's reply: the last fenced Python block (else the
/// last unlabelled one; never a block of output or other text), else the
/// whole reply when it looks like code and has no fences.
pub fn extract_program(reply: &str) -> Option<String> {
    // Fences are read line by line: a closing fence followed by prose must
    // never open a "block" of that prose, and a block of the program's
    // imagined output (```output) is not a program.
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in reply.lines() {
        let t = line.trim();
        match (&mut open, t.strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_lowercase(), String::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => {
                blocks.push(open.take().expect("open"));
            }
            (Some((_, code)), _) => {
                code.push_str(line);
                code.push('\n');
            }
            (None, None) => {}
        }
    }
    // A reply cut inside its block still has its program.
    blocks.extend(open);
    let code_like = |lang: &str| matches!(lang, "python" | "py" | "python3" | "");
    let pick = |want: &dyn Fn(&str) -> bool| {
        blocks
            .iter()
            .filter(|(lang, code)| want(lang) && !code.trim().is_empty())
            .map(|(_, code)| code.trim().to_string())
            .last()
    };
    pick(&|l| l.starts_with("py"))
        .or_else(|| pick(&code_like))
        .or_else(|| {
            let t = reply.trim();
            (t.contains("print(") && !t.contains("```")).then(|| t.to_string())
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

    #[test]
    fn an_output_block_and_the_prose_after_it_are_not_the_program() {
        // A real reply of the 1.5B model to a plain program-of-thought
        // prompt: the program, its imagined output, then prose. The prose
        // after the output block's closing fence was once run as Python.
        let reply = "Here is the code:\n```python\nrate = 12\nprint(rate * 50 / 60)\n```\n```output\n10.0\n```\nWeng earned \\(\\boxed{10}\\) dollars.";
        assert_eq!(
            extract_program(reply).unwrap(),
            "rate = 12\nprint(rate * 50 / 60)"
        );
        // A labelled Python block wins over a later unlabelled one.
        let reply = "```python\nprint(1)\n```\nor\n```\nsee above\n```";
        assert_eq!(extract_program(reply).unwrap(), "print(1)");
        // Prose with fences but no code block has no program.
        assert!(extract_program("```output\n3\n```\nprint(3) is what it does").is_none());
    }
}

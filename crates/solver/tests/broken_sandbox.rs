//! A sandbox that fails to start costs the program-aided attempt, not the
//! solve: the solver falls back to the next strategy and says why.
//!
//! This file is a process of its own: it puts a fake `bwrap` first on PATH.

use std::os::unix::fs::PermissionsExt;

use metareason_scripted::{Reply, ScriptedModel, When};
use metareason_solver::{SolveConfig, Solver};
use metareason_strategy::StrategyKind;
use metareason_verify::{Verdict, VerifierKind};

#[test]
fn a_sandbox_that_cannot_start_sends_the_task_to_the_next_strategy() {
    // A bwrap that fails as it does in a chroot: an error on stderr and no
    // status on fd 3.
    let dir = std::env::temp_dir().join(format!("metareason-fake-bwrap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("bwrap");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::set_var("PATH", format!("{}:{path}", dir.display()));

    let model = ScriptedModel::new()
        .on(
            When::PromptContains("program".into()),
            [Reply::text("```python\nprint(17)\n```")],
        )
        .on(
            When::Always,
            [Reply::text("3 * 4 = 12\n12 + 5 = 17\nThe answer is 17.")],
        );
    let config = SolveConfig {
        strategy: StrategyKind::ProgramAided,
        fallbacks: vec![StrategyKind::ChainOfThought],
        ..SolveConfig::default()
    };
    let t = Solver::new(&model)
        .solve("q", &config)
        .expect("the solve goes on");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(t.answer.as_deref(), Some("17"));
    assert_eq!(
        t.attempts[t.final_attempt].strategy,
        StrategyKind::ChainOfThought
    );
    let pal = &t.attempts[0];
    assert_eq!(pal.strategy, StrategyKind::ProgramAided);
    let f = pal
        .findings
        .iter()
        .find(|f| f.verifier == VerifierKind::Program)
        .expect("a finding says why");
    assert_eq!(f.verdict, Verdict::Fail);
    assert!(
        f.message.contains("could not run") && f.message.contains("chroot"),
        "{}",
        f.message
    );
    assert_eq!(t.switches.len(), 1);
    // The switch, which `solve` prints, names the cause: without it the
    // user saw only "no answer could be extracted".
    let reason = &t.switches[0].reason;
    assert!(
        reason.starts_with("no answer could be extracted: the sandbox could not run the program")
            && reason.contains("No permissions to create new namespace"),
        "{reason}"
    );
}

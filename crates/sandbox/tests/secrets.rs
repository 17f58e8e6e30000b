//! No variable of the parent's environment is readable inside the box.
//!
//! One test per binary: it sets variables in its own process before any
//! other thread could read the environment.

use std::time::Duration;

use metareason_sandbox::{Limits, Sandbox};

const SECRET: &str = "sk-metareason-test-secret-7f3a9c";

/// Looks for the secret in the program's environment and in every process's
/// environ and cmdline it can see (bwrap is PID 1 inside the box).
const HUNT: &str = r#"
import os, sys
needle = "sk-metareason-test-secret"
found = []
for k, v in os.environ.items():
    if needle in v or "METAREASON" in k or "OPENAI" in k:
        found.append("os.environ:" + k)
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    for name in ("environ", "cmdline"):
        try:
            data = open("/proc/%s/%s" % (pid, name), "rb").read()
        except OSError:
            continue
        if needle.encode() in data or b"METAREASON_API_KEY" in data or b"OPENAI_API_KEY" in data:
            found.append("/proc/%s/%s" % (pid, name))
print("LEAK " + " ".join(found) if found else "CLEAN")
"#;

#[test]
fn api_keys_of_the_parent_are_readable_nowhere_inside_the_box() {
    // The only test of this binary: no other thread reads the environment.
    for key in [
        "METAREASON_API_KEY",
        "METAREASON_REWARD_API_KEY",
        "OPENAI_API_KEY",
    ] {
        std::env::set_var(key, SECRET);
    }
    let sandbox = Sandbox::new(Limits {
        wall: Duration::from_secs(10),
        ..Limits::default()
    })
    .expect("bubblewrap is installed by scripts/setup.sh");
    let run = sandbox.run_python(HUNT).unwrap();
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(run.stdout.trim(), "CLEAN", "{run:?}");
}

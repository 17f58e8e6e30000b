//! Records the commit the binary is built from, and whether the working
//! tree had uncommitted changes, so that a bench manifest names the code
//! that ran (not whatever repository the binary happens to run in).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    // Rebuilt when a commit is made, the index changes or any source does.
    for p in [
        "../../.git/HEAD",
        "../../.git/index",
        "../../crates",
        "../../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = if commit.is_empty() {
        String::new()
    } else {
        git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|s| (!s.is_empty()).to_string())
            .unwrap_or_default()
    };
    println!("cargo:rustc-env=METAREASON_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=METAREASON_GIT_DIRTY={dirty}");
}

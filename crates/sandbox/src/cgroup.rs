//! Totals for the whole box: a control group of its own caps the memory
//! (tmpfs pages included) and the processes of everything the program
//! starts, where the host lets metareason create one (as root, or in a
//! delegated cgroup v2 subtree). Elsewhere the per-process limits stand
//! alone.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

const ROOT: &str = "/sys/fs/cgroup";

/// A control group made for one run; removed on drop.
#[derive(Debug)]
pub(crate) struct Cgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<CString>,
}

/// Our own path in a hierarchy, from /proc/self/cgroup: the line whose
/// controllers include `controller` (v1), or the `0::` line (v2).
fn own_path(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => id == "0" && ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.trim_start_matches('/').to_string())
    })
}

fn write(p: &Path, v: &str) -> bool {
    std::fs::write(p, v).is_ok()
}

impl Cgroup {
    /// A fresh group capping memory at `memory` bytes and tasks at
    /// `pids`, or None where none can be made.
    pub(crate) fn create(memory: u64, pids: u64) -> Option<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "metareason-sandbox-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        Self::v2(&name, memory, pids).or_else(|| Self::v1(&name, memory, pids))
    }

    fn v2(name: &str, memory: u64, pids: u64) -> Option<Self> {
        let base = Path::new(ROOT).join(own_path(None)?);
        let enabled = std::fs::read_to_string(base.join("cgroup.subtree_control")).ok()?;
        let has = |c: &str| enabled.split_whitespace().any(|x| x == c);
        if !(has("memory") && has("pids")) {
            return None;
        }
        let dir = base.join(name);
        std::fs::create_dir(&dir).ok()?;
        let g = Self {
            procs: vec![CString::new(dir.join("cgroup.procs").to_str()?).ok()?],
            dirs: vec![dir.clone()],
        };
        (write(&dir.join("memory.max"), &memory.to_string())
            && write(&dir.join("pids.max"), &pids.to_string()))
        .then(|| {
            // No swap to spill into, where the kernel has it.
            let _ = write(&dir.join("memory.swap.max"), "0");
            g
        })
    }

    fn v1(name: &str, memory: u64, pids: u64) -> Option<Self> {
        let mut g = Self {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for (ctrl, file, value) in [
            ("memory", "memory.limit_in_bytes", memory),
            ("pids", "pids.max", pids),
        ] {
            let dir = Path::new(ROOT)
                .join(ctrl)
                .join(own_path(Some(ctrl))?)
                .join(name);
            std::fs::create_dir(&dir).ok()?;
            g.dirs.push(dir.clone());
            if !write(&dir.join(file), &value.to_string()) {
                return None; // dropped: the directories made so far go
            }
            g.procs
                .push(CString::new(dir.join("cgroup.procs").to_str()?).ok()?);
        }
        Some(g)
    }

    /// The `cgroup.procs` files the child writes its pid to before exec.
    pub(crate) fn procs_files(&self) -> Vec<CString> {
        self.procs.clone()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            // Its processes are gone with bwrap (PID namespace); a zombie
            // may hold it for a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

/// Writes `pid` to each of `files`, without allocating (for use between
/// fork and exec). Returns false if any write fails.
///
/// # Safety
/// Only async-signal-safe calls: open, write, close.
pub(crate) unsafe fn join(files: &[CString], pid: i32) -> bool {
    let mut buf = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &buf[i..];
    for f in files {
        let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, digits.as_ptr().cast(), digits.len()) == digits.len() as isize;
        libc::close(fd);
        if !ok {
            return false;
        }
    }
    true
}

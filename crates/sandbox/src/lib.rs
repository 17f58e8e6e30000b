//! # metareason-sandbox
//!
//! Runs programs that a model wrote, in a box: the program gets its own
//! temporary directory and nothing else to write to, no network, a CPU-time,
//! wall-time, memory, output-size, file-size and process-count limit, and is
//! killed (with everything it started) when it passes any of them.
//!
//! How: the child drops to an unprivileged user of its own (from
//! [`SANDBOX_UIDS`]) when started as root, sets resource limits (`setrlimit`), and runs under
//! [bubblewrap](https://github.com/containers/bubblewrap) (`bwrap`) that
//! shows it only the system's programs and libraries (read-only: never the
//! user's home, `/run`, `/var` or secrets), a size-limited memory-backed
//! `/tmp` as its working directory and `/dev/shm`, and new user, network,
//! PID, IPC and UTS namespaces. Without `bwrap` the
//! sandbox refuses to run anything: there is no unsafe fallback.
//!
//! ```no_run
//! use metareason_sandbox::{Limits, Sandbox};
//!
//! let sandbox = Sandbox::new(Limits::default())?;
//! let run = sandbox.run_python("print(6 * 7)")?;
//! assert_eq!(run.stdout.trim(), "42");
//! # Ok::<(), metareason_sandbox::SandboxError>(())
//! ```
#![deny(missing_docs)]

mod cgroup;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a sandboxed program may use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// CPU seconds (the kernel kills the program past this).
    pub cpu_seconds: u64,
    /// Wall-clock limit (the sandbox kills the program past this).
    pub wall: Duration,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// Bytes kept of stdout and of stderr each; more kills the program.
    pub output_bytes: usize,
    /// Largest file the program may write, in bytes.
    pub file_bytes: u64,
    /// Processes (and threads) the program may start.
    pub processes: u64,
    /// Size of the program's own disk, `/tmp` (its working directory), and
    /// of its `/dev/shm`, each: memory-backed file systems that hold no
    /// more than this whatever it writes.
    #[serde(default = "default_disk_bytes")]
    pub disk_bytes: u64,
}

fn default_disk_bytes() -> u64 {
    32 << 20
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_seconds: 5,
            wall: Duration::from_secs(10),
            memory_bytes: 512 << 20,
            output_bytes: 64 << 10,
            file_bytes: 16 << 20,
            processes: 32,
            disk_bytes: default_disk_bytes(),
        }
    }
}

/// Why a program stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// It ran past the wall-clock limit and was killed.
    WallTimeout,
    /// It used up its CPU time and the kernel killed it.
    CpuTimeout,
    /// It printed more than the output limit and was killed.
    OutputLimit,
    /// It ran out of memory (a `MemoryError` or an allocation failure).
    MemoryLimit,
    /// It was killed by this signal.
    Signal(i32),
}

/// The result of a sandboxed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// How it ended.
    pub ending: Ending,
    /// What it printed (lossy UTF-8, cut at the output limit).
    pub stdout: String,
    /// Its error output (lossy UTF-8, cut at the output limit).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl Run {
    /// Whether it exited with code 0.
    pub fn succeeded(&self) -> bool {
        self.ending == Ending::Exited(0)
    }
}

/// Why the sandbox could not run a program at all.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A tool the sandbox needs is missing.
    #[error("{0}")]
    Unavailable(String),
    /// Starting or watching the program failed.
    #[error("the sandbox failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A configured sandbox; cheap to clone and to use from many threads.
#[derive(Debug, Clone)]
pub struct Sandbox {
    limits: Limits,
    bwrap: PathBuf,
    python: Option<PathBuf>,
    totals: bool,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Sandboxed programs run as a user of their own, from this range, so that
/// concurrent runs do not share a process quota (RLIMIT_NPROC counts per user).
pub const SANDBOX_UIDS: std::ops::Range<u32> = 1_000_000..1_065_536;

fn next_uid() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let span = SANDBOX_UIDS.end - SANDBOX_UIDS.start;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    SANDBOX_UIDS.start + (std::process::id().wrapping_mul(7919).wrapping_add(n)) % span
}

/// Host directories holding a program's source start with this.
const WORKDIR_PREFIX: &str = "metareason-sandbox-";

/// Removes source directories that a killed metareason left behind (older
/// than ten minutes, or twice the wall limit: none can be in use).
fn clean_stale_workdirs(wall: Duration) {
    let age = Duration::from_secs(600).max(wall * 2);
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with(WORKDIR_PREFIX) {
            continue;
        }
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a > age);
        if stale {
            // Another process (or thread) may be removing the same tree: a
            // file that vanished under us fails one pass, so try again
            // while the directory is still there.
            let path = e.path();
            for _ in 0..5 {
                if std::fs::remove_dir_all(&path).is_ok() || !path.exists() {
                    break;
                }
            }
        }
    }
}

/// Processes the current real user has now (RLIMIT_NPROC counts them all).
fn user_processes() -> u64 {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            use std::os::unix::fs::MetadataExt;
            e.metadata().is_ok_and(|m| m.uid() == uid)
        })
        .count() as u64
}

/// Environment variable naming the Python interpreter used in the sandbox.
pub const PYTHON_ENV: &str = "METAREASON_SANDBOX_PYTHON";

/// A Python the unprivileged sandbox user can run: the file and every
/// directory above it must be executable by others (a pyenv shim under
/// /root is not).
fn sandbox_python() -> Option<PathBuf> {
    let candidates = std::env::var_os(PYTHON_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/python3", "/usr/local/bin/python3"].map(PathBuf::from))
        .chain(which("python3"));
    candidates
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .find(|p| world_executable(p))
}

fn world_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors().all(|a| {
        a.as_os_str().is_empty()
            || std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

impl Sandbox {
    /// A sandbox with these limits; fails when `bwrap` is not installed.
    pub fn new(limits: Limits) -> Result<Self, SandboxError> {
        let bwrap = which("bwrap").ok_or_else(|| {
            SandboxError::Unavailable(
                "the sandbox needs bubblewrap: install it (apt-get install -y bubblewrap); \
                 model-written programs are never run outside it"
                    .into(),
            )
        })?;
        clean_stale_workdirs(limits.wall);
        let totals = cgroup::Cgroup::create(limits.memory_bytes, limits.processes).is_some();
        Ok(Self {
            limits,
            bwrap,
            python: sandbox_python(),
            totals,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether memory and processes are capped in total for each run (a
    /// control group per run could be made here); otherwise only per
    /// process.
    pub fn caps_totals(&self) -> bool {
        self.totals
    }

    /// Runs a Python 3 program.
    pub fn run_python(&self, source: &str) -> Result<Run, SandboxError> {
        let python = self.python.clone().ok_or_else(|| {
            SandboxError::Unavailable(
                "program-aided answers need a python3 that an unprivileged user can run \
                 (apt-get install -y python3, or set METAREASON_SANDBOX_PYTHON)"
                    .into(),
            )
        })?;
        let dir = self.workdir()?;
        let main = dir.path().join("main.py");
        std::fs::write(&main, source)?;
        set_mode(&main, 0o644)?;
        let python = python.to_string_lossy().into_owned();
        self.run_in(Some(&main), &[&python, "-I", "-B", "/tmp/main.py"])
    }

    /// Runs a command (resolved inside the box, which sees only the
    /// system's programs and libraries) in a fresh, empty `/tmp`.
    pub fn run(&self, argv: &[&str]) -> Result<Run, SandboxError> {
        self.run_in(None, argv)
    }

    /// A host directory for the program's source: only the source is
    /// shown to the box (read-only); the program writes to its own `/tmp`.
    fn workdir(&self) -> Result<tempfile::TempDir, SandboxError> {
        let dir = tempfile::Builder::new().prefix(WORKDIR_PREFIX).tempdir()?;
        // The program runs as an unprivileged user: it must read its source.
        set_mode(dir.path(), 0o755)?;
        Ok(dir)
    }

    /// What the box sees of the host: the system's programs and libraries
    /// read-only (never `/home`, `/root`, `/run`, `/var`, `/etc` beyond the
    /// dynamic loader's cache, or the memory file), a device and process
    /// view of its own, and size-limited memory-backed `/tmp` and
    /// `/dev/shm`.
    fn host_view(&self, program: Option<&Path>) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = Vec::new();
        let mut push = |xs: &[&std::ffi::OsStr]| a.extend(xs.iter().map(|x| x.to_os_string()));
        push(&["--ro-bind".as_ref(), "/usr".as_ref(), "/usr".as_ref()]);
        for d in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            let Ok(meta) = std::fs::symlink_metadata(d) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(d) {
                    push(&["--symlink".as_ref(), target.as_os_str(), d.as_ref()]);
                }
            } else if meta.is_dir() {
                push(&["--ro-bind".as_ref(), d.as_ref(), d.as_ref()]);
            }
        }
        for f in ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d"] {
            push(&["--ro-bind-try".as_ref(), f.as_ref(), f.as_ref()]);
        }
        // An interpreter installed outside /usr brings its own prefix.
        if let Some(prefix) = self
            .python
            .as_deref()
            .and_then(Path::parent)
            .and_then(Path::parent)
            .filter(|p| !p.starts_with("/usr") && *p != Path::new("/"))
        {
            push(&["--ro-bind".as_ref(), prefix.as_os_str(), prefix.as_os_str()]);
        }
        let size = self.limits.disk_bytes.max(4096).to_string();
        push(&[
            "--dev".as_ref(),
            "/dev".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
        ]);
        push(&[
            "--size".as_ref(),
            size.as_ref(),
            "--tmpfs".as_ref(),
            "/tmp".as_ref(),
        ]);
        push(&[
            "--size".as_ref(),
            size.as_ref(),
            "--tmpfs".as_ref(),
            "/dev/shm".as_ref(),
        ]);
        if let Some(p) = program {
            push(&["--ro-bind".as_ref(), p.as_os_str(), "/tmp/main.py".as_ref()]);
        }
        // The box's own root (where /etc and the mount points live) is read-only
        // too: /tmp and /dev/shm are the only places to write.
        push(&["--remount-ro".as_ref(), "/".as_ref()]);
        a
    }

    fn run_in(&self, program: Option<&Path>, argv: &[&str]) -> Result<Run, SandboxError> {
        let mut cmd = Command::new(&self.bwrap);
        // bwrap itself starts with an empty environment: `--clearenv` cleans
        // only the program's, and bwrap is PID 1 inside the box, so anything
        // it inherited (API keys among it) would be readable in /proc/1/environ.
        cmd.env_clear();
        cmd.args(self.host_view(program))
            .args(["--chdir", "/tmp"])
            .args(["--unshare-all", "--die-with-parent", "--new-session"])
            // bwrap reports on fd 3 when the program has started: what the
            // program prints on stderr can then never pass for bwrap's errors.
            .args(["--json-status-fd", "3"])
            .args(["--clearenv", "--setenv", "HOME", "/tmp", "--setenv", "PATH"])
            .arg("/usr/local/bin:/usr/bin:/bin")
            .args(["--setenv", "LANG", "C.UTF-8", "--"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (mut status_reader, status_writer) = std::io::pipe()?;
        let status_fd = std::os::fd::AsRawFd::as_raw_fd(&status_writer);
        let l = self.limits.clone();
        let uid = next_uid();
        // RLIMIT_NPROC counts every process of the real user. As root the
        // program runs as a user of its own, which has none; otherwise the
        // user's processes now are added, so that the cap is the program's
        // (bwrap and its init process included).
        // SAFETY: geteuid cannot fail.
        let nproc = if unsafe { libc::geteuid() } == 0 {
            l.processes
        } else {
            user_processes() + l.processes + 2
        };
        // Totals for everything the program starts, where a control group
        // can be made: memory (its disk's pages included) and tasks.
        let group = cgroup::Cgroup::create(
            l.memory_bytes.saturating_add(2 * l.disk_bytes),
            l.processes + 2,
        );
        let procs = group
            .as_ref()
            .map(cgroup::Cgroup::procs_files)
            .unwrap_or_default();
        // SAFETY: only async-signal-safe calls (open, write, close, getpid,
        // dup2, fcntl, setrlimit, setgroups, setgid, setuid, setsid) between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let set2 = |res, soft: u64, hard: u64| {
                    let lim = libc::rlimit {
                        rlim_cur: soft as libc::rlim_t,
                        rlim_max: hard as libc::rlim_t,
                    };
                    if libc::setrlimit(res, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                };
                let set = |res, v: u64| set2(res, v, v);
                // Into the run's control group, before anything else runs.
                if !procs.is_empty() && !cgroup::join(&procs, libc::getpid()) {
                    return Err(std::io::Error::last_os_error());
                }
                // The status pipe becomes fd 3, open across exec (dup2 clears
                // close-on-exec; when it already is fd 3, clear it by hand).
                let moved = if status_fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(status_fd, 3)
                };
                if moved < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::setsid();
                // SIGXCPU at the soft limit tells a CPU timeout from other
                // kills; the kernel's SIGKILL at the hard limit is the backstop.
                set2(libc::RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1)?;
                set(libc::RLIMIT_AS, l.memory_bytes)?;
                set(libc::RLIMIT_FSIZE, l.file_bytes)?;
                set(libc::RLIMIT_NPROC, nproc)?;
                set(libc::RLIMIT_CORE, 0)?;
                if libc::geteuid() == 0 {
                    // Root is exempt from RLIMIT_NPROC and could write anywhere
                    // bwrap leaves writable: run as an unprivileged user.
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(uid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| SandboxError::Unavailable(format!("cannot start bwrap ({e})")))?;
        // Only bwrap may hold the write end: the pipe closes when it exits.
        drop(status_writer);
        // Read to the end (bwrap writes the exit code last and would die of
        // SIGPIPE on a closed pipe); the program never holds fd 3, so the
        // pipe closes when bwrap exits.
        let started_thread = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = status_reader.read_to_string(&mut text);
            text.contains("\"child-pid\"")
        });
        let pid = child.id() as i32;
        let overflow = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|stream| {
            let overflow = overflow.clone();
            let cap = self.limits.output_bytes;
            std::thread::spawn(move || read_capped(stream, cap, pid, &overflow))
        })
        .collect();

        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() >= self.limits.wall {
                timed_out = true;
                kill_group(pid);
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut outputs = readers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>();
        let stderr = String::from_utf8_lossy(&outputs.pop().unwrap_or_default()).into_owned();
        let stdout = String::from_utf8_lossy(&outputs.pop().unwrap_or_default()).into_owned();
        let started_child = started_thread.join().unwrap_or(false);
        if !started_child {
            return Err(SandboxError::Unavailable(format!(
                "bubblewrap could not start the program: {} (the sandbox needs user \
                 namespaces, which the kernel refuses when they are switched off \
                 (sysctl kernel.unprivileged_userns_clone=1, \
                 user.max_user_namespaces) or when the caller runs in a chroot)",
                stderr.trim()
            )));
        }
        use std::os::unix::process::ExitStatusExt;
        let ending = if timed_out {
            Ending::WallTimeout
        } else if overflow.load(Ordering::SeqCst) {
            Ending::OutputLimit
        } else if let Some(sig) = status.signal() {
            ending_of_signal(sig)
        } else {
            let code = status.code().unwrap_or(-1);
            if code > 128 && code < 128 + 65 {
                // bwrap reports its child's death by a signal as 128 + signal.
                ending_of_signal(code - 128)
            } else if code != 0 && stderr.contains("MemoryError") {
                Ending::MemoryLimit
            } else {
                Ending::Exited(code)
            }
        };
        Ok(Run {
            ending,
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }
}

fn ending_of_signal(sig: i32) -> Ending {
    if sig == libc::SIGXCPU {
        Ending::CpuTimeout
    } else {
        Ending::Signal(sig)
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn kill_group(pid: i32) {
    // SAFETY: plain kill(2) on the child's process group and the child.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Reads a stream up to `cap` bytes; past that, kills the program.
fn read_capped(
    mut s: Box<dyn Read + Send>,
    cap: usize,
    pid: i32,
    overflow: &AtomicBool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    overflow.store(true, Ordering::SeqCst);
                    kill_group(pid);
                    break;
                }
            }
        }
    }
    out
}

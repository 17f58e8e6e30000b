//! The drill suite: programs a hostile model could write, each trying one
//! way out of the box. A drill's program prints SAFE when its attack failed
//! (or the box's run tells so); anything else is a breach. The suite runs as
//! the user running the tests and, when that is root, again as an
//! unprivileged user (the test binary re-runs itself under `setpriv`).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use metareason_sandbox::{Ending, Limits, Run, Sandbox};

const SECRET: &str = "drill-secret-7f3a9c";
const MARKER: &str = "metareason-drill-marker";

struct Drill {
    name: &'static str,
    program: String,
    check: fn(&Run) -> Result<(), String>,
}

fn says_safe(run: &Run) -> Result<(), String> {
    if run.stdout.trim() == "SAFE" {
        Ok(())
    } else {
        Err(format!("{run:?}"))
    }
}

fn stopped(run: &Run) -> Result<(), String> {
    if run.succeeded() {
        Err(format!("ran to a clean end: {run:?}"))
    } else {
        Ok(())
    }
}

fn drill(name: &'static str, program: &str) -> Drill {
    Drill {
        name,
        program: program.to_string(),
        check: says_safe,
    }
}

/// `SAFE` when `attempt` raises, `BREACH` when it does not.
fn must_fail(name: &'static str, attempt: &str) -> Drill {
    drill(
        name,
        &format!(
            "import os, socket, ctypes, stat\ntry:\n    {attempt}\n    print('BREACH')\nexcept Exception:\n    print('SAFE')\n"
        ),
    )
}

/// `SAFE` when none of `paths` exists inside the box.
fn hidden(name: &'static str, paths: &[&str]) -> Drill {
    drill(
        name,
        &format!(
            "import os\nseen = [p for p in {paths:?} if os.path.lexists(p)]\nprint('BREACH ' + str(seen) if seen else 'SAFE')\n"
        ),
    )
}

fn drills(home_secret: &str, host_pid: u32) -> Vec<Drill> {
    let libc = "ctypes.CDLL(None, use_errno=True)";
    vec![
        // Environment and process view.
        drill(
            "environment holds only HOME, PATH, LANG (and bwrap's PWD)",
            "import os\nextra = set(os.environ) - {'HOME', 'PATH', 'LANG', 'PWD'}\nprint('BREACH ' + str(extra) if extra else 'SAFE')\n",
        ),
        drill(
            "no process environment or command line holds a secret",
            &format!(
                "import os\nhit = []\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n        for f in ('environ', 'cmdline'):\n            try:\n                if b'{SECRET}' in open(f'/proc/{{p}}/{{f}}', 'rb').read(): hit.append((p, f))\n            except OSError: pass\nprint('BREACH ' + str(hit) if hit else 'SAFE')\n"
            ),
        ),
        drill(
            "only the box's own processes are visible",
            "import os\nn = [p for p in os.listdir('/proc') if p.isdigit()]\nprint('SAFE' if len(n) <= 4 else 'BREACH ' + str(n))\n",
        ),
        must_fail(
            "a host process cannot be signalled",
            &format!("os.kill({host_pid}, 0)"),
        ),
        must_fail(
            "a host process cannot be traced",
            &format!("assert {libc}.ptrace(16, {host_pid}, 0, 0) == 0"),
        ),
        // Host files.
        hidden("no host accounts", &["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers"]),
        hidden("no homes", &["/root", "/home"]),
        hidden("no runtime state or sockets", &["/run", "/var", "/var/run/docker.sock", "/run/docker.sock", "/run/dbus"]),
        hidden("no host configuration", &["/etc/hostname", "/etc/ssh", "/etc/ssl/private", "/etc/pip.conf"]),
        hidden("no kernel or device tree", &["/sys", "/boot", "/dev/sda", "/dev/vda", "/dev/kvm", "/dev/mem"]),
        hidden("no other top-level host directories", &["/srv", "/opt", "/mnt", "/media", "/work"]),
        hidden("the user's own secret file", &[home_secret]),
        drill(
            "the box's root lists only what it needs",
            "import os\nextra = set(os.listdir('/')) - {'usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'etc', 'dev', 'proc', 'tmp'}\nprint('BREACH ' + str(extra) if extra else 'SAFE')\n",
        ),
        drill(
            "the box's init sees the same root",
            "import os\ntry:\n    l = os.listdir('/proc/1/root')\n    print('BREACH ' + str(l) if 'home' in l or 'root' in l else 'SAFE')\nexcept OSError:\n    print('SAFE')\n",
        ),
        drill(
            "a symlink to a host file leads nowhere",
            "import os\nos.symlink('/etc/hostname', '/tmp/h')\ntry:\n    open('/tmp/h').read()\n    print('BREACH')\nexcept OSError:\n    print('SAFE')\n",
        ),
        must_fail("/dev/mem cannot be opened", "open('/dev/mem', 'rb')"),
        // Writes outside the box's own disk.
        must_fail("/usr is read-only", "open('/usr/drill', 'w').write('x')"),
        must_fail("the root is read-only", "open('/drill', 'w').write('x')"),
        must_fail("/etc is read-only", "open('/etc/drill', 'w').write('x')"),
        must_fail("kernel settings are read-only", "open('/proc/sys/kernel/hostname', 'w').write('x')"),
        must_fail("no device nodes", "os.mknod('/tmp/null', stat.S_IFCHR | 0o666, os.makedev(1, 3))"),
        must_fail("no hard links into the system", "os.link('/usr/bin/env', '/tmp/env')"),
        drill(
            "files written stay in the box",
            &format!("open('/tmp/{MARKER}', 'w').write('x')\nprint('SAFE')\n"),
        ),
        // Privilege.
        must_fail("no setuid to root", "os.setuid(0)"),
        must_fail("no chroot", "os.chroot('/tmp')"),
        must_fail(
            "no mounts",
            &format!("os.mkdir('/tmp/m')\n    assert {libc}.mount(b'none', b'/tmp/m', b'tmpfs', 0, None) == 0"),
        ),
        must_fail("no raw sockets", "socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"),
        // Network.
        must_fail("no internet", "socket.create_connection(('1.1.1.1', 53), timeout=2)"),
        must_fail("no name resolution", "socket.getaddrinfo('example.com', 80)"),
        must_fail("no host loopback service", "socket.create_connection(('127.0.0.1', 22), timeout=2)"),
        must_fail(
            "no abstract unix socket of the host",
            "s = socket.socket(socket.AF_UNIX)\n    s.connect('\\0metareason-drill')",
        ),
        drill(
            "only the loopback interface",
            "import socket\nn = [i[1] for i in socket.if_nameindex()]\nprint('SAFE' if n in ([], ['lo']) else 'BREACH ' + str(n))\n",
        ),
        // Resource totals.
        drill(
            "a fork bomb is held to the process cap",
            "import os\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n            import time; time.sleep(3); os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint('SAFE' if n < 64 else f'BREACH {n}')\n",
        ),
        drill(
            "a thread bomb is held to the process cap",
            "import threading, time\nn = 0\ntry:\n    for _ in range(500):\n        threading.Thread(target=time.sleep, args=(3,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    pass\nprint('SAFE' if n < 64 else f'BREACH {n}')\n",
        ),
        must_fail("one huge allocation fails", "bytearray(2 << 30)"),
        drill(
            "the disk fills at its size",
            "n = 0\ntry:\n    for i in range(200):\n        open(f'/tmp/f{i}', 'wb').write(b'x' * (256 << 10)); n += 1\nexcept OSError:\n    pass\nprint('SAFE' if n * 256 <= 8192 else f'BREACH {n}')\n",
        ),
        drill(
            "shared memory fills at its size",
            "n = 0\ntry:\n    for i in range(200):\n        open(f'/dev/shm/f{i}', 'wb').write(b'x' * (256 << 10)); n += 1\nexcept OSError:\n    pass\nprint('SAFE' if n * 256 <= 8192 else f'BREACH {n}')\n",
        ),
        must_fail("one file past the file limit fails", "open('/tmp/big', 'wb').write(b'x' * (2 << 20))"),
        Drill {
            name: "a CPU spin is stopped",
            program: "while True:\n    pass\n".into(),
            check: stopped,
        },
        Drill {
            name: "an output flood is cut",
            program: "while True:\n    print('x' * 1000)\n".into(),
            check: |r| match r.ending {
                Ending::OutputLimit => Ok(()),
                _ => Err(format!("{:?}", r.ending)),
            },
        },
        Drill {
            name: "a background process does not outlive the box",
            program: format!(
                "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/usr/bin/sleep', ['sleep', '37.{}'])\nprint('SAFE')\n",
                std::process::id()
            ),
            check: says_safe,
        },
        Drill {
            name: "stderr that looks like bwrap's is the program's",
            program: "import sys\nsys.stderr.write('bwrap: Creating new namespace failed\\n')\nprint('SAFE')\n".into(),
            check: |r| {
                if r.succeeded() && r.stdout.trim() == "SAFE" {
                    Ok(())
                } else {
                    Err(format!("{r:?}"))
                }
            },
        },
    ]
}

fn sandbox() -> Sandbox {
    Sandbox::new(Limits {
        cpu_seconds: 2,
        wall: Duration::from_secs(8),
        memory_bytes: 256 << 20,
        output_bytes: 4096,
        file_bytes: 1 << 20,
        processes: 16,
        disk_bytes: 8 << 20,
    })
    .expect("bubblewrap is installed by scripts/setup.sh")
}

/// Runs every drill; returns the breaches.
fn run_drills() -> (usize, Vec<String>) {
    std::env::set_var("METAREASON_DRILL_SECRET", SECRET);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let dir = tempfile::tempdir_in(&home).unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let secret = dir.path().join("id_rsa");
    std::fs::write(&secret, SECRET).unwrap();
    // An abstract socket in the host's network namespace.
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(b"metareason-drill").unwrap();
    let listener = UnixListener::bind_addr(&addr).ok();
    if let Some(l) = &listener {
        l.set_nonblocking(true).unwrap();
    }
    let sb = sandbox();
    let all = drills(secret.to_str().unwrap(), std::process::id());
    let n = all.len();
    let mut breaches = Vec::new();
    for d in all {
        match sb.run_python(&d.program) {
            Ok(run) => {
                if let Err(why) = (d.check)(&run) {
                    breaches.push(format!("{}: {why}", d.name));
                }
            }
            Err(e) => breaches.push(format!("{}: the sandbox failed: {e}", d.name)),
        }
    }
    if listener.as_ref().is_some_and(|l| l.accept().is_ok()) {
        breaches.push("the host's abstract socket got a connection".into());
    }
    // Nothing the programs wrote or started is left on the host.
    if std::env::temp_dir().join(MARKER).exists() {
        breaches.push("a file written in the box appeared in the host's /tmp".into());
    }
    std::thread::sleep(Duration::from_millis(200));
    let sleeper = format!("37.{}", std::process::id());
    let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&sleeper))
            .unwrap_or(false)
    });
    if alive {
        breaches.push("a background process outlived the box".into());
    }
    (n, breaches)
}

#[test]
fn every_drill_is_contained() {
    let (n, breaches) = run_drills();
    assert!(n >= 40, "only {n} drills");
    assert!(
        breaches.is_empty(),
        "{} of {n} drills breached:\n{}",
        breaches.len(),
        breaches.join("\n")
    );
}

#[test]
fn every_drill_is_contained_as_an_unprivileged_user() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: the test above is this one.
        return;
    }
    if std::env::var_os("METAREASON_DRILL_CHILD").is_some() {
        return;
    }
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("setpriv (util-linux) to drop to an unprivileged user");
    // A copy of this test binary that the unprivileged user can run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let exe = dir.path().join("drills");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = || {
        std::process::Command::new(setpriv)
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .arg(&exe)
            .args(["--exact", "every_drill_is_contained", "--nocapture"])
            .env_clear()
            .env("HOME", dir.path())
            .env("PATH", "/usr/bin:/bin")
            .env("METAREASON_DRILL_CHILD", "1")
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // A process forked by another test while the copy was open for writing
    // holds it until its exec: "Text file busy" for a moment.
    let mut out = run();
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = run();
    }
    assert!(
        out.status.success(),
        "as nobody:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

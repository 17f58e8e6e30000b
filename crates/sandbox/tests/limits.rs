//! The sandbox stops what it must stop, and the host is unharmed.

use std::net::TcpListener;
use std::time::Duration;

use metareason_sandbox::{Ending, Limits, Sandbox, SANDBOX_UIDS};

fn sandbox() -> Sandbox {
    Sandbox::new(Limits {
        cpu_seconds: 1,
        wall: Duration::from_secs(5),
        memory_bytes: 256 << 20,
        output_bytes: 4096,
        file_bytes: 1 << 20,
        processes: 16,
        disk_bytes: 8 << 20,
    })
    .expect("bubblewrap is installed by scripts/setup.sh")
}

/// Processes of sandbox users still alive on the host.
fn sandbox_processes() -> usize {
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(e.path().join("status")) {
            if status
                .lines()
                .filter(|l| l.starts_with("Uid:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
                .any(|uid| SANDBOX_UIDS.contains(&uid))
            {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_plain_program_runs_and_prints() {
    let run = sandbox().run_python("print(sum(range(10)))").unwrap();
    assert!(run.succeeded(), "{run:?}");
    assert_eq!(run.stdout, "45\n");
}

#[test]
fn an_exception_is_a_failed_exit_with_its_traceback() {
    let run = sandbox().run_python("1/0").unwrap();
    assert_eq!(run.ending, Ending::Exited(1));
    assert!(run.stderr.contains("ZeroDivisionError"), "{}", run.stderr);
}

#[test]
fn an_infinite_loop_is_stopped() {
    let run = sandbox().run_python("while True:\n    pass\n").unwrap();
    assert!(
        matches!(run.ending, Ending::CpuTimeout | Ending::WallTimeout),
        "{run:?}"
    );
}

#[test]
fn a_sleeping_program_hits_the_wall_clock() {
    let sb = Sandbox::new(Limits {
        wall: Duration::from_millis(500),
        ..Limits::default()
    })
    .unwrap();
    let run = sb.run_python("import time\ntime.sleep(60)\n").unwrap();
    assert_eq!(run.ending, Ending::WallTimeout, "{run:?}");
}

#[test]
fn a_memory_bomb_is_stopped() {
    let run = sandbox()
        .run_python("x = bytearray(2 * 1024 ** 3)\nprint('allocated')\n")
        .unwrap();
    assert_eq!(run.ending, Ending::MemoryLimit, "{run:?}");
    assert!(!run.stdout.contains("allocated"));
}

#[test]
fn a_fork_loop_is_contained_and_leaves_nothing_behind() {
    let run = sandbox()
        .run_python(
            "import os, time\n\
             n = 0\n\
             try:\n\
             \x20   while True:\n\
             \x20       if os.fork() == 0:\n\
             \x20           time.sleep(30)\n\
             \x20           os._exit(0)\n\
             \x20       n += 1\n\
             except OSError as e:\n\
             \x20   print('fork refused after', n)\n",
        )
        .unwrap();
    assert!(run.stdout.contains("fork refused after"), "{run:?}");
    let forked: usize = run
        .stdout
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(forked < 16, "forked {forked}");
    // The sleeping children die with the sandbox's PID namespace.
    let mut left = sandbox_processes();
    for _ in 0..300 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = sandbox_processes();
    }
    assert_eq!(left, 0, "sandbox processes outlived the run");
}

#[test]
fn writes_outside_its_directory_fail_and_inside_succeed() {
    let host = tempfile::tempdir().unwrap();
    // World-writable on the host, still read-only from inside.
    std::fs::set_permissions(
        host.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let target = host.path().join("escaped.txt");
    let program = format!(
        "import os\n\
         open('own.txt', 'w').write('ok')\n\
         print('own', open('own.txt').read())\n\
         for p in [{:?}, '/root/escaped.txt', '/etc/escaped.txt']:\n\
         \x20   try:\n\
         \x20       open(p, 'w').write('x')\n\
         \x20       print('WROTE', p)\n\
         \x20   except OSError as e:\n\
         \x20       print('refused', p)\n",
        target.to_str().unwrap()
    );
    let run = sandbox().run_python(&program).unwrap();
    assert!(run.succeeded(), "{run:?}");
    assert!(run.stdout.contains("own ok"), "{}", run.stdout);
    assert!(!run.stdout.contains("WROTE"), "{}", run.stdout);
    assert!(!target.exists());
    assert!(!std::path::Path::new("/root/escaped.txt").exists());
}

#[test]
fn network_connections_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let program = format!(
        "import socket\n\
         try:\n\
         \x20   socket.create_connection(('127.0.0.1', {port}), timeout=2)\n\
         \x20   print('CONNECTED')\n\
         except OSError as e:\n\
         \x20   print('blocked')\n"
    );
    let run = sandbox().run_python(&program).unwrap();
    assert_eq!(run.stdout.trim(), "blocked", "{run:?}");
    assert!(
        listener.accept().is_err(),
        "the host listener got a connection"
    );
}

#[test]
fn output_floods_are_cut_and_stopped() {
    let run = sandbox()
        .run_python("while True:\n    print('x' * 1000)\n")
        .unwrap();
    assert_eq!(run.ending, Ending::OutputLimit, "{:?}", run.ending);
    assert!(run.stdout.len() <= 4096);
}

#[test]
fn a_program_that_prints_like_bwrap_is_still_a_program() {
    // bwrap's own failures are told by its status pipe, not by what stderr
    // says: this once aborted the whole solve as "sandbox unavailable".
    let run = sandbox()
        .run_python(
            "import sys\nsys.stderr.write('bwrap: No permissions to create new namespace\\n')\nsys.exit(3)\n",
        )
        .expect("the program ran");
    assert_eq!(run.ending, Ending::Exited(3));
    assert!(run.stderr.starts_with("bwrap:"));
}

#[test]
fn the_program_cannot_write_to_bwraps_status_pipe() {
    // fd 3 carries bwrap's status to metareason; the program must not hold it.
    let run = sandbox()
        .run_python("import os\ntry:\n    os.write(3, b'{\"child-pid\": 1}\\n')\n    print('wrote')\nexcept OSError as e:\n    print('refused', e.errno)\n")
        .unwrap();
    assert!(run.stdout.starts_with("refused"), "{run:?}");
}

#[test]
fn the_host_is_out_of_sight() {
    // A secret in a host directory, a home, the memory file's directory:
    // none is visible; only the system's programs and libraries are.
    let home = std::env::var("HOME")
        .ok()
        .and_then(|h| tempfile::tempdir_in(h).ok())
        .unwrap_or_else(|| tempfile::tempdir().unwrap());
    let secret = home.path().join("id_rsa");
    std::fs::write(&secret, "PRIVATE KEY").unwrap();
    let program = format!(
        "import os\n\
         print(sorted(os.listdir('/')))\n\
         for p in [{:?}, '/root', '/home', '/run', '/var', '/etc/passwd', '/etc/shadow', '/srv', '/work']:\n\
         \x20   print('SEEN' if os.path.exists(p) else 'hidden', p)\n",
        secret.to_str().unwrap()
    );
    let run = sandbox().run_python(&program).unwrap();
    assert!(run.succeeded(), "{run:?}");
    assert!(!run.stdout.contains("SEEN"), "{}", run.stdout);
    let root = run.stdout.lines().next().unwrap();
    for d in ["'home'", "'root'", "'run'", "'var'", "'srv'"] {
        assert!(!root.contains(d), "{root}");
    }
}

#[test]
fn host_unix_sockets_cannot_be_reached() {
    use std::os::unix::net::UnixListener;
    // A socket on the host (as docker.sock or a session bus would be).
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = dir.path().join("host.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_UNIX)\n\
         try:\n\
         \x20   s.connect({:?})\n\
         \x20   print('CONNECTED')\n\
         except OSError:\n\
         \x20   print('unreachable')\n",
        path.to_str().unwrap()
    );
    let run = sandbox().run_python(&program).unwrap();
    assert_eq!(run.stdout.trim(), "unreachable", "{run:?}");
    assert!(
        listener.accept().is_err(),
        "the host socket got a connection"
    );
}

#[test]
fn disk_and_shared_memory_are_capped_in_total() {
    // Many files below the per-file limit still cannot fill more than the
    // box's own disk (8 MB here), in /tmp or in /dev/shm; nothing reaches
    // the host's temporary directory.
    let before = host_tmp_bytes();
    let program = "import os\n\
        for where in ['/tmp', '/dev/shm']:\n\
        \x20   n = 0\n\
        \x20   try:\n\
        \x20       for i in range(100):\n\
        \x20           with open(f'{where}/f{i}', 'wb') as f:\n\
        \x20               f.write(b'x' * (512 << 10))\n\
        \x20           n += 1\n\
        \x20   except OSError as e:\n\
        \x20       pass\n\
        \x20   print(where, n)\n";
    let run = sandbox().run_python(program).unwrap();
    assert!(run.succeeded(), "{run:?}");
    for line in run.stdout.lines() {
        let n: usize = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(n <= 16, "{line}: more than 8 MB written");
        assert!(n >= 8, "{line}: the box's own disk should hold some files");
    }
    assert!(
        host_tmp_bytes() < before + (4 << 20),
        "the host's /tmp grew"
    );
}

fn host_tmp_bytes() -> u64 {
    fn walk(p: &std::path::Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(&std::env::temp_dir())
}

#[test]
fn a_directory_left_by_a_killed_run_is_cleaned_at_start() {
    let stale = std::env::temp_dir().join("metareason-sandbox-stale-test");
    std::fs::create_dir_all(stale.join("sub")).unwrap();
    std::fs::write(stale.join("sub/main.py"), "print(1)").unwrap();
    // Twenty minutes old.
    let old = std::time::SystemTime::now() - Duration::from_secs(1200);
    let f = std::fs::File::open(&stale).unwrap();
    f.set_modified(old).unwrap();
    let _ = sandbox();
    assert!(!stale.exists(), "the stale directory is still there");
}

#[test]
fn memory_is_capped_in_total_where_a_control_group_can_be_made() {
    // Six children of 150 MB each stay under the per-process limit (256 MB)
    // but not under the total: at most one lives to finish.
    let sb = sandbox();
    let program = "import os, time\n\
        kids = []\n\
        for i in range(6):\n\
        \x20   pid = os.fork()\n\
        \x20   if pid == 0:\n\
        \x20       b = bytearray(150 << 20)\n\
        \x20       for j in range(0, len(b), 4096): b[j] = 1\n\
        \x20       time.sleep(1)\n\
        \x20       os._exit(0)\n\
        \x20   kids.append(pid)\n\
        ok = sum(1 for p in kids if os.waitpid(p, 0)[1] == 0)\n\
        print('finished', ok)\n";
    let run = sb.run_python(program).unwrap();
    if !sb.caps_totals() {
        eprintln!("no control group here: totals are not capped (run as root to test them)");
        return;
    }
    let finished = run
        .stdout
        .split_whitespace()
        .last()
        .and_then(|n| n.parse::<usize>().ok());
    eprintln!("with a control group: {run:?}");
    // Either the parent itself was killed or few children finished.
    assert!(finished.is_none_or(|n| n <= 2), "{run:?}");
}

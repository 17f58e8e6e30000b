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

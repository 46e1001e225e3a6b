//! Boots real sandboxes: units, journal, binds, networks, several at once, and
//! that nothing stays behind: no process, mount, cgroup, state directory or
//! `PrivateTmp=` directory, and the host's `/tmp` intact.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::*;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{out:?}");
    stdout(&out)
}

/// Everything that must be gone after a sandbox ends, recorded while it runs.
struct Traces {
    pid: u32,
    pid_ns: String,
    dir: PathBuf,
    cgroup: PathBuf,
}

impl Traces {
    fn of(sb: &Sandbox) -> Traces {
        Traces {
            pid: sb.pid(),
            pid_ns: procs::pid_ns(sb.pid()).unwrap(),
            dir: sb.state_dir().to_path_buf(),
            cgroup: sb.cgroup.clone(),
        }
    }

    fn assert_gone(&self) {
        assert!(
            !procs::alive(self.pid) || procs::pid_ns(self.pid).as_ref() != Some(&self.pid_ns),
            "systemd (pid {}) still runs",
            self.pid
        );
        assert_eq!(procs::live_in_ns(&self.pid_ns), Vec::<u32>::new());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mountinfo.contains(&*self.dir.to_string_lossy()),
            "{mountinfo}"
        );
        assert!(
            !self.dir.exists(),
            "`{}` is still there",
            self.dir.display()
        );
        assert!(
            !self.cgroup.exists(),
            "`{}` is still there",
            self.cgroup.display()
        );
    }
}

/// A file in the host's `/tmp` that no boot may remove (the vendor tmpfiles
/// rules would wipe `/tmp`).
struct Marker(PathBuf);

impl Marker {
    fn new(tag: &str) -> Marker {
        let path = PathBuf::from(format!(
            "/tmp/ferry-sandbox-marker-{tag}-{}",
            std::process::id()
        ));
        fs::write(&path, "must survive").unwrap();
        Marker(path)
    }

    fn assert_kept(&self) {
        assert_eq!(fs::read_to_string(&self.0).unwrap(), "must survive");
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Polls `journal_json(unit)` until an entry satisfies `wanted`.
fn wait_for_entry(
    sb: &Sandbox,
    unit: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = sb.journal_json(Some(unit)).unwrap();
        if let Some(e) = entries.iter().find(|e| wanted(e)) {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no such journal entry for {unit}: {entries:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

/// `PrivateTmp=` directories of `unit` in the host's `/tmp`.
fn private_tmp_dirs_of(unit: &str) -> Vec<String> {
    fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("systemd-private-") && n.contains(&format!("-{unit}-")))
        .collect()
}

#[test]
fn boots_runs_a_unit_and_leaves_nothing_behind() {
    let marker = Marker::new("unit");
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("hello.txt"), "hello from the host").unwrap();
    fs::write(shared.path().join("agent.toml"), "a = 1").unwrap();
    // Mount points missing on the host are made inside only.
    let var_lib = format!("/var/lib/ferry-test-{}", std::process::id());
    let etc_file = format!("/etc/ferry-test-{}/agent.toml", std::process::id());
    let sb = Sandbox::start(
        "unit",
        SandboxOptions {
            binds: vec![
                (shared.path().into(), "/run/ferry-test/shared".into()),
                (shared.path().into(), var_lib.clone().into()),
                (shared.path().join("agent.toml"), etc_file.clone().into()),
            ],
            ..SandboxOptions::default()
        },
    )
    .unwrap();
    eprintln!("boot: {:?}", sb.boot_time());
    let traces = Traces::of(&sb);

    let state = stdout(&sb.systemctl(&["is-system-running"]).unwrap());
    assert!(state == "running" || state == "degraded", "{state}");
    assert_eq!(ok(sb.exec(&["hostname"]).unwrap()), "unit");
    assert_eq!(
        ok(sb.exec(&["cat", "/etc/machine-id"]).unwrap()),
        sb.machine_id()
    );
    // The host's enabled units do not exist in here.
    assert_eq!(
        sb.property("postgresql.service", "LoadState").unwrap(),
        "not-found"
    );
    assert_eq!(
        ok(sb
            .exec(&["cat", "/run/ferry-test/shared/hello.txt"])
            .unwrap()),
        "hello from the host"
    );
    assert!(!Path::new("/run/ferry-test").exists());
    assert_eq!(
        ok(sb.exec(&["cat", &format!("{var_lib}/hello.txt")]).unwrap()),
        "hello from the host"
    );
    assert_eq!(ok(sb.exec(&["cat", &etc_file]).unwrap()), "a = 1");
    // The overlaid /etc and /var/lib still show the host's files, and what is
    // written there stays inside.
    assert!(sb
        .exec(&["test", "-f", "/etc/os-release"])
        .unwrap()
        .status
        .success());
    ok(sb
        .exec(&["touch", "/var/lib/ferry-test-written-inside"])
        .unwrap());
    for host_path in [
        var_lib.as_str(),
        &etc_file,
        "/var/lib/ferry-test-written-inside",
    ] {
        assert!(
            !Path::new(host_path).exists(),
            "`{host_path}` made on the host"
        );
    }
    assert!(sb.bus_address().ends_with("/run/dbus/system_bus_socket"));
    let bus = PathBuf::from(sb.bus_address().trim_start_matches("unix:path="));
    assert!(fs::metadata(bus).unwrap().file_type().is_socket());

    sb.install_unit(
        "sleeper.service",
        "[Unit]\nDescription=ferry test sleeper\n[Service]\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    assert_eq!(
        sb.unit_dir().join("sleeper.service").parent(),
        Some(sb.unit_dir().as_path())
    );
    ok(sb.exec(&["systemctl", "start", "sleeper.service"]).unwrap());
    assert_eq!(
        ok(sb
            .systemctl(&["show", "-p", "ActiveState", "sleeper.service"])
            .unwrap()),
        "ActiveState=active"
    );
    let started = wait_for_entry(&sb, "sleeper.service", |e| {
        field(e, "JOB_TYPE") == "start" && field(e, "JOB_RESULT") == "done"
    });
    assert_eq!(field(&started, "_HOSTNAME"), "unit");
    assert_eq!(field(&started, "_MACHINE_ID"), sb.machine_id());
    assert_eq!(field(&started, "_BOOT_ID"), sb.boot_id());
    assert_eq!(field(&started, "UNIT"), "sleeper.service");
    let text = stdout(&sb.journal(&["-u", "sleeper.service", "-o", "cat"]).unwrap());
    assert!(text.contains("Started"), "{text}");

    // A running PrivateTmp= unit has its directory in the shared host /tmp; a
    // graceful stop stops it first, which removes it.
    let ptmp = format!("ptmp-{}.service", std::process::id());
    sb.install_unit(
        &ptmp,
        "[Service]\nPrivateTmp=yes\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    ok(sb.systemctl(&["start", &ptmp]).unwrap());
    assert_eq!(private_tmp_dirs_of(&ptmp).len(), 1);

    // A process put in from outside that still runs must not hang the stop
    // (systemd's shutdown SIGSTOPs it, and its nsenter parent too).
    let mut stray = sb.nsenter(&["sleep", "300"]).spawn().unwrap();
    assert!(procs::wait_until(Duration::from_secs(5), || {
        !procs::entered_from_outside(&traces.pid_ns, traces.pid).is_empty()
    }));

    let t = Instant::now();
    sb.stop().unwrap();
    eprintln!("graceful stop: {:?}", t.elapsed());
    assert!(!stray.wait().unwrap().success());
    traces.assert_gone();
    assert_eq!(private_tmp_dirs_of(&ptmp), Vec::<String>::new());
    marker.assert_kept();
}

/// Whether a connection from inside `sb` to the host's 127.0.0.1:`port` works.
fn reaches_host_loopback(sb: &Sandbox, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; echo hello >&3");
    sb.exec(&["timeout", "5", "bash", "-c", &script])
        .unwrap()
        .status
        .success()
}

#[test]
fn two_sandboxes_at_once_with_and_without_their_own_network_and_tmp() {
    let marker = Marker::new("pair");
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("note"), "shared").unwrap();
    let id_a = "0123456789abcdef0123456789abcdef".to_string();
    let opts_a = SandboxOptions {
        machine_id: Some(id_a.clone()),
        ..SandboxOptions::default()
    };
    let opts_b = SandboxOptions {
        binds: vec![(shared.path().into(), "/tmp/from-host".into())],
        private_tmp: true,
        private_network: true,
        machine_id: None,
    };
    let t = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Sandbox::start("board-a", opts_a).unwrap());
        let b = s.spawn(|| Sandbox::start("board-b", opts_b).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "two parallel boots: {:?} wall, {:?} and {:?} each",
        t.elapsed(),
        a.boot_time(),
        b.boot_time()
    );
    let (traces_a, traces_b) = (Traces::of(&a), Traces::of(&b));
    assert_ne!(a.pid(), b.pid());
    assert_eq!(ok(a.exec(&["hostname"]).unwrap()), "board-a");
    assert_eq!(ok(b.exec(&["hostname"]).unwrap()), "board-b");
    assert_eq!(ok(a.exec(&["cat", "/etc/machine-id"]).unwrap()), id_a);
    assert_ne!(ok(b.exec(&["cat", "/etc/machine-id"]).unwrap()), id_a);
    let host_boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let boot_ids = [&a, &b].map(|sb| {
        ok(sb
            .exec(&["cat", "/proc/sys/kernel/random/boot_id"])
            .unwrap())
        .replace('-', "")
    });
    assert_eq!(boot_ids, [a.boot_id(), b.boot_id()]);
    assert_ne!(a.boot_id(), b.boot_id());
    assert_ne!(host_boot_id.trim().replace('-', ""), a.boot_id());

    // a shares the host's network and /tmp; b has its own of both.
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        let _ = conn.write_all(b"bye");
        got
    });
    assert!(reaches_host_loopback(&a, port));
    assert_eq!(server.join().unwrap(), "hello\n");
    assert!(!reaches_host_loopback(&b, port));
    let links = ok(b.exec(&["cat", "/proc/net/dev"]).unwrap());
    let names: Vec<&str> = links
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    assert_eq!(names, ["lo"]);
    let marker_path = marker.0.to_str().unwrap();
    assert!(a
        .exec(&["test", "-f", marker_path])
        .unwrap()
        .status
        .success());
    assert!(!b
        .exec(&["test", "-f", marker_path])
        .unwrap()
        .status
        .success());
    assert_eq!(
        ok(b.exec(&["cat", "/tmp/from-host/note"]).unwrap()),
        "shared"
    );

    // Each journal is its own.
    let entries = a.journal_json(None).unwrap();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|e| field(e, "_HOSTNAME") == "board-a" && field(e, "_BOOT_ID") == a.boot_id()));

    // Killing (drop) leaves a running PrivateTmp= unit's directory behind in the
    // host's /tmp unless the harness removes it.
    let ptmp = format!("ptmp-drop-{}.service", std::process::id());
    a.install_unit(
        &ptmp,
        "[Service]\nPrivateTmp=yes\nExecStart=/bin/sleep 1000\n",
    )
    .unwrap();
    ok(a.systemctl(&["start", &ptmp]).unwrap());
    assert_eq!(private_tmp_dirs_of(&ptmp).len(), 1);

    let t = Instant::now();
    drop(a);
    eprintln!("stop by drop (SIGKILL): {:?}", t.elapsed());
    traces_a.assert_gone();
    assert_eq!(private_tmp_dirs_of(&ptmp), Vec::<String>::new());
    // b is unaffected by a's end.
    assert_eq!(ok(b.systemctl(&["is-system-running"]).unwrap()), "running");
    b.stop().unwrap();
    traces_b.assert_gone();
    marker.assert_kept();
}

/// Set to a file path, [`child_process_helper`] boots a sandbox, writes its
/// state directory there and waits to be killed.
const CHILD_ENV: &str = "FERRY_TESTS_SANDBOX_CHILD";

/// Not a test on its own: the process that
/// [`a_killed_test_process_leaves_nothing_after_gc`] runs and SIGKILLs. Without
/// `FERRY_TESTS_SANDBOX_CHILD` it returns at once.
#[test]
fn child_process_helper() {
    let Some(report) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let sb = Sandbox::start("orphan", SandboxOptions::default()).unwrap();
    let traces = Traces::of(&sb);
    let text = format!(
        "{}\n{}\n{}\n{}\n",
        traces.pid,
        traces.pid_ns,
        traces.dir.display(),
        traces.cgroup.display()
    );
    fs::write(PathBuf::from(&report).with_extension("tmp"), text).unwrap();
    fs::rename(PathBuf::from(&report).with_extension("tmp"), &report).unwrap();
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn a_killed_test_process_leaves_nothing_after_gc() {
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "systemd::tests::child_process_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &report)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let booted = procs::wait_until(Duration::from_secs(60), || {
        report.exists() || matches!(child.try_wait(), Ok(Some(_)))
    });
    assert!(
        booted && report.exists(),
        "the child did not boot a sandbox"
    );
    let text = fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let traces = Traces {
        pid: lines[0].parse().unwrap(),
        pid_ns: lines[1].to_string(),
        dir: PathBuf::from(lines[2]),
        cgroup: PathBuf::from(lines[3]),
    };
    assert!(procs::alive(traces.pid));

    let t = Instant::now();
    child.kill().unwrap();
    child.wait().unwrap();
    // The kernel ends the sandbox: the launcher's parent-death signal, then
    // unshare's --kill-child.
    assert!(
        procs::wait_until(Duration::from_secs(5), || procs::live_in_ns(&traces.pid_ns)
            .is_empty()),
        "the sandbox outlived its test process"
    );
    eprintln!(
        "sandbox gone {:?} after its test process was killed",
        t.elapsed()
    );
    assert!(traces.dir.exists(), "nothing for gc to do?");
    let removed = gc::collect().unwrap();
    let id = traces
        .dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(removed.contains(&id), "{removed:?}");
    traces.assert_gone();
}

#[test]
fn a_failed_boot_says_why_and_leaves_nothing_behind() {
    let file = tempfile::NamedTempFile::new().unwrap();
    // A file cannot be mounted over a directory: the init script fails.
    let err = Sandbox::start(
        "fails",
        SandboxOptions {
            binds: vec![(file.path().into(), "/srv".into())],
            ..SandboxOptions::default()
        },
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("sandbox `fails`") && err.contains("init.log") && err.contains("/srv"),
        "{err}"
    );
    let me = format!("fails-{}-", std::process::id());
    let left = |dir: &Path, prefix: &str| -> Vec<String> {
        fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(left(&state::root(), &me), Vec::<String>::new());
    let cgroups = procs::own_cgroup().unwrap();
    assert_eq!(
        left(&cgroups, &format!("{CGROUP_PREFIX}{me}")),
        Vec::<String>::new()
    );
}

#[test]
fn mistakes_are_named_before_anything_boots() {
    let err = Sandbox::start("bad name", SandboxOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("bad sandbox name"), "{err:#}");
    let err = Sandbox::start(
        "x",
        SandboxOptions {
            binds: vec![("/ferry-no-such-dir".into(), "/run/x".into())],
            ..SandboxOptions::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("/ferry-no-such-dir"), "{err:#}");
    let err = Sandbox::start(
        "x",
        SandboxOptions {
            machine_id: Some("nope".into()),
            ..SandboxOptions::default()
        },
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("bad machine ID"), "{err:#}");
}

//! `ferry publish` and `ferryd` end to end on a real systemd: nginx serves the
//! repository, ferryd runs as a service from `units/ferryd.service` inside a
//! sandboxed systemd, and the app runs as a systemd unit. Releases are real
//! `ferry build`s of `examples/simple_api` (and broken variants of it).

mod common;

use std::path::Path;
use std::time::Duration;

use common::repo::{
    board, current_version, install_v1, variant, version_served, Repo, ANSWERS_500, CRASH_LOOPS,
    EXITS_AT_START, WAIT,
};
use common::text;
use ferry_tests::board::{is_complete_binary, AgentConfig, Board};
use ferry_tests::nginx::Nginx;
use ferry_tests::server;

#[test]
fn publish_v1_then_v2_updates_over_dbus_with_one_journal_entry_per_transition() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "update", "");
    install_v1(&repo, &board, port);
    let pid_v1 = board
        .sandbox
        .property("simple_api.service", "MainPID")
        .unwrap();

    repo.publish(&variant("2.0.0", None), &[]);
    let s = board
        .wait_for("v2 committed", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("2.0.0"));
    assert_eq!(s["previous"]["version"], "1.0.0");
    assert_ne!(
        board
            .sandbox
            .property("simple_api.service", "MainPID")
            .unwrap(),
        pid_v1,
        "the unit was restarted"
    );
    assert!(is_complete_binary(&board.current_binary()));

    // One structured entry per transition of the v2 update, in order.
    let events: Vec<String> = board
        .events()
        .unwrap()
        .iter()
        .filter(|e| e["FERRY_VERSION"] == "2.0.0")
        .map(|e| e["FERRY_EVENT"].as_str().unwrap().to_owned())
        .collect();
    let expected = [
        "update_available",
        "download_started",
        "downloaded",
        "extracted",
        "verified",
        "installed",
        "restarting",
        "probation",
        "committed",
    ];
    let mut at = 0;
    for want in expected {
        let found = events[at..].iter().position(|e| e == want);
        assert!(
            found.is_some(),
            "no `{want}` after position {at} in {events:?}"
        );
        at += found.unwrap() + 1;
    }
    for want in expected {
        assert_eq!(
            events.iter().filter(|e| *e == want).count(),
            1,
            "`{want}` logged more than once: {events:?}"
        );
    }
    for e in board.events().unwrap() {
        assert_eq!(e["MESSAGE_ID"].as_str().map(str::len), Some(32), "{e}");
        assert_eq!(e["FERRY_APP"], "simple_api");
    }
}

#[test]
fn bad_releases_are_rolled_back_denied_and_not_retried() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "rollback", "");
    install_v1(&repo, &board, port);
    for (version, patch) in [
        ("2.0.1", EXITS_AT_START),
        ("2.0.2", CRASH_LOOPS),
        ("2.0.3", ANSWERS_500),
    ] {
        repo.publish(&variant(version, Some(patch)), &[]);
        let s = board
            .wait_for(&format!("{version} rolled back"), WAIT, |s| {
                s["last_result"]["outcome"] == "rolled_back"
                    && s["last_result"]["version"] == version
            })
            .unwrap();
        assert_eq!(current_version(&s), "1.0.0");
        assert!(
            s["denied"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["version"] == version),
            "{s:#}"
        );
        assert_eq!(
            version_served(port).as_deref(),
            Some("1.0.0"),
            "v1 serves again after {version}"
        );
        // Several more polls: the denied release is not downloaded again.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(
            board
                .count_events("download_started", Some(version))
                .unwrap(),
            1,
            "{version} was retried"
        );
        assert!(board.count_events("rolled_back", Some("1.0.0")).unwrap() >= 1);
    }
    let human = board.ferryd(&["status"]).unwrap();
    let out = String::from_utf8_lossy(&human.stdout);
    assert!(out.contains("denied:") && out.contains("2.0.3"), "{out}");
}

#[test]
fn when_the_previous_version_is_unhealthy_too_the_agent_holds() {
    let repo = Repo::new();
    // Health also needs a file the test removes: then every version fails.
    let (board, port) = board(
        &repo,
        "hold",
        "health-command = [\"/bin/test\", \"-e\", \"/etc/ferry/healthy\"]",
    );
    std::fs::write(board.etc.join("healthy"), "").unwrap();
    install_v1(&repo, &board, port);
    std::fs::remove_file(board.etc.join("healthy")).unwrap();
    repo.publish(&variant("2.0.0", None), &[]);
    let s = board
        .wait_for("hold", WAIT, |s| s["phase"] == "hold")
        .unwrap();
    assert!(
        s["hold_reason"].as_str().unwrap().contains("unhealthy too"),
        "{s:#}"
    );
    assert_eq!(current_version(&s), "1.0.0");
    assert_eq!(
        std::fs::read_link(board.app_dir().join("current")).unwrap(),
        Path::new("versions").join(s["current"]["dir"].as_str().unwrap())
    );
    // It does not flap: no further installs while in hold.
    let installs = board.count_events("installed", None).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(board.count_events("installed", None).unwrap(), installs);
    assert!(board.count_events("hold", None).unwrap() >= 1);
    let human = board.ferryd(&["status"]).unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains("HOLD"));
}

#[test]
fn keep_prunes_old_versions_and_install_and_rollback_work_offline() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "keep", "");
    install_v1(&repo, &board, port);
    for v in ["1.1.0", "1.2.0", "1.3.0"] {
        repo.publish(&variant(v, None), &[]);
        board
            .wait_for(v, WAIT, |s| current_version(s) == v && s["phase"] == "idle")
            .unwrap();
    }
    let s = board.app_status().unwrap();
    // Pruning follows the commit that makes the phase idle: give it a moment.
    let versions = || -> Vec<String> {
        std::fs::read_dir(board.app_dir().join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let deadline = std::time::Instant::now() + WAIT;
    let mut on_disk = versions();
    while on_disk.len() > 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        on_disk = versions();
    }
    assert_eq!(on_disk.len(), 3, "keep = 3: {on_disk:?}");
    assert!(on_disk.contains(&s["current"]["dir"].as_str().unwrap().to_owned()));
    assert!(on_disk.contains(&s["previous"]["dir"].as_str().unwrap().to_owned()));
    assert_eq!(
        s["current_link"], s["current"]["dir"],
        "status --json matches the disk"
    );
    assert_eq!(s["previous_link"], s["previous"]["dir"]);

    // Operator rollback: back to 1.2.0, 1.3.0 denied.
    board
        .sandbox
        .systemctl(&["stop", "ferryd.service"])
        .unwrap();
    let out = board.ferryd(&["rollback", "simple_api"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = board.app_status().unwrap();
    assert_eq!(current_version(&s), "1.2.0");
    assert_eq!(version_served(port).as_deref(), Some("1.2.0"));

    // Offline install of a signed file (as from a USB stick), same checks.
    let file = board.etc.join("usb-2.5.0");
    std::fs::copy(variant("2.5.0", None), &file).unwrap();
    let out = board.ferryd(&["install", "/etc/ferry/usb-2.5.0"]).unwrap();
    assert!(
        !out.status.success(),
        "an unsigned file must be refused: {}",
        text(&out)
    );
    assert_eq!(current_version(&board.app_status().unwrap()), "1.2.0");
    repo.sign(&file);
    let out = board.ferryd(&["install", "/etc/ferry/usb-2.5.0"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(current_version(&board.app_status().unwrap()), "2.5.0");
    assert_eq!(version_served(port).as_deref(), Some("2.5.0"));
}

#[test]
fn killing_the_agent_at_any_point_never_breaks_current() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "sigkill", "");
    install_v1(&repo, &board, port);
    let state_file = board.app_dir().join("state.json");
    // Kill the agent at spread-out moments of successive updates; systemd
    // restarts it (Restart=on-failure) and it resumes from its state file.
    // Alternate two releases (each publish has a higher serial, so going back
    // to 1.0.0 is a deliberate downgrade): one extra build instead of six.
    let v3 = variant("3.0.0", None);
    let v1 = common::simple_api();
    let delays_ms = [150u64, 700, 1500, 2600, 3800, 5200];
    for (i, delay) in delays_ms.iter().enumerate() {
        let (version, bin) = if i % 2 == 0 {
            ("3.0.0".to_owned(), &v3)
        } else {
            ("1.0.0".to_owned(), &v1)
        };
        repo.publish(bin, &[]);
        std::thread::sleep(Duration::from_millis(*delay));
        let pid = board.sandbox.property("ferryd.service", "MainPID").unwrap();
        if pid != "0" {
            let out = board.sandbox.exec(&["kill", "-9", &pid]).unwrap();
            assert!(out.status.success(), "{}", text(&out));
        }
        // Right after the kill: current is complete and verified, the state parses.
        assert!(
            is_complete_binary(&board.current_binary()),
            "kill {i}: current is not a complete binary"
        );
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        assert!(state["phase"].is_string(), "kill {i}: {state}");
        // The update finishes after the restart (or rolls back: it must not).
        let s = board
            .wait_for(&format!("{version} after kill {i}"), WAIT, |s| {
                current_version(s) == version && s["phase"] == "idle"
            })
            .unwrap();
        assert_eq!(s["last_result"]["outcome"], "committed", "{s:#}");
        assert_eq!(version_served(port).as_deref(), Some(version.as_str()));
    }
    let restarts: u32 = board
        .sandbox
        .property("ferryd.service", "NRestarts")
        .unwrap()
        .parse()
        .unwrap();
    assert!(restarts >= 1, "the agent was never killed");
}

#[test]
fn a_failing_or_silent_server_gets_retries_and_the_agent_keeps_running() {
    use std::io::{Read as _, Write as _};
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;

    let repo = Repo::new();
    repo.publish(&common::simple_api(), &[]);
    // A server that answers 500 (mode 0), then accepts and never answers
    // (mode 1), then goes away (mode 2) so nginx can take its port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let mode = Arc::new(AtomicU8::new(0));
    let requests = Arc::new(AtomicU8::new(0));
    let (m, r) = (mode.clone(), requests.clone());
    let fault = std::thread::spawn(move || {
        let mut held = Vec::new();
        while m.load(Ordering::SeqCst) < 2 {
            match listener.accept() {
                Ok((mut s, _)) => {
                    r.fetch_add(1, Ordering::SeqCst);
                    s.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf);
                    if m.load(Ordering::SeqCst) == 0 {
                        let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    } else {
                        held.push(s);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let board = Board::start("outage", None).unwrap();
    let app_port = server::free_port().unwrap();
    board
        .configure(&AgentConfig {
            repository: &format!("http://127.0.0.1:{port}"),
            root: &repo.root(),
            app_extra: "",
            top_extra: "network-timeout = \"2s\"",
            port: app_port,
        })
        .unwrap();
    board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    let errors_after = |secs: u64| {
        std::thread::sleep(Duration::from_secs(secs));
        board.assert_active_without_restarts("ferryd.service");
        board.count_events("error", None).unwrap()
    };
    let after_500s = errors_after(5);
    assert!(
        after_500s >= 2,
        "the agent retries after 500s ({after_500s} errors logged)"
    );
    mode.store(1, Ordering::SeqCst);
    let before = requests.load(Ordering::SeqCst);
    let after_silence = errors_after(8);
    assert!(
        after_silence > after_500s,
        "a silent server ends in a timeout and a retry"
    );
    assert!(
        requests.load(Ordering::SeqCst) > before + 1,
        "the agent tried again after the silence"
    );
    mode.store(2, Ordering::SeqCst);
    fault.join().unwrap();
    // The server comes back: the agent installs v1 on its own.
    let _nginx = Nginx::serve_on(&repo.path(), port).unwrap();
    board
        .wait_for("v1 after the outage", WAIT, |s| {
            current_version(s) == "1.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(app_port).as_deref(), Some("1.0.0"));
}

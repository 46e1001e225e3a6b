//! The service on a real board when it must wait or is pressed: a release
//! that arrives outside the install window (computed from the board's own
//! clock) and an inhibitor the app holds, an operator's install while the
//! service is mid-update, a newer operator install the channel's older
//! release does not undo, and a restart job that never ends.

mod common;

use std::time::{Duration, Instant};

use common::repo::{
    board, current_version, install_from_file, install_v1, variant, version_served, Repo, WAIT,
};
use common::text;
use ferry_tests::board::hh_mm;

fn waiting(s: &serde_json::Value) -> String {
    s["waiting"].as_str().unwrap_or("").to_owned()
}

#[test]
fn a_release_waits_for_the_install_window_then_for_the_apps_inhibitor() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "window", "");
    install_v1(&repo, &board, port);

    // A window opening at a minute boundary 90 to 150 s away on the
    // board's clock, so the release is verified well before it opens.
    let (minute, second) = board.local_clock().unwrap();
    let opens = if second < 30 { minute + 2 } else { minute + 3 };
    let window = format!("{}-{}", hh_mm(opens), hh_mm(opens + 30));
    board
        .reconfigure(&format!("install-window = \"{window}\""))
        .unwrap();

    repo.publish(&variant("2.0.0", None), &[]);
    let s = board
        .wait_for("v2 waiting for the window", WAIT, |s| {
            s["phase"] == "verified" && waiting(s).contains("outside the install window")
        })
        .unwrap();
    assert_eq!(s["target"]["version"], "2.0.0", "{s:#}");
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    let out = board.ferryd(&["status"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("waiting:  2.0.0 outside the install window"),
        "{}",
        text(&out)
    );

    // The app holds an inhibitor before the window opens.
    let out = board
        .sandbox
        .exec(&[
            "sh",
            "-c",
            "mkdir -p /run/simple_api && touch /run/simple_api/inhibit",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The window opens: the release now waits for the inhibitor only.
    let s = board
        .wait_for("the window to open", Duration::from_secs(240), |s| {
            waiting(s).contains("the app holds an inhibitor")
        })
        .unwrap();
    assert_eq!(s["phase"], "verified", "{s:#}");
    let (now, _) = board.local_clock().unwrap();
    assert!(
        (opens..opens + 30).contains(&now) || (opens..opens + 30).contains(&(now + 24 * 60)),
        "the release left the window's wait at {} for a window {window}",
        hh_mm(now)
    );
    // It stays held while the file is there.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    assert_eq!(board.app_status().unwrap()["phase"], "verified");
    let out = board.ferryd(&["status"]).unwrap();
    assert!(
        text(&out).contains("waiting:  2.0.0 the app holds an inhibitor"),
        "{}",
        text(&out)
    );

    // Released: the update goes on.
    let out = board
        .sandbox
        .exec(&["rm", "/run/simple_api/inhibit"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    board
        .wait_for("v2 committed", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("2.0.0"));
    assert_eq!(board.count_events("installed", Some("2.0.0")).unwrap(), 1);
}

#[test]
fn an_operators_install_during_an_update_waits_for_it_and_never_interleaves() {
    let repo = Repo::new();
    // A long probation keeps the service mid-update while the operator acts.
    let (board, port) = board(&repo, "interleave", "probation = \"12s\"");
    install_v1(&repo, &board, port);

    repo.publish(&variant("2.0.0", None), &[]);
    board
        .wait_for("v2 on probation", WAIT, |s| s["phase"] == "probation")
        .unwrap();
    install_from_file(&repo, &board, "2.5.0");

    let s = board.app_status().unwrap();
    assert_eq!(current_version(&s), "2.5.0", "{s:#}");
    assert_eq!(s["previous"]["version"], "2.0.0", "{s:#}");
    assert_eq!(version_served(port).as_deref(), Some("2.5.0"));

    // In the journal, v2's attempt ends before the operator's begins.
    let events: Vec<(String, String)> = board
        .events()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["FERRY_EVENT"].as_str().unwrap_or("").to_owned(),
                e["FERRY_VERSION"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let position = |event: &str, version: &str| {
        events
            .iter()
            .position(|(e, v)| e == event && v == version)
            .unwrap_or_else(|| panic!("no {event} of {version} in {events:?}"))
    };
    let v2_committed = position("committed", "2.0.0");
    let first_of_operator = events
        .iter()
        .position(|(_, v)| v == "2.5.0")
        .expect("2.5.0's events");
    assert!(
        v2_committed < first_of_operator,
        "the operator's install began inside v2's attempt: {events:?}"
    );
    assert_eq!(board.count_events("installed", Some("2.0.0")).unwrap(), 1);
    assert_eq!(board.count_events("installed", Some("2.5.0")).unwrap(), 1);
}

#[test]
fn a_restart_job_that_never_ends_costs_the_agent_its_watchdog_and_the_resume_finishes() {
    let repo = Repo::new();
    // The restart may take a minute, the watchdog only 4 s: a hung job is
    // the watchdog's to catch.
    let (board, port) = board(&repo, "hung", "restart-timeout = \"60s\"");
    board
        .agent_drop_in("watchdog", "[Service]\nWatchdogSec=4s\n")
        .unwrap();
    let dir = board.sandbox.unit_dir().join("simple_api.service.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hang.conf"),
        "[Service]\nTimeoutStartSec=infinity\nExecStartPre=/bin/sh -c 'while [ -e /run/hang-start ]; do sleep 0.2; done'\n",
    )
    .unwrap();
    let out = board.sandbox.systemctl(&["daemon-reload"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    install_v1(&repo, &board, port);

    // From now on the app's start job hangs.
    let out = board.sandbox.exec(&["touch", "/run/hang-start"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    repo.publish(&variant("2.0.0", None), &[]);

    let deadline = Instant::now() + WAIT;
    while board
        .sandbox
        .property("ferryd.service", "NRestarts")
        .unwrap()
        == "0"
    {
        assert!(
            Instant::now() < deadline,
            "ferryd was never restarted; status: {:#}",
            board.app_status().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let journal = board
        .sandbox
        .journal(&["-u", "ferryd.service"])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap();
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    assert_eq!(
        version_served(port),
        None,
        "the app is down while its start hangs"
    );

    // systemd comes unstuck; the restarted agent resumes and commits.
    let out = board.sandbox.exec(&["rm", "/run/hang-start"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    board
        .wait_for("v2 committed after the resume", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("2.0.0"));
    assert_eq!(
        board
            .sandbox
            .property("ferryd.service", "ActiveState")
            .unwrap(),
        "active"
    );
}

#[test]
fn an_operators_newer_install_is_not_undone_by_the_release_it_superseded() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "superseded", "");
    install_v1(&repo, &board, port);
    let window = board.closed_window().unwrap();
    board
        .reconfigure(&format!("install-window = \"{window}\""))
        .unwrap();
    repo.publish(&variant("2.0.0", None), &[]);
    board
        .wait_for("v2 waiting for the window", WAIT, |s| {
            s["phase"] == "verified" && waiting(s).contains("outside the install window")
        })
        .unwrap();
    // The operator installs a newer build from a file instead.
    install_from_file(&repo, &board, "3.0.0");

    // The window goes; the channel still offers 2.0.0, which it offered
    // before 3.0.0 came: the board keeps 3.0.0.
    board
        .rewrite_config(|toml| toml.replace(&format!("install-window = \"{window}\"\n"), ""))
        .unwrap();
    let polls = board.count_events("check_started", None).unwrap();
    let deadline = Instant::now() + WAIT;
    while board.count_events("check_started", None).unwrap() < polls + 4 {
        assert!(Instant::now() < deadline, "ferryd stopped polling");
        std::thread::sleep(Duration::from_millis(250));
    }
    let s = board.app_status().unwrap();
    assert_eq!(current_version(&s), "3.0.0", "{s:#}");
    assert_eq!(s["phase"], "idle", "{s:#}");
    assert_eq!(board.count_events("installed", Some("2.0.0")).unwrap(), 0);
    assert_eq!(version_served(port).as_deref(), Some("3.0.0"));

    // Published again (a higher serial), 2.0.0 is a deliberate way back.
    repo.publish(&variant("2.0.0", None), &[]);
    board
        .wait_for("back to 2.0.0", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
}

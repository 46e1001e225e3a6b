//! ferryd's D-Bus API on a real systemd board, driven with `busctl` as an
//! operator's tool would: check, properties, rollback, an operator's
//! install through `ferryd install` (the file passed by descriptor) while
//! the service runs, and a caller who is neither root nor in the `ferry`
//! group refused with the rule.

mod common;

use common::repo::{
    board, current_version, install_from_file, install_v1, variant, version_served, Repo, WAIT,
};
use common::text;

const CALL: [&str; 5] = [
    "busctl",
    "--timeout=300",
    "call",
    "dev.ferry.Agent1",
    "/dev/ferry/Agent1",
];

fn app_property(board: &ferry_tests::board::Board, name: &str) -> String {
    let out = board
        .sandbox
        .exec(&[
            "busctl",
            "get-property",
            "dev.ferry.Agent1",
            "/dev/ferry/Agent1/apps/simple_5fapi",
            "dev.ferry.Agent1.App",
            name,
        ])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The `Progress` values in `PropertiesChanged` signals and the arguments
/// of `Completed` signals the monitor saw, in order.
fn signals(board: &ferry_tests::board::Board) -> (Vec<u64>, Vec<String>) {
    let out = board
        .sandbox
        .journal(&["-u", "ferry-monitor.service", "-o", "cat"])
        .unwrap();
    let mut progress = Vec::new();
    let mut completed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let args = &message["payload"]["data"];
        match message["member"].as_str() {
            Some("PropertiesChanged") => {
                if let Some(p) = args[1]["Progress"]["data"].as_u64() {
                    progress.push(p);
                }
            }
            Some("Completed") => completed.push(args.to_string()),
            _ => {}
        }
    }
    (progress, completed)
}

#[test]
fn the_dbus_api_checks_rolls_back_installs_and_refuses_strangers() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "dbus", "");
    install_v1(&repo, &board, port);
    assert_eq!(app_property(&board, "CurrentVersion"), "s \"1.0.0\"");

    // A caller who is neither root nor in the `ferry` group.
    let mut argv = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    argv.extend(CALL);
    argv.extend(["dev.ferry.Agent1", "Check", "s", "simple_api"]);
    let out = board.sandbox.exec(&argv).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    // busctl shows the error's name as its errno text; the sentence
    // naming the rule comes with it on the bus.
    assert!(
        text(&out).contains("Access denied")
            || text(&out).contains("only root and members of the `ferry` group"),
        "{}",
        text(&out)
    );

    // Everything the service signals, recorded by a monitor on the board.
    let out = board
        .sandbox
        .exec(&[
            "systemd-run",
            "--unit=ferry-monitor",
            "busctl",
            "monitor",
            "--json=short",
            "--match=type='signal',path_namespace='/dev/ferry/Agent1'",
        ])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_secs(1));

    // Check as root: v2 is taken (by this call or the service's own poll).
    repo.publish(&variant("2.0.0", None), &[]);
    let mut argv = CALL.to_vec();
    argv.extend(["dev.ferry.Agent1", "Check", "s", "simple_api"]);
    let out = board.sandbox.exec(&argv).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    board
        .wait_for("v2 committed", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(app_property(&board, "CurrentVersion"), "s \"2.0.0\"");
    assert_eq!(app_property(&board, "PreviousVersion"), "s \"1.0.0\"");
    assert_eq!(app_property(&board, "Progress"), "y 100");
    let (progress, completed) = signals(&board);
    assert!(
        progress.iter().any(|p| (1..100).contains(p)) && progress.last() == Some(&100),
        "Progress went {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "Progress went backwards: {progress:?}"
    );
    assert!(
        completed
            .iter()
            .any(|c| c.contains("simple_api") && c.contains("committed") && c.contains("2.0.0")),
        "Completed signals: {completed:?}"
    );

    // Rollback through the API.
    let mut argv = CALL.to_vec();
    argv.extend(["dev.ferry.Agent1", "Rollback", "s", "simple_api"]);
    let out = board.sandbox.exec(&argv).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("rolled_back"), "{}", text(&out));
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    assert_eq!(app_property(&board, "LastResult"), "s \"rolled_back\"");

    // `ferryd install` while the service runs goes through it, by descriptor.
    install_from_file(&repo, &board, "2.5.0");
    assert_eq!(version_served(port).as_deref(), Some("2.5.0"));
    assert_eq!(app_property(&board, "CurrentVersion"), "s \"2.5.0\"");
    // The service held the device throughout: a second driver is refused.
    let out = board
        .sandbox
        .exec(&["sh", "-c", "cp /etc/ferry/agent.toml /etc/ferry/other.toml"])
        .unwrap();
    assert!(out.status.success());
    let out = board
        .ferryd(&["-c", "/etc/ferry/other.toml", "check"])
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("another ferryd drives the updates"),
        "{}",
        text(&out)
    );
}

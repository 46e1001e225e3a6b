//! The command line's hygiene: secrets stay secret, a signature that is not
//! there is not "fine", a closed pipe is no crash, and what devices report
//! cannot drive the operator's terminal or pin a device's state.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::{fails, ferry, ferry_bin, make_named_container, ok, work};

#[test]
fn inspect_with_a_pubkey_fails_on_an_unsigned_binary() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    make_named_container(&p.join("bin"), "demo", "1.0.0");
    let msg = fails(ferry(p, &["inspect", "bin", "--pubkey", "ferry.pub"], &[]));
    assert!(msg.contains("is not signed"), "{msg}");
    // Without --pubkey it only describes the file.
    ok(ferry(p, &["inspect", "bin"], &[]));
}

#[test]
fn inspect_shows_the_build_time_in_iso_8601() {
    let d = work();
    let p = d.path();
    make_named_container(&p.join("bin"), "demo", "1.0.0");
    let o = ok(ferry(p, &["inspect", "bin"], &[]));
    let out = String::from_utf8_lossy(&o.stdout);
    // make_named_container dates its metadata 1_700_000_000.
    assert!(
        out.contains("created at:  2023-11-14T22:13:20Z (unix 1700000000)"),
        "{out}"
    );
}

#[test]
fn secret_key_and_password_files_others_can_read_are_refused() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    make_named_container(&p.join("bin"), "demo", "1.0.0");
    std::fs::set_permissions(p.join("ferry.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let msg = fails(ferry(p, &["sign", "bin", "--key", "ferry.key"], &[]));
    assert!(
        msg.contains("accessible to other users") && msg.contains("chmod 600 ferry.key"),
        "{msg}"
    );
    std::fs::set_permissions(p.join("ferry.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    ok(ferry(p, &["sign", "bin", "--key", "ferry.key"], &[]));

    std::fs::write(p.join("pw"), "secret\n").unwrap();
    std::fs::set_permissions(p.join("pw"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let msg = fails(ferry(
        p,
        &[
            "keygen",
            "-s",
            "k2.key",
            "-p",
            "k2.pub",
            "--password-file",
            "pw",
        ],
        &[],
    ));
    assert!(
        msg.contains("password file") && msg.contains("chmod 600"),
        "{msg}"
    );
}

#[test]
fn every_read_only_command_survives_a_closed_stdout() {
    let d = work();
    let p = d.path();
    common::init_repo(p, &["demo"]);
    make_named_container(&p.join("bin"), "demo", "1.0.0");
    ok(ferry(p, &["sign", "bin", "--key", "ferry.key"], &[]));
    std::fs::write(p.join("r.jsonl"), "").unwrap();
    let commands: [&[&str]; 10] = [
        &["inspect", "bin"],
        &["inspect", "bin", "--json"],
        &["verify", "bin", "--pubkey", "ferry.pub"],
        &["fleet", "status", "--reports", "r.jsonl"],
        &["repo", "verify", "--repo", "repo", "--root", "root.json"],
        &["cache", "list", "--dir", "."],
        &["cache", "list", "--dir", ".", "--json"],
        &["--help"],
        &["build", "--help"],
        &["--version"],
    ];
    for args in commands {
        ferry_tests::programs::assert_survives_closed_stdout(
            std::path::Path::new(ferry_bin()),
            p,
            args,
        );
    }
}

#[test]
fn fleet_status_escapes_terminal_controls_and_skips_reports_from_the_future() {
    let d = work();
    let p = d.path();
    let line = |id: &str, app: &str, to: &str, at: u64| {
        format!(
            r#"{{"id":"{id}","device_id":"dev1","app":"{app}","channel":"stable","from":"1.0","to":"{to}","result":"committed","error":null,"serial":3,"at":{at},"agent_version":"0.1.0"}}"#
        )
    };
    let text = [
        line("a", "demo", "2.0\\u001b]0;owned\\u0007", 100),
        line("b", "demo\\u001b[2J", "1.0", 100),
        // Dated 2^64-1: would stay the device's latest report for ever.
        line("c", "pinned", "9.9", u64::MAX),
    ]
    .join("\n");
    std::fs::write(p.join("r.jsonl"), text).unwrap();
    let o = ok(ferry(p, &["fleet", "status", "--reports", "r.jsonl"], &[]));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("\\u{1b}"), "{out}");
    assert!(!out.contains("pinned"), "{out}");
    assert!(err.contains("more than a day after now"), "{err}");
}

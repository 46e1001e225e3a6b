//! `ferry publish` writes the repository of docs/repository.md: artifacts and
//! the channel's manifest as TUF targets of the app's role, then snapshot
//! and timestamp, with serials one above the channel's last; it checks the
//! repository from the trusted root first and refuses what it cannot verify.

mod common;

use std::path::Path;

use common::{
    channel, fails, ferry, ferry_trusted, init_repo, make_named_container, ok, text, work,
};
use ferry_format::manifest::ArtifactKind;
use ferry_format::tuf::layout::{app_target_dir, timestamp_path};

/// Every file in the tree, relative to `root`, to show no temporary files were left.
fn files(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn publish(p: &Path, file: &str, extra: &[&str]) -> std::process::Output {
    let mut a = vec!["publish", file, "--key", "ferry.key"];
    a.extend_from_slice(extra);
    ferry_trusted(p, &a)
}

#[test]
fn publishes_targets_then_metadata_with_rising_serials() {
    let d = work();
    let p = d.path();
    init_repo(p, &["demo"]);
    make_named_container(&p.join("v1"), "demo", "1.0.0");
    make_named_container(&p.join("v2"), "demo", "2.0.0");
    let timestamp = std::fs::read(p.join("repo").join(timestamp_path())).unwrap();

    // Unsigned binaries are refused: devices check the embedded signature.
    let msg = text(&publish(p, "v1", &[]));
    assert!(
        msg.contains("not signed by the release key") && msg.contains("hint:"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(p.join("repo").join(timestamp_path())).unwrap(),
        timestamp,
        "nothing is published on error"
    );

    for v in ["v1", "v2"] {
        ok(ferry(p, &["sign", v, "--key", "ferry.key"], &[]));
    }
    ok(publish(p, "v1", &["--notes", "first"]));
    let m1 = channel(p, "demo", "stable").unwrap();
    let a = &m1.artifacts["x86_64-linux-gnu"];
    assert_eq!(
        (m1.serial, m1.version.as_str(), a.kind, a.target.as_str()),
        (
            1,
            "1.0.0",
            ArtifactKind::Ferry,
            "demo/1.0.0/x86_64-linux-gnu/demo"
        )
    );
    assert_eq!(m1.rollout.percent, 100);
    let o = ok(ferry(
        p,
        &["repo", "verify", "--repo", "repo", "--root", "root.json"],
        &[],
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("demo/stable: 1.0.0 (serial 1"), "{out}");

    ok(publish(p, "v2", &["--percent", "25"]));
    let m2 = channel(p, "demo", "stable").unwrap();
    assert_eq!(
        (m2.serial, m2.version.as_str(), m2.rollout.percent),
        (2, "2.0.0", 25)
    );

    // A deliberate downgrade: the older version with a higher serial.
    ok(publish(p, "v1", &[]));
    let m3 = channel(p, "demo", "stable").unwrap();
    assert_eq!((m3.serial, m3.version.as_str()), (3, "1.0.0"));
    // A serial that does not rise is refused.
    let msg = fails(publish(p, "v2", &["--serial", "3"]));
    assert!(msg.contains("--serial 3"), "{msg}");

    // Channels are separate.
    ok(publish(p, "v2", &["--channel", "beta"]));
    assert_eq!(channel(p, "demo", "beta").unwrap().serial, 1);

    // Versions are immutable: another build of 1.0.0 is refused.
    make_named_container(&p.join("v1b"), "demo", "1.0.0");
    std::fs::OpenOptions::new()
        .append(true)
        .open(p.join("v1b"))
        .unwrap();
    let mut other = std::fs::read(p.join("v1b")).unwrap();
    other[100] ^= 1; // inside the launcher: another build
    std::fs::write(p.join("v1b"), other).unwrap();
    ok(ferry(p, &["sign", "v1b", "--key", "ferry.key"], &[]));
    let msg = fails(publish(p, "v1b", &[]));
    assert!(msg.contains("already published with other bytes"), "{msg}");

    // The app's role lists only what a channel names: stable (1.0.0) and
    // beta (2.0.0), and their manifests.
    let repo = ferry::repository::LocalRepo::new(&p.join("repo"));
    let set = repo.load(&p.join("root.json"), Some("demo")).unwrap();
    let listed: Vec<&String> = set.delegated("demo").unwrap().doc.targets.keys().collect();
    assert_eq!(
        listed,
        [
            "demo/1.0.0/x86_64-linux-gnu/demo",
            "demo/2.0.0/x86_64-linux-gnu/demo",
            "demo/beta.json",
            "demo/stable.json"
        ],
        "{listed:?}"
    );

    let all = files(&p.join("repo"));
    assert!(
        all.iter().all(|f| !f.contains("/.")),
        "temporary files left: {all:?}"
    );
    assert_eq!(
        all.iter()
            .filter(
                |f| f.starts_with(&format!("{}/", app_target_dir("demo"))) && f.ends_with(".demo")
            )
            .count(),
        2,
        "{all:?}"
    );
}

#[test]
fn plain_files_need_app_and_version_and_mismatches_are_refused() {
    let d = work();
    let p = d.path();
    init_repo(p, &["notes", "demo"]);
    let msg = fails(publish(p, "data.txt", &[]));
    assert!(msg.contains("--app"), "{msg}");
    ok(publish(
        p,
        "data.txt",
        &["--app", "notes", "--version", "7"],
    ));
    assert_eq!(
        channel(p, "notes", "stable").unwrap().artifacts["x86_64-linux-gnu"].kind,
        ArtifactKind::File
    );

    make_named_container(&p.join("bin"), "demo", "1.0.0");
    ok(ferry(p, &["sign", "bin", "--key", "ferry.key"], &[]));
    let msg = fails(publish(p, "bin", &["--app", "other"]));
    assert!(
        msg.contains("--app `other`") && msg.contains("demo"),
        "{msg}"
    );
}

#[test]
fn keys_and_repositories_it_cannot_verify_are_refused_before_anything_is_signed() {
    let d = work();
    let p = d.path();
    init_repo(p, &["demo"]);
    make_named_container(&p.join("v1"), "demo", "1.0.0");
    ok(ferry(p, &["sign", "v1", "--key", "ferry.key"], &[]));

    // A release key the repository does not delegate the app to.
    ok(ferry(
        p,
        &[
            "keygen",
            "--no-password",
            "-s",
            "other.key",
            "-p",
            "other.pub",
        ],
        &[],
    ));
    make_named_container(&p.join("v1o"), "demo", "1.0.0");
    ok(ferry(p, &["sign", "v1o", "--key", "other.key"], &[]));
    let msg = fails(ferry_trusted(p, &["publish", "v1o", "--key", "other.key"]));
    assert!(
        msg.contains("is not a release key of app `demo`") && msg.contains("ferry repo delegate"),
        "{msg}"
    );
    // An app with no release role at all.
    make_named_container(&p.join("x"), "undelegated", "1.0.0");
    ok(ferry(p, &["sign", "x", "--key", "ferry.key"], &[]));
    let msg = fails(publish(p, "x", &[]));
    assert!(msg.contains("has no release role"), "{msg}");

    ok(publish(p, "v1", &[]));
    // Someone with write access but no key edits the manifest in place
    // (kind `file`, another target): publish and rollout refuse it.
    let target_dir = p.join("repo").join(app_target_dir("demo"));
    let manifest = std::fs::read_dir(&target_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.to_string_lossy().ends_with(".stable.json"))
        .unwrap();
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text_before.replace("\"ferry\"", "\"file\"")).unwrap();
    let msg = fails(ferry_trusted(
        p,
        &[
            "rollout",
            "--app",
            "demo",
            "--key",
            "ferry.key",
            "--percent",
            "50",
        ],
    ));
    assert!(
        msg.contains("not the file the release keys signed"),
        "{msg}"
    );
    let msg = fails(publish(p, "v1", &["--channel", "stable"]));
    assert!(
        msg.contains("not the file the release keys signed"),
        "{msg}"
    );
    std::fs::write(&manifest, text_before).unwrap();

    // A timestamp replaced by one signed with another key.
    let ts = p.join("repo").join(timestamp_path());
    let good = std::fs::read(&ts).unwrap();
    std::fs::write(&ts, b"{\"signatures\": [], \"signed\": {}}").unwrap();
    let msg = fails(publish(p, "v1", &["--channel", "beta"]));
    assert!(
        msg.contains("timestamp.json") && msg.contains("refused"),
        "{msg}"
    );
    std::fs::write(&ts, good).unwrap();
    // A trusted root that is not a root.
    std::fs::write(p.join("bad-root.json"), b"{}").unwrap();
    let msg = fails(ferry(
        p,
        &[
            "repo",
            "verify",
            "--repo",
            "repo",
            "--root",
            "bad-root.json",
        ],
        &[],
    ));
    assert!(msg.contains("is not a valid root"), "{msg}");
}

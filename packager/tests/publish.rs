//! `ferry publish` writes the static repository of docs/repository.md: the
//! blob, content-addressed, then a signed manifest that the stock `minisign`
//! checks, with serials one above the channel's last.

mod common;

use std::path::Path;

use common::{fails, ferry, make_named_container, minisign, ok, text, work};
use ferry_format::manifest::{ArtifactKind, Manifest};

fn manifest(repo: &Path, app: &str, channel: &str) -> Manifest {
    let bytes = std::fs::read(repo.join(format!("apps/{app}/{channel}.json"))).unwrap();
    Manifest::from_json(&bytes).unwrap()
}

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

#[test]
fn publishes_blob_then_signed_manifest_with_rising_serials() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    make_named_container(&p.join("v1"), "demo", "1.0.0");
    make_named_container(&p.join("v2"), "demo", "2.0.0");

    // Unsigned binaries are refused: devices check the embedded signature.
    let msg = text(&ferry(
        p,
        &["publish", "v1", "--repo", "repo", "--key", "ferry.key"],
        &[],
    ));
    assert!(
        msg.contains("not signed by the publishing key") && msg.contains("hint:"),
        "{msg}"
    );
    assert!(
        !p.join("repo/apps").exists(),
        "nothing is published on error"
    );

    for v in ["v1", "v2"] {
        ok(ferry(p, &["sign", v, "--key", "ferry.key"], &[]));
    }
    ok(ferry(
        p,
        &[
            "publish",
            "v1",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--notes",
            "first",
        ],
        &[],
    ));
    let m1 = manifest(&p.join("repo"), "demo", "stable");
    assert_eq!(
        (m1.serial, m1.version.as_str(), m1.artifact.kind),
        (1, "1.0.0", ArtifactKind::Ferry)
    );
    assert_eq!(m1.rollout.percent, 100);
    assert_eq!(m1.expires_at - m1.published_at, 30 * 86_400);
    let blob = std::fs::read(p.join("repo").join(&m1.artifact.path)).unwrap();
    assert_eq!(blob, std::fs::read(p.join("v1")).unwrap());
    assert_eq!(blob.len() as u64, m1.artifact.size);

    ok(ferry(
        p,
        &[
            "publish",
            "v2",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--expires-in",
            "2h",
            "--percent",
            "25",
        ],
        &[],
    ));
    let m2 = manifest(&p.join("repo"), "demo", "stable");
    assert_eq!(
        (m2.serial, m2.version.as_str(), m2.rollout.percent),
        (2, "2.0.0", 25)
    );
    assert_eq!(m2.expires_at - m2.published_at, 7200);

    // The stock minisign tool checks the manifest and shows what it binds.
    let o = ok(minisign(
        p,
        &["-V", "-p", "ferry.pub", "-m", "repo/apps/demo/stable.json"],
        "",
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("app:demo") && out.contains("channel:stable") && out.contains("serial:2"),
        "{out}"
    );

    // Every manifest gets a later mtime than the one it replaces, even within
    // one second, so servers' mtime-size ETags always change with it.
    let mtimes: Vec<_> = (0..3)
        .map(|_| {
            ok(ferry(
                p,
                &[
                    "publish",
                    "v2",
                    "--repo",
                    "repo",
                    "--key",
                    "ferry.key",
                    "--channel",
                    "burst",
                ],
                &[],
            ));
            std::fs::metadata(p.join("repo/apps/demo/burst.json"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    assert!(mtimes[0] < mtimes[1] && mtimes[1] < mtimes[2], "{mtimes:?}");

    // A deliberate downgrade: the older version with a higher serial.
    ok(ferry(
        p,
        &["publish", "v1", "--repo", "repo", "--key", "ferry.key"],
        &[],
    ));
    let m3 = manifest(&p.join("repo"), "demo", "stable");
    assert_eq!((m3.serial, m3.version.as_str()), (3, "1.0.0"));
    // A serial that does not rise is refused.
    let msg = fails(ferry(
        p,
        &[
            "publish",
            "v2",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--serial",
            "3",
        ],
        &[],
    ));
    assert!(msg.contains("--serial 3"), "{msg}");

    // Channels are separate.
    ok(ferry(
        p,
        &[
            "publish",
            "v2",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--channel",
            "beta",
        ],
        &[],
    ));
    assert_eq!(manifest(&p.join("repo"), "demo", "beta").serial, 1);

    let all = files(&p.join("repo"));
    assert!(
        all.iter().all(|f| !f.contains("/.")),
        "temporary files left: {all:?}"
    );
    assert_eq!(
        all.iter()
            .filter(|f| f.starts_with("blobs/sha256/"))
            .count(),
        2,
        "{all:?}"
    );
}

#[test]
fn plain_files_need_app_and_version_and_mismatches_are_refused() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    let msg = fails(ferry(
        p,
        &[
            "publish",
            "data.txt",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
        ],
        &[],
    ));
    assert!(msg.contains("--app"), "{msg}");
    ok(ferry(
        p,
        &[
            "publish",
            "data.txt",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--app",
            "notes",
            "--version",
            "7",
        ],
        &[],
    ));
    assert_eq!(
        manifest(&p.join("repo"), "notes", "stable").artifact.kind,
        ArtifactKind::File
    );

    make_named_container(&p.join("bin"), "demo", "1.0.0");
    ok(ferry(p, &["sign", "bin", "--key", "ferry.key"], &[]));
    let msg = fails(ferry(
        p,
        &[
            "publish",
            "bin",
            "--repo",
            "repo",
            "--key",
            "ferry.key",
            "--app",
            "other",
        ],
        &[],
    ));
    assert!(
        msg.contains("--app `other`") && msg.contains("demo"),
        "{msg}"
    );
}

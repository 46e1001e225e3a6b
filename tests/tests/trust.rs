//! Trust, end to end: a board runs v1 of simple_api under a real systemd,
//! following a repository served by nginx, and meets one attack per row —
//! the TUF attack classes a hostile repository, mirror or key holder can
//! mount. Each row is refused with one clear error naming the rule, the
//! running version and `current` stay, and one `refused` entry is journaled.
//! Then a key-compromise drill on several boards: leaked keys, rotation with
//! the root key, recovery without touching a board. (Slow retrieval and
//! endless data from the server are rows of `bad_input.rs`.)

mod common;

use std::time::Duration;

use common::forge::{Forge, FAR};
use common::repo::{board, current_version, variant, version_served, Repo, WAIT};
use common::text;
use ferry_format::clock::unix_now;
use ferry_format::manifest::{Artifact, ArtifactKind};
use ferry_format::tuf::layout::{metadata_path, timestamp_path};
use ferry_format::SecretKey;
use ferry_tests::board::Board;
use ferry_tests::fault_server::{Behaviour, FaultServer};

/// Starts the agent, waits for v1, stops the agent.
fn v1_then_stop(repo: &Repo, board: &Board) {
    repo.publish(&common::simple_api(), &[]);
    board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    board
        .wait_for("v1 committed", WAIT, |s| {
            current_version(s) == "1.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    board
        .sandbox
        .systemctl(&["stop", "ferryd.service"])
        .unwrap();
}

/// Runs the app as `nobody` (a drop-in on its unit; `user` in its config).
fn app_as_nobody(board: &Board) {
    let dir = board.sandbox.unit_dir().join("simple_api.service.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("user.conf"), "[Service]\nUser=nobody\n").unwrap();
    let out = board.sandbox.systemctl(&["daemon-reload"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The extracted trees are root's: the app's user can neither change the
/// code it runs nor plant a tree for another build id.
fn assert_trees_read_only_for_the_app(board: &Board) {
    let name_dir = "/var/lib/ferry/simple_api/cache/simple_api";
    let host = board.state.join("simple_api/cache/simple_api");
    let trees: Vec<String> = std::fs::read_dir(&host)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(!trees.is_empty(), "no tree under {}", host.display());
    use std::os::unix::fs::MetadataExt as _;
    for t in &trees {
        let meta = std::fs::metadata(host.join(t)).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o755), "{t}");
    }
    let as_nobody = |script: &str| {
        board
            .sandbox
            .exec(&[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .unwrap()
    };
    let tree = format!("{name_dir}/{}", trees[0]);
    for script in [
        format!("mkdir {name_dir}/planted"),
        format!("echo 'import os' >> {tree}/ferry/entry.py"),
        format!("mv {tree} {name_dir}/moved"),
        format!("touch {tree}/new-file"),
    ] {
        let out = as_nobody(&script);
        assert!(
            !out.status.success(),
            "the app's user could: {script}\n{}",
            text(&out)
        );
    }
    // It can read and lock what it runs.
    let out = as_nobody(&format!("cat {tree}/.ferry-lock && ls {tree}/ferry"));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_attack_class_is_refused_and_the_running_version_stays() {
    let repo = Repo::new();
    let (board, port) = board(&repo, "trust", "user = \"nobody\"");
    app_as_nobody(&board);
    v1_then_stop(&repo, &board);
    assert_trees_read_only_for_the_app(&board);
    let seen_timestamp = std::fs::read(repo.path().join(timestamp_path())).unwrap();
    let before_link = std::fs::read_link(board.app_dir().join("current")).unwrap();

    repo.publish(&variant("2.0.0", None), &[]);
    let f = Forge::new(&repo);
    let good = f.manifest();
    let good_json = good.to_json();
    let attacker = SecretKey::generate().unwrap();
    let artifact = f.artifact_path();
    let artifact_bytes = std::fs::read(&artifact).unwrap();
    let with = |edit: &dyn Fn(&mut ferry_format::manifest::Manifest)| {
        let mut m = good.clone();
        edit(&mut m);
        m.to_json()
    };

    type Row<'a> = (&'a str, &'a str, Box<dyn Fn() + 'a>);
    let rows: Vec<Row> = vec![
        (
            "arbitrary installation: the artifact is swapped on the server",
            "sha-256",
            Box::new(|| {
                let mut b = artifact_bytes.clone();
                let mid = b.len() / 2;
                b[mid] ^= 1;
                std::fs::write(&artifact, b).unwrap();
            }),
        ),
        (
            "vulnerability to key compromise: the app's role signed by a key it is not delegated to",
            "simple_api metadata has 0 valid signature",
            Box::new(|| {
                std::fs::write(&artifact, &artifact_bytes).unwrap();
                f.channel_with(&good_json, &attacker, &f.online, FAR, |_| {});
            }),
        ),
        (
            "fast-forward: serial 2^64-1 by the leaked release key, without the timestamp key",
            "timestamp metadata has 0 valid signature",
            Box::new(|| {
                let m = with(&|m| m.serial = u64::MAX);
                f.channel_with(&m, &f.release, &attacker, FAR, |_| {});
            }),
        ),
        (
            "wrong software installation: another app's manifest",
            "this device follows",
            Box::new(|| {
                f.channel(&with(&|m| {
                    m.app = "other_app".into();
                    for a in m.artifacts.values_mut() {
                        a.target = a.target.replace("simple_api", "other_app");
                    }
                }))
            }),
        ),
        (
            "mix-and-match: another channel's manifest",
            "this device follows",
            Box::new(|| f.channel(&with(&|m| m.channel = "beta".into()))),
        ),
        (
            "rollback: an older release's manifest, correctly signed",
            "lower than the last accepted serial",
            Box::new(|| f.channel(&with(&|m| m.serial = 1))),
        ),
        (
            "indefinite freeze: a timestamp past its expiry",
            "expired",
            Box::new(|| f.channel_with(&good_json, &f.release, &f.online, unix_now() - 60, |_| {})),
        ),
        (
            "malicious mirror: an old timestamp replayed to hide updates",
            "lower than the trusted version",
            Box::new(|| {
                std::fs::write(repo.path().join(timestamp_path()), &seen_timestamp)
                    .unwrap()
            }),
        ),
        (
            "mix-and-match: a role document swapped under the name the snapshot names",
            "the repository names",
            Box::new(|| {
                f.channel(&good_json);
                let set = f.trusted();
                let version = set.delegated("simple_api").unwrap().doc.version;
                let mut other = set.delegated("simple_api").unwrap().doc.clone();
                other.expires = "2099-01-01T00:00:00Z".into();
                let bytes = ferry_format::tuf::sign(&other, &[&f.release]);
                std::fs::write(
                    repo.path()
                        .join(metadata_path("simple_api", Some(version))),
                    bytes,
                )
                .unwrap();
            }),
        ),
        (
            "extraneous dependencies: a plain file where a ferry binary belongs",
            "plain file",
            Box::new(|| {
                f.channel(&with(&|m| {
                    for a in m.artifacts.values_mut() {
                        a.kind = ArtifactKind::File;
                    }
                }))
            }),
        ),
        (
            "endless data: the artifact is longer than the role signs",
            "more bytes than",
            Box::new(|| {
                let target = good.artifacts["x86_64-linux-gnu"].target.clone();
                f.channel_with(&good_json, &f.release, &f.online, FAR, |role| {
                    role.targets.get_mut(&target).unwrap().length -= 100;
                });
            }),
        ),
        (
            "endless data: an artifact declared larger than the device takes",
            "over the limit",
            Box::new(|| {
                let target = good.artifacts["x86_64-linux-gnu"].target.clone();
                f.channel_with(&good_json, &f.release, &f.online, FAR, |role| {
                    role.targets.get_mut(&target).unwrap().length = 1 << 40;
                });
            }),
        ),
        (
            "a release with no artifact for this board's architecture",
            "no x86_64-linux-gnu artifact",
            Box::new(|| {
                f.channel(&with(&|m| {
                    let a = m.artifacts.remove("x86_64-linux-gnu").unwrap();
                    m.artifacts.insert(
                        "aarch64-linux-gnu".into(),
                        Artifact {
                            target: a.target.replace("x86_64-linux-gnu", "aarch64-linux-gnu"),
                            kind: a.kind,
                        },
                    );
                }))
            }),
        ),
    ];
    for (i, (name, needle, setup)) in rows.iter().enumerate() {
        setup();
        let out = board.ferryd(&["check"]).unwrap();
        let msg = text(&out);
        println!("{name}: {}", msg.trim());
        assert!(!out.status.success(), "{name}: check succeeded\n{msg}");
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: output lacks `{needle}`\n{msg}"
        );
        assert_eq!(
            std::fs::read_link(board.app_dir().join("current")).unwrap(),
            before_link,
            "{name}: current moved"
        );
        assert_eq!(version_served(port).as_deref(), Some("1.0.0"), "{name}");
        let s = board.app_status().unwrap();
        assert_eq!(
            (s["phase"].as_str(), current_version(&s).as_str()),
            (Some("idle"), "1.0.0"),
            "{name}"
        );
        assert_eq!(
            board.count_events("refused", None).unwrap(),
            i + 1,
            "{name}: one refused entry each"
        );
    }
    // Slow retrieval: a mirror that sends a byte every 300 ms, never silent
    // long enough for the idle timeout, is cut by the rate floor; the device
    // keeps its version and tries again later.
    let slow = FaultServer::in_background();
    slow.fallback(
        vec![b' '; 60_000],
        Behaviour::Trickle(Duration::from_millis(300)),
    );
    let base = std::fs::read_to_string(board.etc.join("agent.toml")).unwrap();
    let first = base.lines().next().unwrap().to_owned();
    let slow_config = base.replacen(
        &first,
        &format!("repository = \"{}\"\nnetwork-timeout = \"2s\"", slow.url()),
        1,
    );
    std::fs::write(board.etc.join("slow.toml"), slow_config).unwrap();
    let out = board
        .ferryd(&["-c", "/etc/ferry/slow.toml", "check"])
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("slower than the floor"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_link(board.app_dir().join("current")).unwrap(),
        before_link
    );
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
    drop(slow);

    // The good release, published anew above everything the device saw, is
    // taken: a second update of an app that runs as its own user.
    f.channel(&good_json);
    let out = board.ferryd(&["check"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version_served(port).as_deref(), Some("2.0.0"));
    assert_trees_read_only_for_the_app(&board);
}

/// `ferry ARGS… --repo repo --root root.json --timestamp-key TS` in the keys' directory.
fn ferry_with(repo: &Repo, timestamp_key: &str, args: &[&str]) {
    let mut a = args.to_vec();
    a.extend_from_slice(&[
        "--repo",
        "repo",
        "--root",
        "root.json",
        "--timestamp-key",
        timestamp_key,
    ]);
    repo.ferry(&a);
}

#[test]
fn a_leaked_key_is_rotated_away_and_every_board_recovers_by_itself() {
    let repo = Repo::new();
    let boards: Vec<(Board, u16)> = (0..3)
        .map(|i| board(&repo, &format!("drill{i}"), ""))
        .collect();
    repo.publish(&common::simple_api(), &[]);
    for (b, _) in &boards {
        b.sandbox.systemctl(&["start", "ferryd.service"]).unwrap();
    }
    for (b, port) in &boards {
        b.wait_for("v1 committed", WAIT, |s| {
            current_version(s) == "1.0.0" && s["phase"] == "idle"
        })
        .unwrap();
        assert_eq!(version_served(*port).as_deref(), Some("1.0.0"));
    }

    // 1. The release key leaks. The attacker, with write access to the
    // repository but not the timestamp key, publishes serial 2^64-1 of a
    // release of their own (kind `file`, any bytes).
    let f = Forge::new(&repo);
    let ts = repo.path().join(timestamp_path());
    let good_ts = std::fs::read(&ts).unwrap();
    let stolen = common::forge::key(&repo.dir.path().join("release.key"));
    let own_online = SecretKey::generate().unwrap();
    let mut evil = f.manifest();
    evil.serial = u64::MAX;
    f.channel_with(&evil.to_json(), &stolen, &own_online, FAR, |_| {});
    for (b, port) in &boards {
        b.wait_for("the attacker's metadata refused", WAIT, |s| {
            s["last_result"]["outcome"] == "refused"
                && s["last_result"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("timestamp metadata has 0 valid signature"))
        })
        .unwrap();
        assert_eq!(version_served(*port).as_deref(), Some("1.0.0"));
    }
    // The operator notices and puts the timestamp back.
    std::fs::write(&ts, &good_ts).unwrap();

    // 2. The timestamp key leaks too and is used to fast-forward: every
    // document at a version the operator can never exceed. The boards take
    // it (it is validly signed) and would refuse every later release.
    let mut d = ferry_format::tuf::writer::Draft::on(Some(&f.trusted()));
    d.raise_online_versions(u64::MAX);
    f.write(&d.finish(&[&f.online], FAR, FAR).unwrap());
    for (b, _) in &boards {
        b.wait_for("the fast-forward taken", WAIT, |_| {
            trusted_version(b, "timestamp") == Some(u64::MAX)
        })
        .unwrap();
    }

    // 3. The operator, with the offline root key, rotates both: a new
    // release key for the app, a new timestamp key in root 2.
    for name in ["release2", "timestamp2"] {
        repo.ferry(&[
            "keygen",
            "--no-password",
            "-s",
            &format!("{name}.key"),
            "-p",
            &format!("{name}.pub"),
        ]);
    }
    ferry_with(
        &repo,
        "timestamp2.key",
        &["repo", "rotate", "--root-key", "root.key"],
    );
    ferry_with(
        &repo,
        "timestamp2.key",
        &[
            "repo",
            "delegate",
            "--root-key",
            "root.key",
            "--app",
            "simple_api",
            "--release-pubkey",
            "release2.pub",
            "--release-key",
            "release2.key",
        ],
    );
    // 4. The next legitimate release, signed with the new keys.
    let v2 = variant("2.0.0", None);
    std::fs::copy(&v2, repo.dir.path().join("release-bin")).unwrap();
    repo.ferry(&["sign", "release-bin", "--key", "release2.key"]);
    ferry_with(
        &repo,
        "timestamp2.key",
        &["publish", "release-bin", "--key", "release2.key"],
    );
    for (b, port) in &boards {
        b.wait_for("v2 committed after the rotation", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
        assert_eq!(version_served(*port).as_deref(), Some("2.0.0"));
        assert_eq!(
            trusted_version(b, "root"),
            Some(2),
            "the board walked to root 2"
        );
    }
    // The leaked release key no longer counts, even with the new timestamp key.
    let f2 = Forge::new(&repo);
    let ts2 = common::forge::key(&repo.dir.path().join("timestamp2.key"));
    f2.channel_with(&evil.to_json(), &stolen, &ts2, FAR, |_| {});
    for (b, port) in &boards {
        b.wait_for("the old release key refused", WAIT, |s| {
            s["last_result"]["outcome"] == "refused"
                && s["last_result"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("simple_api metadata has 0 valid signature"))
        })
        .unwrap();
        assert_eq!(version_served(*port).as_deref(), Some("2.0.0"));
    }
}

/// The version of a role's document the board trusts.
fn trusted_version(b: &Board, role: &str) -> Option<u64> {
    let bytes = std::fs::read(b.state.join(format!("trust/{role}.json"))).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["signed"]["version"].as_u64()
}

#[test]
fn python_tuf_reads_a_ferry_repository_and_downloads_a_release_verified() {
    let repo = Repo::new();
    let d = repo.dir.path();
    std::fs::write(d.join("notes.txt"), b"a plain release\n".repeat(100)).unwrap();
    let mut publish = vec![
        "publish",
        "notes.txt",
        "--key",
        "release.key",
        "--app",
        "simple_api",
        "--version",
        "1.0.0",
    ];
    publish.extend_from_slice(&Repo::TRUST);
    repo.ferry(&publish);
    // A second root, so the client walks a rotation too.
    let mut rotate = vec!["repo", "rotate", "--root-key", "root.key"];
    rotate.extend_from_slice(&Repo::TRUST);
    repo.ferry(&rotate);

    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = workspace.join("target/tuf-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/install-deps.sh installs python-tuf there",
        python.display()
    );
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&python)
        .arg(workspace.join("tests/python/tuf_client.py"))
        .arg(d.join("root.json"))
        .arg(repo.nginx.url())
        .args([
            "simple_api",
            "stable",
            ferry_format::manifest::host_target(),
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (want, _) = ferry_format::digest::sha256_file(&d.join("notes.txt")).unwrap();
    assert_eq!(got["artifact_sha256"], want.as_str());
    assert_eq!(got["manifest"]["version"], "1.0.0");
    assert_eq!(got["root_version"], 2);
}

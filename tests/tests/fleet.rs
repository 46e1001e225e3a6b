//! Fleet rollouts end to end: six boards (six systemd sandboxes, each with its
//! own machine id and network namespace, linked to the host by a veth pair)
//! follow one nginx-served repository. Phased percentages reach exactly the
//! boards whose documented bucket is below them; `--halt` stops further
//! takers; a beta channel stays on beta boards; a deliberate downgrade brings
//! every board back.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::repo::Repo;
use common::text;
use ferry_tests::board::{AgentConfig, Board};
use ferry_tests::nginx::Nginx;
use sha2::{Digest as _, Sha256};

const WAIT: Duration = Duration::from_secs(240);

/// docs/repository.md's bucket: SHA-256(`device:app:version`), first 8 bytes
/// big-endian, modulo 100.
fn bucket(device: &str, version: &str) -> u64 {
    let d = Sha256::digest(format!("{device}:simple_api:{version}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap()) % 100
}

/// simple_api at `version`, built once per test run.
fn variant(version: &str) -> PathBuf {
    common::repo::variant(version, None)
}

/// `ferry rollout` of simple_api on `channel` with `args`.
fn rollout(repo: &Repo, channel: &str, args: &[&str]) {
    let mut a = vec!["rollout"];
    a.extend_from_slice(&Repo::TRUST);
    a.extend_from_slice(&[
        "--app",
        "simple_api",
        "--channel",
        channel,
        "--key",
        "release.key",
    ]);
    a.extend_from_slice(args);
    repo.ferry(&a);
}

fn version(board: &Board) -> String {
    board.app_status().unwrap()["current"]["version"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Waits until every board in `boards` runs `version`.
fn all_on(boards: &[&Board], version: &str) {
    for b in boards {
        b.wait_for(
            &format!("{version} on {}", b.sandbox.hostname()),
            WAIT,
            |s| s["current"]["version"] == version && s["phase"] == "idle",
        )
        .unwrap();
    }
}

/// Machine ids whose buckets put at least two boards on each side of 50 for
/// both phased versions, so the test tells "below" from "above".
fn machine_ids(phased: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut k = 1u64;
    while ids.len() < 6 {
        let id = format!("{:032x}", k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        ids.push(id);
        k += 1;
        if ids.len() == 6 {
            let ok = phased.iter().all(|v| {
                let below = ids.iter().filter(|id| bucket(id, v) < 50).count();
                (2..=4).contains(&below)
            });
            if !ok {
                ids.remove(0);
            }
        }
    }
    ids
}

#[test]
fn phased_rollout_halt_channels_and_downgrade_across_six_boards() {
    let ids = machine_ids(&["2.0.0", "3.0.0"]);
    let boards: Vec<Board> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Board::start_networked(&format!("fleet{i}"), Some(id.clone())).unwrap())
        .collect();
    let host_ends: Vec<_> = boards
        .iter()
        .map(|b| b.link.as_ref().unwrap().host)
        .collect();
    let repo = Repo::served_by(|root| Nginx::serve_also_on(root, &host_ends));
    let key = repo.root();
    for (i, b) in boards.iter().enumerate() {
        let link = b.link.as_ref().unwrap();
        let channel = if i >= 4 { "channel = \"beta\"" } else { "" };
        b.configure(&AgentConfig {
            repository: &format!("http://{}:{}", link.host, repo.nginx.port()),
            root: &key,
            app_extra: channel,
            top_extra: "",
            port: 8000,
        })
        .unwrap();
    }
    let stable: Vec<&Board> = boards[..4].iter().collect();
    let beta: Vec<&Board> = boards[4..].iter().collect();

    // v1 everywhere.
    let v1 = common::simple_api();
    repo.publish(&v1, &[]);
    repo.publish(&v1, &["--channel", "beta"]);
    for b in &boards {
        b.sandbox.systemctl(&["start", "ferryd.service"]).unwrap();
    }
    all_on(&boards.iter().collect::<Vec<_>>(), "1.0.0");

    // v2 at 50 %: exactly the stable boards whose bucket is below 50.
    repo.publish(&variant("2.0.0"), &["--percent", "50"]);
    let takers: Vec<&Board> = stable
        .iter()
        .copied()
        .filter(|b| bucket(b.sandbox.machine_id(), "2.0.0") < 50)
        .collect();
    let others: Vec<&Board> = stable
        .iter()
        .copied()
        .filter(|b| bucket(b.sandbox.machine_id(), "2.0.0") >= 50)
        .collect();
    all_on(&takers, "2.0.0");
    std::thread::sleep(Duration::from_secs(5));
    for b in &others {
        assert_eq!(
            version(b),
            "1.0.0",
            "{} (bucket {}) took a 50 % release",
            b.sandbox.hostname(),
            bucket(b.sandbox.machine_id(), "2.0.0")
        );
    }
    // 100 %: all stable boards.
    rollout(&repo, "stable", &["--percent", "100"]);
    all_on(&stable, "2.0.0");

    // v3 at 50 %, then halted: boards above the bucket never take it, even at 100 %.
    repo.publish(&variant("3.0.0"), &["--percent", "50"]);
    let takers: Vec<&Board> = stable
        .iter()
        .copied()
        .filter(|b| bucket(b.sandbox.machine_id(), "3.0.0") < 50)
        .collect();
    all_on(&takers, "3.0.0");
    rollout(&repo, "stable", &["--halt"]);
    rollout(&repo, "stable", &["--percent", "100"]);
    std::thread::sleep(Duration::from_secs(6));
    for b in stable
        .iter()
        .filter(|b| bucket(b.sandbox.machine_id(), "3.0.0") >= 50)
    {
        assert_eq!(
            version(b),
            "2.0.0",
            "{} took a halted release",
            b.sandbox.hostname()
        );
    }

    // Beta boards never saw the stable releases; a beta release reaches only them.
    for b in &beta {
        assert_eq!(version(b), "1.0.0");
    }
    repo.publish(&variant("4.0.0-beta"), &["--channel", "beta"]);
    all_on(&beta, "4.0.0-beta");
    for b in &stable {
        assert_ne!(version(b), "4.0.0-beta");
    }

    // A deliberate downgrade: 1.0.0 again with a higher serial, to everyone on stable.
    rollout(&repo, "stable", &["--resume"]);
    repo.publish(&v1, &[]);
    all_on(&stable, "1.0.0");
}

/// Lines of a JSON-lines file (none if it does not exist yet).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let l = lines(path);
        if l.len() >= n || std::time::Instant::now() > deadline {
            return l;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn reports_survive_a_collector_outage_and_arrive_exactly_once() {
    let repo = Repo::new();
    let collector_port = ferry_tests::server::free_port().unwrap();
    let board = Board::start("reports", None).unwrap();
    board
        .configure(&AgentConfig {
            repository: &repo.nginx.url(),
            root: &repo.root(),
            app_extra: "",
            top_extra: &format!("report-url = \"http://127.0.0.1:{collector_port}/\""),
            port: ferry_tests::server::free_port().unwrap(),
        })
        .unwrap();
    let out_file = repo.dir.path().join("reports.jsonl");
    let collect = || {
        Command::new(common::ferry())
            .args([
                "collect",
                "--listen",
                &format!("127.0.0.1:{collector_port}"),
                "--out",
            ])
            .arg(&out_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };

    // The collector is down: two updates, two reports queued on the board.
    let v1 = common::simple_api();
    repo.publish(&v1, &[]);
    board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    all_on(&[&board], "1.0.0");
    repo.publish(&variant("2.0.0"), &[]);
    all_on(&[&board], "2.0.0");
    let queued = std::fs::read_dir(board.state.join("reports"))
        .unwrap()
        .count();
    assert_eq!(queued, 2, "two reports wait on the board's disk");

    // It comes back: both arrive.
    let mut child = collect();
    let got = wait_lines(&out_file, 2);
    assert_eq!(got.len(), 2, "{got:?}");
    // Down again for a deliberate downgrade, back again: the third arrives too.
    child.kill().unwrap();
    child.wait().unwrap();
    repo.publish(&v1, &[]);
    all_on(&[&board], "1.0.0");
    let mut child = collect();
    let got = wait_lines(&out_file, 3);
    std::thread::sleep(Duration::from_secs(3));
    let got_after = lines(&out_file);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got_after.len(), 3, "no report arrives twice: {got_after:?}");
    let ids: std::collections::BTreeSet<_> = got
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let tos: Vec<_> = got
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tos, ["1.0.0", "2.0.0", "1.0.0"]);
    assert!(got
        .iter()
        .all(|r| r["result"] == "committed" && r["device_id"] == board.sandbox.machine_id()));
    assert_eq!(got[1]["from"], "1.0.0");
    let out = Command::new(common::ferry())
        .args(["fleet", "status", "--json", "--reports"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apps"]["simple_api"]["versions"]["1.0.0"], 1, "{v:#}");
}

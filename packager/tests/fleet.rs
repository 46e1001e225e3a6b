//! Running a fleet: `ferry rollout` re-signs a channel's manifest with a new
//! rollout state, `ferry collect` stores the agents' status reports once each,
//! and `ferry fleet status` summarises them.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{channel, fails, ferry, ferry_bin, ferry_trusted, init_repo, ok, work};
use ferry_format::manifest::Manifest;
use ferry_format::tuf::layout::timestamp_path;

fn rollout(p: &Path, change: &[&str]) -> std::process::Output {
    rollout_on(p, "stable", change)
}

fn rollout_on(p: &Path, channel: &str, change: &[&str]) -> std::process::Output {
    let mut args = vec![
        "rollout",
        "--app",
        "notes",
        "--channel",
        channel,
        "--key",
        "ferry.key",
    ];
    args.extend_from_slice(change);
    ferry_trusted(p, &args)
}

fn timestamp(p: &Path) -> Vec<u8> {
    std::fs::read(p.join("repo").join(timestamp_path())).unwrap()
}

#[test]
fn rollout_changes_percent_and_halt_and_resigns() {
    let d = work();
    let p = d.path();
    init_repo(p, &["notes"]);

    let msg = fails(rollout(p, &["--percent", "25"]));
    assert!(msg.contains("nothing published on notes/stable"), "{msg}");

    ok(ferry_trusted(
        p,
        &[
            "publish",
            "data.txt",
            "--key",
            "ferry.key",
            "--app",
            "notes",
            "--version",
            "7",
            "--percent",
            "5",
            "--notes",
            "n",
        ],
    ));
    let m0 = channel(p, "notes", "stable").unwrap();

    let o = ok(rollout(p, &["--percent", "25"]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("percent 5 -> 25") && out.contains("serial 1 -> 2"),
        "{out}"
    );
    let m1 = channel(p, "notes", "stable").unwrap();
    assert_eq!(
        (m1.serial, m1.rollout.percent, m1.rollout.halted),
        (2, 25, false)
    );
    assert!(m1.published_at >= m0.published_at);
    let same = Manifest {
        serial: m0.serial,
        published_at: m0.published_at,
        rollout: m0.rollout.clone(),
        ..m1.clone()
    };
    assert_eq!(same, m0, "only serial, time and rollout change");

    ok(rollout(p, &["--halt"]));
    let m2 = channel(p, "notes", "stable").unwrap();
    assert_eq!(
        (m2.serial, m2.rollout.percent, m2.rollout.halted),
        (3, 25, true)
    );
    ok(rollout(p, &["--resume"]));
    let m3 = channel(p, "notes", "stable").unwrap();
    assert_eq!((m3.serial, m3.rollout.halted), (4, false));

    // Errors change nothing.
    let before = timestamp(p);
    let msg = fails(rollout(p, &["--percent", "101"]));
    assert!(msg.contains("--percent 101"), "{msg}");
    let msg = fails(rollout_on(p, "beta", &["--halt"]));
    assert!(msg.contains("nothing published on notes/beta"), "{msg}");
    // Exactly one change is required.
    assert!(!rollout(p, &[]).status.success());
    assert!(!rollout(p, &["--halt", "--resume"]).status.success());
    assert_eq!(timestamp(p), before);
}

/// A `ferry collect` child, killed when dropped.
struct Collector(Child, u16);

impl Collector {
    fn start(dir: &Path, out: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("{out}.{port}.log"));
        let mut child = Command::new(ferry_bin())
            .current_dir(dir)
            .args([
                "collect",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--out",
                out,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("listening on 127.0.0.1:{port}\n"))
        {
            assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "collect did not start: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Collector(child, port)
    }

    /// Sends raw request bytes; returns the status code and the whole answer.
    fn send(&self, request: &[u8]) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", self.1)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot connect: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let code = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, answer)
    }

    fn post(&self, body: &str) -> (u16, String) {
        self.send(
            format!(
                "POST /reports HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(id: &str, device: &str, result: &str, from: &str, to: &str, at: u64) -> String {
    let opt = |v: &str| {
        if v.is_empty() {
            "null".to_owned()
        } else {
            format!("\"{v}\"")
        }
    };
    format!(
        r#"{{"id":"{id}","device_id":"{device}","app":"demo","channel":"stable","from":{},"to":{},"result":"{result}","error":null,"serial":3,"at":{at},"agent_version":"0.1.0"}}"#,
        opt(from),
        opt(to)
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn collect_stores_each_report_once_across_restarts() {
    let d = work();
    let p = d.path();
    let a = report("dev1-demo-1", "dev1", "committed", "1.0", "2.0", 100);
    let b = report("dev2-demo-1", "dev2", "rolled_back", "1.0", "2.0", 101);

    let c = Collector::start(p, "reports.jsonl");
    assert_eq!(c.post(&a).0, 200);
    // Pretty-printed JSON is stored as one line.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&b).unwrap())
            .unwrap();
    assert_eq!(c.post(&pretty).0, 200);
    let (code, answer) = c.post(&a);
    assert_eq!(code, 200, "{answer}");
    assert!(answer.contains("already stored"), "{answer}");

    let (code, answer) = c.post("{not json");
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("not a report"), "{answer}");
    let (code, answer) = c.post(r#"{"id":"x","result":"committed"}"#);
    assert_eq!(code, 400, "{answer}");
    assert_eq!(c.send(b"GET / HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(
        c.send(b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")
            .0,
        413
    );
    drop(c);
    assert_eq!(lines(&p.join("reports.jsonl")).len(), 2);

    let c = Collector::start(p, "reports.jsonl");
    assert_eq!(c.post(&a).0, 200);
    assert_eq!(c.post(&b).0, 200);
    drop(c);
    let stored = lines(&p.join("reports.jsonl"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored[0].contains("dev1-demo-1") && stored[1].contains("dev2-demo-1"));

    // A line cut short by a crash is skipped and does not swallow the next one.
    std::fs::write(p.join("cut.jsonl"), format!("{a}\n{{\"id\":\"dev2-de")).unwrap();
    let c = Collector::start(p, "cut.jsonl");
    assert_eq!(c.post(&a).0, 200);
    assert_eq!(c.post(&b).0, 200);
    drop(c);
    let stored = lines(&p.join("cut.jsonl"));
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored[2].contains("dev2-demo-1"), "{stored:?}");
}

#[test]
fn fleet_status_counts_latest_versions_rollbacks_and_holds() {
    let d = work();
    let p = d.path();
    let reports = [
        report("a1", "dev1", "committed", "1.0", "2.0", 100),
        report("a2", "dev1", "up_to_date", "2.0", "2.0", 200),
        // dev2 rolls back from 2.0, then stays on 1.0 and is held.
        report("b1", "dev2", "rolled_back", "1.0", "2.0", 100),
        report("b2", "dev2", "hold", "1.0", "", 200),
        // dev3: same `at` twice, the later line wins.
        report("c1", "dev3", "committed", "1.0", "2.0", 300),
        report("c2", "dev3", "rolled_back", "1.0", "2.0", 300),
        // dev4: an old report later in the file does not win.
        report("d2", "dev4", "committed", "1.0", "2.0", 500),
        report("d1", "dev4", "error", "1.0", "2.0", 400),
    ];
    let mut text = reports.join("\n");
    text.push_str("\nnot a report\n");
    std::fs::write(p.join("r.jsonl"), text).unwrap();

    let o = ok(ferry(p, &["fleet", "status", "--reports", "r.jsonl"], &[]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("demo: 4 devices, 1 on hold"), "{out}");
    let row = |v: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(v))
            .unwrap_or_else(|| panic!("no row {v}: {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("1.0"), "1.0 2 0", "{out}");
    assert_eq!(row("2.0"), "2.0 2 2", "{out}");
    assert!(
        out.contains("latest results: committed 1, hold 1, rolled_back 1, up_to_date 1"),
        "{out}"
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 9 is skipped"));

    let o = ok(ferry(
        p,
        &["fleet", "status", "--reports", "r.jsonl", "--json"],
        &[],
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"apps": {"demo": {
            "devices": 4,
            "versions": {"1.0": 2, "2.0": 2},
            "rolled_back": {"2.0": 2},
            "latest": {"committed": 1, "hold": 1, "rolled_back": 1, "up_to_date": 1},
            "hold": 1
        }}})
    );
}

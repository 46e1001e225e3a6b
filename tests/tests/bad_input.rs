//! The bad-input matrix, end to end: a board runs v1 of simple_api under a
//! real systemd, and `ferryd check` (the agent's one-shot poll, as an
//! operator runs it) meets one bad input per row — a manifest, metadata,
//! a server or a config. Every row must give a non-zero exit and one error
//! that names the input and the problem, and change nothing: the same
//! version runs, `current` and `previous` point where they did, and the
//! state file's install record (`current`, `previous`, `phase`, deny list)
//! is as before. Only the record of the last result may change, and the
//! replay floor: every verified manifest raises it, even one not installed.
//!
//! Rows for containers and payloads (lengths outside the file, overlaps,
//! absurd counts; `..`, absolute paths, escaping links, devices, a million
//! entries) are in `format/src/container/tests.rs`,
//! `launcher/src/extract.rs` and `launcher/tests/launcher.rs`, where the
//! bytes can be crafted; `docs/reliability.md` lists every row.

mod common;

use std::time::Duration;

use common::forge::Forge;
use common::repo::{board_with, install_v1, variant, version_served, Repo};
use common::text;
use ferry_format::manifest::Manifest;
use ferry_tests::board::Board;
use ferry_tests::fault_server::{Behaviour, FaultServer};
use ferry_tests::nginx::Nginx;

/// What must not change, read from the board.
#[derive(Debug, PartialEq)]
struct Install {
    record: serde_json::Value,
    current: Option<std::path::PathBuf>,
    previous: Option<std::path::PathBuf>,
    versions: Vec<String>,
    served: Option<String>,
}

fn install(board: &Board, port: u16) -> Install {
    let dir = board.app_dir();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let record = serde_json::json!({
        "current": state["current"],
        "previous": state["previous"],
        "phase": state["phase"],
        "target": state["target"],
        "denied": state["denied"],
    });
    let mut versions: Vec<String> = std::fs::read_dir(dir.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    Install {
        record,
        current: std::fs::read_link(dir.join("current")).ok(),
        previous: std::fs::read_link(dir.join("previous")).ok(),
        versions,
        served: version_served(port),
    }
}

/// A board with v1 installed by the service, which is then stopped: each
/// row runs `ferryd check` by hand.
struct Device {
    repo: Repo,
    board: Board,
    port: u16,
    good: Manifest,
    forge: Forge,
    rows: usize,
}

impl Device {
    fn start() -> Device {
        let repo = Repo::new();
        let (board, port) = board_with(
            &repo,
            "badinput",
            "probation = \"1s\"",
            "network-timeout = \"2s\"",
        );
        install_v1(&repo, &board, port);
        let out = board
            .sandbox
            .systemctl(&["stop", "ferryd.service"])
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        // A newer release is published, so every row is an update the
        // agent would take if the input were good.
        repo.publish(&variant("2.0.0", None), &[]);
        let forge = Forge::new(&repo);
        let good = forge.manifest();
        Device {
            repo,
            board,
            port,
            good,
            forge,
            rows: 0,
        }
    }

    /// Writes `config` as `/etc/ferry/<name>.toml` (with the board's key).
    fn config(&self, name: &str, toml: &str) -> String {
        std::fs::write(self.board.etc.join(format!("{name}.toml")), toml).unwrap();
        format!("/etc/ferry/{name}.toml")
    }

    /// The board's own config with its repository replaced by `url` and
    /// `extra` lines added at the top.
    fn config_with_repository(&self, name: &str, url: &str, extra: &str) -> String {
        let base = std::fs::read_to_string(self.board.etc.join("agent.toml")).unwrap();
        let repo_line = base.lines().next().unwrap().to_owned();
        let toml = base.replacen(&repo_line, &format!("repository = \"{url}\"\n{extra}"), 1);
        self.config(name, &toml)
    }

    /// Runs `ferryd [-c CONFIG] check`; asserts failure, the needles
    /// (case-insensitive) in its output, and nothing changed.
    fn row(&mut self, name: &str, config: Option<&str>, needles: &[&str]) {
        let before = install(&self.board, self.port);
        let mut args = vec![];
        if let Some(c) = config {
            args.extend(["-c", c]);
        }
        args.push("check");
        let out = self.board.ferryd(&args).unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{name}: exit {:?}: {}", out.status.code(), said.trim());
        assert!(!out.status.success(), "{name}: accepted\n{said}");
        let lower = said.to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "{name}: `{n}` missing from: {said}"
            );
        }
        // One verdict (a TOML error adds the line it points at, a hint may
        // follow; `ferryd: INFO …` lines are the log of the attempt).
        assert_eq!(
            said.lines()
                .filter(|l| l.starts_with("ferryd: error:") || l.starts_with("simple_api: "))
                .count(),
            1,
            "{name}: one error: {said}"
        );
        let after = install(&self.board, self.port);
        assert_eq!(before, after, "{name}: the install changed");
        self.rows += 1;
    }

    /// Publishes `bytes` as the manifest with the right keys, so the bytes
    /// reach the parser.
    fn signed_manifest(&self, bytes: &[u8]) {
        self.forge.channel(bytes);
    }

    fn good_json(&self) -> String {
        String::from_utf8(self.good.to_json()).unwrap()
    }
}

fn timestamp_path(repo: &Repo) -> std::path::PathBuf {
    repo.path()
        .join(ferry_format::tuf::layout::timestamp_path())
}

#[test]
fn every_bad_input_is_refused_with_one_clear_error_and_nothing_changes() {
    let mut d = Device::start();

    // ---- config
    let base = std::fs::read_to_string(d.board.etc.join("agent.toml")).unwrap();
    let c = d.config(
        "unknown-key",
        &base.replace("poll-interval", "pol-interval"),
    );
    d.row(
        "config: unknown key",
        Some(&c),
        &["unknown-key.toml", "unknown field `pol-interval`"],
    );
    let c = d.config(
        "wrong-type",
        &base.replace("probation = \"1s\"", "probation = 3"),
    );
    d.row(
        "config: wrong type",
        Some(&c),
        &["wrong-type.toml", "probation", "invalid type"],
    );
    let c = d.config(
        "missing-unit",
        &base.replace("unit = \"simple_api.service\"", "unit = \"nosuch.service\""),
    );
    d.row(
        "config: missing unit",
        Some(&c),
        &["nosuch.service", "2.0.0", "no unit"],
    );
    let c = d.config(
        "no-repository",
        &base.lines().skip(1).collect::<Vec<_>>().join("\n"),
    );
    d.row(
        "config: missing key",
        Some(&c),
        &["no-repository.toml", "missing field `repository`"],
    );

    // ---- manifests, signed by the trusted key so they reach the parser
    let good = d.good_json();
    d.signed_manifest(b"{\"schema\": 2, \"app\": ");
    d.row("manifest: malformed JSON", None, &["manifest", "EOF"]);
    let mut huge = vec![b' '; 2 << 20];
    huge.extend_from_slice(good.as_bytes());
    d.signed_manifest(&huge);
    d.row(
        "manifest: huge",
        None,
        &["channel manifest", "over the limit"],
    );
    let deep = format!(
        "{{\"x\": {}{}, \"schema\": 2}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    d.signed_manifest(deep.as_bytes());
    d.row("manifest: deeply nested", None, &["manifest", "not valid"]);
    d.signed_manifest(
        good.replacen("\"schema\": 2", "\"schema\": 99", 1)
            .as_bytes(),
    );
    d.row("manifest: unknown schema", None, &["schema", "99"]);
    let serial = format!("\"serial\": {}", d.good.serial);
    d.signed_manifest(good.replacen(&serial, "\"serial\": \"many\"", 1).as_bytes());
    d.row("manifest: wrong type", None, &["manifest", "invalid type"]);
    d.signed_manifest(
        good.replacen("\"version\":", "\"version\": \"9.9.9\",\n  \"version\":", 1)
            .as_bytes(),
    );
    d.row(
        "manifest: duplicate key",
        None,
        &["manifest", "duplicate field `version`"],
    );

    // ---- metadata: the timestamp replaced by what is no signed document
    d.signed_manifest(good.as_bytes());
    let ts = std::fs::read(timestamp_path(&d.repo)).unwrap();
    std::fs::write(timestamp_path(&d.repo), "this is not TUF metadata\n").unwrap();
    d.row(
        "metadata: malformed",
        None,
        &["timestamp.json", "malformed"],
    );
    std::fs::write(timestamp_path(&d.repo), &ts[..ts.len() / 2]).unwrap();
    d.row(
        "metadata: truncated",
        None,
        &["timestamp.json", "malformed"],
    );
    std::fs::write(timestamp_path(&d.repo), &ts).unwrap();

    // ---- servers
    let slow = FaultServer::in_background();
    slow.fallback(
        vec![b' '; 60_000],
        Behaviour::Trickle(Duration::from_millis(300)),
    );
    let c = d.config_with_repository("slowloris", &slow.url(), "");
    d.row(
        "server: slow bytes (slowloris)",
        Some(&c),
        &["root.json", "slower than"],
    );
    let endless = FaultServer::in_background();
    endless.fallback(Vec::new(), Behaviour::Endless);
    let c = d.config_with_repository("endless", &endless.url(), "");
    d.row(
        "server: endless bytes",
        Some(&c),
        &["root.json", "larger than"],
    );
    let liar = FaultServer::in_background();
    liar.fallback(
        &b"{\"schema\": 1}"[..],
        Behaviour::Raw {
            content_length: Some(5000),
        },
    );
    let c = d.config_with_repository("content-length", &liar.url(), "");
    d.row("server: wrong Content-Length", Some(&c), &["root.json"]);
    let redirect = FaultServer::in_background();
    redirect.fallback(
        Vec::new(),
        Behaviour::Redirect("http://127.0.0.2:9/metadata/2.root.json".into()),
    );
    let c = d.config_with_repository("redirect", &redirect.url(), "");
    d.row(
        "server: redirect to another host",
        Some(&c),
        &["redirect", "127.0.0.2"],
    );

    let certs = tempfile::tempdir().unwrap();
    let (tls, ca) = ferry_tests::tls::private_ca(certs.path()).unwrap();
    let https = Nginx::serve_tls(&d.repo.path(), &tls).unwrap();
    let https_url = https.https_url().unwrap();
    let c = d.config_with_repository("untrusted-tls", &https_url, "");
    d.row(
        "server: TLS with an untrusted certificate",
        Some(&c),
        &["certificate"],
    );
    // The same server with its CA trusted: the row failed for the
    // certificate alone, and after every bad input the good one is taken.
    std::fs::copy(&ca, d.board.etc.join("repo-ca.pem")).unwrap();
    let c = d.config_with_repository(
        "trusted-tls",
        &https_url,
        "ca-file = \"/etc/ferry/repo-ca.pem\"",
    );
    let out = d.board.ferryd(&["-c", &c, "check"]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(version_served(d.port).as_deref(), Some("2.0.0"));
    println!("{} rows, each refused with nothing changed", d.rows);
}

//! A signed repository served by nginx and boards that follow it: what the
//! agent, crash and fleet tests share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_tests::board::{AgentConfig, Board};
use ferry_tests::nginx::Nginx;
use ferry_tests::{examples, server};

use super::text;

/// A release of simple_api at `version`, optionally patched to misbehave.
pub fn variant(version: &str, patch: Option<(&str, &str)>) -> PathBuf {
    let dir = tempfile::tempdir().unwrap();
    let project = examples::simple_api_variant(dir.path(), version, patch).unwrap();
    super::built(&project, &[], "simple_api").unwrap()
}

pub const EXITS_AT_START: (&str, &str) = (
    "os.environ.get(\"SIMPLE_API_FAIL_AT_START\") == \"1\"",
    "os.environ.get(\"SIMPLE_API_FAIL_AT_START\", \"1\") == \"1\"",
);
pub const CRASH_LOOPS: (&str, &str) = (
    "def serve():\n    \"\"\"Serves the API with werkzeug's threaded server until a signal ends it.\"\"\"\n",
    "def serve():\n    \"\"\"Serves the API with werkzeug's threaded server until a signal ends it.\"\"\"\n    import threading\n    threading.Timer(1.0, lambda: os._exit(1)).start()\n",
);
pub const ANSWERS_500: (&str, &str) = (
    "os.environ.get(\"SIMPLE_API_HEALTH_STATUS\", \"200\")",
    "os.environ.get(\"SIMPLE_API_HEALTH_STATUS\", \"500\")",
);

/// A repository served by nginx, a signing key, and helpers to publish.
pub struct Repo {
    /// Keys and the repository directory.
    pub dir: tempfile::TempDir,
    /// The server.
    pub nginx: Nginx,
}

impl Repo {
    /// Keys without password (`root.key`, `timestamp.key`, `release.key`
    /// and their `.pub`), a repository made with them whose `simple_api` is
    /// released by `release.key`, its root as `root.json`, served by nginx
    /// on 127.0.0.1.
    pub fn new() -> Repo {
        Self::served_by(Nginx::serve)
    }

    /// Like [`Repo::new`], served by `serve(repository directory)`.
    pub fn served_by(serve: impl FnOnce(&Path) -> anyhow::Result<Nginx>) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        ferry_tests::signed_repo::create(dir.path(), "simple_api").unwrap();
        let nginx = serve(&dir.path().join("repo")).unwrap();
        Repo { dir, nginx }
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("release.key")
    }

    /// The root devices are provisioned with.
    pub fn root(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("root.json")).unwrap()
    }

    /// The arguments every publishing command takes (in [`Repo::ferry`]).
    pub const TRUST: [&'static str; 6] = ferry_tests::signed_repo::TRUST_ARGS;

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Runs `ferry ARGS…` in the directory of the keys and `repo/`, and
    /// asserts it succeeds.
    pub fn ferry(&self, args: &[&str]) {
        ferry_in(self.dir.path(), args);
    }

    /// Signs `file` in place with the release key (`ferry sign`).
    pub fn sign(&self, file: &Path) {
        self.ferry(&["sign", file.to_str().unwrap(), "--key", "release.key"]);
    }

    /// Signs a copy of `bin` and publishes it with extra `args`.
    pub fn publish(&self, bin: &Path, args: &[&str]) {
        std::fs::copy(bin, self.dir.path().join("release-bin")).unwrap();
        self.ferry(&["sign", "release-bin", "--key", "release.key"]);
        let mut a = vec!["publish", "release-bin", "--key", "release.key"];
        a.extend_from_slice(&Self::TRUST);
        a.extend_from_slice(args);
        self.ferry(&a);
    }
}

fn ferry_in(dir: &Path, args: &[&str]) {
    if let Err(e) = ferry_tests::programs::run_ferry(dir, args) {
        panic!("{e:#}");
    }
}

/// A board following `repo`, its app on a free port (returned).
pub fn board(repo: &Repo, name: &str, app_extra: &str) -> (Board, u16) {
    board_with(repo, name, app_extra, "")
}

/// [`board`] with top-level config lines too.
pub fn board_with(repo: &Repo, name: &str, app_extra: &str, top_extra: &str) -> (Board, u16) {
    let board = Board::start(name, None).unwrap();
    let port = server::free_port().unwrap();
    board
        .configure(&AgentConfig {
            repository: &repo.nginx.url(),
            root: &repo.root(),
            app_extra,
            top_extra,
            port,
        })
        .unwrap();
    (board, port)
}

pub fn version_served(port: u16) -> Option<String> {
    let (status, body) = server::get(&format!("http://127.0.0.1:{port}/version")).ok()?;
    (status == 200).then(|| body.split('"').nth(3).unwrap_or("").to_owned())
}

pub fn current_version(s: &serde_json::Value) -> String {
    s["current"]["version"].as_str().unwrap_or("").to_owned()
}

pub const WAIT: Duration = Duration::from_secs(120);

/// `ferryd install` of a signed build of `version` that an operator put
/// in `/etc/ferry` (as from a USB stick); asserts it is installed.
pub fn install_from_file(repo: &Repo, board: &Board, version: &str) {
    let name = format!("usb-{version}");
    let file = board.etc.join(&name);
    std::fs::copy(variant(version, None), &file).unwrap();
    repo.sign(&file);
    let out = board
        .ferryd(&["install", &format!("/etc/ferry/{name}")])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("updated to {version}")),
        "{}",
        text(&out)
    );
}

/// Starts the agent and waits for v1 to be committed and served.
pub fn install_v1(repo: &Repo, board: &Board, port: u16) {
    repo.publish(&super::simple_api(), &[]);
    let out = board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    board
        .wait_for("v1 committed", WAIT, |s| {
            current_version(s) == "1.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("1.0.0"));
}

//! `ferry-demo`: ferry's main job end to end on this machine, with real parts.
//! Builds `examples/simple_api` into one signed binary, publishes it to a
//! repository served by nginx, boots a sandboxed systemd "board" running
//! `ferryd` as a service, lets the agent install it, then publishes v1.1.0 and
//! watches the agent verify, swap, restart and commit it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ferry_tests::board::{AgentConfig, Board};
use ferry_tests::nginx::Nginx;
use ferry_tests::{examples, programs, server, signed_repo};

fn step(text: &str) {
    println!("\n== {text}");
}

fn ferry(cwd: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(programs::program("ferry"))
        .current_dir(cwd)
        .args(args)
        .status()
        .context("cannot run ferry")?;
    if !status.success() {
        bail!("`ferry {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn served_version(port: u16) -> String {
    server::get(&format!("http://127.0.0.1:{port}/version"))
        .map(|(_, body)| body)
        .unwrap_or_else(|e| format!("(not answering: {e})"))
}

fn wait_version(board: &Board, version: &str) -> Result<()> {
    let start = Instant::now();
    board.wait_for(
        &format!("{version} committed"),
        Duration::from_secs(180),
        |s| s["current"]["version"] == version && s["phase"] == "idle",
    )?;
    println!(
        "committed {version} after {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<()> {
    let work = tempfile::Builder::new().prefix("ferry-demo-").tempdir()?;
    let w = work.path();
    step("ferry keygen + repo init + repo delegate: root key (offline), timestamp key (online), release key for simple_api");
    signed_repo::create(w, "simple_api")?;
    step("ferry build examples/simple_api --sign-key release.key (v1.0.0)");
    let v1 = w.join("simple_api-1.0.0.bin");
    let example = examples::simple_api();
    ferry(
        w,
        &[
            "build",
            path(&example)?,
            "--sign-key",
            "release.key",
            "-o",
            path(&v1)?,
        ],
    )?;
    ferry(w, &["verify", path(&v1)?, "--pubkey", "release.pub"])?;

    step("ferry publish: artifact, manifest, app role, snapshot, timestamp; served by nginx");
    publish(w, &v1)?;
    let nginx = Nginx::serve(&w.join("repo"))?;
    println!("repository at {}", nginx.url());

    step("boot a board: a real systemd in fresh namespaces, ferryd as its service");
    let board = Board::start("demo-board", None)?;
    let port = server::free_port()?;
    let root = std::fs::read_to_string(w.join("root.json"))?;
    board.configure(&AgentConfig {
        repository: &nginx.url(),
        root: &root,
        app_extra: "",
        top_extra: "",
        port,
    })?;
    let out = board.sandbox.systemctl(&["start", "ferryd.service"])?;
    if !out.status.success() {
        bail!(
            "cannot start ferryd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    step("ferryd installs v1.0.0: verify, store, pre-extract, swap, restart over D-Bus, probation");
    wait_version(&board, "1.0.0")?;
    println!("GET /version -> {}", served_version(port));

    step("publish v1.1.0 and watch the agent update the board");
    let project = examples::simple_api_variant(w, "1.1.0", None)?;
    let v2 = w.join("simple_api-1.1.0.bin");
    ferry(
        w,
        &[
            "build",
            path(&project)?,
            "--sign-key",
            "release.key",
            "-o",
            path(&v2)?,
        ],
    )?;
    publish(w, &v2)?;
    wait_version(&board, "1.1.0")?;
    println!("GET /version -> {}", served_version(port));

    step("ferryd status (on the board)");
    let out = board.ferryd(&["status"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));

    step("the journal: one structured entry per transition (FERRY_EVENT)");
    for e in board.events()? {
        println!(
            "{:<18} {:<8} {}",
            e["FERRY_EVENT"].as_str().unwrap_or(""),
            e["FERRY_VERSION"].as_str().unwrap_or(""),
            e["MESSAGE"].as_str().unwrap_or("")
        );
    }
    board
        .sandbox
        .systemctl(&["stop", "ferryd.service", "simple_api.service"])?;
    println!("\ndemo finished: built, signed, published, installed by the agent, updated to 1.1.0");
    Ok(())
}

fn publish(w: &Path, bin: &Path) -> Result<()> {
    signed_repo::publish(w, bin, &["--channel", "stable"])
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("paths must be UTF-8")
}

//! What the end-to-end tests share: the workspace's own programs, and builds of
//! the examples made once per test run (nextest runs every test in its own
//! process, so the cache is on disk, keyed by the programs' and the example's
//! bytes, and built under a file lock).

#![allow(dead_code)]

pub mod forge;
pub mod repo;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context as _, Result};
use ferry_format::digest::sha256_file;
use sha2::{Digest as _, Sha256};

use ferry_tests::programs::program;

/// The `ferry` packager.
pub fn ferry() -> PathBuf {
    program("ferry")
}

/// The `ferry-launcher` stub.
pub fn launcher() -> PathBuf {
    program("ferry-launcher")
}

/// `ferry build` with `args`, run in `cwd`, with a fixed `SOURCE_DATE_EPOCH`.
pub fn ferry_build(cwd: &Path, args: &[&str]) -> Output {
    Command::new(ferry())
        .current_dir(cwd)
        .arg("build")
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        // Boards' interpreters, fetched once per machine, not per test.
        .env(
            "FERRY_TARGET_CACHE",
            ferry_tests::cache_dir().join("target-pythons"),
        )
        .env_remove("FERRY_KEY_PASSWORD")
        .output()
        .expect("run ferry build")
}

/// Output as text for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn hash_tree(h: &mut Sha256, dir: &Path) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let s = name.to_string_lossy();
        if s == "dist" || s == "build" || s.ends_with(".egg-info") || s == "__pycache__" {
            continue;
        }
        h.update(s.as_bytes());
        if e.file_type()?.is_dir() {
            hash_tree(h, &e.path())?;
        } else {
            h.update(sha256_file(&e.path())?.0);
        }
    }
    Ok(())
}

/// Builds `project` with `args` once per distinct (programs, project, args)
/// and returns the binary. The key covers the programs' bytes, so a rebuilt
/// ferry never reuses an old binary.
pub fn built(project: &Path, args: &[&str], file_name: &str) -> Result<PathBuf> {
    let mut h = Sha256::new();
    for p in [ferry(), launcher()] {
        h.update(sha256_file(&p)?.0);
    }
    // A build for a board carries that board's launcher.
    if let Some(i) = args.iter().position(|a| *a == "--target") {
        let target = args.get(i + 1).context("--target without a value")?;
        let arch = ferry_tests::arch::Arch::ALL
            .into_iter()
            .find(|a| a.multiarch() == *target)
            .context("an unknown --target")?;
        h.update(sha256_file(&arch.release_program("ferry-launcher"))?.0);
    }
    hash_tree(&mut h, project)?;
    for a in args {
        h.update(a.as_bytes());
        h.update([0]);
    }
    let key = hex::encode(h.finalize());
    let dir = ferry_tests::cache_dir().join("builds");
    fs::create_dir_all(&dir)?;
    let _lock = ferry_tests::lock::FileLock::exclusive(&dir.join(format!(".{}.lock", &key[..16])))?;
    let out = dir.join(&key[..16]).join(file_name);
    if out.is_file() {
        return Ok(out);
    }
    let mut full: Vec<&str> = vec![project.to_str().context("UTF-8 project path")?];
    full.extend_from_slice(args);
    let out_s = out.to_str().context("UTF-8 output path")?.to_owned();
    full.extend_from_slice(&["-o", &out_s]);
    let o = ferry_build(&dir, &full);
    if !o.status.success() {
        bail!("building `{}` failed:\n{}", project.display(), text(&o));
    }
    Ok(out)
}

/// `examples/simple_api`, standalone.
pub fn simple_api() -> PathBuf {
    built(&ferry_tests::examples::simple_api(), &[], "simple_api").expect("build simple_api")
}

/// A directory that must stay without output after a failed build.
pub fn assert_no_output(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "`{}` holds {left:?} after a failed build",
        dir.display()
    );
}

/// Starts simple_api's `bin` in `root` on a free port and waits up to
/// `timeout` for its `/health` to answer 200; returns the running app
/// (stopped when dropped) and its port.
pub fn serves_health_in(
    root: &Path,
    bin: &Path,
    timeout: std::time::Duration,
) -> (ferry_tests::rootfs::Spawned, u16) {
    let port = ferry_tests::server::free_port().unwrap();
    let mut served =
        ferry_tests::rootfs::spawn_in(root, bin, &[], &[("PORT", &port.to_string())]).unwrap();
    let (status, _) = served
        .wait_http(&format!("http://127.0.0.1:{port}/health"), timeout)
        .unwrap();
    assert_eq!(status, 200, "{}", served.stderr());
    (served, port)
}

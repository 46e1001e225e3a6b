//! What the packager's CLI tests share: running `ferry` and the real `minisign`,
//! and making small ferry containers without a Python build.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ferry_format::container::{write_container, Metadata, FORMAT_VERSION, LAUNCHER_MARKER};

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// Runs `ferry` with no password in the environment unless given.
pub fn ferry(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(ferry_bin());
    cmd.current_dir(dir)
        .args(args)
        .env_remove("FERRY_KEY_PASSWORD")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferry")
}

pub fn minisign(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("minisign")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the `minisign` tool must be installed (Debian package `minisign`); scripts/test.sh installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

pub fn fails(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    text(&o)
}

pub fn work() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("data.txt"), b"release notes\n".repeat(1000)).unwrap();
    d
}

/// A small ELF-shaped launcher: enough for the reader to tell stripped from cut.
pub fn fake_launcher() -> Vec<u8> {
    let mut l = vec![0u8; 4096];
    l[0..4].copy_from_slice(b"\x7fELF");
    l[4] = 2; // 64-bit
    l[5] = 1; // little-endian
    l[18] = 62; // x86-64
    let shoff: u64 = 4096 - 64;
    l[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    l[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    l[0x3C..0x3E].copy_from_slice(&1u16.to_le_bytes());
    l[100..100 + LAUNCHER_MARKER.len()].copy_from_slice(LAUNCHER_MARKER);
    l
}

pub fn make_container(path: &Path) {
    make_named_container(path, "demo", "1.2.3");
}

/// A container of app `name` at `version`, unsigned.
pub fn make_named_container(path: &Path, name: &str, version: &str) {
    let payload: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let meta = Metadata {
        format_version: FORMAT_VERSION,
        name: name.into(),
        version: version.into(),
        entry_point: "demo.app:main".into(),
        python: None,
        build_id: ferry_format::digest::sha256_hex(&payload),
        created_at: 1_700_000_000,
        launcher_version: "0.1.0".into(),
        glibc_floor: None,
    };
    let mut out = std::fs::File::create(path).unwrap();
    write_container(
        &mut out,
        &mut &fake_launcher()[..],
        &mut &payload[..],
        &meta,
        None,
    )
    .unwrap();
}

/// Repository, trusted root and timestamp key, as publishing commands take them.
pub const TRUST: [&str; 6] = ferry_tests::signed_repo::TRUST_ARGS;

/// Keys without password (`root`, `timestamp`, and `ferry` as the release
/// key), a repository in `repo/` with `apps` delegated to `ferry.key`, and
/// its root as `root.json`.
pub fn init_repo(p: &Path, apps: &[&str]) {
    ferry_tests::signed_repo::create_for(p, apps, "ferry").unwrap();
}

/// `ferry ARGS… <TRUST>` in `p`.
pub fn ferry_trusted(p: &Path, args: &[&str]) -> Output {
    let mut a = args.to_vec();
    a.extend_from_slice(&TRUST);
    ferry(p, &a, &[])
}

/// The channel's manifest as a client trusting `root.json` reads it.
pub fn channel(p: &Path, app: &str, channel: &str) -> Option<ferry_format::manifest::Manifest> {
    let repo = ferry::repository::LocalRepo::new(&p.join("repo"));
    let set = repo.load(&p.join("root.json"), Some(app)).unwrap();
    let role = &set.delegated(app)?.doc;
    repo.channel(role, app, channel).unwrap()
}

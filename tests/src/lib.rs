//! ferry's end-to-end harness: the real systems that the tests in `tests/tests/`
//! run ferry's programs against, each behind one small module.
//!
//! - [`rootfs`]: a minimal Debian 12 root filesystem with no Python and no libssl
//!   (made by `debootstrap` on first use, cached under `target/`), and running a
//!   binary chrooted inside it ([`rootfs::run_in`], [`rootfs::spawn_in`],
//!   [`rootfs::Staged`]).
//! - [`arch`] and [`binfmt`]: the boards' architectures, and qemu-user
//!   registered so ARM binaries run here (in an ARM root, or on a board).
//! - [`hidden_python`]: a command that runs a binary on this machine with every
//!   Python interpreter hidden by mounts in a private mount namespace.
//! - [`server`]: a free loopback port and polling a URL until it answers.
//! - [`examples`]: where the example projects live.
//! - [`lock`]: an exclusive file lock, for caches shared by test processes.
//! - [`systemd`]: a real systemd booted as PID 1 of fresh namespaces, with
//!   journald and the system bus ([`systemd::Sandbox`]): a board for `ferryd`,
//!   several at once, gone without a trace when dropped.
//! - [`nginx`]: Debian's nginx serving a repository directory on a loopback
//!   port ([`nginx::Nginx`]).
//! - [`mosquitto`]: Debian's Mosquitto broker, with a password file and TLS.
//! - [`tls`]: a private CA and a server certificate it signed.
//!
//! The harness needs root (mount namespaces, chroot) and a few Debian tools. A
//! missing prerequisite is an error naming the package to install: a test never
//! skips silently.

pub mod arch;
pub mod binfmt;
pub mod board;
pub mod examples;
pub mod fault_server;
pub mod hidden_python;
pub mod home_assistant;
pub mod lock;
pub mod mosquitto;
pub mod netlink;
pub mod nginx;
pub mod programs;
pub mod rootfs;
pub mod server;
pub mod signed_repo;
pub mod systemd;
pub mod tls;

mod tools;

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> &'static Path {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives at `<workspace>/tests`, so the parent always exists.
    crate_dir.parent().unwrap_or(crate_dir)
}

/// Where the harness keeps what is worth keeping between test runs (the Debian
/// root): `$FERRY_TEST_CACHE` if set, else `<workspace>/target/ferry-test-cache`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("FERRY_TEST_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("ferry-test-cache"),
    }
}

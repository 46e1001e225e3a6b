//! qemu-user registered with the kernel's `binfmt_misc`, so ARM binaries run
//! on the host as if native: in a chroot of that architecture and inside a
//! systemd board alike.
//!
//! Debian's `qemu-user-static` ships the registrations in
//! `/usr/lib/binfmt.d/qemu-<arch>.conf` with the `F` flag (the kernel opens
//! the emulator at registration), so it works in any root. Registering needs
//! `binfmt_misc` mounted; this mounts it when it is not.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::lock::FileLock;

const BINFMT: &str = "/proc/sys/fs/binfmt_misc";

/// Makes sure binaries of `arch` run on this machine: a no-op for the host's,
/// a registration of Debian's qemu-user entry for the others. Errors name
/// the package to install.
pub fn ensure_runs(arch: Arch) -> Result<()> {
    let Some(qemu) = arch.qemu() else {
        return Ok(());
    };
    let entry = Path::new(BINFMT).join(format!("qemu-{qemu}"));
    if entry.exists() {
        return Ok(());
    }
    let conf = Path::new("/usr/lib/binfmt.d").join(format!("qemu-{qemu}.conf"));
    if !conf.is_file() {
        bail!(
            "`{}` is missing, so {} binaries cannot run here\nhint: apt-get install qemu-user-static (scripts/install-deps.sh does)",
            conf.display(),
            arch.deb()
        );
    }
    std::fs::create_dir_all(crate::cache_dir())?;
    let _lock = FileLock::exclusive(&crate::cache_dir().join("binfmt.lock"))?;
    if entry.exists() {
        return Ok(());
    }
    if !Path::new(BINFMT).join("register").exists() {
        let out = std::process::Command::new("mount")
            .args(["-t", "binfmt_misc", "binfmt_misc", BINFMT])
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "cannot mount binfmt_misc at {BINFMT}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let text = std::fs::read_to_string(&conf)
        .with_context(|| format!("cannot read `{}`", conf.display()))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(':'))
        .with_context(|| format!("`{}` holds no registration", conf.display()))?;
    std::fs::write(Path::new(BINFMT).join("register"), line)
        .with_context(|| format!("cannot register `{}` with binfmt_misc", conf.display()))?;
    Ok(())
}

//! A minimal Debian 12 root filesystem with no Python and no libssl, where a
//! packaged binary must run on what it carries alone.
//!
//! [`minimal_debian`] makes it with `debootstrap --variant=minbase` from the
//! machine's own apt mirror, once: it is cached under
//! `target/ferry-test-cache/bookworm-minbase` (and, for an ARM board's root
//! from [`minimal_debian_for`], `bookworm-minbase-<arch>`, its programs run
//! through qemu-user), built in a temporary sibling and
//! renamed into place under a file lock, so concurrent test processes neither
//! race nor see half a tree. [`run_in`], [`spawn_in`] and [`Staged`] run a binary
//! chrooted inside it (see `chroot.rs`).

mod chroot;
pub mod mirror;
pub mod scratch;

pub use chroot::{run_in, spawn_in, Spawned, Staged, DEFAULT_ENV};

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::arch::Arch;
use crate::lock::FileLock;
use crate::tools;

/// The cached root's directory name inside [`crate::cache_dir`].
fn root_name(arch: Arch) -> String {
    match arch {
        Arch::Amd64 => "bookworm-minbase".to_string(),
        other => format!("bookworm-minbase-{}", other.deb()),
    }
}

/// Written last into a finished root; names the recipe, so a change to it (a new
/// value here) rebuilds the cache instead of trusting an old tree.
const MARKER: &str = ".ferry-test-rootfs";
const MARKER_TEXT: &str = "debootstrap --variant=minbase bookworm; recipe 1\n";

/// The path of a minimal Debian 12 root (debootstrap's `minbase` variant), with
/// no `python3*` and no `libssl.so*` in it; made on first use, then cached.
///
/// `$FERRY_TEST_DEBIAN_MIRROR` overrides the mirror read from apt's config.
/// Errors name the missing tool (`apt-get install debootstrap`) or show the tail
/// of debootstrap's output.
pub fn minimal_debian() -> Result<PathBuf> {
    minimal_debian_for(Arch::Amd64)
}

/// Like [`minimal_debian`], for a board of `arch`: an ARM root is made with
/// `debootstrap --arch`, qemu-user registered first ([`crate::binfmt`]) so
/// its second stage, and every program later run in it, runs emulated.
pub fn minimal_debian_for(arch: Arch) -> Result<PathBuf> {
    let cache = crate::cache_dir();
    let name = root_name(arch);
    let root = cache.join(&name);
    crate::binfmt::ensure_runs(arch)?;
    if is_complete(&root) {
        return Ok(root);
    }
    fs::create_dir_all(&cache).with_context(|| format!("cannot create `{}`", cache.display()))?;
    let _lock = FileLock::exclusive(&cache.join(format!("{name}.lock")))?;
    if is_complete(&root) {
        return Ok(root);
    }
    build(&cache, &root, arch)?;
    Ok(root)
}

fn is_complete(root: &Path) -> bool {
    fs::read_to_string(root.join(MARKER)).is_ok_and(|text| text == MARKER_TEXT)
}

/// Builds the root into a temporary sibling, checks it, and renames it into
/// place. Called with the lock held, so leftovers of killed builds are stale.
fn build(cache: &Path, root: &Path, arch: Arch) -> Result<()> {
    let debootstrap = tools::find("debootstrap", "debootstrap")?;
    let unshare = tools::find("unshare", "util-linux")?;
    let name = root_name(arch);
    remove_stale(cache, root, &name)?;

    let tmp = cache.join(format!(".{name}.tmp-{}", std::process::id()));
    let mirror = match std::env::var("FERRY_TEST_DEBIAN_MIRROR") {
        Ok(m) if !m.is_empty() => m,
        _ => mirror::from_apt_config(),
    };
    eprintln!(
        "ferry-tests: making a minimal Debian {} root at `{}` with debootstrap from {mirror} (once; a minute or two)",
        arch.deb(),
        root.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new(unshare);
    // A private mount and PID namespace: the proc/sys mounts that debootstrap
    // makes inside the target vanish with it, even when it is killed halfway,
    // so no host mount is ever left under the cache.
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
    ])
    .arg(&debootstrap)
    .arg("--variant=minbase")
    .arg(format!("--arch={}", arch.deb()))
    .arg("bookworm")
    .arg(&tmp)
    .arg(&mirror);
    // SAFETY: prctl is async-signal-safe; it makes the kernel kill `unshare`
    // (and, through --kill-child, debootstrap) if this test thread dies first.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Err(err) = tools::run_checked(&mut cmd) {
        let log = fs::read(tmp.join("debootstrap/debootstrap.log")).unwrap_or_default();
        return Err(err.context(format!(
            "debootstrap could not make a Debian root in `{}` from {mirror}\n--- debootstrap.log (tail)\n{}\nhint: set FERRY_TEST_DEBIAN_MIRROR to a reachable Debian mirror",
            tmp.display(),
            tools::tail(&log)
        )));
    }
    check_root(&tmp).with_context(|| {
        format!(
            "the Debian root made by debootstrap in `{}` is not minimal enough for the tests",
            tmp.display()
        )
    })?;
    let staging = tmp.join("opt/ferry-test");
    fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create `{}`", staging.display()))?;
    fs::write(tmp.join(MARKER), MARKER_TEXT)
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    fs::rename(&tmp, root)
        .with_context(|| format!("cannot rename `{}` to `{}`", tmp.display(), root.display()))?;
    eprintln!(
        "ferry-tests: Debian root ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Removes temporary trees of killed builds and a finished root of an older
/// recipe, refusing any that still has something mounted inside.
fn remove_stale(cache: &Path, root: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.tmp-");
    let mut stale: Vec<PathBuf> = fs::read_dir(cache)
        .with_context(|| format!("cannot list `{}`", cache.display()))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    if root.exists() {
        stale.push(root.to_path_buf());
    }
    for dir in stale {
        if let Some(mount) = mount_under(&dir)? {
            bail!(
                "`{}` is mounted inside the stale Debian root `{}`; not deleting it\nhint: umount -R `{}`, then rerun",
                mount,
                dir.display(),
                mount
            );
        }
        fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove stale `{}`", dir.display()))?;
    }
    Ok(())
}

/// The first mount point at or below `dir` in this mount namespace, if any.
fn mount_under(dir: &Path) -> Result<Option<String>> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let dir = dir.to_string_lossy().into_owned();
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read `/proc/self/mountinfo`")?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .find(|m| m == &dir || m.starts_with(&format!("{dir}/"))))
}

/// Fails unless `root` is a usable root without Python and libssl: the tests
/// built on it would otherwise pass for the wrong reason.
fn check_root(root: &Path) -> Result<()> {
    let mut forbidden = Vec::new();
    walk(root, &mut |path| {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.starts_with("python3") || name.starts_with("libssl.so") {
            forbidden.push(path.to_path_buf());
        }
    })?;
    if !forbidden.is_empty() {
        bail!("it contains Python or libssl: {forbidden:?}");
    }
    for tool in ["bin/sh", "usr/bin/env", "usr/bin/ls"] {
        if !root.join(tool).exists() {
            bail!("it has no `/{tool}`");
        }
    }
    for dev in ["null", "zero", "urandom"] {
        let path = root.join("dev").join(dev);
        let is_char = fs::metadata(&path).is_ok_and(|m| m.file_type().is_char_device());
        if !is_char {
            bail!("`{}` is not a character device", path.display());
        }
    }
    Ok(())
}

/// Calls `visit` on every entry below `dir`, without following symlinks.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
        let path = entry.path();
        visit(&path);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&path, visit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_root_rejects_python_and_libssl() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::write(dir.path().join("usr/lib/x86_64-linux-gnu/libssl.so.3"), b"").unwrap();
        let err = format!("{:#}", check_root(dir.path()).unwrap_err());
        assert!(err.contains("libssl.so.3"), "{err}");
    }

    #[test]
    fn the_cached_root_has_no_python_and_no_libssl() {
        let root = minimal_debian().unwrap();
        assert!(is_complete(&root));
        let mut found = Vec::new();
        for dir in ["usr/bin", "usr/lib", "usr/local"] {
            walk(&root.join(dir), &mut |p| {
                let name = p.file_name().unwrap().to_string_lossy();
                if name.starts_with("python")
                    || name.starts_with("libssl")
                    || name.starts_with("libpython")
                {
                    found.push(p.to_path_buf());
                }
            })
            .unwrap();
        }
        assert!(found.is_empty(), "{found:?}");
    }
}

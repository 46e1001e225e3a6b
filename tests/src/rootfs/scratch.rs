//! A throwaway writable copy of a cached Debian root, for what changes the
//! system itself (installing a `.deb`): an overlay whose upper layer is a
//! temporary directory, mounted in a private mount namespace, so the cached
//! tree stays as debootstrap made it and the copy costs no disk to start.

use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result};

use crate::tools;

/// Runs as `sh -c` in the new mount namespace: $1 the cached root, $2 the
/// scratch directory, $3 the script to run chrooted in the overlay.
const ENTER_SCRIPT: &str = r#"set -eu
root=$1 scratch=$2 script=$3
mkdir -p "$scratch/upper" "$scratch/work" "$scratch/merged"
mount -t overlay ferry-scratch -o "lowerdir=$root,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/merged"
mount -t proc -o nosuid,nodev,noexec proc "$scratch/merged/proc"
mount -t tmpfs -o mode=755,nosuid,nodev,size=16m ferry-run "$scratch/merged/run"
mkdir -p "$scratch/merged/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666 ferry-pts "$scratch/merged/dev/pts"
cp -r "$scratch/in/." "$scratch/merged/tmp/"
exec chroot "$scratch/merged" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root /bin/sh -c "$script"
"#;

/// Copies `files` into `/tmp` of a fresh overlay of `root` and runs `script`
/// there as root with `sh -c`; the overlay is gone when this returns.
pub fn run_script(root: &Path, files: &[&Path], script: &str) -> Result<Output> {
    let unshare = tools::find("unshare", "util-linux")?;
    let scratch = tempfile::Builder::new()
        .prefix("ferry-scratch-root-")
        .tempdir()?;
    let inbox = scratch.path().join("in");
    std::fs::create_dir_all(&inbox)?;
    for file in files {
        let name = file
            .file_name()
            .with_context(|| format!("`{}` has no file name", file.display()))?;
        std::fs::copy(file, inbox.join(name))
            .with_context(|| format!("cannot copy `{}`", file.display()))?;
    }
    let mut cmd = tools::private_mount_shell(&unshare, ENTER_SCRIPT, "ferry-scratch");
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(root)
        .arg(scratch.path())
        .arg(script);
    cmd.output().with_context(|| {
        format!(
            "cannot run a script in a scratch copy of `{}`",
            root.display()
        )
    })
}

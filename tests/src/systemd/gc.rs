//! Cleaning up after test processes that died with sandboxes still up.
//!
//! A SIGKILLed test binary cannot run its `Drop`s. The kernel still ends its
//! sandboxes (their launchers die with it, see `tied.rs`), but their state
//! directories and empty cgroups stay. [`collect`] runs before every boot and
//! removes what belongs to a process that is gone. A directory whose owner (pid
//! and start time) still runs is never touched, so test processes running side
//! by side leave each other alone.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use super::{procs, state, CGROUP_PREFIX};

/// How long a state directory without an owner record is left alone: it may be
/// one that another process is creating this very moment.
const UNOWNED_GRACE: Duration = Duration::from_secs(60);

/// Removes the leftovers of sandboxes whose test process is gone: kills what
/// still runs of them, removes their cgroups and state directories, and removes
/// sandbox cgroups next to this process's own that have no state directory.
/// Returns the names it removed.
pub(crate) fn collect() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let root = state::root();
    if let Ok(entries) = fs::read_dir(&root) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || !is_stale(&dir) {
                continue;
            }
            remove_stale(&dir)?;
            removed.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let parent = procs::own_cgroup()?;
    if let Ok(entries) = fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix(CGROUP_PREFIX) else {
                continue;
            };
            // A live sandbox always has its state directory: it is made before
            // the cgroup and removed after it.
            if root.join(id).exists() {
                continue;
            }
            procs::kill_cgroup(&entry.path());
            procs::remove_cgroup_tree(&entry.path())?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Whether the sandbox whose state is in `dir` belongs to no running process.
fn is_stale(dir: &Path) -> bool {
    let Ok(owner) = fs::read_to_string(dir.join("owner")) else {
        let age = fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        return age.is_some_and(|a| a > UNOWNED_GRACE);
    };
    let mut words = owner.split_whitespace().map(|w| w.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(started))) = (words.next(), words.next()) else {
        return true;
    };
    let Ok(pid) = u32::try_from(pid) else {
        return true;
    };
    !(procs::alive(pid) && procs::start_time(pid) == Some(started))
}

/// Kills what is left of the sandbox recorded in `dir`, then removes its
/// cgroup and `dir`.
fn remove_stale(dir: &Path) -> Result<()> {
    let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
    let pid = read("pid").and_then(|p| p.trim().parse::<u32>().ok());
    let ns = read("pidns").map(|n| n.trim().to_string());
    if let (Some(pid), Some(ns)) = (pid, ns) {
        // Only if that pid is still the sandbox's init, not a recycled pid.
        if procs::pid_ns(pid).as_deref() == Some(ns.as_str()) {
            procs::signal(pid, libc::SIGKILL);
            procs::wait_until(Duration::from_secs(3), || !procs::alive(pid));
        }
    }
    if let Some(boot_id) = read("boot_id") {
        state::remove_private_tmp_dirs(&boot_id.trim().replace('-', ""))?;
    }
    if let Some(cgroup) = read("cgroup") {
        let cgroup = Path::new(cgroup.trim());
        if cgroup.starts_with("/sys/fs/cgroup") {
            procs::kill_cgroup(cgroup);
            procs::remove_cgroup_tree(cgroup)?;
        }
    }
    remove_state_dir(dir)
}

/// Removes a state directory, unless something is mounted inside it in this
/// mount namespace (removing would then delete through the mount).
pub(crate) fn remove_state_dir(dir: &Path) -> Result<()> {
    let mounts = procs::mounts_under(dir);
    if !mounts.is_empty() {
        bail!(
            "not removing the sandbox state `{}`: {} mounted inside\nhint: umount -R {}",
            dir.display(),
            mounts.join(", "),
            mounts.join(" ")
        );
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove `{}`", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owner_makes_a_directory_stale() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let started = procs::start_time(me).unwrap();
        fs::write(dir.path().join("owner"), format!("{me} {started}\n")).unwrap();
        assert!(!is_stale(dir.path()));
        // The same pid with another start time is another process.
        fs::write(dir.path().join("owner"), format!("{me} {}\n", started + 1)).unwrap();
        assert!(is_stale(dir.path()));
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        fs::write(dir.path().join("owner"), format!("{pid} 1\n")).unwrap();
        assert!(is_stale(dir.path()));
        // No owner yet: young directories are being made by someone.
        fs::remove_file(dir.path().join("owner")).unwrap();
        assert!(!is_stale(dir.path()));
    }
}

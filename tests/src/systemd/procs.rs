//! What the sandbox needs to know about processes and cgroups on the host,
//! read from `/proc` and `/sys/fs/cgroup`: whether a process still lives (a
//! zombie does not count), which PID namespace it is in, who entered that
//! namespace from outside, and how to empty and remove a cgroup tree.
//!
//! PIDs are recycled, so every decision that kills takes an identity that
//! cannot be: a PID together with its PID namespace, or with its start time.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `statfs(2)`'s magic number of a cgroup2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The fields of `/proc/<pid>/stat` after the command name: state, parent pid
/// and start time.
struct Stat {
    state: char,
    ppid: u32,
    start_time: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the fields
    // that follow start after its last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of the whole line, the 20th after the name.
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is a live process: it exists and is not a zombie (a dead
/// sandbox's processes can stay zombies until their parent reaps them).
pub(crate) fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The start time of `pid` (clock ticks after boot), which together with the
/// pid names a process for good.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// The PID namespace of `pid`, as `readlink /proc/<pid>/ns/pid` shows it
/// (`pid:[4026532…]`).
pub(crate) fn pid_ns(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Every process on the host (zombies included).
fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The live processes in the PID namespace `ns`.
pub(crate) fn live_in_ns(ns: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| pid_ns(p).as_deref() == Some(ns) && alive(p))
        .collect()
}

/// Processes in the PID namespace `ns` (its init `init` aside) whose parent
/// lives outside it: what `nsenter` put in, as `(pid, parent pid)`.
pub(crate) fn entered_from_outside(ns: &str, init: u32) -> Vec<(u32, u32)> {
    all_pids()
        .into_iter()
        .filter(|&p| p != init && pid_ns(p).as_deref() == Some(ns))
        .filter_map(|p| {
            let ppid = stat(p)?.ppid;
            (pid_ns(ppid).as_deref() != Some(ns)).then_some((p, ppid))
        })
        .collect()
}

/// Sends `signal` to `pid`; a process that is already gone is no error.
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Polls `done` every 10 ms until it holds or `timeout` passes; whether it held.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The mount point of the host's cgroup2 hierarchy: `/sys/fs/cgroup` on a
/// unified host, `/sys/fs/cgroup/unified` on a hybrid one.
fn cgroup2_mount() -> Result<PathBuf> {
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if fs_type(Path::new(dir)) == Some(CGROUP2_SUPER_MAGIC) {
            return Ok(PathBuf::from(dir));
        }
    }
    bail!("no cgroup2 hierarchy is mounted at `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`\nhint: the systemd sandbox needs a kernel with cgroup v2 (unified or hybrid layout)")
}

fn fs_type(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value; statfs(2) fills it in.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a pointer to a statfs we own.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
        return None;
    }
    // The field's integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    Some(buf.f_type as i64)
}

/// The host path of this process's own cgroup2 directory.
pub(crate) fn own_cgroup() -> Result<PathBuf> {
    let mount = cgroup2_mount()?;
    let text =
        fs::read_to_string("/proc/self/cgroup").context("cannot read `/proc/self/cgroup`")?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("`/proc/self/cgroup` has no cgroup2 line (`0::…`)")?;
    Ok(mount.join(rel.trim_start_matches('/')))
}

/// Moves process `pid` into the cgroup `dir`.
pub(crate) fn move_to_cgroup(dir: &Path, pid: u32) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    fs::write(&procs, pid.to_string())
        .with_context(|| format!("cannot move process {pid} into `{}`", procs.display()))
}

/// SIGKILLs every process in the cgroup tree at `dir` (`cgroup.kill`, or one by
/// one on kernels older than 5.14).
pub(crate) fn kill_cgroup(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for cg in cgroup_dirs(dir) {
        let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
            signal(pid, libc::SIGKILL);
        }
    }
}

/// `dir` and every cgroup below it, children before their parents.
fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(cgroup_dirs(&entry.path()));
            }
        }
    }
    out.push(dir.to_path_buf());
    out
}

/// Removes the cgroup tree at `dir`, deepest first (a cgroup can only be
/// removed once it has no children and no process). Retries for a second:
/// dying processes keep their cgroup busy until they are reaped.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    let removed = wait_until(Duration::from_secs(1), || {
        for cg in cgroup_dirs(dir) {
            let _ = fs::remove_dir(&cg);
        }
        !dir.exists()
    });
    if !removed {
        let busy: Vec<String> = cgroup_dirs(dir)
            .iter()
            .filter_map(|cg| {
                let procs = fs::read_to_string(cg.join("cgroup.procs")).ok()?;
                (!procs.trim().is_empty()).then(|| format!("`{}`: {}", cg.display(), procs.trim()))
            })
            .collect();
        bail!(
            "cannot remove the cgroup `{}` (processes still in it: {})",
            dir.display(),
            if busy.is_empty() {
                "none".to_string()
            } else {
                busy.join("; ")
            }
        );
    }
    Ok(())
}

/// The mount points at or below `dir` in this process's mount namespace.
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert!(pid_ns(me).is_some_and(|ns| ns.starts_with("pid:[")));
        assert!(own_cgroup().unwrap().starts_with("/sys/fs/cgroup"));
    }

    #[test]
    fn a_reaped_or_zombie_child_is_not_alive() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}

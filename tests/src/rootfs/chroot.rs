//! Running a binary chrooted in the Debian root, the way it would run on a
//! machine that has never seen Python.
//!
//! A [`Staged`] binary is a copy under `<root>/opt/ferry-test/<unique>/`. Each run
//! enters a private mount namespace (`unshare --mount`), where the root is
//! mounted read-only over itself, so no test can change the shared, cached tree,
//! and the staging's own writable directories are bound onto `/tmp`, `/root` and
//! `/var/cache`, so a second run sees the first run's cache (warm start) and
//! parallel tests share nothing. `proc`, `/dev/shm` and `/run` are fresh mounts.
//! The namespace and its mounts vanish with the process.
//!
//! No PID namespace, on purpose: every step `exec`s the next (unshare → sh →
//! chroot → env → binary), so the [`std::process::Child`]'s PID is the app's PID
//! on the host. Signals sent to it reach the app, its exit status (signals
//! included) is the app's, and the app is not PID 1 — which would ignore
//! SIGTERM and break the tests of ferry's exec-not-spawn promise.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::tools;

/// The environment a chrooted binary gets when the caller adds nothing: what a
/// plain service sees, plus a cache inside the staging's private `/tmp`.
pub const DEFAULT_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/bin:/bin"),
    ("HOME", "/root"),
    ("FERRY_CACHE_DIR", "/tmp/ferry-cache"),
];

/// Runs as `sh -c` inside the new mount namespace: $1 the root, $2 the host-side
/// staging directory, the rest `NAME=VALUE`… then the command. The binds from
/// the staging come before the read-only remount, so they stay writable.
const ENTER_SCRIPT: &str = r#"set -eu
root=$1 staging=$2
shift 2
mount --bind "$root" "$root"
mount --bind "$staging/tmp" "$root/tmp"
mount --bind "$staging/home" "$root/root"
mount --bind "$staging/var-cache" "$root/var/cache"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m ferry-shm "$root/dev/shm"
mount -t tmpfs -o mode=755,nosuid,nodev,size=16m ferry-run "$root/run"
exec chroot "$root" /usr/bin/env -i "$@"
"#;

/// A binary copied into the root, with its own writable `/tmp`, `/root` and
/// `/var/cache`; run it as often as needed. Dropping it deletes the copy and
/// those directories (let processes started from it end first).
#[derive(Debug)]
pub struct Staged {
    root: PathBuf,
    host_dir: PathBuf,
    guest_path: PathBuf,
    unshare: PathBuf,
    spawns: AtomicU64,
}

impl Staged {
    /// Copies `binary` into `<root>/opt/ferry-test/<unique>/` (mode 0755).
    /// Errors name a missing tool (`unshare`, `mount`, `chroot`) and its package.
    pub fn new(root: &Path, binary: &Path) -> Result<Staged> {
        let unshare = tools::find("unshare", "util-linux")?;
        tools::find("mount", "mount")?;
        tools::find("chroot", "coreutils")?;
        let root = root
            .canonicalize()
            .with_context(|| format!("no Debian root at `{}`", root.display()))?;
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.contains('='))
            .with_context(|| {
                format!("`{}` needs a UTF-8 file name without `=`", binary.display())
            })?;
        let unique = unique_name();
        let host_dir = root.join("opt/ferry-test").join(&unique);
        for (sub, mode) in [("tmp", 0o1777), ("home", 0o700), ("var-cache", 0o755)] {
            let dir = host_dir.join(sub);
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot chmod `{}`", dir.display()))?;
        }
        let copy = host_dir.join(name);
        fs::copy(binary, &copy).with_context(|| {
            format!("cannot copy `{}` to `{}`", binary.display(), copy.display())
        })?;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot chmod `{}`", copy.display()))?;
        Ok(Staged {
            root,
            guest_path: Path::new("/opt/ferry-test").join(&unique).join(name),
            host_dir,
            unshare,
            spawns: AtomicU64::new(0),
        })
    }

    /// The binary's path as seen inside the root.
    pub fn guest_path(&self) -> &Path {
        &self.guest_path
    }

    /// The host path of what the binary sees as `guest` (`/tmp/…`, `/root/…`,
    /// `/var/cache/…` map to this staging's own directories), e.g. to inspect
    /// the launcher's cache at `host_path("/tmp/ferry-cache")`.
    pub fn host_path(&self, guest: &str) -> PathBuf {
        let rel = guest.trim_start_matches('/');
        let mapped = [("tmp", "tmp"), ("root", "home"), ("var/cache", "var-cache")]
            .iter()
            .find_map(|(inside, outside)| {
                let rest = rel.strip_prefix(inside)?;
                (rest.is_empty() || rest.starts_with('/')).then(|| {
                    self.host_dir
                        .join(outside)
                        .join(rest.trim_start_matches('/'))
                })
            });
        mapped.unwrap_or_else(|| self.root.join(rel))
    }

    /// The command that runs the staged binary with `args`, chrooted, in the
    /// environment [`DEFAULT_ENV`] with `env` added or overriding. Stdio is the
    /// caller's to set.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut merged: Vec<(&str, &str)> = DEFAULT_ENV
            .iter()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        merged.extend_from_slice(env);
        self.command_exact_env(args, &merged)
    }

    /// Like [`Staged::command`], but the binary's environment is exactly `env`
    /// (to run with no `HOME` or no `FERRY_CACHE_DIR`, say).
    pub fn command_exact_env(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = tools::private_mount_shell(&self.unshare, ENTER_SCRIPT, "ferry-chroot");
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(&self.root)
            .arg(&self.host_dir);
        for (key, value) in env {
            // `env` would take a name holding `=` as a different assignment.
            assert!(
                !key.contains('=') && !key.is_empty(),
                "bad environment variable name {key:?}"
            );
            cmd.arg(format!("{key}={value}"));
        }
        cmd.arg(&self.guest_path).args(args);
        cmd
    }

    /// Runs the binary to completion (stdin empty) and returns its output.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut cmd = self.command(args, env);
        cmd.output().with_context(|| {
            format!(
                "cannot run `{}` in `{}`",
                self.guest_path.display(),
                self.root.display()
            )
        })
    }

    /// Starts the binary (for servers). Stdin is empty; stdout and stderr go to
    /// files in the staging, readable through [`Spawned::stdout`] and
    /// [`Spawned::stderr`] (a pipe nobody reads would stall a chatty server).
    /// Keep this `Staged` alive while the process runs: dropping it deletes
    /// those files and the binary's writable directories.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Spawned> {
        let n = self.spawns.fetch_add(1, Ordering::Relaxed);
        let stdout_log = self.host_dir.join(format!("spawn-{n}.stdout"));
        let stderr_log = self.host_dir.join(format!("spawn-{n}.stderr"));
        let create =
            |p: &Path| File::create(p).with_context(|| format!("cannot create `{}`", p.display()));
        let child = self
            .command(args, env)
            .stdin(Stdio::null())
            .stdout(create(&stdout_log)?)
            .stderr(create(&stderr_log)?)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start `{}` in `{}`",
                    self.guest_path.display(),
                    self.root.display()
                )
            })?;
        Ok(Spawned {
            child,
            stdout_log,
            stderr_log,
            staged: None,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Best effort: a leftover directory costs disk, not correctness.
        let _ = fs::remove_dir_all(&self.host_dir);
    }
}

/// Copies `binary` into `root`, runs it there with `args` and `env` (added to
/// [`DEFAULT_ENV`]) and cleans up. Stdin is empty.
pub fn run_in(root: &Path, binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    Staged::new(root, binary)?.run(args, env)
}

/// Copies `binary` into `root` and starts it there (see [`Staged::spawn`]); the
/// process is killed and the copy deleted when the [`Spawned`] is dropped.
pub fn spawn_in(
    root: &Path,
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Spawned> {
    let staged = Staged::new(root, binary)?;
    let mut spawned = staged.spawn(args, env)?;
    spawned.staged = Some(staged);
    Ok(spawned)
}

/// A running chrooted binary. Dropping it kills the process (SIGKILL) if it is
/// still running, and deletes its staging if it owns one.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    // Declared after `child`, but `Drop` kills the child before fields drop.
    staged: Option<Staged>,
}

impl Spawned {
    /// The process's PID on the host: the app's own (see the module docs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The underlying child process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: kill(2) with a PID of our own unreaped child: it cannot have
        // been recycled for another process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot send signal {signal} to {pid}"));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to end; an error if it is still
    /// running then (it is left running).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot wait for the chrooted process")?
            {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the chrooted process {} still runs after {timeout:?}\n--- stderr\n{}",
                    self.pid(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `url` until it answers (see [`crate::server::wait_http`]), failing
    /// at once, with the process's stderr, if the process exits first.
    pub fn wait_http(&mut self, url: &str, timeout: Duration) -> Result<(u16, String)> {
        let result = crate::server::wait_http_while(url, timeout, &mut self.child);
        result.with_context(|| format!("--- stderr of the chrooted process\n{}", self.stderr()))
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout_log).unwrap_or_default()).into_owned()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;
    use crate::rootfs::minimal_debian;

    fn sh(staged: &Staged, script: &str) -> (Option<i32>, String, String) {
        let out = staged.run(&["-c", script], &[]).unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    #[test]
    fn true_runs_in_the_root() {
        let out = run_in(&minimal_debian().unwrap(), Path::new("/bin/true"), &[], &[]).unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    #[test]
    fn the_root_has_no_python_on_path() {
        let out = run_in(
            &minimal_debian().unwrap(),
            Path::new("/bin/sh"),
            &["-c", "ls /usr/bin | grep -c python"],
            &[],
        )
        .unwrap();
        // grep -c prints the count, and exits 1 when it is 0.
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
            (Some(1), "0"),
            "{out:?}"
        );
    }

    #[test]
    fn the_environment_is_clean_and_extendable() {
        let staged = Staged::new(&minimal_debian().unwrap(), Path::new("/bin/sh")).unwrap();
        let (code, out, err) = sh(&staged, "env | grep -v '^PWD=' | sort");
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            out,
            "FERRY_CACHE_DIR=/tmp/ferry-cache\nHOME=/root\nPATH=/usr/bin:/bin\n"
        );

        let out = staged
            .run(
                &["-c", "echo \"$HOME|$X\""],
                &[("HOME", "/nowhere"), ("X", "a b")],
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/nowhere|a b\n");
        let out = staged
            .command_exact_env(&["-c", "env | grep -v '^PWD=' | wc -l"], &[])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    }

    #[test]
    fn the_root_is_read_only_and_the_staging_writable_and_kept_between_runs() {
        let staged = Staged::new(&minimal_debian().unwrap(), Path::new("/bin/sh")).unwrap();
        let (code, out, err) = sh(
            &staged,
            "touch /usr/ferry-x 2>/dev/null && echo root-writable; \
             mkdir -p /tmp/ferry-cache /var/cache/ferry && touch /tmp/ferry-cache/a /root/b /var/cache/ferry/c && echo ok",
        );
        assert_eq!((code, out.as_str()), (Some(0), "ok\n"), "{err}");
        assert!(staged.host_path("/tmp/ferry-cache/a").is_file());
        assert!(staged.host_path("/root/b").is_file());
        assert!(staged.host_path("/var/cache/ferry/c").is_file());
        let (code, _, _) = sh(&staged, "test -f /tmp/ferry-cache/a && test -f /root/b");
        assert_eq!(
            code,
            Some(0),
            "the staging's files did not survive to the next run"
        );
    }

    #[test]
    fn proc_and_devices_work_and_the_binary_sees_its_guest_path() {
        let staged = Staged::new(&minimal_debian().unwrap(), Path::new("/bin/sh")).unwrap();
        let (code, out, err) =
            sh(&staged, "readlink /proc/$$/exe; echo x >/dev/null; head -c 4 /dev/urandom | wc -c; touch /dev/shm/x");
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, format!("{}\n4\n", staged.guest_path().display()));
    }

    #[test]
    fn a_spawned_process_keeps_its_pid_and_dies_by_signal() {
        let root = minimal_debian().unwrap();
        let mut spawned = spawn_in(
            &root,
            Path::new("/bin/sh"),
            &["-c", "echo $$; echo started >&2; exec sleep 60"],
            &[],
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !spawned.stderr().contains("started") {
            assert!(Instant::now() < deadline, "no output: {}", spawned.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            spawned.stdout().trim(),
            spawned.pid().to_string(),
            "the chroot chain did not exec"
        );
        assert!(spawned.wait_timeout(Duration::from_millis(100)).is_err());
        spawned.signal(libc::SIGTERM).unwrap();
        let status = spawned.wait_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn dropping_cleans_up_the_staging_and_the_process() {
        let root = minimal_debian().unwrap();
        let spawned = spawn_in(&root, Path::new("/bin/sleep"), &["60"], &[]).unwrap();
        let pid = spawned.pid();
        let dir = spawned.staged.as_ref().unwrap().host_dir.clone();
        assert!(dir.is_dir());
        drop(spawned);
        assert!(!dir.exists(), "`{}` left behind", dir.display());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still runs"
        );
    }

    #[test]
    fn host_paths_map_the_writable_directories() {
        let staged = Staged::new(&minimal_debian().unwrap(), Path::new("/bin/true")).unwrap();
        assert_eq!(staged.host_path("/tmp"), staged.host_dir.join("tmp"));
        assert_eq!(
            staged.host_path("/root/.cache/ferry"),
            staged.host_dir.join("home/.cache/ferry")
        );
        assert_eq!(
            staged.host_path("/var/cache/ferry"),
            staged.host_dir.join("var-cache/ferry")
        );
        assert_eq!(staged.host_path("/tmpfoo"), staged.root.join("tmpfoo"));
        assert_eq!(
            staged.host_path("/usr/bin/env"),
            staged.root.join("usr/bin/env")
        );
    }
}

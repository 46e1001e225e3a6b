//! A real systemd, booted as PID 1 of fresh PID, mount, UTS, IPC and cgroup
//! namespaces (and optionally a network namespace), with journald and the
//! system D-Bus: a "board" that `ferryd` and the apps it manages run on in the
//! end-to-end tests. A boot takes about a quarter of a second, and several
//! sandboxes can run at once.
//!
//! This is the recipe of the project's systemd harness notes, in Rust:
//!
//! - **Only whitelisted units.** systemd reads units from the sandbox's own
//!   `/etc/systemd` (a copy of D-Bus, journald, the standard targets and the
//!   shutdown path, plus an empty directory for test units) and from its private
//!   `/run`: `SYSTEMD_UNIT_PATH` names those directories and nothing else, and
//!   generators are off. A naive `unshare … systemd --system` with the host's
//!   units would run `systemd-tmpfiles-setup.service`, which **wipes the host's
//!   `/tmp`**, and would start every service the host has enabled.
//! - **Private `/run`, `/dev`, `/etc/systemd`, `/etc/machine-id`,
//!   `/etc/hostname`, boot ID and cgroup tree**, made by a small init script (see
//!   `state.rs`) before it execs systemd in container mode; the journal is
//!   volatile. Everything else (`/usr`, `/var`, `/tmp` unless
//!   [`SandboxOptions::private_tmp`], the workspace) is the host's file system,
//!   shared: a binary under `target/` runs inside as it is.
//! - **A cgroup of its own** next to the test process's cgroup, which the
//!   launcher enters before `unshare --cgroup`, so the sandbox's systemd manages
//!   that subtree only.
//! - **Nothing left behind.** [`Sandbox::stop`] stops the services, asks
//!   systemd to exit, and removes the cgroup and the state directory; dropping a
//!   [`Sandbox`] does the same with SIGKILL (the kernel then kills every process
//!   of the PID namespace, and the mounts go with the mount namespace). If the
//!   test process itself is killed, the kernel kills its sandboxes (the launcher
//!   is spawned with a parent-death signal from a thread that lives as long as
//!   the process), and the next boot's garbage collection removes the state
//!   directories, cgroups and `PrivateTmp=` directories of dead test processes.
//!
//! Talk to a sandbox through [`Sandbox::exec`] (any command, inside all its
//! namespaces), [`Sandbox::systemctl`], its bus at [`Sandbox::bus_address`]
//! (`unix:path=/proc/<pid>/root/run/dbus/system_bus_socket`, usable from the
//! host), and its journal through [`Sandbox::journal`] and
//! [`Sandbox::journal_json`]. PIDs that systemd reports (`MainPID`) are PIDs of
//! the sandbox's namespace.
//!
//! Needs root, cgroup v2 (unified or hybrid) and Debian's `systemd`, `dbus`,
//! `util-linux`, `mount` and `hostname` packages; a missing one is an error
//! naming it.

mod gc;
mod procs;
mod state;
pub(crate) mod tied;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::tools;

/// Where sandboxes keep their state, one directory each.
pub const STATE_ROOT: &str = "/tmp/ferry-sandbox";

/// The prefix of a sandbox's cgroup directory name (then its id).
const CGROUP_PREFIX: &str = "ferry-sandbox-";

/// How long a boot may take before it counts as failed.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful [`Sandbox::stop`] waits for services and for systemd to
/// exit, before it falls back to SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// systemd's program.
const SYSTEMD: &str = "/usr/lib/systemd/systemd";

/// How a sandbox is set up. `SandboxOptions::default()` shares the host's
/// network and `/tmp`, binds nothing and makes a fresh machine ID.
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// `(host path, path inside)` pairs to bind-mount, in order. The host path
    /// must exist (it may be under the host's `/tmp`, even with
    /// [`private_tmp`](Self::private_tmp)). A missing inside path is created
    /// inside the sandbox only, never on the host: directly in its private
    /// `/run` (and `/tmp`, `/var/tmp` with `private_tmp`), elsewhere (e.g.
    /// `/var/lib/ferry`, `/etc/ferry`) in a private overlay of its nearest
    /// existing ancestor (`/var/lib`, `/etc`), so writes there stay in the
    /// sandbox too. It cannot be in a shared `/tmp`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// A fresh tmpfs on `/tmp` and `/var/tmp` inside. Without it the sandbox
    /// shares the host's `/tmp`, and `PrivateTmp=` directories of units that are
    /// still running when the sandbox is killed stay there.
    pub private_tmp: bool,
    /// A network namespace of its own (only `lo`, which systemd brings up).
    /// `false`, the default, shares the host's network, so servers on the
    /// host's loopback (nginx, test servers) are reachable from inside.
    pub private_network: bool,
    /// The sandbox's `/etc/machine-id` (32 lowercase hex digits); a fresh
    /// random one when `None`.
    pub machine_id: Option<String>,
}

/// A running sandbox. Dropping it kills it and removes everything it made;
/// [`Sandbox::stop`] does the same gracefully and reports problems.
#[derive(Debug)]
pub struct Sandbox {
    hostname: String,
    machine_id: String,
    dir: PathBuf,
    cgroup: PathBuf,
    /// Whether this sandbox made `cgroup` (and may kill what is in it).
    owns_cgroup: bool,
    /// The test process's own cgroup, where the launcher goes back to.
    home_cgroup: PathBuf,
    /// `unshare`, whose child is the sandbox's systemd.
    launcher: Option<Child>,
    /// Host pid of the sandbox's systemd; 0 until known.
    pid: u32,
    /// Its PID namespace, which tells it from a process that reuses the pid.
    pid_ns: String,
    boot_id: String,
    boot_time: Duration,
    tools: Tools,
    finished: bool,
}

/// The host programs a sandbox uses.
#[derive(Debug, Clone)]
struct Tools {
    unshare: PathBuf,
    nsenter: PathBuf,
    journalctl: PathBuf,
    busctl: PathBuf,
    timeout: PathBuf,
}

impl Tools {
    /// Finds every program the sandbox needs, inside or outside, or fails
    /// naming the package to install.
    fn find() -> Result<Tools> {
        let systemd = Path::new(SYSTEMD);
        if !systemd.is_file() {
            bail!("`{SYSTEMD}` is not installed (needed by the systemd sandbox)\nhint: apt-get install systemd (scripts/install-deps.sh installs every test prerequisite)");
        }
        tools::find("systemctl", "systemd")?;
        tools::find("dbus-daemon", "dbus")?;
        for (tool, package) in [
            ("mount", "mount"),
            ("umount", "mount"),
            ("hostname", "hostname"),
            ("mknod", "coreutils"),
            ("env", "coreutils"),
        ] {
            tools::find(tool, package)?;
        }
        if !Path::new("/etc/machine-id").is_file() {
            bail!("`/etc/machine-id` is missing on this machine; the systemd sandbox mounts its own over it\nhint: systemd-machine-id-setup");
        }
        Ok(Tools {
            unshare: tools::find("unshare", "util-linux")?,
            nsenter: tools::find("nsenter", "util-linux")?,
            journalctl: tools::find("journalctl", "systemd")?,
            busctl: tools::find("busctl", "systemd")?,
            timeout: tools::find("timeout", "coreutils")?,
        })
    }
}

impl Sandbox {
    /// Boots a sandbox whose hostname is `name`, and returns once
    /// `systemctl is-system-running --wait` says `running` or `degraded`.
    ///
    /// `name` (1–40 ASCII letters, digits, `-`, `_`) need not be unique: the
    /// state directory `/tmp/ferry-sandbox/<name>-<pid>-<n>` and the cgroup add
    /// this process's pid and a counter. Leftovers of dead test processes are
    /// removed first. Errors name a missing prerequisite or show the tail of the
    /// boot log; a failed boot leaves nothing behind.
    pub fn start(name: &str, opts: SandboxOptions) -> Result<Sandbox> {
        state::check_name(name)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the systemd sandbox needs root (mount, cgroup and PID namespaces)");
        }
        let tools = Tools::find()?;
        for (host, inside) in &opts.binds {
            state::check_bind(host, inside, opts.private_tmp)?;
        }
        let machine_id = match &opts.machine_id {
            Some(id) => {
                state::check_machine_id(id)?;
                id.clone()
            }
            None => state::new_id128()?,
        };
        let boot_id = state::new_id128()?;
        for removed in gc::collect().context("cannot clean up after earlier sandboxes")? {
            eprintln!("ferry-tests: removed the leftovers of sandbox `{removed}`");
        }

        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{name}-{}-{n}", std::process::id());
        let dir = state::root().join(&id);
        let home_cgroup = procs::own_cgroup()?;
        let cgroup = home_cgroup.join(format!("{CGROUP_PREFIX}{id}"));
        state::prepare(&dir, name, &machine_id, &boot_id).inspect_err(|_| {
            let _ = gc::remove_state_dir(&dir);
        })?;
        let mut sandbox = Sandbox {
            hostname: name.to_string(),
            machine_id,
            dir,
            cgroup,
            owns_cgroup: false,
            home_cgroup,
            launcher: None,
            pid: 0,
            pid_ns: String::new(),
            boot_id,
            boot_time: Duration::ZERO,
            tools,
            finished: false,
        };
        // From here on, dropping `sandbox` on an error cleans up.
        sandbox
            .boot(&opts)
            .with_context(|| format!("cannot boot the systemd sandbox `{name}`"))?;
        Ok(sandbox)
    }

    fn boot(&mut self, opts: &SandboxOptions) -> Result<()> {
        fs::create_dir(&self.cgroup).with_context(|| {
            format!(
                "cannot create the cgroup `{}` (in use by another sandbox?)",
                self.cgroup.display()
            )
        })?;
        self.owns_cgroup = true;
        fs::write(
            self.dir.join("cgroup"),
            format!("{}\n", self.cgroup.display()),
        )
        .context("cannot record the sandbox's cgroup")?;
        let started = Instant::now();
        let launcher = self.launch(opts)?;
        let upid = launcher.id();
        self.launcher = Some(launcher);
        fs::write(self.dir.join("unshare.pid"), format!("{upid}\n"))
            .context("cannot record the launcher's pid")?;

        // unshare's only child is the sandbox's PID 1.
        let deadline = started + BOOT_TIMEOUT;
        let pid = loop {
            let children = fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"))
                .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                break pid
                    .parse::<u32>()
                    .context("bad pid in `/proc/…/children`")?;
            }
            self.check_launcher("unshare did not start the sandbox", deadline)?;
            std::thread::sleep(Duration::from_millis(5));
        };
        self.pid = pid;
        self.pid_ns = procs::pid_ns(pid).context("cannot read the sandbox's PID namespace")?;
        fs::write(self.dir.join("pid"), format!("{pid}\n"))
            .and_then(|()| fs::write(self.dir.join("pidns"), format!("{}\n", self.pid_ns)))
            .context("cannot record the sandbox's pid")?;
        // Back out of the sandbox's cgroup: its root must hold no process
        // (cgroup v2's "no internal processes" rule).
        let _ = procs::move_to_cgroup(&self.home_cgroup, upid);

        // Until PID 1 *is* systemd, `/run` inside may still be the host's: on a
        // systemd host, `/run/systemd/private` there would be the host's.
        let systemd = fs::canonicalize(SYSTEMD).unwrap_or_else(|_| PathBuf::from(SYSTEMD));
        let private = format!("/proc/{pid}/root/run/systemd/private");
        loop {
            let is_systemd =
                fs::read_link(format!("/proc/{pid}/exe")).ok() == Some(systemd.clone());
            let listens = fs::metadata(&private).is_ok_and(|m| m.file_type().is_socket());
            if is_systemd && listens {
                break;
            }
            if !procs::alive(pid) {
                bail!(
                    "the sandbox died during boot\n--- init.log (tail)\n{}",
                    self.log_tail("init.log")
                );
            }
            self.check_launcher("systemd did not come up", deadline)?;
            std::thread::sleep(Duration::from_millis(5));
        }

        let secs = BOOT_TIMEOUT
            .saturating_sub(started.elapsed())
            .as_secs()
            .max(1);
        let out = Command::new(&self.tools.timeout)
            .arg(secs.to_string())
            .arg(&self.tools.nsenter)
            .args(["-t", &pid.to_string(), "-m", "-p", "--"])
            .args(["systemctl", "is-system-running", "--wait"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run `systemctl is-system-running` in the sandbox")?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if state != "running" && state != "degraded" {
            let failed = self
                .systemctl(&["list-units", "--failed", "--no-legend", "--plain"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            bail!(
                "the sandbox did not finish booting: `systemctl is-system-running --wait` said `{state}` ({}) {}\nfailed units: {failed}\n--- init.log (tail)\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail("init.log")
            );
        }
        self.boot_time = started.elapsed();
        Ok(())
    }

    /// Starts `unshare` in the sandbox's cgroup, in a session of its own, tied
    /// to this test process's life.
    fn launch(&self, opts: &SandboxOptions) -> Result<Child> {
        let log = File::create(self.dir.join("unshare.log"))
            .context("cannot create the sandbox's `unshare.log`")?;
        let procs = OpenOptions::new()
            .write(true)
            .open(self.cgroup.join("cgroup.procs"))
            .with_context(|| format!("cannot open `{}/cgroup.procs`", self.cgroup.display()))?;
        let mut cmd = Command::new(&self.tools.unshare);
        cmd.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--uts",
            "--ipc",
            "--cgroup",
            "--mount-proc",
            "--propagation",
            "private",
        ]);
        if opts.private_network {
            cmd.arg("--net");
        }
        cmd.args([
            "--",
            "/bin/sh",
            "-c",
            state::INIT_SCRIPT,
            "ferry-sandbox-init",
        ])
        .arg(&self.dir)
        .arg(&self.hostname)
        .arg(if opts.private_tmp { "1" } else { "0" })
        .arg(SYSTEMD)
        .arg(state::UNIT_PATH);
        for (host, inside) in &opts.binds {
            cmd.arg(host).arg(inside);
        }
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot duplicate a file handle")?)
            .stderr(log);
        let fd = procs.as_raw_fd();
        // SAFETY: setsid and write are async-signal-safe, and the closure
        // allocates nothing; `procs` stays open until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process: unshare --cgroup then makes
                // this cgroup the root of the sandbox's cgroup namespace.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = tied::spawn(cmd)?;
        drop(procs);
        Ok(child)
    }

    /// Fails if the launcher has exited or `deadline` has passed.
    fn check_launcher(&mut self, what: &str, deadline: Instant) -> Result<()> {
        if let Some(child) = self.launcher.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "{what}: unshare exited ({status})\n--- unshare.log (tail)\n{}\n--- init.log (tail)\n{}",
                    self.log_tail("unshare.log"),
                    self.log_tail("init.log")
                );
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} within {BOOT_TIMEOUT:?}\n--- init.log (tail)\n{}",
                self.log_tail("init.log")
            );
        }
        Ok(())
    }

    fn log_tail(&self, name: &str) -> String {
        tools::tail(&fs::read(self.dir.join(name)).unwrap_or_default())
    }

    /// The host pid of the sandbox's systemd (PID 1 inside).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The sandbox's hostname: the `name` given to [`Sandbox::start`].
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The sandbox's `/etc/machine-id` (what journal entries carry as
    /// `_MACHINE_ID`).
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    /// The sandbox's own boot ID (32 hex digits; what journal entries carry as
    /// `_BOOT_ID`), distinct from the host's and every other sandbox's.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// How long the boot took, from launch to `running`.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The sandbox's state directory on the host (logs, its `/etc/systemd`).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// The sandbox's system bus, reachable from the host:
    /// `unix:path=/proc/<pid>/root/run/dbus/system_bus_socket`. Pass it to a
    /// D-Bus client explicitly (setting `DBUS_SYSTEM_BUS_ADDRESS` in a
    /// multi-threaded test is racy).
    pub fn bus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.pid
        )
    }

    /// The host path of what the sandbox sees as `/etc/systemd/system`: put
    /// test units there (or use [`Sandbox::install_unit`]), then reload.
    pub fn unit_dir(&self) -> PathBuf {
        self.dir.join("etc-systemd").join("system")
    }

    /// Writes the unit `name` (e.g. `agent.service`) into [`Sandbox::unit_dir`]
    /// and runs `systemctl daemon-reload` inside.
    pub fn install_unit(&self, name: &str, text: &str) -> Result<()> {
        if name.is_empty() || name.contains('/') || !name.contains('.') {
            bail!("bad unit name `{name}`: expected a file name like `agent.service`");
        }
        let path = self.unit_dir().join(name);
        fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
        let out = self.systemctl(&["daemon-reload"])?;
        if !out.status.success() {
            bail!(
                "`systemctl daemon-reload` in sandbox `{}` failed ({}) after installing `{name}`: {}",
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs `argv` inside all the sandbox's namespaces (`nsenter`), waits for it
    /// and returns its output, whatever its exit status. Its `/proc`, `/run`
    /// and hostname are the sandbox's; it stays in the test's cgroup, and dies
    /// with the sandbox. Errors if it cannot be started.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let shown = argv.join(" ");
        if argv.is_empty() {
            bail!("nothing to run in sandbox `{}`", self.hostname);
        }
        self.ensure_running()?;
        self.nsenter(argv)
            .output()
            .with_context(|| format!("cannot run `{shown}` in sandbox `{}`", self.hostname))
    }

    fn nsenter(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.nsenter);
        cmd.args(["-t", &self.pid.to_string()])
            .args(["-m", "-u", "-i", "-n", "-p", "-C", "--"])
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    /// `systemctl args…` inside the sandbox (the host's `systemctl` cannot be
    /// pointed at it); the output whatever the exit status.
    pub fn systemctl(&self, args: &[&str]) -> Result<Output> {
        let mut argv = vec!["systemctl"];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// One property of a unit (`systemctl show -p PROPERTY --value UNIT`), e.g.
    /// `ActiveState`, `MainPID`, `NRestarts`.
    pub fn property(&self, unit: &str, property: &str) -> Result<String> {
        let out = self.systemctl(&["show", "-p", property, "--value", unit])?;
        if !out.status.success() {
            bail!(
                "`systemctl show -p {property} {unit}` in sandbox `{}` failed ({}): {}",
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `journalctl args…` on the sandbox's journal, from the host
    /// (`--directory=/proc/<pid>/root/run/log/journal --no-pager`); the output
    /// whatever the exit status. The journal is volatile: read it before
    /// [`Sandbox::stop`].
    pub fn journal(&self, args: &[&str]) -> Result<Output> {
        self.ensure_running()?;
        Command::new(&self.tools.journalctl)
            .arg(format!(
                "--directory=/proc/{}/root/run/log/journal",
                self.pid
            ))
            .arg("--no-pager")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run journalctl on sandbox `{}`", self.hostname))
    }

    /// The sandbox's journal entries as JSON objects (`journalctl -o json`),
    /// oldest first; only those of `unit` (`-u`: its processes' entries and
    /// systemd's about it) when given. Assert on fields (`MESSAGE_ID`,
    /// `JOB_TYPE`, `FERRY_EVENT`…), not on message text.
    pub fn journal_json(&self, unit: Option<&str>) -> Result<Vec<serde_json::Value>> {
        let mut args = vec!["-o", "json"];
        if let Some(unit) = unit {
            args.extend(["-u", unit]);
        }
        let out = self.journal(&args)?;
        if !out.status.success() {
            bail!(
                "journalctl on sandbox `{}` failed ({}): {}",
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("bad journal JSON line: {l}")))
            .collect()
    }

    /// Stops the sandbox gracefully: kills what [`Sandbox::exec`] left running,
    /// stops its services (so their `PrivateTmp=` directories are removed),
    /// asks systemd to exit (`Manager.Exit()`), SIGKILLs it after 10 s, then
    /// removes its cgroup and state directory. Errors say what was left.
    pub fn stop(mut self) -> Result<()> {
        self.finish(true)
    }

    fn ensure_running(&self) -> Result<()> {
        if self.finished || !self.is_up() {
            bail!(
                "sandbox `{}` (pid {}) is not running",
                self.hostname,
                self.pid
            );
        }
        Ok(())
    }

    /// Whether the sandbox's systemd still runs (and is that process).
    fn is_up(&self) -> bool {
        self.pid != 0
            && procs::alive(self.pid)
            && procs::pid_ns(self.pid).as_deref() == Some(self.pid_ns.as_str())
    }

    /// Ends the sandbox, gracefully or with SIGKILL, and removes its traces.
    fn finish(&mut self, graceful: bool) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if graceful && self.is_up() {
            self.ask_to_exit();
        }
        if self.is_up() {
            procs::signal(self.pid, libc::SIGKILL);
            procs::wait_until(Duration::from_secs(3), || !self.is_up());
        }
        let mut problems = Vec::new();
        if self.is_up() {
            problems.push(format!("its systemd (pid {}) survived SIGKILL", self.pid));
        }
        if let Some(mut launcher) = self.launcher.take() {
            if self.pid == 0 {
                // The boot failed before systemd was known: --kill-child takes
                // whatever unshare started with it.
                let _ = launcher.kill();
            }
            let ns = self.pid_ns.clone();
            let pid = self.pid;
            let exited = procs::wait_until(Duration::from_secs(5), || {
                if matches!(launcher.try_wait(), Ok(Some(_))) {
                    return true;
                }
                // A dying PID 1 waits for zombies whose parent (an nsenter, outside)
                // was stopped by systemd's shutdown: let those parents reap them.
                if !ns.is_empty() {
                    for (_, parent) in procs::entered_from_outside(&ns, pid) {
                        procs::signal(parent, libc::SIGCONT);
                    }
                }
                false
            });
            if !exited {
                let _ = launcher.kill();
                let _ = launcher.wait();
            }
        }
        if !self.pid_ns.is_empty() {
            let left = procs::live_in_ns(&self.pid_ns);
            if !left.is_empty() {
                problems.push(format!(
                    "processes still live in its PID namespace: {left:?}"
                ));
            }
        }
        // A graceful stop lets systemd remove them; SIGKILL does not.
        if let Err(err) = state::remove_private_tmp_dirs(&self.boot_id) {
            problems.push(format!("{err:#}"));
        }
        if self.owns_cgroup {
            procs::kill_cgroup(&self.cgroup);
            if let Err(err) = procs::remove_cgroup_tree(&self.cgroup) {
                problems.push(format!("{err:#}"));
            }
        }
        if let Err(err) = gc::remove_state_dir(&self.dir) {
            problems.push(format!("{err:#}"));
        }
        if !problems.is_empty() {
            bail!(
                "sandbox `{}` did not stop cleanly: {}",
                self.hostname,
                problems.join("; ")
            );
        }
        Ok(())
    }

    /// The graceful part of [`Sandbox::stop`]; SIGKILL follows if it fails.
    fn ask_to_exit(&self) {
        // 1. Processes put in by `exec` that still run: systemd's shutdown
        //    SIGSTOPs everything, and a stopped nsenter never reaps its child,
        //    on which the dying PID 1 would then wait forever.
        for (pid, _) in procs::entered_from_outside(&self.pid_ns, self.pid) {
            procs::signal(pid, libc::SIGKILL);
        }
        // 2. Stop the services first, so their own cleanup runs as on a real
        //    shutdown: during Exit() systemd's removal of PrivateTmp= directories
        //    is cut short (`finish` removes those that stay).
        let secs = STOP_TIMEOUT.as_secs().to_string();
        let _ = Command::new(&self.tools.timeout)
            .arg(&secs)
            .arg(&self.tools.nsenter)
            .args(["-t", &self.pid.to_string(), "-m", "-p", "--"])
            .args(["/bin/sh", "-c", STOP_SERVICES])
            .stdin(Stdio::null())
            .output();
        // 3. Manager.Exit() (allowed in container mode): units stop, PID 1
        //    exits, the kernel tears the namespaces down.
        let asked = Command::new(&self.tools.busctl)
            .arg(format!("--address={}", self.bus_address()))
            .arg("--timeout=5")
            .args([
                "call",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "Exit",
            ])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success());
        if !asked {
            // SIGRTMIN+3 halts a systemd in a container.
            procs::signal(self.pid, libc::SIGRTMIN() + 3);
        }
        procs::wait_until(STOP_TIMEOUT, || !self.is_up());
    }
}

/// Stops every active service but D-Bus and journald (run inside by `sh -c`).
const STOP_SERVICES: &str = r#"set -- $(systemctl list-units --type=service --state=active,activating --plain --no-legend |
  while read -r unit _; do
    case $unit in dbus.service|systemd-journald.service) ;; *) echo "$unit" ;; esac
  done)
[ $# = 0 ] || systemctl stop "$@"
"#;

impl Drop for Sandbox {
    /// Kills the sandbox (SIGKILL to its PID 1) and removes its cgroup and
    /// state directory; problems go to stderr.
    fn drop(&mut self) {
        if let Err(err) = self.finish(false) {
            eprintln!("ferry-tests: {err:#}");
        }
    }
}

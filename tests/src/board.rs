//! A board: a real systemd sandbox set up as a device that ferryd manages —
//! `/var/lib/ferry`, `/etc/ferry` and `/var/cache` bound to private
//! directories, `ferryd` installed as a service from `units/ferryd.service`,
//! and the app's unit from `units/simple_api.service`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tempfile::TempDir;

use crate::systemd::{Sandbox, SandboxOptions};

/// Where ferryd's program sits inside a board.
pub const FERRYD_INSIDE: &str = "/usr/local/sbin/ferryd";

/// One board.
pub struct Board {
    /// The running sandbox.
    pub sandbox: Sandbox,
    /// Host directory bound at `/var/lib/ferry`.
    pub state: PathBuf,
    /// Host directory bound at `/etc/ferry`.
    pub etc: PathBuf,
    /// Host directory bound at `/var/cache`.
    pub cache: PathBuf,
    /// Its link to the host, when it has a network of its own.
    pub link: Option<crate::netlink::Link>,
    _dirs: TempDir,
}

/// What a board's agent config holds.
pub struct AgentConfig<'a> {
    /// Repository URL.
    pub repository: &'a str,
    /// The repository's root (written to /etc/ferry/root.json).
    pub root: &'a str,
    /// Extra `[[app]]` keys and top-level keys, as TOML lines.
    pub app_extra: &'a str,
    /// Top-level extra keys, as TOML lines.
    pub top_extra: &'a str,
    /// The app's port.
    pub port: u16,
}

/// ferryd's D-Bus policy, where the boards' bus daemons (which read the
/// host's `/etc`) find it when they start.
fn install_bus_policy() -> Result<()> {
    let name = "dev.ferry.Agent1.conf";
    let dir = Path::new("/etc/dbus-1/system.d");
    std::fs::create_dir_all(dir)?;
    let text = workspace_file(&format!("units/{name}"))?;
    if std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text.as_str()) {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

fn workspace_file(rel: &str) -> Result<String> {
    let p = crate::workspace_root().join(rel);
    std::fs::read_to_string(&p).with_context(|| format!("cannot read `{}`", p.display()))
}

impl Board {
    /// Boots a board named `name` with `ferryd` installed but not started,
    /// sharing the host's network.
    pub fn start(name: &str, machine_id: Option<String>) -> Result<Board> {
        Self::start_with(name, machine_id, false, &crate::programs::program("ferryd"))
    }

    /// Boots a board whose agent is the program `agent` (e.g. the build
    /// with crash points), sharing the host's network.
    pub fn start_with_agent(name: &str, agent: &Path) -> Result<Board> {
        Self::start_with(name, None, false, agent)
    }

    /// Boots a board with a network namespace of its own, linked to the host
    /// by a veth pair ([`Board::link`]): it reaches only the host's end.
    pub fn start_networked(name: &str, machine_id: Option<String>) -> Result<Board> {
        Self::start_with(name, machine_id, true, &crate::programs::program("ferryd"))
    }

    fn start_with(
        name: &str,
        machine_id: Option<String>,
        private_network: bool,
        agent: &Path,
    ) -> Result<Board> {
        let dirs = tempfile::Builder::new().prefix("ferry-board-").tempdir()?;
        let (state, etc, cache, bin) = (
            dirs.path().join("state"),
            dirs.path().join("etc"),
            dirs.path().join("cache"),
            dirs.path().join("bin"),
        );
        for d in [&state, &etc, &cache, &bin] {
            std::fs::create_dir_all(d)?;
        }
        // Mount points on the host's (shared) root: empty directories.
        for d in ["/var/lib/ferry", "/etc/ferry"] {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create mount point `{d}`"))?;
        }
        install_bus_policy()?;
        std::fs::copy(agent, bin.join("ferryd"))
            .with_context(|| format!("cannot copy the agent `{}`", agent.display()))?;
        let sandbox = Sandbox::start(
            name,
            SandboxOptions {
                binds: vec![
                    (state.clone(), "/var/lib/ferry".into()),
                    (etc.clone(), "/etc/ferry".into()),
                    (cache.clone(), "/var/cache".into()),
                    (bin, "/usr/local/sbin".into()),
                ],
                private_tmp: true,
                private_network,
                machine_id,
            },
        )?;
        let link = if private_network {
            Some(crate::netlink::link(sandbox.pid())?)
        } else {
            None
        };
        Ok(Board {
            sandbox,
            state,
            etc,
            cache,
            link,
            _dirs: dirs,
        })
    }

    /// Writes the agent config and root, and installs the units (app on `port`).
    /// The app gets `probation = "3s"` and `keep = 3` unless `app_extra` sets them.
    pub fn configure(&self, cfg: &AgentConfig<'_>) -> Result<()> {
        std::fs::write(self.etc.join("root.json"), cfg.root)?;
        let unless_set = |key: &str, line: &str| {
            if cfg
                .app_extra
                .lines()
                .any(|l| l.trim_start().starts_with(key))
            {
                String::new()
            } else {
                format!("{line}\n")
            }
        };
        let toml = format!(
            "repository = \"{}\"\nroot = \"root.json\"\npoll-interval = \"1s\"\npoll-jitter = \"0s\"\n{}\n\n[[app]]\nname = \"simple_api\"\nunit = \"simple_api.service\"\n{}{}health-url = \"http://127.0.0.1:{}/health\"\nhealth-timeout = \"2s\"\nhealth-retries = 5\n{}\n",
            cfg.repository,
            cfg.top_extra,
            unless_set("probation", "probation = \"3s\""),
            unless_set("keep", "keep = 3"),
            cfg.port,
            cfg.app_extra
        );
        std::fs::write(self.etc.join("agent.toml"), toml)?;
        let agent_unit = workspace_file("units/ferryd.service")?
            .replace("/usr/bin/ferryd", FERRYD_INSIDE)
            .replace("RestartSec=10s", "RestartSec=1s");
        self.sandbox.install_unit("ferryd.service", &agent_unit)?;
        let app_unit = workspace_file("units/simple_api.service")?.replace(
            "Environment=PORT=8000",
            &format!("Environment=PORT={}", cfg.port),
        );
        self.sandbox.install_unit("simple_api.service", &app_unit)?;
        Ok(())
    }

    /// Adds a drop-in `name.conf` to the agent's unit (`ferryd.service.d/`)
    /// and reloads systemd.
    pub fn agent_drop_in(&self, name: &str, text: &str) -> Result<()> {
        let dir = self.sandbox.unit_dir().join("ferryd.service.d");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.conf")), text)?;
        let out = self.sandbox.systemctl(&["daemon-reload"])?;
        if !out.status.success() {
            bail!(
                "daemon-reload after drop-in `{name}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Runs `ferryd ARGS…` inside the board (as the operator would).
    pub fn ferryd(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut argv = vec![FERRYD_INSIDE];
        argv.extend_from_slice(args);
        self.sandbox.exec(&argv)
    }

    /// The board's local time (its clock and time zone): minutes since
    /// midnight, and seconds into the minute.
    pub fn local_clock(&self) -> Result<(u32, u32)> {
        let out = self.sandbox.exec(&["date", "+%H %M %S"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let t: Vec<u32> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("`date` on the board printed `{text}`"))?;
        match t[..] {
            [h, m, s] => Ok((h * 60 + m, s)),
            _ => bail!("`date` on the board printed `{text}`"),
        }
    }

    /// Appends `lines` to the agent's config (so to the last `[[app]]`)
    /// and restarts the service onto it.
    pub fn reconfigure(&self, lines: &str) -> Result<()> {
        self.rewrite_config(|toml| format!("{toml}{lines}\n"))
    }

    /// Rewrites the agent's config with `edit` and restarts the service
    /// onto it.
    pub fn rewrite_config(&self, edit: impl FnOnce(String) -> String) -> Result<()> {
        let path = self.etc.join("agent.toml");
        let toml = std::fs::read_to_string(&path)?;
        std::fs::write(&path, edit(toml))?;
        self.restart_agent()
    }

    /// `systemctl restart ferryd.service` on the board.
    pub fn restart_agent(&self) -> Result<()> {
        let out = self.sandbox.systemctl(&["restart", "ferryd.service"])?;
        if !out.status.success() {
            bail!(
                "restarting ferryd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// An install window of one minute, three hours away on the board's
    /// clock: closed for as long as any test runs.
    pub fn closed_window(&self) -> Result<String> {
        let (minute, _) = self.local_clock()?;
        Ok(format!("{}-{}", hh_mm(minute + 180), hh_mm(minute + 181)))
    }

    /// Asserts that `unit` is active and systemd never restarted it.
    pub fn assert_active_without_restarts(&self, unit: &str) {
        for (property, expected) in [("ActiveState", "active"), ("NRestarts", "0")] {
            assert_eq!(
                self.sandbox.property(unit, property).unwrap(),
                expected,
                "{unit}'s {property}"
            );
        }
    }

    /// `ferryd status --json`.
    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.ferryd(&["status", "--json"])?;
        if !out.status.success() {
            bail!(
                "ferryd status failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("ferryd status --json printed something else")
    }

    /// The app's entry of `status --json`.
    pub fn app_status(&self) -> Result<serde_json::Value> {
        Ok(self.status()?["apps"][0].clone())
    }

    /// Waits until `pred` holds for the app's status, or fails with the last one.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.app_status()?;
            if pred(&s) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let journal = self
                    .sandbox
                    .journal(&["-u", "ferryd.service", "-n", "60"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                bail!("timed out waiting for {what}; status: {s:#}\n--- ferryd journal ---\n{journal}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The journal entries ferryd wrote with a `FERRY_EVENT`.
    pub fn events(&self) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .sandbox
            .journal_json(None)?
            .into_iter()
            .filter(|e| e.get("FERRY_EVENT").is_some())
            .collect())
    }

    /// How many journal entries have `FERRY_EVENT=event` (and version, if given).
    pub fn count_events(&self, event: &str, version: Option<&str>) -> Result<usize> {
        Ok(self
            .events()?
            .iter()
            .filter(|e| {
                e["FERRY_EVENT"] == event && version.is_none_or(|v| e["FERRY_VERSION"] == v)
            })
            .count())
    }

    /// Host path of the app's binary that `current` points at.
    pub fn current_binary(&self) -> PathBuf {
        self.state.join("simple_api/current/simple_api")
    }

    /// Host path of the app's state dir.
    pub fn app_dir(&self) -> PathBuf {
        self.state.join("simple_api")
    }
}

/// Whether `path` is a complete ferry binary (parses as a container).
pub fn is_complete_binary(path: &Path) -> bool {
    std::fs::File::open(path)
        .ok()
        .and_then(|mut f| ferry_format::Container::read_from(&mut f).ok())
        .is_some()
}

/// `HH:MM` of a minute of the day (wrapping past midnight).
pub fn hh_mm(minute: u32) -> String {
    let m = minute % (24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

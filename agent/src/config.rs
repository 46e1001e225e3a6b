//! The agent's configuration, `/etc/ferry/agent.toml`: raw TOML structures with
//! `deny_unknown_fields` become validated [`Settings`] at this one boundary.
//! Every error names the file, and TOML errors carry the line and the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use ferry_format::container::is_valid_name;
use serde::Deserialize;

/// Where the agent reads its configuration by default.
pub const DEFAULT_PATH: &str = "/etc/ferry/agent.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    repository: String,
    root: PathBuf,
    #[serde(default)]
    allow_plain_files: bool,
    poll_interval: Option<String>,
    poll_jitter: Option<String>,
    state_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    report_url: Option<String>,
    device_id: Option<String>,
    max_artifact_size: Option<u64>,
    network_timeout: Option<String>,
    download_deadline: Option<String>,
    rollout_wariness: Option<Wariness>,
    install_window: Option<String>,
    mqtt: Option<crate::mqtt::RawMqtt>,
    #[serde(default)]
    app: Vec<RawApp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawApp {
    name: String,
    channel: Option<String>,
    unit: String,
    probation: Option<String>,
    keep: Option<usize>,
    restart_timeout: Option<String>,
    health_url: Option<String>,
    health_command: Option<Vec<String>>,
    health_timeout: Option<String>,
    health_retries: Option<u32>,
    cache_dir: Option<PathBuf>,
    user: Option<String>,
    install_window: Option<String>,
    inhibit_file: Option<PathBuf>,
}

/// Where a device stands in phased rollouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wariness {
    /// Takes every release as soon as any share of the fleet may (percent > 0).
    Canary,
    /// Takes a release when its bucket is below the percentage.
    #[default]
    Normal,
    /// Takes a release only once it goes to everyone (100 %).
    Cautious,
}

/// How the agent checks an app after a restart.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// The unit must stay active, without restarts, this long.
    pub probation: Duration,
    /// The app's user, whom the health command runs as (default: the agent's).
    pub user: Option<String>,
    /// Optional URL that must answer 2xx.
    pub url: Option<String>,
    /// Optional command that must exit 0.
    pub command: Option<Vec<String>>,
    /// Time limit of one HTTP or command check.
    pub timeout: Duration,
    /// Attempts of the HTTP and command checks before they count as failed.
    pub retries: u32,
}

/// One managed application.
#[derive(Debug, Clone)]
pub struct AppSettings {
    /// App name (also the binary's name and its state directory's).
    pub name: String,
    /// Channel followed.
    pub channel: String,
    /// The systemd unit running it.
    pub unit: String,
    /// Health checks.
    pub health: HealthSettings,
    /// Versions kept on disk (never fewer than current and previous).
    pub keep: usize,
    /// How long a restart job may take.
    pub restart_timeout: Duration,
    /// The cache root the agent pre-extracts into before the swap, root-owned
    /// and 0755: the app's unit sets `FERRY_CACHE_DIR` to it, and may read
    /// but not change the trees (default `<state-dir>/<app>/cache`).
    pub cache_dir: PathBuf,
    /// User the app runs as: the health command runs as it (default: the agent's).
    pub user: Option<String>,
    /// When this app's releases may be swapped in (overrides the global one).
    pub install_window: Option<InstallWindow>,
    /// While this file exists the app must not be restarted (default
    /// `/run/<name>/inhibit`: the app's `RuntimeDirectory=`, which systemd
    /// removes with the app, so a crashed app holds nothing back).
    pub inhibit_file: Option<PathBuf>,
}

/// A daily span of local time, `HH:MM-HH:MM`, that may wrap past midnight
/// (`22:00-04:00`); start included, end excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallWindow {
    /// Minutes after midnight.
    pub start: u16,
    /// Minutes after midnight.
    pub end: u16,
}

impl InstallWindow {
    /// Whether `minute` (after local midnight) lies inside.
    pub fn contains(self, minute: u16) -> bool {
        if self.start <= self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::str::FromStr for InstallWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let minute = |part: &str| -> Option<u16> {
            let (h, m) = part.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && part.trim().len() == 5).then_some(h * 60 + m)
        };
        let bad =
            || format!("\"{text}\" is not a window like \"02:00-05:00\" (local time, HH:MM-HH:MM)");
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let (start, end) = (minute(a).ok_or_else(bad)?, minute(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!("\"{text}\" is an empty window (start equals end)"));
        }
        Ok(InstallWindow { start, end })
    }
}

impl std::fmt::Display for InstallWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

fn opt_window(key: &str, value: &Option<String>) -> Result<Option<InstallWindow>> {
    value
        .as_deref()
        .map(|v| v.parse().map_err(|e| anyhow::anyhow!("`{key}` = {e}")))
        .transpose()
}

/// Validated agent settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the repository.
    pub repository: String,
    /// The root of trust the device was provisioned with (TUF `root.json`);
    /// newer roots are walked to from it and kept in the state directory.
    pub root: PathBuf,
    /// Whether artifacts of kind `file` (not ferry binaries, so with no
    /// embedded signature and no pre-extraction) may be installed.
    pub allow_plain_files: bool,
    /// Time between polls.
    pub poll_interval: Duration,
    /// Random extra delay, up to this, added to each poll.
    pub poll_jitter: Duration,
    /// Root of the agent's state.
    pub state_dir: PathBuf,
    /// Extra CA certificate (PEM) for an HTTPS repository.
    pub ca_file: Option<PathBuf>,
    /// Where transition reports go, if anywhere.
    pub report_url: Option<String>,
    /// This device's id (phased rollouts).
    pub device_id: String,
    /// Largest artifact accepted.
    pub max_artifact_size: u64,
    /// A server silent this long (connecting or mid-transfer) is given up on.
    pub network_timeout: Duration,
    /// Longest one download may take in all (the rest resumes next poll).
    pub download_deadline: Duration,
    /// Canary, normal or cautious in phased rollouts.
    pub wariness: Wariness,
    /// When releases may be swapped in, for apps without their own window.
    pub install_window: Option<InstallWindow>,
    /// The MQTT broker Home Assistant listens on, if any.
    pub mqtt: Option<crate::mqtt::MqttSettings>,
    /// Managed apps.
    pub apps: Vec<AppSettings>,
}

/// Parses a duration of the key `key` (see [`ferry_format::duration`]).
pub fn parse_duration(key: &str, text: &str) -> Result<Duration> {
    ferry_format::duration::parse(text).map_err(|e| anyhow::anyhow!("`{key}` = {e}"))
}

fn opt_duration(key: &str, value: &Option<String>, default: Duration) -> Result<Duration> {
    value
        .as_deref()
        .map(|v| parse_duration(key, v))
        .transpose()
        .map(|d| d.unwrap_or(default))
}

fn machine_id() -> Result<String> {
    let id = std::fs::read_to_string("/etc/machine-id").context(
        "cannot read /etc/machine-id for the device id\nhint: set `device-id` in the agent config",
    )?;
    let id = id.trim().to_owned();
    if id.is_empty() {
        bail!("/etc/machine-id is empty\nhint: set `device-id` in the agent config");
    }
    Ok(id)
}

/// Whether the file at `path` says nothing yet: it exists and holds only
/// comments and blank lines (the commented default a package installs).
/// `ferryd run` then waits, saying what to configure, instead of failing.
pub fn is_unconfigured(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.lines()
            .map(str::trim)
            .all(|l| l.is_empty() || l.starts_with('#'))
    })
}

/// What `ferryd` says when its configuration file has nothing in it yet.
pub fn unconfigured_message(path: &Path) -> String {
    format!(
        "not configured: set `repository`, `root` and at least one [[app]] in `{}` (see /usr/share/doc/ferryd/agent.md), then `systemctl restart ferryd`",
        path.display()
    )
}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read the agent config `{}`\nhint: create it (see docs/agent.md) or pass --config", path.display())
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new("/")))
            .with_context(|| format!("invalid agent config `{}`", path.display()))
    }

    /// Parses configuration text; relative key paths are taken from `config_dir`.
    pub fn parse(text: &str, config_dir: &Path) -> Result<Self> {
        let raw: RawConfig = toml::from_str(text)?;
        if !(raw.repository.starts_with("http://") || raw.repository.starts_with("https://")) {
            bail!(
                "`repository` = \"{}\" must be an http:// or https:// URL",
                raw.repository
            );
        }
        if raw.repository.starts_with("http://") {
            log::warn!(
                "`repository` = \"{}\" is plain http: metadata stays verified, but anyone on the path sees what the device fetches; prefer https://",
                raw.repository
            );
        }
        let root = config_dir.join(&raw.root);
        if raw.app.is_empty() {
            bail!("no [[app]] table: the agent has nothing to manage");
        }
        let state_dir = raw
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/ferry"));
        let mut apps = Vec::new();
        for (i, a) in raw.app.iter().enumerate() {
            let ctx = || format!("[[app]] #{} (`{}`)", i + 1, a.name);
            if !is_valid_name(&a.name) {
                bail!("{}: `name` must be 1-128 of A-Z a-z 0-9 . _ -", ctx());
            }
            if apps.iter().any(|x: &AppSettings| x.name == a.name) {
                bail!("{}: `name` appears twice", ctx());
            }
            let channel = a.channel.clone().unwrap_or_else(|| "stable".into());
            if !is_valid_name(&channel) {
                bail!(
                    "{}: `channel` = \"{channel}\" is not a valid channel name",
                    ctx()
                );
            }
            if a.unit.is_empty() || a.unit.contains('/') {
                bail!("{}: `unit` = \"{}\" is not a unit name", ctx(), a.unit);
            }
            let unit = if a.unit.contains('.') {
                a.unit.clone()
            } else {
                format!("{}.service", a.unit)
            };
            let keep = a.keep.unwrap_or(3);
            if keep < 2 {
                bail!(
                    "{}: `keep` = {keep} must be at least 2 (current and previous)",
                    ctx()
                );
            }
            if let Some(cmd) = &a.health_command {
                if cmd.is_empty() {
                    bail!("{}: `health-command` is empty", ctx());
                }
            }
            if let Some(url) = &a.health_url {
                if !url.starts_with("http://") {
                    bail!("{}: `health-url` = \"{url}\" must be an http:// URL", ctx());
                }
            }
            apps.push(AppSettings {
                name: a.name.clone(),
                channel,
                unit,
                health: HealthSettings {
                    probation: opt_duration("probation", &a.probation, Duration::from_secs(10))?,
                    user: a.user.clone(),
                    url: a.health_url.clone(),
                    command: a.health_command.clone(),
                    timeout: opt_duration(
                        "health-timeout",
                        &a.health_timeout,
                        Duration::from_secs(5),
                    )?,
                    retries: a.health_retries.unwrap_or(5).max(1),
                },
                keep,
                restart_timeout: opt_duration(
                    "restart-timeout",
                    &a.restart_timeout,
                    Duration::from_secs(90),
                )?,
                cache_dir: a
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| state_dir.join(&a.name).join("cache")),
                user: a.user.clone(),
                install_window: opt_window("install-window", &a.install_window)
                    .with_context(ctx)?,
                inhibit_file: Some(
                    a.inhibit_file
                        .clone()
                        .unwrap_or_else(|| Path::new("/run").join(&a.name).join("inhibit")),
                ),
            });
        }
        let device_id = match raw.device_id {
            Some(id) if !id.trim().is_empty() => id.trim().to_owned(),
            Some(_) => bail!("`device-id` is empty"),
            None => machine_id()?,
        };
        let mqtt = raw
            .mqtt
            .map(|m| crate::mqtt::MqttSettings::from_raw(m, &device_id))
            .transpose()?;
        if mqtt.is_some() {
            // Topics and Home Assistant's ids hold app names reduced to
            // `[a-z0-9_-]`: two apps must not reduce to one.
            let mut seen = std::collections::HashMap::new();
            for app in &apps {
                let id = crate::mqtt::settings::topic_id(&app.name);
                if let Some(other) = seen.insert(id.clone(), app.name.clone()) {
                    bail!(
                        "apps `{other}` and `{}` share the MQTT id `{id}`\nhint: rename one of them",
                        app.name
                    );
                }
            }
        }
        Ok(Self {
            repository: raw.repository.trim_end_matches('/').to_owned(),
            root,
            allow_plain_files: raw.allow_plain_files,
            poll_interval: opt_duration(
                "poll-interval",
                &raw.poll_interval,
                Duration::from_secs(300),
            )?,
            poll_jitter: opt_duration("poll-jitter", &raw.poll_jitter, Duration::from_secs(30))?,
            state_dir,
            ca_file: raw.ca_file,
            report_url: raw.report_url,
            device_id,
            max_artifact_size: raw.max_artifact_size.unwrap_or(1 << 30),
            network_timeout: opt_duration(
                "network-timeout",
                &raw.network_timeout,
                Duration::from_secs(60),
            )?,
            download_deadline: opt_duration(
                "download-deadline",
                &raw.download_deadline,
                Duration::from_secs(3600),
            )?,
            wariness: raw.rollout_wariness.unwrap_or_default(),
            install_window: opt_window("install-window", &raw.install_window)?,
            mqtt,
            apps,
        })
    }

    /// The settings of one app.
    pub fn app(&self, name: &str) -> Result<&AppSettings> {
        self.apps.iter().find(|a| a.name == name).with_context(|| {
            format!(
                "no app `{name}` in the agent config (configured: {})",
                self.apps
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn only_comments_and_blank_lines_are_unconfigured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        assert!(
            !is_unconfigured(&path),
            "a missing file is an error, not a default"
        );
        std::fs::write(&path, "# repository = \"https://x\"\n\n   # [[app]]\n").unwrap();
        assert!(is_unconfigured(&path));
        assert!(unconfigured_message(&path).contains("[[app]]"));
        std::fs::write(&path, "# a comment\nrepository = \"https://x\"\n").unwrap();
        assert!(!is_unconfigured(&path));
    }

    use super::*;

    fn full() -> String {
        r#"
repository = "http://127.0.0.1:8080/repo/"
root = "root.json"
poll-interval = "2m"
poll-jitter = "10s"
state-dir = "/tmp/ferry-state"
device-id = "board-7"

[[app]]
name = "simple_api"
channel = "beta"
unit = "simple_api"
probation = "3s"
keep = 2
health-url = "http://127.0.0.1:8000/health"
health-command = ["/bin/true"]
health-timeout = "1s"
health-retries = 4
"#
        .to_owned()
    }

    #[test]
    fn full_fixture() {
        let s = Settings::parse(&full(), Path::new("/")).unwrap();
        assert_eq!(s.repository, "http://127.0.0.1:8080/repo");
        assert_eq!(s.poll_interval, Duration::from_secs(120));
        assert_eq!(s.device_id, "board-7");
        assert_eq!(s.root, Path::new("/root.json"));
        assert!(!s.allow_plain_files);
        let a = &s.apps[0];
        assert_eq!(
            (a.channel.as_str(), a.unit.as_str(), a.keep),
            ("beta", "simple_api.service", 2)
        );
        assert_eq!(a.health.probation, Duration::from_secs(3));
        assert_eq!(a.health.retries, 4);
        assert_eq!(a.cache_dir, Path::new("/tmp/ferry-state/simple_api/cache"));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let text = full().replace("keep = 2", "kep = 2");
        let err = format!("{:#}", Settings::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("kep") && err.contains("line"), "{err}");
        let text = full().replace("probation = \"3s\"", "probation = 3");
        let err = format!("{:#}", Settings::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("probation") && err.contains("line"), "{err}");
        let text = full().replace("keep = 2", "keep = 1");
        assert!(
            format!("{:#}", Settings::parse(&text, Path::new("/")).unwrap_err()).contains("keep")
        );
        let text = full().replace("root = \"root.json\"\n", "");
        assert!(
            format!("{:#}", Settings::parse(&text, Path::new("/")).unwrap_err()).contains("root")
        );
        let text = full().replace("unit = \"simple_api\"\n", "");
        let err = format!("{:#}", Settings::parse(&text, Path::new("/")).unwrap_err());
        assert!(err.contains("unit"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("k", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("k", "7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("k", "5 parsecs").is_err());
    }
}

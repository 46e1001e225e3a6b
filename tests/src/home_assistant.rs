//! A real Home Assistant Core for end-to-end tests, through
//! `scripts/home-assistant.sh`: installed once per machine into a venv under
//! the test cache (serialised by a file lock), started onboarded with its
//! MQTT integration pointed at a broker, driven through its REST API with a
//! long-lived token, photographed with headless Chromium, stopped on drop
//! (or, if the test process is killed, when it is gone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::lock::FileLock;
use crate::{cache_dir, server, workspace_root};

/// A running Home Assistant.
pub struct HomeAssistant {
    config: TempDir,
    port: u16,
    token: String,
}

fn script() -> PathBuf {
    workspace_root().join("scripts/home-assistant.sh")
}

fn run(args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        // A Home Assistant it starts ends with this test process, even one
        // killed outright.
        .env("HA_OWNER_PID", std::process::id().to_string())
        .output()
        .context("cannot run scripts/home-assistant.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/home-assistant.sh {} failed ({}):\n{}\n{}",
            args.first().copied().unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The venv, installed on first use.
pub fn installed() -> Result<PathBuf> {
    let root = cache_dir().join("home-assistant");
    std::fs::create_dir_all(&root)?;
    let _lock = FileLock::exclusive(&root.join(".lock"))?;
    let venv = root.join("venv");
    run(&["install", &venv.to_string_lossy()])?;
    Ok(venv)
}

impl HomeAssistant {
    /// Starts Home Assistant with MQTT on `127.0.0.1:mqtt_port`.
    pub fn start(mqtt_port: u16, user: &str, password: &str) -> Result<HomeAssistant> {
        let venv = installed()?;
        let config = tempfile::Builder::new().prefix("ferry-hass-").tempdir()?;
        let port = server::free_port()?;
        let config_dir = config.path().to_string_lossy().into_owned();
        let started = run(&[
            "start",
            &venv.to_string_lossy(),
            &config_dir,
            &port.to_string(),
            "127.0.0.1",
            &mqtt_port.to_string(),
            user,
            password,
        ]);
        let mut ha = HomeAssistant {
            token: String::new(),
            port,
            config,
        };
        if let Err(e) = started {
            bail!("{e:#}\n--- home-assistant.log (tail)\n{}", ha.log_tail());
        }
        let token = std::fs::read_to_string(ha.config.path().join("token"))
            .context("Home Assistant started without a token")?;
        ha.token = token.trim().to_owned();
        Ok(ha)
    }

    /// Home Assistant's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.path().join("home-assistant.log")).unwrap_or_default()
    }

    /// The end of Home Assistant's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A call of its REST API: status and JSON body (`Null` if none).
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(Value::to_string);
        let (status, text) = server::request(
            method,
            &format!("http://127.0.0.1:{}{path}", self.port),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_deref(),
        )?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Waits until an entity's state (`/api/states`) satisfies `pred`.
    pub fn wait_for_entity(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, states) = self.api("GET", "/api/states", None)?;
            if status == 200 {
                if let Some(e) = states.as_array().into_iter().flatten().find(|e| pred(e)) {
                    return Ok(e.clone());
                }
            }
            if Instant::now() > deadline {
                let updates: Vec<&Value> = states
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        e["entity_id"]
                            .as_str()
                            .is_some_and(|i| i.starts_with("update."))
                    })
                    .collect();
                bail!(
                    "Home Assistant never showed {what} within {timeout:?}; its update entities: {updates:#?}\n--- log\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Calls the service `domain.service` with `data`.
    pub fn call(&self, domain: &str, service: &str, data: &Value) -> Result<()> {
        let (status, body) = self.api(
            "POST",
            &format!("/api/services/{domain}/{service}"),
            Some(data),
        )?;
        if status != 200 {
            bail!("{domain}.{service} answered {status}: {body}");
        }
        Ok(())
    }

    /// A screenshot of the UI page `path` (with `entity`'s more-info
    /// dialog open, if given) into `out`.
    pub fn screenshot(&self, path: &str, entity: Option<&str>, out: &Path) -> Result<()> {
        let config_dir = self.config.path().to_string_lossy().into_owned();
        let port = self.port.to_string();
        let out_text = out.to_string_lossy().into_owned();
        let mut args = vec!["screenshot", &config_dir, &port, path, &out_text];
        if let Some(e) = entity {
            args.push(e);
        }
        run(&args).map(|_| ())
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        let _ = run(&["stop", &self.config.path().to_string_lossy()]);
    }
}

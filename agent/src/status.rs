//! `ferryd status`: what is on disk and in each app's state, for people or
//! as JSON (the same document the D-Bus `Status` method returns).
//! Read-only; it takes no locks (state files are replaced atomically).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::state::{AppState, Denied, LastResult, Phase, Release};
use crate::store::Store;

/// The whole device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// This device's id.
    pub device_id: String,
    /// The repository it follows.
    pub repository: String,
    /// Every configured app.
    pub apps: Vec<AppStatus>,
}

/// One app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    /// Its name.
    pub app: String,
    /// The channel it follows.
    pub channel: String,
    /// Its systemd unit.
    pub unit: String,
    /// The phase's name.
    pub phase: String,
    /// Why it is on hold, when it is.
    pub hold_reason: Option<String>,
    /// Why a verified release waits (window, inhibitor), when one does.
    pub waiting: Option<String>,
    /// The release the phase is about (downloading, waiting, on probation…).
    pub target: Option<Release>,
    /// What `current` names in the state.
    pub current: Option<Release>,
    /// What `previous` names in the state.
    pub previous: Option<Release>,
    /// Where the `current` link points on disk.
    pub current_link: Option<String>,
    /// Where the `previous` link points on disk.
    pub previous_link: Option<String>,
    /// The version directories on disk.
    pub versions_on_disk: Vec<String>,
    /// The replay floor.
    pub last_serial: u64,
    /// Releases not retried.
    pub denied: Vec<Denied>,
    /// Starts of the target without an outcome.
    pub attempts: u32,
    /// The last attempt's outcome.
    pub last_result: Option<LastResult>,
}

/// The status of every configured app.
pub fn collect(settings: &Settings) -> Result<Status> {
    let mut apps = Vec::new();
    for app in &settings.apps {
        let store = Store::open(&settings.state_dir, &app.name)?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        apps.push(AppStatus {
            app: app.name.clone(),
            channel: state.channel.clone().unwrap_or_else(|| app.channel.clone()),
            unit: app.unit.clone(),
            phase: state.phase.name().to_owned(),
            hold_reason: match &state.phase {
                Phase::Hold { reason } => Some(reason.clone()),
                _ => None,
            },
            waiting: match &state.phase {
                Phase::Verified { .. } => state.waiting.clone(),
                _ => None,
            },
            target: state.phase_target().cloned(),
            current_link: store.link_target("current"),
            previous_link: store.link_target("previous"),
            versions_on_disk: store.versions()?,
            last_serial: state.last_serial,
            attempts: state.attempts,
            current: state.current,
            previous: state.previous,
            denied: state.denied,
            last_result: state.last_result,
        });
    }
    Ok(Status {
        device_id: settings.device_id.clone(),
        repository: settings.repository.clone(),
        apps,
    })
}

/// Prints the status, as JSON or for people.
pub fn print(settings: &Settings, json: bool) -> Result<()> {
    let status = collect(settings)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_human(&status);
    }
    Ok(())
}

/// Prints the status for people.
pub fn print_human(status: &Status) {
    println!(
        "device {}  repository {}",
        status.device_id, status.repository
    );
    let version = |r: &Option<Release>| {
        r.as_ref()
            .map(|r| r.version.clone())
            .unwrap_or_else(|| "-".into())
    };
    for a in &status.apps {
        println!(
            "{} ({} on `{}`, unit {})",
            a.app, a.phase, a.channel, a.unit
        );
        println!("  current:  {}", version(&a.current));
        println!("  previous: {}", version(&a.previous));
        if let Some(why) = &a.waiting {
            println!("  waiting:  {} {why}", version(&a.target));
        }
        if let Some(r) = &a.hold_reason {
            println!("  HOLD: {r}");
            println!("  hint: fix the cause, then `ferryd install FILE` or `ferryd rollback APP`");
        }
        for d in &a.denied {
            println!(
                "  denied:   {} (serial {}): {}",
                d.version, d.serial, d.reason
            );
        }
        if let Some(r) = &a.last_result {
            println!(
                "  last:     {} {} — {}",
                r.outcome.as_str(),
                r.version.as_deref().unwrap_or(""),
                r.message
            );
        }
    }
}

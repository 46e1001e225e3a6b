//! One D-Bus object per app (`/dev/ferry/Agent1/apps/<name>`), whose
//! properties follow the driver's transitions, and the observer that feeds
//! them: the driver calls it synchronously, a task turns each call into
//! property changes and signals.

use std::sync::Arc;

use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;

use super::manager::Manager;
use super::MANAGER_PATH;
use crate::config::Settings;
use crate::driver::{Observer, Outcome};
use crate::state::{AppState, Phase};
use crate::store::Store;
use ferry_format::report::Outcome as ReportOutcome;

/// `/dev/ferry/Agent1/apps/<name>`, with the characters an object path
/// cannot hold escaped as `_xx` (hex), as systemd escapes unit names.
pub fn app_path(name: &str) -> String {
    let mut path = format!("{MANAGER_PATH}/apps/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(b as char);
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// What an app object shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct AppObject {
    name: String,
    channel: String,
    phase: String,
    current: String,
    previous: String,
    progress: u8,
    last_result: String,
    last_error: String,
    waiting: String,
}

impl AppObject {
    fn from_state(name: &str, channel: &str, state: &AppState, progress: u8) -> AppObject {
        let version = |r: &Option<crate::state::Release>| {
            r.as_ref().map(|r| r.version.clone()).unwrap_or_default()
        };
        let (last_result, last_error) = match &state.last_result {
            Some(r) => (
                r.outcome.as_str().to_owned(),
                if r.outcome == ReportOutcome::Committed {
                    String::new()
                } else {
                    r.message.clone()
                },
            ),
            None => (String::new(), String::new()),
        };
        AppObject {
            name: name.to_owned(),
            channel: state.channel.clone().unwrap_or_else(|| channel.to_owned()),
            phase: state.phase.name().to_owned(),
            current: version(&state.current),
            previous: version(&state.previous),
            progress,
            last_result,
            last_error,
            waiting: match (&state.phase, &state.waiting) {
                (Phase::Verified { .. }, Some(why)) => why.clone(),
                (Phase::Hold { reason }, _) => reason.clone(),
                _ => String::new(),
            },
        }
    }
}

#[zbus::interface(name = "dev.ferry.Agent1.App")]
impl AppObject {
    /// The app's name.
    #[zbus(property)]
    fn name(&self) -> String {
        self.name.clone()
    }
    /// The channel it follows.
    #[zbus(property)]
    fn channel(&self) -> String {
        self.channel.clone()
    }
    /// `idle`, `downloading`, `verified`, `installed`, `restarting`,
    /// `probation`, `rolling_back` or `hold`.
    #[zbus(property)]
    fn phase(&self) -> String {
        self.phase.clone()
    }
    /// The version `current` names (empty: none).
    #[zbus(property)]
    fn current_version(&self) -> String {
        self.current.clone()
    }
    /// The version `previous` names (empty: none).
    #[zbus(property)]
    fn previous_version(&self) -> String {
        self.previous.clone()
    }
    /// 0–100 through download and install; 100 when the attempt ended.
    #[zbus(property)]
    fn progress(&self) -> u8 {
        self.progress
    }
    /// The last attempt's outcome (`committed`, `rolled_back`, `refused`,
    /// `hold`, `error`; empty: none yet).
    #[zbus(property)]
    fn last_result(&self) -> String {
        self.last_result.clone()
    }
    /// Why the last attempt did not commit (empty when it did).
    #[zbus(property)]
    fn last_error(&self) -> String {
        self.last_error.clone()
    }
    /// Why a verified release waits, or why the app is on hold (empty: it
    /// does not).
    #[zbus(property)]
    fn waiting(&self) -> String {
        self.waiting.clone()
    }
}

/// A change the driver reported.
enum Change {
    State(String, Box<AppState>),
    Progress(String, u8),
    Completed(String, Outcome),
}

/// The observer the driver holds: never blocks, never fails.
struct Forward(mpsc::UnboundedSender<Change>);

impl Observer for Forward {
    fn state_changed(&self, app: &str, state: &AppState) {
        let _ = self
            .0
            .send(Change::State(app.to_owned(), Box::new(state.clone())));
    }
    fn progress(&self, app: &str, percent: u8) {
        let _ = self.0.send(Change::Progress(app.to_owned(), percent));
    }
    fn completed(&self, app: &str, outcome: &Outcome) {
        let _ = self
            .0
            .send(Change::Completed(app.to_owned(), outcome.clone()));
    }
}

/// Puts one object per configured app on the bus, from its state on disk,
/// and starts the task that keeps them current.
pub(super) async fn publish(
    connection: &zbus::Connection,
    settings: &Settings,
) -> anyhow::Result<Arc<dyn Observer>> {
    let server = connection.object_server();
    for app in &settings.apps {
        let store = Store::open(&settings.state_dir, &app.name)?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        let progress = if state.phase == Phase::Idle { 100 } else { 0 };
        server
            .at(
                app_path(&app.name),
                AppObject::from_state(&app.name, &app.channel, &state, progress),
            )
            .await?;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let connection = connection.clone();
    let channels: Vec<(String, String)> = settings
        .apps
        .iter()
        .map(|a| (a.name.clone(), a.channel.clone()))
        .collect();
    tokio::spawn(async move {
        while let Some(change) = rx.recv().await {
            if let Err(e) = apply(&connection, &channels, change).await {
                log::warn!("cannot update the D-Bus objects: {e}");
            }
        }
    });
    Ok(Arc::new(Forward(tx)))
}

async fn apply(
    connection: &zbus::Connection,
    channels: &[(String, String)],
    change: Change,
) -> zbus::Result<()> {
    let server = connection.object_server();
    match change {
        Change::State(app, state) => {
            let iface = server.interface::<_, AppObject>(app_path(&app)).await?;
            let mut object = iface.get_mut().await;
            let channel = channels
                .iter()
                .find(|(name, _)| *name == app)
                .map(|(_, c)| c.as_str())
                .unwrap_or("");
            let next = AppObject::from_state(&app, channel, &state, object.progress);
            let old = std::mem::replace(&mut *object, next);
            let emitter = iface.signal_emitter();
            if old.channel != object.channel {
                object.channel_changed(emitter).await?;
            }
            if old.phase != object.phase {
                object.phase_changed(emitter).await?;
            }
            if old.current != object.current {
                object.current_version_changed(emitter).await?;
            }
            if old.previous != object.previous {
                object.previous_version_changed(emitter).await?;
            }
            if old.last_result != object.last_result {
                object.last_result_changed(emitter).await?;
            }
            if old.last_error != object.last_error {
                object.last_error_changed(emitter).await?;
            }
            if old.waiting != object.waiting {
                object.waiting_changed(emitter).await?;
            }
        }
        Change::Progress(app, percent) => {
            let iface = server.interface::<_, AppObject>(app_path(&app)).await?;
            let mut object = iface.get_mut().await;
            if object.progress != percent {
                object.progress = percent;
                object.progress_changed(iface.signal_emitter()).await?;
            }
        }
        Change::Completed(app, outcome) => {
            let emitter = SignalEmitter::new(connection, MANAGER_PATH)?;
            Manager::completed(&emitter, &app, outcome.name(), &outcome.message()).await?;
        }
    }
    Ok(())
}

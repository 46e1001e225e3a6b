//! `ferryd run`: the service. One driver task does all the work, in turn:
//! polls every interval plus jitter (backing off exponentially on errors),
//! the D-Bus API's requests, and releases waiting at the install gate (looked
//! at again every few seconds, and at once when an inhibitor is released).
//! It holds the state directory's lock while it runs, tells systemd what it
//! is doing (`READY=1`, `STATUS=`), feeds the watchdog from the loop and
//! between the driver's steps, never from a timer of its own, and stops on
//! SIGTERM between steps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::api::{self, Request};
use crate::config::Settings;
use crate::driver::{Agent, Intent, Observer, Observers, Outcome};
use crate::journal::{self, Event};
use crate::notify;
use crate::systemd::SystemdBus;

/// Longest back-off after repeated errors.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How often a release waiting for its window or an inhibitor is looked at.
const GATE_RECHECK: Duration = Duration::from_secs(2);

fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(u64::from(nanos) % (max.as_millis() as u64).max(1))
}

/// How often the idle loop feeds the watchdog: half its timeout.
fn watchdog_period() -> Duration {
    notify::watchdog_interval()
        .map(|i| i / 2)
        .unwrap_or(Duration::from_secs(3600))
}

/// A freshly installed agent whose configuration is still the commented
/// default: up and ready, doing nothing, its status saying what to set, so
/// the unit neither fails nor restart-loops before anyone configured it.
pub async fn wait_unconfigured(message: &str) -> Result<()> {
    // The handler goes in before READY=1: a stop right after start must not
    // meet the default action (exit 143, counted as a failure).
    let mut term = signal(SignalKind::terminate())?;
    log::warn!("{message}");
    notify::ready();
    notify::status(message);
    loop {
        notify::watchdog();
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::time::sleep(watchdog_period()) => {}
        }
    }
    notify::stopping();
    Ok(())
}

/// Drops the operators' copies a stopped service left behind.
fn clear_incoming(settings: &Settings) -> Result<()> {
    for app in &settings.apps {
        crate::store::Store::open(&settings.state_dir, &app.name)?.clear_incoming()?;
    }
    Ok(())
}

/// Every app's persisted state, for observers' first look.
fn app_states(settings: &Settings) -> Result<Vec<(String, crate::state::AppState)>> {
    settings
        .apps
        .iter()
        .map(|app| {
            let store = crate::store::Store::open(&settings.state_dir, &app.name)?;
            let state = crate::state::AppState::load(&store.state_path(), &app.name)?;
            Ok((app.name.clone(), state))
        })
        .collect()
}

/// The service's working set.
struct Service {
    agent: Agent<SystemdBus>,
    /// Apps whose verified release waits at the gate, and whether an
    /// operator's install put it there.
    waiting: HashMap<String, bool>,
    errors: u32,
    next_poll: Instant,
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(settings: Settings, config: PathBuf) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let _lock = crate::commands::lock_state_dir(&settings.state_dir)?;
    clear_incoming(&settings)?;
    let mut agent = crate::commands::local_agent(settings).await?;
    let (tx, mut requests) = mpsc::channel(16);
    let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
    match api::serve(
        agent.units.connection(),
        config,
        Arc::new(agent.settings.clone()),
        tx.clone(),
        agent.inhibitors.clone(),
    )
    .await
    {
        Ok(observer) => observers.push(observer),
        Err(e) => log::warn!(
            "the D-Bus API is not available, commands work without the service only: {e:#}"
        ),
    }
    if let Some(mqtt) = agent.settings.mqtt.clone() {
        observers.push(Arc::new(crate::mqtt::start(
            mqtt,
            app_states(&agent.settings)?,
            tx,
        )));
    }
    agent.observer = Arc::new(Observers(observers));
    let mut service = Service {
        agent,
        waiting: HashMap::new(),
        errors: 0,
        next_poll: Instant::now(),
    };
    notify::ready();
    loop {
        notify::watchdog();
        let wake = if service.waiting.is_empty() {
            service.next_poll
        } else {
            service.next_poll.min(Instant::now() + GATE_RECHECK)
        };
        let inhibitors = service.agent.inhibitors.clone();
        let stop = tokio::select! {
            _ = term.recv() => true,
            Some(request) = requests.recv() => service.serve(request, &mut term).await,
            _ = tokio::time::sleep_until(wake) => service.tick(&mut term).await,
            _ = inhibitors.released(), if !service.waiting.is_empty() => service.retry_waiting(&mut term).await,
            _ = tokio::time::sleep(watchdog_period()) => false,
        };
        if stop {
            break;
        }
    }
    notify::stopping();
    Ok(())
}

impl Service {
    /// One pass; `None` when SIGTERM came first.
    async fn pass(
        &mut self,
        app: &str,
        intent: Intent,
        term: &mut tokio::signal::unix::Signal,
    ) -> Option<Result<Outcome>> {
        let operator = intent.asked_now().is_some();
        let settings = self.agent.settings.app(app).ok()?.clone();
        let result = tokio::select! {
            r = self.agent.drive(&settings, intent) => r,
            _ = term.recv() => return None,
        };
        match &result {
            Ok(Outcome::Waiting(_)) => {
                let was = self.waiting.get(app).copied().unwrap_or(false);
                self.waiting.insert(app.to_owned(), operator || was);
            }
            Ok(_) | Err(_) => {
                self.waiting.remove(app);
            }
        }
        if let Err(e) = &result {
            let msg = format!("{e:#}");
            journal::event(
                Event::Error,
                app,
                None,
                &[("FERRY_ERROR", &msg)],
                &format!("check failed: {msg}"),
            );
            notify::status(&format!("{app}: error: {msg}"));
        }
        Some(result)
    }

    /// A request from the D-Bus API; `true` to stop.
    async fn serve(&mut self, request: Request, term: &mut tokio::signal::unix::Signal) -> bool {
        match request {
            Request::Drive { app, intent, reply } => {
                let Some(result) = self.pass(&app, intent, term).await else {
                    return true;
                };
                let _ = reply.send(result.map_err(|e| format!("{e:#}")));
                self.agent.flush_reports().await;
            }
            Request::Switch {
                app,
                channel,
                reply,
            } => {
                let result = self
                    .agent
                    .settings
                    .app(&app)
                    .cloned()
                    .and_then(|a| self.agent.switch_channel(&a, &channel))
                    .map_err(|e| format!("{e:#}"));
                let _ = reply.send(result);
            }
        }
        false
    }

    /// The poll of every app when it is due, else the apps waiting at the
    /// gate; `true` to stop.
    async fn tick(&mut self, term: &mut tokio::signal::unix::Signal) -> bool {
        if Instant::now() < self.next_poll {
            return self.retry_waiting(term).await;
        }
        let apps: Vec<String> = self
            .agent
            .settings
            .apps
            .iter()
            .map(|a| a.name.clone())
            .collect();
        let mut failed = false;
        for app in apps {
            notify::status(&format!("checking {app}"));
            let Some(result) = self.pass(&app, Intent::Poll, term).await else {
                return true;
            };
            failed |= result.is_err();
        }
        self.agent.flush_reports().await;
        self.errors = if failed {
            self.errors.saturating_add(1)
        } else {
            0
        };
        let settings = &self.agent.settings;
        let delay = if self.errors == 0 {
            settings.poll_interval + jitter(settings.poll_jitter)
        } else {
            let backoff = Duration::from_secs(5)
                .saturating_mul(1 << self.errors.min(12))
                .min(MAX_BACKOFF);
            backoff.min(settings.poll_interval) + jitter(settings.poll_jitter.min(backoff))
        };
        self.next_poll = Instant::now() + delay;
        false
    }

    /// Goes on with every release waiting at the gate; `true` to stop.
    async fn retry_waiting(&mut self, term: &mut tokio::signal::unix::Signal) -> bool {
        let waiting: Vec<(String, bool)> =
            self.waiting.iter().map(|(a, o)| (a.clone(), *o)).collect();
        for (app, operator) in waiting {
            if self
                .pass(&app, Intent::Continue { operator }, term)
                .await
                .is_none()
            {
                return true;
            }
        }
        self.agent.flush_reports().await;
        false
    }
}

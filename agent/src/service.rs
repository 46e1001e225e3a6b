//! `ferryd run`: the service loop. Polls each app every interval plus jitter,
//! backs off exponentially on errors, tells systemd what it is doing
//! (`READY=1`, `STATUS=`, `WATCHDOG=1`) and stops on SIGTERM between steps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::journal::{self, Event};
use crate::notify;
use crate::systemd::UnitManager;
use crate::update::{Agent, Outcome};

/// Longest back-off after repeated errors.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

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

/// Pings systemd's watchdog at half its interval for as long as the process runs.
fn keep_watchdog_fed() {
    if let Some(interval) = notify::watchdog_interval() {
        tokio::spawn(async move {
            loop {
                notify::watchdog();
                tokio::time::sleep(interval / 2).await;
            }
        });
    }
}

/// A freshly installed agent whose configuration is still the commented
/// default: up and ready, doing nothing, its status saying what to set, so
/// the unit neither fails nor restart-loops before anyone configured it.
pub async fn wait_unconfigured(message: &str) -> Result<()> {
    // The handler goes in before READY=1: a stop right after start must not
    // meet the default action (exit 143, counted as a failure).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    keep_watchdog_fed();
    log::warn!("{message}");
    notify::ready();
    notify::status(message);
    term.recv().await;
    notify::stopping();
    Ok(())
}

/// Runs until SIGTERM or SIGINT.
pub async fn run<U: UnitManager>(agent: Agent<U>) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    keep_watchdog_fed();
    notify::ready();
    let mut errors = 0u32;
    loop {
        let mut failed = false;
        for app in &agent.settings.apps {
            notify::status(&format!("checking {}", app.name));
            let pass = agent.check_app(app);
            tokio::select! {
                r = pass => match r {
                    Ok(outcome) => {
                        let text = match &outcome {
                            Outcome::UpToDate => "up to date".to_owned(),
                            Outcome::Committed(v) => format!("running {v}"),
                            Outcome::RolledBack(m) | Outcome::Refused(m) | Outcome::Skipped(m) => m.clone(),
                            Outcome::Hold(m) => format!("HOLD: {m}"),
                        };
                        notify::status(&format!("{}: {text}", app.name));
                    }
                    Err(e) => {
                        failed = true;
                        let msg = format!("{e:#}");
                        journal::event(Event::Error, &app.name, None, &[("FERRY_ERROR", &msg)], &format!("check failed: {msg}"));
                        notify::status(&format!("{}: error: {msg}", app.name));
                    }
                },
                _ = term.recv() => {
                    notify::stopping();
                    return Ok(());
                }
            }
        }
        agent.flush_reports().await;
        errors = if failed { errors.saturating_add(1) } else { 0 };
        let base = agent.settings.poll_interval;
        let delay = if errors == 0 {
            base + jitter(agent.settings.poll_jitter)
        } else {
            let backoff = Duration::from_secs(5)
                .saturating_mul(1 << errors.min(12))
                .min(MAX_BACKOFF);
            backoff.min(base) + jitter(agent.settings.poll_jitter.min(backoff))
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = term.recv() => {
                notify::stopping();
                return Ok(());
            }
        }
    }
}

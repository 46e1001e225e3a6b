//! The update driver: one loop over one app's persisted phase.
//!
//! Each turn of [`Agent::drive`] matches on the phase in `state.json` and
//! runs the one step that phase calls for (poll, download, wait for the
//! install gate, swap, restart, watch, roll back); a step ends in a
//! [`Agent::transition`], the only writer of the state: it applies the step,
//! persists it, journals it, tells systemd (`STATUS=`) and the observers
//! (D-Bus), and hits the crash point. Resuming after a crash is entering the
//! loop: each arm knows what to do when this process did not enter its phase
//! itself (the resume table in `docs/agent.md`, one row per arm).
//!
//! Steps fail with a [`StepError`]: transient trouble ends the pass for a
//! retry with back-off, a refusal is recorded and reported, an unhealthy
//! release is rolled back.

mod fetch;
pub mod gate;
mod poll;
mod restart;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use ferry_format::report::Outcome as ReportOutcome;

use crate::config::{AppSettings, Settings};
use crate::failpoint;
use crate::journal::{self, Event};
use crate::notify;
use crate::repo::RepoClient;
use crate::report::ReportQueue;
use crate::state::{AppState, LastResult, Phase, Release, Step, MAX_STARTS};
use crate::store::Store;
use crate::systemd::UnitManager;

pub use gate::Inhibitors;

/// What one pass came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing new.
    UpToDate,
    /// A new release is running.
    Committed(String),
    /// The new release failed and the previous one runs again.
    RolledBack(String),
    /// A release was refused before touching anything.
    Refused(String),
    /// A release was skipped (deny list, rollout).
    Skipped(String),
    /// A verified release waits for its install window or an inhibitor.
    Waiting(String),
    /// The agent is in hold and does nothing.
    Hold(String),
}

impl Outcome {
    /// The stable one-word name (D-Bus, `ferryd` output).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::UpToDate => "up_to_date",
            Outcome::Committed(_) => "committed",
            Outcome::RolledBack(_) => "rolled_back",
            Outcome::Refused(_) => "refused",
            Outcome::Skipped(_) => "skipped",
            Outcome::Waiting(_) => "waiting",
            Outcome::Hold(_) => "hold",
        }
    }

    /// What to tell a person.
    pub fn message(&self) -> String {
        match self {
            Outcome::UpToDate => "up to date".into(),
            Outcome::Committed(v) => format!("updated to {v}"),
            Outcome::RolledBack(m) => format!("rolled back: {m}"),
            Outcome::Refused(m) => format!("refused: {m}"),
            Outcome::Skipped(m) => format!("skipped: {m}"),
            Outcome::Waiting(m) => format!("waiting: {m}"),
            Outcome::Hold(m) => format!("HOLD: {m}"),
        }
    }

    /// Whether an operator's command that ended so succeeded.
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            Outcome::UpToDate | Outcome::Committed(_) | Outcome::Skipped(_) | Outcome::Waiting(_)
        )
    }
}

/// Why a pass runs.
#[derive(Debug, Clone)]
pub enum Intent {
    /// Look at the channel (a poll, `ferryd check`).
    Poll,
    /// Look at the channel and install what it offers now, as a person
    /// asked (Home Assistant's Install button): a poll whose release skips
    /// the install window but not the inhibitors.
    InstallNow,
    /// Install the agent's private copy of an operator's file.
    Install {
        /// The copy (root-owned, 0600), removed when the pass ends.
        copy: PathBuf,
        /// Older or denied versions, and held inhibitors, do not stop it.
        force: bool,
    },
    /// Go back to the previous release.
    Rollback,
    /// Go on with a verified release that waited at the gate; `operator`
    /// when an operator's install put it there (the window does not apply).
    Continue {
        /// Whether an operator asked for it.
        operator: bool,
    },
}

impl Intent {
    /// Whether a person asked for this install now (an operator's command,
    /// Home Assistant's button), and if so whether it is forced: the install
    /// window does not apply, inhibitors still do unless forced.
    pub fn asked_now(&self) -> Option<bool> {
        match self {
            Intent::Install { force, .. } => Some(*force),
            Intent::Continue { operator: true } | Intent::InstallNow => Some(false),
            Intent::Poll | Intent::Rollback | Intent::Continue { operator: false } => None,
        }
    }
}

/// How a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Network, disk, systemd not answering: the pass ends, the next one
    /// retries after a back-off.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
    /// What is offered breaks a rule: recorded, reported, not retried
    /// until the repository changes.
    #[error("{message}")]
    Refused {
        /// The version concerned, if known.
        version: Option<String>,
        /// Why.
        message: String,
    },
    /// The release runs but is not healthy: it is rolled back.
    #[error("{0}")]
    Unhealthy(String),
}

impl StepError {
    fn refused(version: Option<&str>, message: impl Into<String>) -> Self {
        StepError::Refused {
            version: version.map(str::to_owned),
            message: message.into(),
        }
    }
}

/// What a channel offers, as a poll found it (after verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// The release's version.
    pub version: String,
    /// Its notes for people.
    pub notes: Option<String>,
    /// Where people read more about it.
    pub url: Option<String>,
    /// Its artifact's SHA-256 and its serial (what the deny list knows it by).
    pub sha256: String,
    /// See [`Offered::sha256`].
    pub serial: u64,
    /// Whether this device takes it (not denied, inside the rollout).
    pub takes: bool,
}

/// Who hears about each transition besides the journal and systemd: the
/// D-Bus API and the MQTT link. Every method has an empty default.
pub trait Observer: Send + Sync {
    /// `app`'s state changed (after it was persisted).
    fn state_changed(&self, _app: &str, _state: &AppState) {}
    /// Progress of the attempt in percent (download, then install).
    fn progress(&self, _app: &str, _percent: u8) {}
    /// A pass ended.
    fn completed(&self, _app: &str, _outcome: &Outcome) {}
    /// A poll read what the channel offers.
    fn offered(&self, _app: &str, _offered: &Offered) {}
}

/// Several observers, told in turn.
pub struct Observers(pub Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn state_changed(&self, app: &str, state: &AppState) {
        self.0.iter().for_each(|o| o.state_changed(app, state));
    }
    fn progress(&self, app: &str, percent: u8) {
        self.0.iter().for_each(|o| o.progress(app, percent));
    }
    fn completed(&self, app: &str, outcome: &Outcome) {
        self.0.iter().for_each(|o| o.completed(app, outcome));
    }
    fn offered(&self, app: &str, offered: &Offered) {
        self.0.iter().for_each(|o| o.offered(app, offered));
    }
}

/// An observer that hears nothing.
pub struct Nobody;
impl Observer for Nobody {}

/// Deadline of one D-Bus call to systemd that is not a job.
pub const CALL_DEADLINE: Duration = Duration::from_secs(15);

/// The agent: settings, systemd, the repository, and what a pass shares.
pub struct Agent<U: UnitManager> {
    /// Validated settings.
    pub settings: Settings,
    /// systemd.
    pub units: U,
    /// The repository.
    pub repo: RepoClient,
    /// Reports waiting for the collector, when `report-url` is set.
    pub reports: Option<ReportQueue>,
    /// Who else hears of transitions.
    pub observer: Arc<dyn Observer>,
    /// Inhibitors held over D-Bus.
    pub inhibitors: Inhibitors,
    /// Stored binaries this process hashed itself since they were verified:
    /// a release waiting at the gate is not hashed again on every pass.
    fresh: Mutex<HashSet<String>>,
}

/// One app's working set during a pass.
struct Job<'a> {
    app: AppSettings,
    store: Store,
    state: AppState,
    /// Held while the pass runs.
    _lock: std::fs::File,
    /// Whether this process entered the current phase itself (else it
    /// resumes a crashed one).
    entered: bool,
    /// What the pass is for.
    intent: Intent,
    /// Whether `idle` acted on the intent already.
    acted: bool,
    /// The outcome of the attempt, once a step ended it.
    ended: Option<Outcome>,
    /// The release the poll found, while it is being downloaded.
    offer: Option<poll::Found>,
    /// The unit's status right after this process restarted it.
    started: Option<crate::systemd::UnitStatus>,
    /// The channel manifest to remember once the attempt has an outcome.
    manifest_sha256: Option<String>,
    reports: Option<(&'a ReportQueue, &'a str)>,
}

/// What the loop does after a step.
enum Flow {
    /// Run the arm of the (new) phase.
    Next,
    /// The pass is over.
    Done(Outcome),
}

impl<U: UnitManager> Agent<U> {
    /// An agent with no observer and no inhibitors held.
    pub fn new(
        settings: Settings,
        units: U,
        repo: RepoClient,
        reports: Option<ReportQueue>,
    ) -> Self {
        Agent {
            settings,
            units,
            repo,
            reports,
            observer: Arc::new(Nobody),
            inhibitors: Inhibitors::default(),
            fresh: Mutex::new(HashSet::new()),
        }
    }

    /// One pass over `app` for `intent`: resumes whatever a crash left, then
    /// does what was asked, to an outcome.
    pub async fn drive(&self, app: &AppSettings, intent: Intent) -> Result<Outcome> {
        let copy = match &intent {
            Intent::Install { copy, .. } => Some(copy.clone()),
            Intent::Poll | Intent::InstallNow | Intent::Rollback | Intent::Continue { .. } => None,
        };
        let result = self.drive_inner(app, intent).await;
        if let Some(copy) = copy {
            let _ = std::fs::remove_file(copy);
        }
        if let Ok(outcome) = &result {
            self.observer.completed(&app.name, outcome);
        }
        result
    }

    async fn drive_inner(&self, app: &AppSettings, intent: Intent) -> Result<Outcome> {
        let mut job = self.open_job(app, intent)?;
        self.queue_pending_report(&mut job)?;
        // A crash between swapping `current` and persisting the swap leaves
        // the release in place (and running, after a reboot) but recorded
        // as waiting: record the swap, so it is restarted and watched now,
        // whatever the gate says, and nothing abandons it behind the links.
        if let Phase::Verified { target } = &job.state.phase {
            if job.store.link_target("current").as_deref() == Some(target.dir.as_str()) {
                self.transition(&mut job, Step::Swapped)?;
            }
        }
        match (&job.intent, &job.state.phase) {
            // An operator's install or rollback supersedes a release that
            // waits at the gate.
            (Intent::Install { .. } | Intent::Rollback, Phase::Verified { .. }) => {
                self.transition(&mut job, Step::Abandon)?;
                // The channel's release it came from is superseded, not
                // to be installed by the next poll over the operator's.
                if let Some(manifest) = job.state.attempt_manifest.clone() {
                    self.transition(&mut job, Step::ManifestSeen(Some(manifest)))?;
                }
            }
            (Intent::Install { .. }, Phase::Idle | Phase::Hold { .. }) => {}
            (Intent::Install { .. }, phase) => anyhow::bail!(
                "an update of `{}` is in progress ({}); try again after it ends",
                app.name,
                phase.name()
            ),
            _ => {}
        }
        // A poll that resumes an interrupted attempt ends with it (unless
        // the attempt is abandoned); going on with a waiting release is
        // never a poll.
        job.acted = match job.intent {
            Intent::Continue { .. } => true,
            Intent::Poll | Intent::InstallNow => {
                !matches!(job.state.phase, Phase::Idle | Phase::Hold { .. })
            }
            Intent::Install { .. } | Intent::Rollback => false,
        };
        loop {
            notify::watchdog();
            let phase = job.state.phase.clone();
            let step = match phase {
                Phase::Idle => self.idle(&mut job).await,
                Phase::Downloading { target } => self.downloading(&mut job, target).await,
                Phase::Verified { target } => self.verified(&mut job, target).await,
                Phase::Installed { target } => self.installed(&mut job, target),
                Phase::Restarting { target } => self.restarting(&mut job, target).await,
                Phase::Probation { target } => self.probation(&mut job, target).await,
                Phase::RollingBack { target, reason } => {
                    self.rolling_back(&mut job, target, reason).await
                }
                Phase::Hold { reason } => self.hold(&mut job, reason).await,
            };
            match step {
                Ok(Flow::Next) => {}
                Ok(Flow::Done(outcome)) => return Ok(outcome),
                Err(e) => {
                    if let Some(outcome) = self.failed(&mut job, e)? {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// What a failed step leads to: `Ok(None)` goes on with the loop (a
    /// rollback), `Ok(Some)` ends the pass, `Err` ends it for a retry.
    fn failed(&self, job: &mut Job<'_>, e: StepError) -> Result<Option<Outcome>> {
        let abandoning = matches!(
            job.state.phase,
            Phase::Downloading { .. } | Phase::Verified { .. }
        );
        match e {
            StepError::Unhealthy(reason) => {
                self.transition(job, Step::Unhealthy(reason))?;
                Ok(None)
            }
            StepError::Refused { version, message } => {
                if abandoning {
                    self.transition(job, Step::Abandon)?;
                }
                self.transition(
                    job,
                    Step::Refused {
                        version,
                        message: message.clone(),
                    },
                )?;
                Ok(Some(Outcome::Refused(message)))
            }
            StepError::Transient(e) => {
                let message = format!("{e:#}");
                if abandoning {
                    let version = job.state.phase_target().map(|t| t.version.clone());
                    self.transition(job, Step::Abandon)?;
                    self.transition(
                        job,
                        Step::Failed {
                            version,
                            message: message.clone(),
                        },
                    )?;
                } else {
                    journal::event(
                        Event::Error,
                        &job.app.name,
                        None,
                        &[("FERRY_ERROR", &message)],
                        &message,
                    );
                }
                Err(e)
            }
        }
    }

    /// The only writer of an app's state: applies `step`, persists it with
    /// the last result and the report when the step ends an attempt,
    /// journals it, tells systemd and the observers, hits the crash point.
    fn transition(&self, job: &mut Job<'_>, step: Step) -> Result<()> {
        let before = job.state.clone();
        let mut next = before.apply(step.clone())?;
        let ending = step
            .ending()
            .map(|outcome| (outcome, ending_note(&before, &step)));
        if let Some((outcome, (version, message))) = &ending {
            let (outcome, version, message) = (*outcome, version.clone(), message.clone());
            next.last_result = Some(LastResult {
                at: ferry_format::clock::unix_now(),
                outcome,
                version: version.clone(),
                message: message.clone(),
            });
            if let Some((_, device_id)) = job.reports {
                // What ran before the attempt: after a commit that is `previous`.
                let from = if outcome == ReportOutcome::Committed {
                    &next.previous
                } else {
                    &next.current
                };
                let serial = before.phase_target().map(|t| t.serial);
                next.pending_report = Some(ReportQueue::new_report(
                    device_id,
                    &job.app.name,
                    &job.app.channel,
                    from.as_ref().map(|r| r.version.as_str()),
                    version.as_deref(),
                    outcome,
                    (outcome != ReportOutcome::Committed).then_some(message.as_str()),
                    serial.filter(|s| *s > 0),
                ));
            }
        }
        next.save(&job.store.state_path())?;
        if let Some((outcome, (version, message))) = ending {
            job.ended = Some(match outcome {
                ReportOutcome::Committed => Outcome::Committed(version.unwrap_or_default()),
                ReportOutcome::RolledBack => Outcome::RolledBack(message),
                ReportOutcome::Hold => Outcome::Hold(message),
                ReportOutcome::Refused | ReportOutcome::Error | ReportOutcome::UpToDate => {
                    Outcome::Refused(message)
                }
            });
        }
        job.state = next;
        job.entered = true;
        journal_step(&job.app.name, &before, &step);
        notify::status(&status_line(&job.app.name, &job.state));
        self.observer.state_changed(&job.app.name, &job.state);
        if let Some(percent) = progress_after(&step) {
            self.observer.progress(&job.app.name, percent);
        }
        if let Some(point) = step.failpoint() {
            failpoint::hit(point);
        }
        if job.state.pending_report.is_some() {
            self.queue_pending_report(job)?;
        }
        Ok(())
    }

    /// Moves a persisted report into the queue. A crash between the two
    /// queues it again on the next pass under the same id, which the
    /// collector counts once.
    fn queue_pending_report(&self, job: &mut Job<'_>) -> Result<()> {
        let Some(report) = job.state.pending_report.clone() else {
            return Ok(());
        };
        if let Some((queue, _)) = job.reports {
            if let Err(e) = queue.enqueue(&report) {
                log::warn!("cannot queue the report of `{}`: {e:#}", job.app.name);
            }
        }
        failpoint::hit("after-queue-report");
        let next = job.state.apply(Step::ReportQueued)?;
        next.save(&job.store.state_path())?;
        job.state = next;
        Ok(())
    }

    /// Opens an app's store, takes its lock and loads its state; a channel
    /// chosen by `ferryd switch` overrides the configured one.
    fn open_job<'a>(&'a self, app: &AppSettings, intent: Intent) -> Result<Job<'a>> {
        let store = Store::open(&self.settings.state_dir, &app.name)?;
        let lock = store.lock()?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        let mut app = app.clone();
        if let Some(channel) = &state.channel {
            app.channel = channel.clone();
        }
        Ok(Job {
            app,
            store,
            state,
            _lock: lock,
            entered: false,
            intent,
            acted: false,
            ended: None,
            offer: None,
            started: None,
            manifest_sha256: None,
            reports: self
                .reports
                .as_ref()
                .map(|q| (q, self.settings.device_id.as_str())),
        })
    }

    /// `idle`: act on the intent once; back in `idle` after that, the pass
    /// is over.
    async fn idle(&self, job: &mut Job<'_>) -> Result<Flow, StepError> {
        if std::mem::replace(&mut job.acted, true) {
            return Ok(Flow::Done(job.ended.take().unwrap_or(Outcome::UpToDate)));
        }
        match job.intent.clone() {
            Intent::Poll | Intent::InstallNow => self.poll(job).await,
            Intent::Continue { .. } => Ok(Flow::Done(Outcome::UpToDate)),
            Intent::Install { copy, force } => self.take_file(job, &copy, force).await,
            Intent::Rollback => self.operator_rollback(job),
        }
    }

    /// The operator's rollback (from `idle` or `hold`).
    fn operator_rollback(&self, job: &mut Job<'_>) -> Result<Flow, StepError> {
        self.transition(job, Step::OperatorRollback).map_err(|e| {
            anyhow::anyhow!(
                "cannot roll `{}` back: {e} (a rollback needs a current and a previous version and no update in progress)",
                job.app.name
            )
        })?;
        Ok(Flow::Next)
    }

    /// `hold`: nothing happens until an operator installs or rolls back,
    /// and the hold ends only once the file or the rollback is accepted: a
    /// refused one leaves the app held.
    async fn hold(&self, job: &mut Job<'_>, reason: String) -> Result<Flow, StepError> {
        match job.intent.clone() {
            Intent::Install { copy, force } if !job.acted => {
                job.acted = true;
                let target = self.check_file(job, &copy, force)?;
                self.transition(job, Step::Release)?;
                self.store_file(job, &copy, target).await
            }
            Intent::Rollback if !job.acted => {
                job.acted = true;
                self.operator_rollback(job)
            }
            Intent::Install { .. }
            | Intent::Rollback
            | Intent::Poll
            | Intent::InstallNow
            | Intent::Continue { .. } => Ok(Flow::Done(Outcome::Hold(reason))),
        }
    }

    /// `installed`: `current` names the target (the swap was persisted);
    /// point it again, idempotently, and start it.
    fn installed(&self, job: &mut Job<'_>, target: Release) -> Result<Flow, StepError> {
        job.store.point("current", &target)?;
        self.start(job)
    }

    /// Counts one more start of the target, unless it has had too many: a
    /// release that takes the agent or the board down at every start is
    /// unhealthy.
    fn start(&self, job: &mut Job<'_>) -> Result<Flow, StepError> {
        if job.state.attempts >= MAX_STARTS {
            return Err(StepError::Unhealthy(format!(
                "started {} times without finishing its probation (the agent or the board went down each time)",
                job.state.attempts
            )));
        }
        self.transition(job, Step::Restarting)?;
        Ok(Flow::Next)
    }

    /// Marks a stored binary as hashed by this process.
    fn remember_fresh(&self, sha256: &str) {
        if let Ok(mut fresh) = self.fresh.lock() {
            fresh.insert(sha256.to_owned());
        }
    }

    fn is_fresh(&self, sha256: &str) -> bool {
        self.fresh.lock().is_ok_and(|f| f.contains(sha256))
    }

    /// Sends queued reports to `report-url`, if set; failures leave them
    /// queued for the next try.
    pub async fn flush_reports(&self) {
        let (Some(queue), Some(url)) = (&self.reports, &self.settings.report_url) else {
            return;
        };
        if let Err(e) = queue.flush(&crate::report::client(), url).await {
            log::warn!("reports stay queued: {e}");
        }
    }

    /// `ferryd switch APP CHANNEL`: follow another channel from the next
    /// poll. Serials count per channel, so the replay floor starts again
    /// from the new channel's first manifest.
    pub fn switch_channel(&self, app: &AppSettings, channel: &str) -> Result<()> {
        if !ferry_format::container::is_valid_name(channel) {
            anyhow::bail!("`{channel}` is not a valid channel name");
        }
        let mut job = self.open_job(app, Intent::Poll)?;
        let step = Step::Switch((channel != app.channel).then(|| channel.to_owned()));
        self.transition(&mut job, step)
            .with_context(|| format!("cannot switch `{}` now", app.name))
    }
}

/// The version and message an ending step records.
fn ending_note(before: &AppState, step: &Step) -> (Option<String>, String) {
    let target = before.phase_target().map(|t| t.version.clone());
    match step {
        Step::Healthy => (target, "healthy after probation".into()),
        Step::RolledBack => {
            let reason = match &before.phase {
                Phase::RollingBack { reason, .. } => reason.as_str(),
                _ => "",
            };
            let previous = before
                .previous
                .as_ref()
                .map(|p| p.version.as_str())
                .unwrap_or("the previous version");
            (
                target.clone(),
                format!(
                    "{} failed ({reason}); {previous} runs again",
                    target.as_deref().unwrap_or("the release")
                ),
            )
        }
        Step::PreviousUnhealthy(why) => (target, why.clone()),
        Step::Refused { version, message } | Step::Failed { version, message } => {
            (version.clone(), message.clone())
        }
        _ => (target, String::new()),
    }
}

/// The journal entry of a transition, if it has one.
fn journal_step(app: &str, before: &AppState, step: &Step) {
    let target = before.phase_target();
    let version = target.map(|t| t.version.as_str());
    let ev = |event, fields: &[(&str, &str)], message: &str| {
        journal::event(event, app, version, fields, message);
    };
    match step {
        Step::StartDownload(t) => journal::event(
            Event::DownloadStarted,
            app,
            Some(&t.version),
            &[("FERRY_SIZE", &t.size.to_string())],
            "downloading",
        ),
        Step::Verified => ev(Event::Verified, &[], "release verified and stored"),
        Step::Swapped => {
            let from = before
                .current
                .as_ref()
                .map(|p| p.version.as_str())
                .unwrap_or("");
            let dir = target.map(|t| t.dir.as_str()).unwrap_or("");
            ev(
                Event::Installed,
                &[("FERRY_FROM", from)],
                &format!("current -> {dir}"),
            )
        }
        Step::Restarting => ev(Event::Restarting, &[], "restarting the unit"),
        Step::Started => ev(Event::Probation, &[], "on probation"),
        Step::Healthy => ev(
            Event::Committed,
            &[],
            &format!("{} committed", version.unwrap_or("")),
        ),
        Step::Unhealthy(reason) => {
            ev(Event::HealthFailed, &[("FERRY_ERROR", reason)], reason);
            ev(
                Event::RollingBack,
                &[("FERRY_ERROR", reason)],
                &format!("rolling back from {}", version.unwrap_or("")),
            );
        }
        Step::OperatorRollback => {
            let current = before.current.as_ref().map(|c| c.version.as_str());
            journal::event(
                Event::RollingBack,
                app,
                current,
                &[("FERRY_ERROR", "rolled back by the operator")],
                &format!("rolling back from {}", current.unwrap_or("")),
            )
        }
        Step::RolledBack => {
            let (_, message) = ending_note(before, step);
            let reason = match &before.phase {
                Phase::RollingBack { reason, .. } => reason.as_str(),
                _ => "",
            };
            journal::event(
                Event::RolledBack,
                app,
                before.previous.as_ref().map(|p| p.version.as_str()),
                &[
                    ("FERRY_FROM", version.unwrap_or("")),
                    ("FERRY_ERROR", reason),
                ],
                &message,
            )
        }
        Step::PreviousUnhealthy(why) => ev(
            Event::Hold,
            &[("FERRY_ERROR", why)],
            &format!("hold: {why}"),
        ),
        Step::Refused { version, message } => journal::event(
            Event::Refused,
            app,
            version.as_deref(),
            &[("FERRY_ERROR", message)],
            &format!("refused: {message}"),
        ),
        Step::Failed { version, message } => journal::event(
            Event::Error,
            app,
            version.as_deref(),
            &[("FERRY_ERROR", message)],
            &format!("failed: {message}"),
        ),
        Step::Wait(Some(why)) => log::info!("{app}: {} waits: {why}", version.unwrap_or("")),
        Step::Abandon
        | Step::Release
        | Step::KeysRotated(_)
        | Step::Floors { .. }
        | Step::ManifestSeen(_)
        | Step::AttemptFrom(_)
        | Step::Switch(_)
        | Step::Wait(None)
        | Step::ReportQueued => {}
    }
}

/// Progress of an attempt after a step, for the D-Bus API: the download
/// fills 0–70 ([`fetch`] reports it as bytes arrive), the install the rest.
fn progress_after(step: &Step) -> Option<u8> {
    match step {
        Step::StartDownload(_) => Some(0),
        Step::Verified => Some(80),
        Step::Swapped => Some(85),
        Step::Restarting => Some(90),
        Step::Started => Some(95),
        Step::Healthy | Step::RolledBack | Step::PreviousUnhealthy(_) => Some(100),
        _ => None,
    }
}

/// `STATUS=` for systemd: what the agent does with `app` now.
fn status_line(app: &str, state: &AppState) -> String {
    let target = state
        .phase_target()
        .map(|t| format!(" {}", t.version))
        .unwrap_or_default();
    match (&state.phase, &state.waiting) {
        (Phase::Hold { reason }, _) => format!("{app}: HOLD: {reason}"),
        (Phase::Verified { .. }, Some(why)) => format!("{app}:{target} waits: {why}"),
        (Phase::Idle, _) => match (&state.current, &state.last_result) {
            (Some(c), _) => format!("{app}: running {}", c.version),
            (None, Some(r)) => format!("{app}: {}", r.message),
            (None, None) => format!("{app}: idle"),
        },
        (phase, _) => format!("{app}: {}{target}", phase.name()),
    }
}

//! The update driver: one pass over one app. It resumes whatever a crash
//! interrupted (by the phase persisted in `state.json`), then polls the
//! repository and carries a new release through download → verify → store →
//! pre-extract → swap → restart → probation → commit, or → roll back → hold.
//! Every step is persisted before the next irreversible act, and each step is
//! safe to repeat, which is what makes resuming correct.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _, Result};
use ferry_format::manifest::ArtifactKind;

use crate::config::{AppSettings, Settings};
use crate::failpoint;
use crate::health;
use crate::journal::{self, Event};
use crate::repo::RepoClient;
use crate::state::{AppState, LastResult, Phase, Release, Step};
use crate::store::Store;
use crate::systemd::{JobOutcome, UnitManager};
use crate::verify;
use ferry_format::report::Outcome as ReportOutcome;

/// What one pass did.
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
    /// The agent is in hold and does nothing.
    Hold(String),
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The agent: settings, systemd, the repository.
pub struct Agent<U: UnitManager> {
    /// Validated settings.
    pub settings: Settings,
    /// systemd.
    pub units: U,
    /// The repository.
    pub repo: RepoClient,
    /// Reports waiting for the collector, when `report-url` is set.
    pub reports: Option<crate::report::ReportQueue>,
}

/// One app's working set during a pass.
struct Job<'a> {
    app: &'a AppSettings,
    store: Store,
    state: AppState,
    /// Where the outcome is reported, and as which device.
    reports: Option<(&'a crate::report::ReportQueue, &'a str)>,
}

impl Job<'_> {
    /// Applies a step and persists the result before anything else happens.
    fn step(&mut self, step: Step) -> Result<()> {
        let point = step.failpoint();
        let next = self.state.apply(step)?;
        next.save(&self.store.state_path())?;
        self.state = next;
        if let Some(point) = point {
            failpoint::hit(point);
        }
        Ok(())
    }

    /// Records the outcome of an attempt: the final step (if any), the
    /// result shown by `status` and the report for the collector are
    /// persisted together, so a crash cannot keep one and lose another. The
    /// report then moves to the queue ([`Job::queue_pending_report`]).
    fn finish(
        &mut self,
        step: Option<Step>,
        outcome: ReportOutcome,
        version: Option<&str>,
        message: &str,
    ) -> Result<()> {
        let point = step.as_ref().and_then(Step::failpoint);
        let mut next = match step {
            Some(step) => self.state.apply(step)?,
            None => self.state.clone(),
        };
        next.last_result = Some(LastResult {
            at: now(),
            outcome: outcome.as_str().to_owned(),
            version: version.map(str::to_owned),
            message: message.to_owned(),
        });
        if let Some((_, device_id)) = self.reports {
            // What ran before the attempt: after a commit that is `previous`.
            let before = if outcome == ReportOutcome::Committed {
                &next.previous
            } else {
                &next.current
            };
            next.pending_report = Some(crate::report::ReportQueue::new_report(
                device_id,
                &self.app.name,
                &self.app.channel,
                before.as_ref().map(|r| r.version.as_str()),
                version,
                outcome,
                (outcome != ReportOutcome::Committed).then_some(message),
                None,
            ));
        }
        next.save(&self.store.state_path())?;
        self.state = next;
        if let Some(point) = point {
            failpoint::hit(point);
        }
        self.queue_pending_report()
    }

    /// Moves a persisted report into the queue. A crash between the two
    /// queues it again on the next pass under the same id, which the
    /// collector counts once.
    fn queue_pending_report(&mut self) -> Result<()> {
        let Some(report) = self.state.pending_report.clone() else {
            return Ok(());
        };
        if let Some((queue, _)) = self.reports {
            if let Err(e) = queue.enqueue(&report) {
                log::warn!("cannot queue the report of `{}`: {e:#}", self.app.name);
            }
        }
        failpoint::hit("after-queue-report");
        self.state.pending_report = None;
        self.state.save(&self.store.state_path())
    }
}

fn release_of(offer: &verify::Offer) -> Release {
    let m = &offer.manifest;
    Release {
        version: m.version.clone(),
        serial: m.serial,
        sha256: offer.sha256.clone(),
        size: offer.file.length,
        dir: Release::dir_name(&m.version, &offer.sha256),
    }
}

/// How far ahead of the device's clock a publication time is believed.
const CLOCK_SKEW: u64 = 300;

impl<U: UnitManager> Agent<U> {
    /// One pass over `app`: resume, then check for an update.
    pub async fn check_app(&self, app: &AppSettings) -> Result<Outcome> {
        let store = Store::open(&self.settings.state_dir, &app.name)?;
        let _lock = store.lock()?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        // `ferryd switch` overrides the configured channel.
        let mut followed = app.clone();
        if let Some(channel) = &state.channel {
            followed.channel = channel.clone();
        }
        let app = &followed;
        let mut job = Job {
            app,
            store,
            state,
            reports: self
                .reports
                .as_ref()
                .map(|q| (q, self.settings.device_id.as_str())),
        };
        job.queue_pending_report()?;
        if let Some(outcome) = self.resume(&mut job).await? {
            return Ok(outcome);
        }
        self.poll(&mut job).await
    }

    /// Finishes what a crash interrupted. `Some` ends the pass.
    async fn resume(&self, job: &mut Job<'_>) -> Result<Option<Outcome>> {
        match job.state.phase.clone() {
            Phase::Idle => Ok(None),
            Phase::Hold { reason } => Ok(Some(Outcome::Hold(reason))),
            Phase::Downloading { .. } => {
                // The partial download stays; the next fetch resumes it.
                job.step(Step::Abandon)?;
                Ok(None)
            }
            Phase::Verified { target } => {
                let ok = sha256_of(&job.store.binary_path(&target)).ok().as_deref()
                    == Some(target.sha256.as_str());
                if !ok {
                    job.step(Step::Abandon)?;
                    return Ok(None);
                }
                Ok(Some(self.install_verified(job, target).await?))
            }
            Phase::Installed { target }
            | Phase::Restarting { target }
            | Phase::Probation { target } => {
                // `current` already points at target (Installed is persisted
                // after the swap); redo the swap idempotently, then restart.
                job.store.point("current", &target)?;
                Ok(Some(self.restart_and_watch(job, target).await?))
            }
            Phase::RollingBack { target, reason } => {
                Ok(Some(self.roll_back(job, target, reason).await?))
            }
        }
    }

    /// Refreshes the trusted metadata down to the app's role: `Ok(Err(_))`
    /// when it was refused (the refusal is recorded, and is the outcome),
    /// `Err` on transient trouble.
    async fn refresh_trust(
        &self,
        job: &mut Job<'_>,
        clock: u64,
    ) -> Result<std::result::Result<ferry_format::tuf::TrustedSet, Outcome>> {
        let app = job.app;
        // A clock before the newest publication seen is unset (boards
        // without an RTC boot in 1970): expiry cannot be judged then, every
        // other rule still holds.
        let trusted_now = (clock >= job.state.last_published_at).then_some(clock);
        let dir = crate::trust::TrustDir::open(&self.settings.state_dir)?;
        let apps: Vec<&str> = self.settings.apps.iter().map(|a| a.name.as_str()).collect();
        match crate::trust::refresh(
            &self.repo,
            &dir,
            &self.settings.root,
            &apps,
            &app.name,
            trusted_now,
        )
        .await
        {
            Ok(set) => Ok(Ok(set)),
            Err(e) if e.downcast_ref::<verify::Refusal>().is_some() => {
                Ok(Err(self.refuse(job, None, &format!("{e:#}"))?))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a refusal of what the repository offers.
    fn refuse(&self, job: &mut Job<'_>, version: Option<&str>, msg: &str) -> Result<Outcome> {
        journal::event(
            Event::Refused,
            &job.app.name,
            version,
            &[("FERRY_ERROR", msg)],
            &format!("refused: {msg}"),
        );
        job.finish(None, ReportOutcome::Refused, version, msg)?;
        Ok(Outcome::Refused(msg.to_owned()))
    }

    async fn poll(&self, job: &mut Job<'_>) -> Result<Outcome> {
        let app = job.app;
        journal::event(
            Event::CheckStarted,
            &app.name,
            None,
            &[("FERRY_CHANNEL", &app.channel)],
            "checking for updates",
        );
        let clock = now();
        let set = match self.refresh_trust(job, clock).await? {
            Ok(set) => set,
            Err(outcome) => return Ok(outcome),
        };
        let role = &set
            .delegated(&app.name)
            .expect("refreshed down to the app")
            .doc;
        let targets = &set.targets().expect("refreshed").doc;
        let (keys, key_ids) = verify::release_keys(targets, &app.name);
        if job.state.release_keys != key_ids {
            // New release keys: floors raised under the old ones may have
            // been pushed up by a leaked key.
            job.state.last_serial = 0;
            job.state.last_published_at = 0;
            job.state.manifest_sha256 = None;
            job.state.release_keys = key_ids;
            job.state.save(&job.store.state_path())?;
        }
        let channel_target = ferry_format::tuf::layout::channel_target(&app.name, &app.channel);
        let Some(info) = role.targets.get(&channel_target).cloned() else {
            let r = verify::Refusal::NoRelease {
                app: app.name.clone(),
                channel: app.channel.clone(),
            };
            return self.refuse(job, None, &r.to_string());
        };
        if job.state.current.is_some()
            && info.sha256().is_some()
            && job.state.manifest_sha256.as_deref() == info.sha256()
        {
            return Ok(Outcome::UpToDate);
        }
        let bytes = self.fetch_manifest(&channel_target, &info).await?;
        let offer = match bytes
            .map_err(verify::Refusal::Repository)
            .and_then(|bytes| {
                verify::check_manifest(
                    &bytes,
                    &info,
                    role,
                    app,
                    &job.state,
                    self.settings.max_artifact_size,
                    self.settings.allow_plain_files,
                    ferry_format::manifest::host_target(),
                )
            }) {
            Ok(offer) => offer,
            Err(refusal) => {
                if let verify::Refusal::NoArtifact { version, .. } = &refusal {
                    // A release for other boards: said once, then this
                    // manifest counts as seen (no fetch and refusal on every
                    // poll) until the channel publishes another.
                    job.state.manifest_sha256 = info.sha256().map(str::to_owned);
                    job.state.save(&job.store.state_path())?;
                    return self.refuse(job, Some(version), &refusal.to_string());
                }
                return self.refuse(job, None, &refusal.to_string());
            }
        };
        let m = &offer.manifest;
        // Every verified manifest raises the floors, not only installs; a
        // publication time is never taken beyond the clock plus a skew.
        job.state.last_serial = job.state.last_serial.max(m.serial);
        job.state.last_published_at = job
            .state
            .last_published_at
            .max(m.published_at.min(clock.saturating_add(CLOCK_SKEW)));
        let manifest_sha = info.sha256().map(str::to_owned);
        let target = release_of(&offer);
        let current_sha = job.state.current.as_ref().map(|c| c.sha256.clone());
        if current_sha.as_deref() == Some(offer.sha256.as_str()) {
            job.state.manifest_sha256 = manifest_sha;
            job.state.save(&job.store.state_path())?;
            journal::event(
                Event::UpToDate,
                &app.name,
                Some(&m.version),
                &[],
                "up to date",
            );
            return Ok(Outcome::UpToDate);
        }
        job.state.save(&job.store.state_path())?;
        if job.state.is_denied(&offer.sha256, m.serial) {
            let msg = format!(
                "{} (serial {}) is on the deny list until a higher serial",
                m.version, m.serial
            );
            journal::event(Event::Denied, &app.name, Some(&m.version), &[], &msg);
            job.state.manifest_sha256 = manifest_sha.clone();
            job.state.save(&job.store.state_path())?;
            return Ok(Outcome::Skipped(msg));
        }
        if !verify::in_rollout(m, &self.settings.device_id, self.settings.wariness) {
            let msg = format!(
                "{} is rolled out to {}%{}; this device's bucket is {}",
                m.version,
                m.rollout.percent,
                if m.rollout.halted { " (halted)" } else { "" },
                verify::bucket(&self.settings.device_id, &m.app, &m.version)
            );
            return Ok(Outcome::Skipped(msg));
        }
        journal::event(
            Event::UpdateAvailable,
            &app.name,
            Some(&m.version),
            &[("FERRY_SERIAL", &m.serial.to_string())],
            &format!("update to {} available", m.version),
        );
        // An app without its unit could never be restarted: find out before
        // anything is downloaded or swapped, not at the restart.
        if let Err(e @ crate::systemd::SystemdError::NoSuchUnit(_)) =
            self.units.status(&app.unit).await
        {
            let msg = format!("cannot install {} for `{}`: {e}", m.version, app.name);
            journal::event(
                Event::Error,
                &app.name,
                Some(&m.version),
                &[("FERRY_ERROR", &msg)],
                &msg,
            );
            return Err(anyhow!(msg));
        }
        // The manifest is remembered only once this release has a final
        // outcome: a refused or interrupted attempt must look again.
        job.state.manifest_sha256 = None;
        job.step(Step::StartDownload(target.clone()))?;
        if let Err(e) = self.download_and_store(job, &offer, &keys, &target).await {
            let msg = format!("{e:#}");
            job.step(Step::Abandon)?;
            if e.downcast_ref::<verify::Refusal>().is_some() {
                journal::event(
                    Event::Refused,
                    &app.name,
                    Some(&m.version),
                    &[("FERRY_ERROR", &msg)],
                    &format!("release refused: {msg}"),
                );
                job.finish(None, ReportOutcome::Refused, Some(&m.version), &msg)?;
                return Ok(Outcome::Refused(msg));
            }
            journal::event(
                Event::Error,
                &app.name,
                Some(&m.version),
                &[("FERRY_ERROR", &msg)],
                &format!("download failed: {msg}"),
            );
            job.finish(None, ReportOutcome::Error, Some(&m.version), &msg)?;
            return Err(e);
        }
        job.step(Step::Verified)?;
        journal::event(
            Event::Verified,
            &app.name,
            Some(&m.version),
            &[],
            "release verified and stored",
        );
        let outcome = self.install_verified(job, target).await?;
        if matches!(outcome, Outcome::Committed(_) | Outcome::RolledBack(_)) {
            job.state.manifest_sha256 = manifest_sha.clone();
            job.state.save(&job.store.state_path())?;
        }
        Ok(outcome)
    }

    /// Fetches the channel manifest's file, at most the size the app's role
    /// signs: `Ok(Err(_))` is a refusal, `Err` is transient.
    async fn fetch_manifest(
        &self,
        target: &str,
        info: &ferry_format::tuf::TargetFile,
    ) -> Result<std::result::Result<Vec<u8>, String>> {
        let limit = ferry_format::manifest::MAX_MANIFEST_LEN as u64;
        if info.length > limit {
            return Ok(Err(format!(
                "the channel manifest is {} bytes, over the limit of {limit}",
                info.length
            )));
        }
        let Some(sha) = info.sha256() else {
            return Ok(Err(
                "the app's role gives the channel manifest no SHA-256".into()
            ));
        };
        let path = ferry_format::tuf::layout::target_file_path(target, sha);
        match self.repo.fetch_file(&path, info.length, false).await {
            Ok(bytes) => Ok(Ok(bytes.unwrap_or_default())),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Download, checks, pre-extraction, storing under `versions/`.
    async fn download_and_store(
        &self,
        job: &mut Job<'_>,
        offer: &verify::Offer,
        keys: &[ferry_format::tuf::Key],
        target: &Release,
    ) -> Result<()> {
        let app = job.app;
        let m = &offer.manifest;
        let partial = job.store.partial_path(&target.sha256);
        journal::event(
            Event::DownloadStarted,
            &app.name,
            Some(&m.version),
            &[("FERRY_SIZE", &offer.file.length.to_string())],
            "downloading",
        );
        let got = self
            .repo
            .download(
                &ferry_format::tuf::layout::target_file_path(&offer.artifact.target, &offer.sha256),
                offer.file.length,
                &offer.sha256,
                &partial,
            )
            .await
            .map_err(|e| {
                if e.is_transient() {
                    anyhow!(e)
                } else {
                    anyhow!(verify::Refusal::Artifact(e.to_string()))
                }
            })?;
        if got.resumed_from > 0 {
            journal::event(
                Event::DownloadResumed,
                &app.name,
                Some(&m.version),
                &[("FERRY_RESUMED_FROM", &got.resumed_from.to_string())],
                "download resumed",
            );
        }
        journal::event(
            Event::Downloaded,
            &app.name,
            Some(&m.version),
            &[],
            "downloaded",
        );
        failpoint::hit("before-verify");
        if let Err(r) =
            verify::check_artifact(&partial, offer.artifact.kind, keys, &app.name, &m.version)
        {
            let _ = std::fs::remove_file(&partial);
            return Err(anyhow!(r));
        }
        failpoint::hit("before-store");
        let stored = job.store.store_binary(&partial, target)?;
        let _ = std::fs::remove_file(&partial);
        if offer.artifact.kind == ArtifactKind::Ferry {
            failpoint::hit("before-pre-extract");
            if let Err(e) = pre_extract(&stored, app).await {
                let _ = std::fs::remove_dir_all(
                    stored
                        .parent()
                        .expect("binary sits in its version directory"),
                );
                return Err(anyhow!(verify::Refusal::Artifact(format!(
                    "cannot unpack on this device: {e:#}"
                ))));
            }
            journal::event(
                Event::Extracted,
                &app.name,
                Some(&m.version),
                &[],
                "payload extracted ahead of the swap",
            );
        }
        Ok(())
    }

    /// Swap, restart, watch.
    async fn install_verified(&self, job: &mut Job<'_>, target: Release) -> Result<Outcome> {
        let previous = job.state.current.clone();
        failpoint::hit("before-swap");
        job.store.swap_to(&target, previous.as_ref())?;
        failpoint::hit("after-swap");
        job.step(Step::Swapped)?;
        journal::event(
            Event::Installed,
            &job.app.name,
            Some(&target.version),
            &[(
                "FERRY_FROM",
                previous.as_ref().map(|p| p.version.as_str()).unwrap_or(""),
            )],
            &format!("current -> {}", target.dir),
        );
        self.restart_and_watch(job, target).await
    }

    async fn restart_and_watch(&self, job: &mut Job<'_>, target: Release) -> Result<Outcome> {
        let app = job.app;
        job.step(Step::Restarting)?;
        journal::event(
            Event::Restarting,
            &app.name,
            Some(&target.version),
            &[("FERRY_UNIT", &app.unit)],
            "restarting the unit",
        );
        failpoint::hit("before-restart");
        let verdict = match self.restart(app).await {
            Ok(started) => {
                job.step(Step::Started)?;
                failpoint::hit("before-health");
                journal::event(
                    Event::Probation,
                    &app.name,
                    Some(&target.version),
                    &[],
                    "on probation",
                );
                health::probation(&self.units, &app.unit, &started, &app.health).await
            }
            Err(e) => Err(e),
        };
        match verdict {
            Ok(()) => {
                job.finish(
                    Some(Step::Healthy),
                    ReportOutcome::Committed,
                    Some(&target.version),
                    "healthy after probation",
                )?;
                journal::event(
                    Event::Committed,
                    &app.name,
                    Some(&target.version),
                    &[],
                    &format!("{} committed", target.version),
                );
                self.prune(job);
                Ok(Outcome::Committed(target.version))
            }
            Err(reason) => {
                journal::event(
                    Event::HealthFailed,
                    &app.name,
                    Some(&target.version),
                    &[("FERRY_ERROR", &reason)],
                    &reason,
                );
                job.step(Step::Unhealthy(reason.clone()))?;
                self.roll_back(job, target, reason).await
            }
        }
    }

    /// Restarts the unit and returns its status right after the job.
    async fn restart(&self, app: &AppSettings) -> Result<crate::systemd::UnitStatus, String> {
        let outcome = self
            .units
            .restart(&app.unit, app.restart_timeout)
            .await
            .map_err(|e| format!("restart of `{}` failed: {e}", app.unit))?;
        if outcome != JobOutcome::Done {
            return Err(format!("restart job of `{}` ended {outcome:?}", app.unit));
        }
        self.units
            .status(&app.unit)
            .await
            .map_err(|e| format!("cannot read `{}`: {e}", app.unit))
    }

    async fn roll_back(
        &self,
        job: &mut Job<'_>,
        target: Release,
        reason: String,
    ) -> Result<Outcome> {
        let app = job.app;
        journal::event(
            Event::RollingBack,
            &app.name,
            Some(&target.version),
            &[("FERRY_ERROR", &reason)],
            &format!("rolling back from {}", target.version),
        );
        let Some(previous) = job
            .state
            .previous
            .clone()
            .filter(|p| p.sha256 != target.sha256)
        else {
            let why = format!(
                "{} is unhealthy ({reason}) and there is no previous version to go back to",
                target.version
            );
            job.finish(
                Some(Step::PreviousUnhealthy(why.clone())),
                ReportOutcome::Hold,
                Some(&target.version),
                &why,
            )?;
            journal::event(
                Event::Hold,
                &app.name,
                Some(&target.version),
                &[("FERRY_ERROR", &why)],
                &format!("hold: {why}"),
            );
            return Ok(Outcome::Hold(why));
        };
        failpoint::hit("before-rollback");
        job.store.point("current", &previous)?;
        failpoint::hit("before-rollback-restart");
        let verdict = match self.restart(app).await {
            Ok(started) => health::probation(&self.units, &app.unit, &started, &app.health).await,
            Err(e) => Err(e),
        };
        match verdict {
            Ok(()) => {
                let msg = format!(
                    "{} failed ({reason}); {} runs again",
                    target.version, previous.version
                );
                job.finish(
                    Some(Step::RolledBack),
                    ReportOutcome::RolledBack,
                    Some(&target.version),
                    &msg,
                )?;
                journal::event(
                    Event::RolledBack,
                    &app.name,
                    Some(&previous.version),
                    &[("FERRY_FROM", &target.version), ("FERRY_ERROR", &reason)],
                    &msg,
                );
                Ok(Outcome::RolledBack(msg))
            }
            Err(again) => {
                let why = format!(
                    "{} failed ({reason}) and {} is unhealthy too ({again})",
                    target.version, previous.version
                );
                job.finish(
                    Some(Step::PreviousUnhealthy(why.clone())),
                    ReportOutcome::Hold,
                    Some(&target.version),
                    &why,
                )?;
                journal::event(
                    Event::Hold,
                    &app.name,
                    Some(&previous.version),
                    &[("FERRY_ERROR", &why)],
                    &format!("hold: {why}"),
                );
                Ok(Outcome::Hold(why))
            }
        }
    }

    fn prune(&self, job: &Job<'_>) {
        failpoint::hit("before-prune");
        match job.store.prune(job.app.keep, None) {
            Ok(removed) if !removed.is_empty() => {
                journal::event(
                    Event::Pruned,
                    &job.app.name,
                    None,
                    &[("FERRY_REMOVED", &removed.join(","))],
                    &format!("pruned {}", removed.join(", ")),
                );
            }
            Ok(_) => {}
            Err(e) => log::warn!("pruning `{}` failed: {e:#}", job.app.name),
        }
    }

    /// `ferryd install FILE`: an offline update through the same checks.
    /// The file is opened once and copied into the agent's own directory
    /// (root-owned, 0600); everything after — the signature by one of the
    /// app's release keys from the trusted metadata, pre-extraction, the
    /// install — works on that copy, so swapping the file meanwhile changes
    /// nothing. An older version or a denied one needs `force`.
    pub async fn install_file(&self, file: &Path, force: bool) -> Result<Outcome> {
        let mut src = std::fs::File::open(file)
            .with_context(|| format!("cannot open `{}`", file.display()))?;
        let c = ferry_format::Container::read_from(&mut src)
            .with_context(|| format!("`{}`", file.display()))?;
        let app = self.settings.app(&c.metadata.name)?;
        let store = Store::open(&self.settings.state_dir, &app.name)?;
        let copy = store.partial_path("install");
        copy_private(&mut src, &copy)?;
        drop(src);
        let result = self.install_copy(app, &copy, force).await;
        let _ = std::fs::remove_file(&copy);
        result.with_context(|| format!("`{}` refused", file.display()))
    }

    async fn install_copy(&self, app: &AppSettings, file: &Path, force: bool) -> Result<Outcome> {
        let mut f = std::fs::File::open(file)?;
        let c = ferry_format::Container::read_from(&mut f)?;
        let dir = crate::trust::TrustDir::open(&self.settings.state_dir)?;
        let apps: Vec<&str> = self.settings.apps.iter().map(|a| a.name.as_str()).collect();
        let set = dir.load(&self.settings.root, &apps)?;
        let targets = set.targets().map(|t| &t.doc).with_context(|| {
            "the device holds no repository metadata yet, so it knows no release keys: let it reach the repository once"
        })?;
        let (keys, _) = verify::release_keys(targets, &app.name);
        if keys.is_empty() {
            anyhow::bail!("the repository delegates no release keys to `{}`", app.name);
        }
        verify::check_artifact(
            file,
            ArtifactKind::Ferry,
            &keys,
            &app.name,
            &c.metadata.version,
        )?;
        let sha256 = sha256_of(file)?;
        let (_lock, mut job) = self.open_job(app)?;
        if let Phase::Hold { .. } = job.state.phase {
            job.step(Step::Release)?;
        }
        if job.state.phase != Phase::Idle {
            anyhow::bail!(
                "an update of `{}` is in progress ({}); try again after it ends",
                app.name,
                job.state.phase.name()
            );
        }
        let current = job.state.current.clone();
        let older = current
            .as_ref()
            .is_some_and(|cur| ferry_format::version::is_older(&c.metadata.version, &cur.version));
        let denied = job.state.denied.iter().any(|d| d.sha256 == sha256);
        if (older || denied) && !force {
            anyhow::bail!(
                "{} {} is {} (a replayed old release is a rollback attack); pass --force to install it anyway",
                app.name,
                c.metadata.version,
                if denied {
                    "on the deny list: it was rolled back before".to_owned()
                } else {
                    format!("older than the current {}", current.map(|c| c.version).unwrap_or_default())
                }
            );
        }
        if older || denied {
            log::warn!(
                "installing {} {} by --force although it is older or denied",
                app.name,
                c.metadata.version
            );
        }
        let size = std::fs::metadata(file)?.len();
        let target = Release {
            version: c.metadata.version.clone(),
            serial: job.state.last_serial,
            dir: Release::dir_name(&c.metadata.version, &sha256),
            sha256,
            size,
        };
        job.step(Step::StartDownload(target.clone()))?;
        let stored = job.store.store_binary(file, &target)?;
        if let Err(e) = pre_extract(&stored, app).await {
            job.step(Step::Abandon)?;
            return Err(e.context("the release cannot unpack on this device"));
        }
        job.step(Step::Verified)?;
        self.install_verified(&mut job, target).await
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

    /// Opens an app's store, takes its lock (held while the returned file
    /// lives) and loads its state.
    fn open_job<'a>(&'a self, app: &'a AppSettings) -> Result<(std::fs::File, Job<'a>)> {
        let store = Store::open(&self.settings.state_dir, &app.name)?;
        let lock = store.lock()?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        let reports = self
            .reports
            .as_ref()
            .map(|q| (q, self.settings.device_id.as_str()));
        Ok((
            lock,
            Job {
                app,
                store,
                state,
                reports,
            },
        ))
    }

    /// `ferryd switch APP CHANNEL`: follow another channel from the next poll.
    /// Serials count per channel, so the replay floor starts again from the
    /// new channel's first manifest.
    pub fn switch_channel(&self, app: &AppSettings, channel: &str) -> Result<()> {
        if !ferry_format::container::is_valid_name(channel) {
            anyhow::bail!("`{channel}` is not a valid channel name");
        }
        let store = Store::open(&self.settings.state_dir, &app.name)?;
        let _lock = store.lock()?;
        let mut state = AppState::load(&store.state_path(), &app.name)?;
        state.channel = (channel != app.channel).then(|| channel.to_owned());
        state.last_serial = 0;
        state.manifest_sha256 = None;
        state.save(&store.state_path())
    }

    /// `ferryd rollback APP`: back to the previous release, through the same health checks.
    pub async fn rollback(&self, app: &AppSettings) -> Result<Outcome> {
        let (_lock, mut job) = self.open_job(app)?;
        job.step(Step::OperatorRollback).map_err(|e| {
            anyhow!("cannot roll `{}` back: {e} (a rollback needs a current and a previous version and no update in progress)", app.name)
        })?;
        let Phase::RollingBack { target, reason } = job.state.phase.clone() else {
            unreachable!("OperatorRollback leads to RollingBack")
        };
        self.roll_back(&mut job, target, reason).await
    }
}

/// Runs the new binary's extraction (the launcher unpacks and exits) into
/// the app's cache root, as root, so a restart costs no unpacking and a
/// release that cannot unpack here never becomes current. The root is
/// root-owned and 0755, so the launcher makes the tree readable, never
/// writable, by the app's user: a compromised app cannot change the code its
/// next start runs, nor plant a tree for the next release's build id.
async fn pre_extract(binary: &Path, app: &AppSettings) -> Result<()> {
    std::fs::create_dir_all(&app.cache_dir)
        .with_context(|| format!("cannot create `{}`", app.cache_dir.display()))?;
    // SAFETY: plain syscalls without preconditions.
    let me = unsafe { (libc::geteuid(), libc::getegid()) };
    crate::users::secure_dir(&app.cache_dir, 0o755, Some(me))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env("FERRY_EXTRACT_ONLY", "1")
        .env("FERRY_CACHE_DIR", &app.cache_dir)
        .env_remove("CACHE_DIRECTORY")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .context("extraction took longer than 5 minutes")??;
    if !out.status.success() {
        anyhow::bail!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Copies an open file into `dest` (created 0600, no symlink followed,
/// fsynced): the agent's private copy of an operator's file.
fn copy_private(src: &mut std::fs::File, dest: &Path) -> Result<()> {
    use std::io::Seek as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(dest);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    src.seek(std::io::SeekFrom::Start(0))?;
    std::io::copy(src, &mut out)
        .with_context(|| format!("cannot copy into `{}`", dest.display()))?;
    out.sync_all()?;
    Ok(())
}

/// Hex SHA-256 of a file.
pub fn sha256_of(path: &Path) -> Result<String> {
    use sha2::{Digest as _, Sha256};
    use std::io::Read as _;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

//! The `restarting`, `probation` and `rolling_back` steps: restart the
//! app's unit over D-Bus, watch it through probation, commit or go back.
//!
//! Every call to systemd has a deadline. Waiting for a restart job is not a
//! sign of life: the watchdog is fed between steps and between probation
//! looks, never while a job hangs, so a stuck systemd gets the agent
//! restarted, and the crash-resume path takes over.

use super::{Agent, Flow, Job, StepError, CALL_DEADLINE};
use crate::config::AppSettings;
use crate::failpoint;
use crate::health;
use crate::journal::{self, Event};
use crate::state::{Release, Step};
use crate::systemd::{JobOutcome, SystemdError, UnitManager, UnitStatus};

impl<U: UnitManager> Agent<U> {
    /// `restarting`: restart the unit onto the target. Resumed after a
    /// crash, the start is counted again first.
    pub(super) async fn restarting(
        &self,
        job: &mut Job<'_>,
        _target: Release,
    ) -> Result<Flow, StepError> {
        if !job.entered {
            return self.start(job);
        }
        failpoint::hit("before-restart");
        let started = self.restart(&job.app).await.map_err(StepError::Unhealthy)?;
        job.started = Some(started);
        self.transition(job, Step::Started)?;
        failpoint::hit("before-health");
        Ok(Flow::Next)
    }

    /// `probation`: watch the unit this process restarted; resumed after a
    /// crash, the probation starts again with a restart.
    pub(super) async fn probation(
        &self,
        job: &mut Job<'_>,
        _target: Release,
    ) -> Result<Flow, StepError> {
        let Some(started) = job.started.take() else {
            return self.start(job);
        };
        health::probation(&self.units, &job.app.unit, &started, &job.app.health)
            .await
            .map_err(StepError::Unhealthy)?;
        self.transition(job, Step::Healthy)?;
        if let Some(sha) = job.manifest_sha256.take() {
            self.transition(job, Step::ManifestSeen(Some(sha)))?;
        }
        self.prune(job);
        Ok(Flow::Next)
    }

    /// `rolling_back`: `current` back to `previous`, restart, watch; if the
    /// previous release is unhealthy too (or there is none), hold.
    pub(super) async fn rolling_back(
        &self,
        job: &mut Job<'_>,
        target: Release,
        reason: String,
    ) -> Result<Flow, StepError> {
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
            self.transition(job, Step::PreviousUnhealthy(why))?;
            return Ok(Flow::Next);
        };
        failpoint::hit("before-rollback");
        job.store.point("current", &previous)?;
        failpoint::hit("before-rollback-restart");
        let verdict = match self.restart(&job.app).await {
            Ok(started) => {
                health::probation(&self.units, &job.app.unit, &started, &job.app.health).await
            }
            Err(e) => Err(e),
        };
        match verdict {
            Ok(()) => {
                self.transition(job, Step::RolledBack)?;
                if let Some(sha) = job.manifest_sha256.take() {
                    self.transition(job, Step::ManifestSeen(Some(sha)))?;
                }
            }
            Err(again) => {
                let why = format!(
                    "{} failed ({reason}) and {} is unhealthy too ({again})",
                    target.version, previous.version
                );
                self.transition(job, Step::PreviousUnhealthy(why))?;
            }
        }
        Ok(Flow::Next)
    }

    /// Restarts the unit and returns its status right after the job.
    async fn restart(&self, app: &AppSettings) -> Result<UnitStatus, String> {
        let deadline = app.restart_timeout + CALL_DEADLINE;
        let outcome =
            tokio::time::timeout(deadline, self.units.restart(&app.unit, app.restart_timeout))
                .await
                .map_err(|_| {
                    format!(
                        "systemd did not answer the restart of `{}` within {deadline:?}",
                        app.unit
                    )
                })?
                .map_err(|e| format!("restart of `{}` failed: {e}", app.unit))?;
        if outcome != JobOutcome::Done {
            return Err(format!("restart job of `{}` ended {outcome:?}", app.unit));
        }
        self.unit_status(&app.unit)
            .await
            .map_err(|e| format!("cannot read `{}`: {e}", app.unit))
    }

    /// The unit's status, within [`CALL_DEADLINE`].
    pub(super) async fn unit_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        match tokio::time::timeout(CALL_DEADLINE, self.units.status(unit)).await {
            Ok(result) => result,
            Err(_) => Err(SystemdError::Timeout {
                unit: unit.to_owned(),
                action: "status",
                timeout: CALL_DEADLINE,
            }),
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
}

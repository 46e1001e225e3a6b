//! The `idle` step of a poll: refresh the trusted metadata, read the
//! channel's manifest, decide whether this device takes its release.

use ferry_format::tuf::{Key, TargetFile, TrustedSet};

use super::{Agent, Flow, Job, Offered, Outcome, StepError};
use crate::journal::{self, Event};
use crate::state::{Release, Step};
use crate::systemd::{SystemdError, UnitManager};
use crate::trust::RefreshError;
use crate::verify::{self, Refusal};

/// How far ahead of the device's clock a publication time is believed.
const CLOCK_SKEW: u64 = 300;

/// A release the device takes: checked, not yet downloaded.
pub(super) struct Found {
    pub offer: verify::Offer,
    /// The app's release keys, for the binary's embedded signature.
    pub keys: Vec<Key>,
    pub target: Release,
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

impl<U: UnitManager> Agent<U> {
    pub(super) async fn poll(&self, job: &mut Job<'_>) -> Result<Flow, StepError> {
        let app = job.app.clone();
        journal::event(
            Event::CheckStarted,
            &app.name,
            None,
            &[("FERRY_CHANNEL", &app.channel)],
            "checking for updates",
        );
        let clock = ferry_format::clock::unix_now();
        let set = self.refresh_trust(job, clock).await?;
        let role = &set
            .delegated(&app.name)
            .expect("refreshed down to the app")
            .doc;
        let targets = &set.targets().expect("refreshed").doc;
        let (keys, key_ids) = verify::release_keys(targets, &app.name);
        if job.state.release_keys != key_ids {
            // New release keys: floors raised under the old ones may have
            // been pushed up by a leaked key.
            self.transition(job, Step::KeysRotated(key_ids))?;
        }
        let channel_target = ferry_format::tuf::layout::channel_target(&app.name, &app.channel);
        let Some(info) = role.targets.get(&channel_target).cloned() else {
            let r = Refusal::NoRelease {
                app: app.name.clone(),
                channel: app.channel.clone(),
            };
            return Err(StepError::refused(None, r.to_string()));
        };
        if job.state.current.is_some()
            && info.sha256().is_some()
            && job.state.manifest_sha256.as_deref() == info.sha256()
        {
            return Ok(Flow::Done(Outcome::UpToDate));
        }
        let bytes = self
            .fetch_manifest(&channel_target, &info)
            .await?
            .map_err(|why| StepError::refused(None, Refusal::Repository(why).to_string()))?;
        let offer = match verify::check_manifest(
            &bytes,
            &info,
            role,
            &app,
            &job.state,
            self.settings.max_artifact_size,
            self.settings.allow_plain_files,
            ferry_format::manifest::host_target(),
        ) {
            Ok(offer) => offer,
            Err(refusal) => {
                if let Refusal::NoArtifact { version, .. } = &refusal {
                    // A release for other boards: said once, then this
                    // manifest counts as seen (no fetch and refusal on every
                    // poll) until the channel publishes another.
                    self.transition(job, Step::ManifestSeen(info.sha256().map(str::to_owned)))?;
                    return Err(StepError::refused(Some(version), refusal.to_string()));
                }
                return Err(StepError::refused(None, refusal.to_string()));
            }
        };
        let m = &offer.manifest;
        // Every verified manifest raises the floors, not only installs; a
        // publication time is never taken beyond the clock plus a skew.
        self.transition(
            job,
            Step::Floors {
                serial: m.serial,
                published_at: m.published_at.min(clock.saturating_add(CLOCK_SKEW)),
            },
        )?;
        let denied = job.state.is_denied(&offer.sha256, m.serial);
        let in_rollout = verify::in_rollout(m, &self.settings.device_id, self.settings.wariness);
        self.observer.offered(
            &app.name,
            &Offered {
                version: m.version.clone(),
                notes: m.notes.clone(),
                url: m.url.clone(),
                sha256: offer.sha256.clone(),
                serial: m.serial,
                takes: !denied && in_rollout,
            },
        );
        let manifest_sha = info.sha256().map(str::to_owned);
        if job.state.current.as_ref().map(|c| c.sha256.as_str()) == Some(offer.sha256.as_str()) {
            self.transition(job, Step::ManifestSeen(manifest_sha))?;
            journal::event(
                Event::UpToDate,
                &app.name,
                Some(&m.version),
                &[],
                "up to date",
            );
            return Ok(Flow::Done(Outcome::UpToDate));
        }
        if denied {
            let msg = format!(
                "{} (serial {}) is on the deny list until a higher serial",
                m.version, m.serial
            );
            journal::event(Event::Denied, &app.name, Some(&m.version), &[], &msg);
            self.transition(job, Step::ManifestSeen(manifest_sha))?;
            return Ok(Flow::Done(Outcome::Skipped(msg)));
        }
        if !in_rollout {
            let msg = format!(
                "{} is rolled out to {}%{}; this device's bucket is {}",
                m.version,
                m.rollout.percent,
                if m.rollout.halted { " (halted)" } else { "" },
                verify::bucket(&self.settings.device_id, &m.app, &m.version)
            );
            return Ok(Flow::Done(Outcome::Skipped(msg)));
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
        if let Err(e @ SystemdError::NoSuchUnit(_)) = self.unit_status(&app.unit).await {
            return Err(StepError::Transient(anyhow::anyhow!(
                "cannot install {} for `{}`: {e}",
                m.version,
                app.name
            )));
        }
        // The manifest is remembered only once this release has a final
        // outcome: a refused or interrupted attempt must look again.
        self.transition(job, Step::AttemptFrom(manifest_sha.clone()))?;
        job.manifest_sha256 = manifest_sha;
        let target = release_of(&offer);
        job.offer = Some(Found {
            offer,
            keys,
            target: target.clone(),
        });
        self.transition(job, Step::StartDownload(target))?;
        Ok(Flow::Next)
    }

    /// Refreshes the trusted metadata down to the app's role.
    async fn refresh_trust(&self, job: &Job<'_>, clock: u64) -> Result<TrustedSet, StepError> {
        // A clock before the newest publication seen is unset (boards
        // without an RTC boot in 1970): expiry cannot be judged then, every
        // other rule still holds.
        let trusted_now = (clock >= job.state.last_published_at).then_some(clock);
        let dir = crate::trust::TrustDir::open(&self.settings.state_dir)?;
        let apps: Vec<&str> = self.settings.apps.iter().map(|a| a.name.as_str()).collect();
        crate::trust::refresh(
            &self.repo,
            &dir,
            &self.settings.root,
            &apps,
            &job.app.name,
            trusted_now,
        )
        .await
        .map_err(|e| match e {
            RefreshError::Refused(r) => StepError::refused(None, r.to_string()),
            RefreshError::Transient(e) => StepError::Transient(e),
        })
    }

    /// Fetches the channel manifest's file, at most the size the app's role
    /// signs: `Ok(Err(_))` is a refusal, `Err` is transient.
    async fn fetch_manifest(
        &self,
        target: &str,
        info: &TargetFile,
    ) -> Result<Result<Vec<u8>, String>, StepError> {
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
            Err(e) if e.is_transient() => Err(StepError::Transient(e.into())),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

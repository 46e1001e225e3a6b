//! The `downloading` and `verified` steps, and an operator's file taken
//! into the same path: download (progress as bytes arrive), check the
//! embedded signature, store under `versions/`, pre-extract; then wait for
//! the install gate and swap.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use ferry_format::manifest::ArtifactKind;

use super::{Agent, Flow, Intent, Job, Outcome, StepError};
use crate::config::AppSettings;
use crate::failpoint;
use crate::journal::{self, Event};
use crate::notify;
use crate::state::{Phase, Release, Step};
use crate::systemd::UnitManager;
use crate::verify::{self, Refusal};

/// How often download progress is read and the watchdog fed meanwhile.
const PROGRESS_TICK: Duration = Duration::from_millis(500);

/// Longest a release's pre-extraction may take.
const EXTRACT_DEADLINE: Duration = Duration::from_secs(300);

/// Share of the progress bar the download fills.
const DOWNLOAD_SHARE: u64 = 70;

impl<U: UnitManager> Agent<U> {
    /// `downloading`: fetch what the poll found; after a crash the offer is
    /// gone, so the attempt is abandoned (the partial download stays and
    /// the next poll resumes it).
    pub(super) async fn downloading(
        &self,
        job: &mut Job<'_>,
        target: Release,
    ) -> Result<Flow, StepError> {
        let Some(found) = job.offer.take().filter(|f| f.target == target) else {
            self.abandon_and_poll(job)?;
            return Ok(Flow::Next);
        };
        let app = job.app.clone();
        let offer = &found.offer;
        let m = &offer.manifest;
        let partial = job.store.partial_path(&target.sha256);
        let path =
            ferry_format::tuf::layout::target_file_path(&offer.artifact.target, &offer.sha256);
        let download = self
            .repo
            .download(&path, offer.file.length, &offer.sha256, &partial);
        tokio::pin!(download);
        let mut tick = tokio::time::interval(PROGRESS_TICK);
        let got = loop {
            tokio::select! {
                got = &mut download => break got,
                _ = tick.tick() => {
                    // Bytes arriving are the download's sign of life.
                    notify::watchdog();
                    if let Ok(meta) = std::fs::metadata(&partial) {
                        let percent = meta.len().saturating_mul(DOWNLOAD_SHARE) / target.size.max(1);
                        self.observer.progress(&app.name, percent.min(DOWNLOAD_SHARE) as u8);
                    }
                }
            }
        };
        let got = got.map_err(|e| {
            if e.is_transient() {
                StepError::Transient(anyhow!(e))
            } else {
                StepError::refused(
                    Some(&m.version),
                    Refusal::Artifact(e.to_string()).to_string(),
                )
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
        if let Err(r) = verify::check_artifact(
            &partial,
            offer.artifact.kind,
            &found.keys,
            &app.name,
            &m.version,
        ) {
            let _ = std::fs::remove_file(&partial);
            return Err(StepError::refused(Some(&m.version), r.to_string()));
        }
        failpoint::hit("before-store");
        let stored = job.store.store_binary(&partial, &target)?;
        let _ = std::fs::remove_file(&partial);
        if offer.artifact.kind == ArtifactKind::Ferry {
            failpoint::hit("before-pre-extract");
            self.unpack(&stored, &app, &m.version).await?;
        }
        self.remember_fresh(&target.sha256);
        self.transition(job, Step::Verified)?;
        Ok(Flow::Next)
    }

    /// Drops an attempt a crash interrupted; a poll then looks at the
    /// channel again (a cut download resumes where it stopped).
    fn abandon_and_poll(&self, job: &mut Job<'_>) -> Result<(), StepError> {
        self.transition(job, Step::Abandon)?;
        if matches!(job.intent, Intent::Poll | Intent::InstallNow) {
            job.acted = false;
        }
        Ok(())
    }

    /// Pre-extracts a stored binary; one that cannot unpack here is removed
    /// and refused.
    async fn unpack(
        &self,
        stored: &Path,
        app: &AppSettings,
        version: &str,
    ) -> Result<(), StepError> {
        if let Err(e) = pre_extract(stored, app).await {
            let _ = std::fs::remove_dir_all(
                stored
                    .parent()
                    .expect("binary sits in its version directory"),
            );
            return Err(StepError::refused(
                Some(version),
                Refusal::Artifact(format!("cannot unpack on this device: {e:#}")).to_string(),
            ));
        }
        journal::event(
            Event::Extracted,
            &app.name,
            Some(version),
            &[],
            "payload extracted ahead of the swap",
        );
        Ok(())
    }

    /// `verified`: the stored binary is checked again unless this process
    /// stored it; then the install gate (window, inhibitors) decides
    /// whether it is swapped in now or waits.
    pub(super) async fn verified(
        &self,
        job: &mut Job<'_>,
        target: Release,
    ) -> Result<Flow, StepError> {
        if !self.is_fresh(&target.sha256) {
            let ok = ferry_format::digest::sha256_file(&job.store.binary_path(&target))
                .ok()
                .is_some_and(|(sha, _)| sha == target.sha256);
            if !ok {
                self.abandon_and_poll(job)?;
                return Ok(Flow::Next);
            }
            self.remember_fresh(&target.sha256);
        }
        let verdict = self.gate_verdict(&job.app, &job.intent);
        if let Some(why) = verdict {
            if job.state.waiting.as_deref() != Some(why.as_str()) {
                self.transition(job, Step::Wait(Some(why.clone())))?;
            }
            return Ok(Flow::Done(Outcome::Waiting(format!(
                "{} is verified and waits: {why}",
                target.version
            ))));
        }
        failpoint::hit("before-swap");
        job.store.swap_to(&target, job.state.current.as_ref())?;
        failpoint::hit("after-swap");
        self.transition(job, Step::Swapped)?;
        Ok(Flow::Next)
    }

    /// An operator's file (the agent's private copy): checked, stored,
    /// pre-extracted, then through the same `verified` step as a download.
    pub(super) async fn take_file(
        &self,
        job: &mut Job<'_>,
        file: &Path,
        force: bool,
    ) -> Result<Flow, StepError> {
        let target = self.check_file(job, file, force)?;
        self.store_file(job, file, target).await
    }

    /// Checks an operator's file against the app's release keys from the
    /// stored metadata, and against going back (older or denied) unless
    /// `force`; changes nothing, so a refusal leaves any hold in place.
    pub(super) fn check_file(
        &self,
        job: &Job<'_>,
        file: &Path,
        force: bool,
    ) -> Result<Release, StepError> {
        let app = &job.app;
        let mut f = std::fs::File::open(file).context("cannot open the copy")?;
        let c = ferry_format::Container::read_from(&mut f)
            .map_err(|e| StepError::refused(None, format!("not a ferry binary: {e}")))?;
        let version = c.metadata.version.clone();
        let dir = crate::trust::TrustDir::open(&self.settings.state_dir)?;
        let apps: Vec<&str> = self.settings.apps.iter().map(|a| a.name.as_str()).collect();
        let set = dir.load(&self.settings.root, &apps)?;
        let targets = set.targets().map(|t| &t.doc).ok_or_else(|| {
            StepError::refused(
                Some(&version),
                "the device holds no repository metadata yet, so it knows no release keys: let it reach the repository once",
            )
        })?;
        let (keys, _) = verify::release_keys(targets, &app.name);
        if keys.is_empty() {
            return Err(StepError::refused(
                Some(&version),
                format!("the repository delegates no release keys to `{}`", app.name),
            ));
        }
        verify::check_artifact(file, ArtifactKind::Ferry, &keys, &app.name, &version)
            .map_err(|r| StepError::refused(Some(&version), r.to_string()))?;
        let (sha256, size) = ferry_format::digest::sha256_file(file).context("hashing the copy")?;
        let current = job.state.current.clone();
        let older = current
            .as_ref()
            .is_some_and(|cur| ferry_format::version::is_older(&version, &cur.version));
        let denied = job.state.denied.iter().any(|d| d.sha256 == sha256);
        if (older || denied) && !force {
            return Err(StepError::refused(
                Some(&version),
                format!(
                    "{} {version} is {} (a replayed old release is a rollback attack); pass --force to install it anyway",
                    app.name,
                    if denied {
                        "on the deny list: it was rolled back before".to_owned()
                    } else {
                        format!(
                            "older than the current {}",
                            current.map(|c| c.version).unwrap_or_default()
                        )
                    }
                ),
            ));
        }
        if older || denied {
            log::warn!(
                "installing {} {version} by --force although it is older or denied",
                app.name
            );
        }
        Ok(Release {
            version: version.clone(),
            serial: job.state.last_serial,
            dir: Release::dir_name(&version, &sha256),
            sha256,
            size,
        })
    }

    /// Stores a checked operator's file as `target` and unpacks it.
    pub(super) async fn store_file(
        &self,
        job: &mut Job<'_>,
        file: &Path,
        target: Release,
    ) -> Result<Flow, StepError> {
        let app = job.app.clone();
        self.transition(job, Step::AttemptFrom(None))?;
        self.transition(job, Step::StartDownload(target.clone()))?;
        let stored = job.store.store_binary(file, &target)?;
        self.unpack(&stored, &app, &target.version).await?;
        self.remember_fresh(&target.sha256);
        self.transition(job, Step::Verified)?;
        debug_assert!(matches!(job.state.phase, Phase::Verified { .. }));
        Ok(Flow::Next)
    }
}

/// Runs the new binary's extraction (the launcher unpacks and exits) into
/// the app's cache root, as root, so a restart costs no unpacking and a
/// release that cannot unpack here never becomes current. The root is
/// root-owned and 0755, so the launcher makes the tree readable, never
/// writable, by the app's user: a compromised app cannot change the code its
/// next start runs, nor plant a tree for the next release's build id.
async fn pre_extract(binary: &Path, app: &AppSettings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&app.cache_dir)
        .with_context(|| format!("cannot create `{}`", app.cache_dir.display()))?;
    let me = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    crate::users::secure_dir(&app.cache_dir, 0o755, Some(me))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.env("FERRY_EXTRACT_ONLY", "1")
        .env("FERRY_CACHE_DIR", &app.cache_dir)
        .env_remove("CACHE_DIRECTORY")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    // A large payload on a slow card can take longer than the watchdog's
    // period: the running extraction, bounded by its own deadline, feeds it.
    let out = fed_while(tokio::time::timeout(EXTRACT_DEADLINE, cmd.output()))
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

/// Awaits `work`, feeding systemd's watchdog meanwhile: for steps bounded
/// by a deadline of their own that may outlast the watchdog's period.
async fn fed_while<F: std::future::Future>(work: F) -> F::Output {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => notify::watchdog(),
        }
    }
}

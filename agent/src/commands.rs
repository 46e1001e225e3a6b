//! The operator's commands (`ferryd check|install|rollback|switch`). While
//! the service runs with the same configuration they are clients of its
//! D-Bus API, so they queue behind whatever it is doing; otherwise they
//! drive the update in this process, holding the state directory's lock,
//! which the service holds for as long as it runs: two drivers never work
//! on one device at once.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

use crate::api::client::Service;
use crate::config::Settings;
use crate::driver::{Agent, Intent, Outcome};
use crate::repo::{RepoClient, RepoConfig};
use crate::systemd::SystemdBus;

/// What an operator asked for.
#[derive(Debug, Clone)]
pub enum Operation {
    /// Poll now (one app, or every app).
    Check(Option<String>),
    /// Install a signed file.
    Install {
        /// The file.
        file: std::path::PathBuf,
        /// Older, denied, inhibited: install anyway.
        force: bool,
    },
    /// Follow another channel.
    Switch {
        /// The app.
        app: String,
        /// The channel.
        channel: String,
    },
    /// Back to the previous version.
    Rollback(String),
}

/// Runs `op`, printing one line per app; the exit code says whether it
/// succeeded.
pub async fn run(op: Operation, settings: Settings, config: &Path) -> Result<ExitCode> {
    let ok = match Service::find().await {
        Some(service) if service.serves(config).await => {
            through_service(&service, &op, &settings).await?
        }
        _ => in_process(&op, settings).await?,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn through_service(service: &Service, op: &Operation, settings: &Settings) -> Result<bool> {
    let show = |app: &str, (outcome, message): (String, String)| {
        println!("{app}: {message}");
        matches!(
            outcome.as_str(),
            "up_to_date" | "committed" | "skipped" | "waiting"
        )
    };
    match op {
        Operation::Check(app) => {
            let mut ok = true;
            for name in apps(settings, app.as_deref())? {
                ok &= show(&name, service.check(&name).await?);
            }
            Ok(ok)
        }
        Operation::Install { file, force } => {
            let (app, answer) = service.install(file, *force).await?;
            Ok(show(&app, answer))
        }
        Operation::Switch { app, channel } => {
            service.switch_channel(app, channel).await?;
            println!("{app}: following channel `{channel}` from the next poll");
            Ok(true)
        }
        Operation::Rollback(app) => {
            let answer = service.rollback(app).await?;
            Ok(show(app, answer.clone()) || answer.0 == "rolled_back")
        }
    }
}

async fn in_process(op: &Operation, settings: Settings) -> Result<bool> {
    let _lock = lock_state_dir(&settings.state_dir)?;
    let agent = local_agent(settings).await?;
    let show = |app: &str, outcome: &Outcome| {
        println!("{app}: {}", outcome.message());
        outcome.is_success()
    };
    let ok = match op {
        Operation::Check(app) => {
            let mut ok = true;
            for name in apps(&agent.settings, app.as_deref())? {
                let a = agent.settings.app(&name)?.clone();
                ok &= show(&name, &agent.drive(&a, Intent::Poll).await?);
            }
            ok
        }
        Operation::Install { file, force } => {
            let mut src = std::fs::File::open(file)
                .with_context(|| format!("cannot open `{}`", file.display()))?;
            let c = ferry_format::Container::read_from(&mut src)
                .with_context(|| format!("`{}`", file.display()))?;
            let app = agent.settings.app(&c.metadata.name)?.clone();
            let store = crate::store::Store::open(&agent.settings.state_dir, &app.name)?;
            let copy = store.incoming_path("install");
            copy_private(&mut src, &copy)?;
            drop(src);
            let intent = Intent::Install {
                copy,
                force: *force,
            };
            let outcome = agent
                .drive(&app, intent)
                .await
                .with_context(|| format!("`{}` refused", file.display()))?;
            show(&app.name, &outcome)
        }
        Operation::Switch { app, channel } => {
            let a = agent.settings.app(app)?.clone();
            agent.switch_channel(&a, channel)?;
            println!("{app}: following channel `{channel}` from the next poll");
            true
        }
        Operation::Rollback(app) => {
            let a = agent.settings.app(app)?.clone();
            let outcome = agent.drive(&a, Intent::Rollback).await?;
            show(app, &outcome) || matches!(outcome, Outcome::RolledBack(_))
        }
    };
    agent.flush_reports().await;
    Ok(ok)
}

fn apps(settings: &Settings, one: Option<&str>) -> Result<Vec<String>> {
    Ok(match one {
        Some(name) => vec![settings.app(name)?.name.clone()],
        None => settings.apps.iter().map(|a| a.name.clone()).collect(),
    })
}

/// Takes the lock that makes this process the device's one driver: the
/// service holds it while it runs, a command while it works.
pub fn lock_state_dir(state_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create `{}`", state_dir.display()))?;
    let path = state_dir.join(".agent.lock");
    ferry_fsutil::try_lock(&path)
        .with_context(|| format!("cannot lock `{}`", path.display()))?
        .with_context(|| {
            format!(
                "another ferryd drives the updates of `{}` right now (the service, or another command)\nhint: run the command with the service's configuration, so it goes through the service, or wait for the other command to end",
                state_dir.display()
            )
        })
}

/// The agent on the system bus's systemd, with the repository and reports
/// of `settings`.
pub async fn local_agent(settings: Settings) -> Result<Agent<SystemdBus>> {
    let repo = RepoClient::new(RepoConfig {
        base_url: settings.repository.clone(),
        ca_file: settings.ca_file.clone(),
        connect_timeout: settings
            .network_timeout
            .min(std::time::Duration::from_secs(15)),
        idle_timeout: settings.network_timeout,
        max_artifact_size: settings.max_artifact_size,
        download_deadline: settings.download_deadline,
    })?;
    let units = SystemdBus::system().await?;
    let reports = match &settings.report_url {
        Some(_) => Some(crate::report::ReportQueue::open(
            &settings.state_dir,
            crate::report::DEFAULT_MAX_ENTRIES,
        )?),
        None => None,
    };
    Ok(Agent::new(settings, units, repo, reports))
}

/// Copies an open file into `dest` (created 0600, no symlink followed,
/// fsynced): the agent's private copy of an operator's file.
pub fn copy_private(src: &mut std::fs::File, dest: &Path) -> Result<()> {
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
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(dest)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    src.seek(std::io::SeekFrom::Start(0))?;
    std::io::copy(src, &mut out)
        .with_context(|| format!("cannot copy into `{}`", dest.display()))?;
    out.sync_all()?;
    Ok(())
}

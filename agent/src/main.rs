//! `ferryd`: parse the command line, set up logging, run, map the outcome to an
//! exit code. 0: success; 1: the operation failed; 78: bad configuration (the
//! unit's `RestartPreventExitStatus=78` keeps systemd from restart-looping on it).

use std::process::ExitCode;

use clap::Parser as _;
use ferryd::cli::{Cli, Command};
use ferryd::config::Settings;
use ferryd::repo::{RepoClient, RepoConfig};
use ferryd::systemd::SystemdBus;
use ferryd::update::{Agent, Outcome};

/// Exit status for configuration errors.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    // A closed stdout (`ferryd status | head`) ends the process quietly.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    ferryd::journal::init(cli.verbose);
    if ferryd::config::is_unconfigured(&cli.config) {
        let message = ferryd::config::unconfigured_message(&cli.config);
        if matches!(cli.command, Command::Run) {
            return match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(ferryd::service::wait_unconfigured(&message)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferryd: error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        eprintln!("ferryd: error: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferryd: error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferryd: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ferryd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn agent(settings: Settings) -> anyhow::Result<Agent<SystemdBus>> {
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
        Some(_) => Some(ferryd::report::ReportQueue::open(
            &settings.state_dir,
            ferryd::report::DEFAULT_MAX_ENTRIES,
        )?),
        None => None,
    };
    Ok(Agent {
        settings,
        units,
        repo,
        reports,
    })
}

fn report(app: &str, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::UpToDate => println!("{app}: up to date"),
        Outcome::Committed(v) => println!("{app}: updated to {v}"),
        Outcome::RolledBack(m) => println!("{app}: rolled back: {m}"),
        Outcome::Refused(m) => println!("{app}: refused: {m}"),
        Outcome::Skipped(m) => println!("{app}: skipped: {m}"),
        Outcome::Hold(m) => println!("{app}: HOLD: {m}"),
    }
    !matches!(
        outcome,
        Outcome::Refused(_) | Outcome::Hold(_) | Outcome::RolledBack(_)
    )
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Status { json } => {
            let v = ferryd::status::collect(&settings)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                ferryd::status::print_human(&v);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            ferryd::service::run(agent(settings).await?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { app } => {
            let agent = agent(settings).await?;
            let apps: Vec<_> = match &app {
                Some(name) => vec![agent.settings.app(name)?.clone()],
                None => agent.settings.apps.clone(),
            };
            let mut ok = true;
            for a in &apps {
                ok &= report(&a.name, &agent.check_app(a).await?);
            }
            agent.flush_reports().await;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Install { file, force } => {
            let agent = agent(settings).await?;
            let outcome = agent.install_file(&file, force).await?;
            agent.flush_reports().await;
            Ok(if report(&file.display().to_string(), &outcome) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Switch { app, channel } => {
            let agent = agent(settings).await?;
            let a = agent.settings.app(&app)?.clone();
            agent.switch_channel(&a, &channel)?;
            println!("{app}: following channel `{channel}` from the next poll");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback { app } => {
            let agent = agent(settings).await?;
            let a = agent.settings.app(&app)?.clone();
            let outcome = agent.rollback(&a).await?;
            agent.flush_reports().await;
            println!("{app}: {outcome:?}");
            Ok(if matches!(outcome, Outcome::RolledBack(_)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

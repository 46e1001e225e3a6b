//! `ferryd`: parse the command line, set up logging, hand the command to
//! its module, map the outcome to an exit code. 0: success; 1: the
//! operation failed; 78: bad configuration (the unit's
//! `RestartPreventExitStatus=78` keeps systemd from restart-looping on it).

use std::process::ExitCode;

use clap::Parser as _;
use ferryd::cli::{Cli, Command};
use ferryd::commands::Operation;
use ferryd::config::Settings;

/// Exit status for configuration errors.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    // A closed stdout (`ferryd status | head`) ends the process quietly.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();
    ferryd::journal::init(cli.verbose);
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
    if ferryd::config::is_unconfigured(&cli.config) {
        let message = ferryd::config::unconfigured_message(&cli.config);
        if matches!(cli.command, Command::Run) {
            return finish(
                rt.block_on(ferryd::service::wait_unconfigured(&message))
                    .map(|()| ExitCode::SUCCESS),
            );
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
    let operation = match cli.command {
        Command::Status { json } => {
            return finish(ferryd::status::print(&settings, json).map(|()| ExitCode::SUCCESS))
        }
        Command::Run => {
            return finish(
                rt.block_on(ferryd::service::run(settings, cli.config))
                    .map(|()| ExitCode::SUCCESS),
            )
        }
        Command::Check { app } => Operation::Check(app),
        Command::Install { file, force } => Operation::Install { file, force },
        Command::Switch { app, channel } => Operation::Switch { app, channel },
        Command::Rollback { app } => Operation::Rollback(app),
    };
    finish(rt.block_on(ferryd::commands::run(operation, settings, &cli.config)))
}

fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("ferryd: error: {e:#}");
        ExitCode::FAILURE
    })
}

//! The `ferry` packager: keys, signing, checking and inspecting ferry binaries.
//! `main.rs` only parses and reports; each subcommand lives in `commands/`
//! (`build` in `build/`), and commands share code only through the modules
//! here, never by importing one another.

pub mod build;
pub mod cli;
pub mod commands;
pub mod errors;
pub mod keyfile;
pub mod log;
pub mod process;
pub mod python;
pub mod release;
pub mod reports;
pub mod repository;
pub mod target;
pub mod terminal;

use std::process::ExitCode;

/// Runs one parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Keygen(args) => commands::keygen::run(args),
        cli::Command::Sign(args) => commands::sign::run(args),
        cli::Command::Verify(args) => commands::verify::run(args),
        cli::Command::Inspect(args) => commands::inspect::run(args),
        cli::Command::Build(args) => build::run(args),
        cli::Command::Publish(args) => commands::publish::run(args),
        cli::Command::Rollout(args) => commands::rollout::run(args),
        cli::Command::Repo(args) => commands::repo::run(args),
        cli::Command::Collect(args) => commands::collect::run(args),
        cli::Command::Fleet(args) => commands::fleet::run(args),
        cli::Command::Cache(args) => commands::cache::run(args),
    }
}

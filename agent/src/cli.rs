//! The command line of `ferryd`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The ferry update agent: fetches, verifies and installs signed releases,
/// restarts apps through systemd, and rolls back unhealthy ones.
#[derive(Debug, Parser)]
#[command(name = "ferryd", version, about, long_about = None)]
pub struct Cli {
    /// Agent configuration.
    #[arg(long, short = 'c', global = true, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// More log output.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as the service: poll every interval, update, supervise (Type=notify).
    Run,
    /// Poll the repository once now, for every app or one.
    Check {
        /// Only this app.
        app: Option<String>,
    },
    /// Show what is installed, current and previous, and the last result.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a signed ferry binary from a file (offline update), with the
    /// same checks, restart, health check and rollback as a network update.
    Install {
        /// The signed ferry binary.
        file: PathBuf,
        /// Install it even when it is older than the current version or on
        /// the deny list (a rollback attack if the file is not yours).
        #[arg(long)]
        force: bool,
    },
    /// Follow another channel (e.g. `beta`) for an app, from the next poll.
    Switch {
        /// The app.
        app: String,
        /// The channel to follow.
        channel: String,
    },
    /// Go back to the previous version of an app and mark the current one bad.
    Rollback {
        /// The app.
        app: String,
    },
}

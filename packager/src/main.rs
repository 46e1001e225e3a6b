//! `ferry`: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = ferry::cli::Cli::parse();
    match ferry::run(cli) {
        Ok(code) => code,
        Err(err) => {
            ferry::report::print_error(&err);
            ExitCode::FAILURE
        }
    }
}

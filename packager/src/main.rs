//! `ferry`: parse the command line, run it, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // A closed stdout (`ferry inspect X | head`) ends the process quietly,
    // as it does any Unix tool, instead of a panic on the broken pipe.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ferry::keyfile::take_password_from_env();
    let cli = ferry::cli::Cli::parse();
    match ferry::run(cli) {
        Ok(code) => code,
        Err(err) => {
            ferry::errors::print_error(&err);
            ExitCode::FAILURE
        }
    }
}

//! The one printer for what ferry tells a person: notes, warnings and build
//! progress, on stderr, each line starting `ferry:` (progress is bold and
//! timed on a terminal). stdout carries only data — paths, tables, JSON — so
//! it can be piped; errors are printed once, by [`crate::errors`].
//!
//! Writes never panic: a closed or broken stderr loses the line, not the
//! command's result.

use std::fmt::Display;
use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

fn line(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// A line for the person running ferry: what was done, what was left out.
pub fn note(msg: impl Display) {
    line(format_args!("ferry: {msg}"));
}

/// Something that did not stop the command but may need looking at.
pub fn warn(msg: impl Display) {
    line(format_args!("ferry: warning: {msg}"));
}

/// A failure reported without ending the command (a request a server
/// could not store, a check that failed with more to say).
pub fn error(msg: impl Display) {
    line(format_args!("error: {msg}"));
}

/// A line that continues the one before (an error's causes, a tool's
/// output shown as it runs), indented by two spaces.
pub fn indented(msg: impl Display) {
    line(format_args!("  {msg}"));
}

/// Numbered steps with the time since the start: `[2/7] installing … (3.1s)`.
/// The total is what this run will do (a zipapp has fewer steps than a binary).
pub struct Progress {
    start: Instant,
    styled: bool,
    step: usize,
    total: usize,
}

impl Progress {
    /// Starts counting `total` steps now.
    pub fn new(total: usize) -> Self {
        Self {
            start: Instant::now(),
            styled: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            step: 0,
            total,
        }
    }

    /// Announces the next step.
    pub fn step(&mut self, what: &str) {
        self.step += 1;
        let t = self.start.elapsed().as_secs_f64();
        let (n, total) = (self.step, self.total.max(self.step));
        if self.styled {
            line(format_args!(
                "\x1b[1m[{n}/{total}]\x1b[0m {what} \x1b[2m({t:.1}s)\x1b[0m"
            ));
        } else {
            line(format_args!("ferry: [{n}/{total}] {what} ({t:.1}s)"));
        }
    }

    /// Seconds since the start, for the closing line.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

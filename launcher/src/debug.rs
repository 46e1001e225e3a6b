//! `FERRY_DEBUG=1` tracing: one line per step on stderr, prefixed
//! `ferry-launcher:` and stamped with the microseconds since the launcher
//! started, so a slow cold start or a surprising cache choice can be seen
//! without a debugger. Off (and costing one branch) otherwise: the launcher is
//! silent unless something is wrong.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static ENABLED: AtomicBool = AtomicBool::new(false);
static START: OnceLock<Instant> = OnceLock::new();

/// Whether an environment value turns a switch on: set, non-empty, not `0`.
pub fn is_on(value: Option<std::ffi::OsString>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reads `FERRY_DEBUG` and starts the clock.
pub fn init() {
    START.get_or_init(Instant::now);
    ENABLED.store(is_on(std::env::var_os("FERRY_DEBUG")), Ordering::Relaxed);
}

/// Whether tracing is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Writes one trace line; use the [`trace!`](crate::trace) macro instead.
pub fn emit(args: fmt::Arguments<'_>) {
    let us = START.get().map_or(0, |s| s.elapsed().as_micros());
    // A failed write to stderr cannot be reported anywhere: ignore it.
    let _ = writeln!(
        std::io::stderr().lock(),
        "ferry-launcher: [{us:>8}us] {args}"
    );
}

/// Traces one step when `FERRY_DEBUG` is on; formats nothing otherwise.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::debug::enabled() {
            $crate::debug::emit(format_args!($($arg)*));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_values() {
        assert!(!is_on(None));
        assert!(!is_on(Some("".into())));
        assert!(!is_on(Some("0".into())));
        assert!(is_on(Some("1".into())));
        assert!(is_on(Some("yes".into())));
    }
}

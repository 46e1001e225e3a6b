//! `ferry-launcher`: the native stub at the head of every ferry binary. It
//! reads the payload appended to its own file, unpacks it once into a cache
//! (`<root>/<name>/<build id>/`), and `exec`s the interpreter with the entry
//! script, so the app keeps this process's PID, arguments, stdin and
//! environment. Silent unless something is wrong; `FERRY_DEBUG=1` traces each
//! step on stderr. `FERRY_EXTRACT_ONLY=1` unpacks, prints the directory and
//! exits 0. `FERRY_VERIFY=<key file or base64 key>[,…]` checks the embedded
//! signature first.
//!
//! Exit codes (when the launcher itself stops; otherwise the app's own):
//! - 70 (`EX_SOFTWARE`): internal error or a damaged binary — stripped,
//!   truncated, corrupt metadata, an unsafe or unreadable payload, a glibc
//!   older than the binary needs, an interpreter that fails to start;
//! - 77 (`EX_NOPERM`): `FERRY_VERIFY` is set and the signature does not check
//!   out (or a key in it is unusable);
//! - 78 (`EX_CONFIG`): the environment is unsuitable — an unsafe or unusable
//!   cache root (set `FERRY_CACHE_DIR`), no matching Python in system mode.
//!   systemd units can list 78 in `RestartPreventExitStatus=`.

use std::process::ExitCode;

use ferry_launcher::{debug, launch};

fn main() -> ExitCode {
    // Keeps the marker in the read-only data whatever the optimiser does, so
    // `strip` leaves it and a stripped binary is recognised as one of ours.
    std::hint::black_box(ferry_format::container::LAUNCHER_MARKER);
    debug::init();
    match launch::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

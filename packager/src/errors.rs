//! How errors reach the user: `error: …` with each cause on its own line, on
//! stderr (through [`crate::log`]), so stdout stays data.

use crate::log;

/// Prints an error and its chain of causes.
pub fn print_error(err: &anyhow::Error) {
    log::error(err);
    for cause in err.chain().skip(1) {
        log::indented(format!("caused by: {cause}"));
    }
}

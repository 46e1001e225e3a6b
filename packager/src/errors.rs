//! How errors reach the user: `error: …` with each cause on its own line, on
//! stderr, so stdout stays data.

/// Prints an error and its chain of causes.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

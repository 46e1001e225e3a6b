//! One module per subcommand.

pub mod cache;
pub mod collect;
pub mod fleet;
pub mod inspect;
pub mod keygen;
pub mod publish;
pub mod repo;
pub mod rollout;
pub mod sign;
pub mod verify;

use std::fs::File;
use std::path::Path;

use anyhow::{Context as _, Result};
use ferry_format::{Container, ContainerError};

/// What a file turned out to be when opened for signing or checking.
pub enum Opened {
    /// A ferry binary.
    Container(File, Box<Container>),
    /// Any other file.
    Plain(File),
}

/// Opens `path` and reads its container structure if it has one. A file that
/// is not ferry's at all is `Plain`; a damaged ferry binary is an error.
pub fn open(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    match Container::read_from(&mut file) {
        Ok(c) => Ok(Opened::Container(file, Box::new(c))),
        Err(ContainerError::NotFerry(_)) => Ok(Opened::Plain(file)),
        Err(e) => Err(anyhow::Error::new(e).context(format!("`{}`", path.display()))),
    }
}

/// `FILE.minisig`, where minisign looks for a detached signature.
pub fn detached_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".minisig");
    s.into()
}

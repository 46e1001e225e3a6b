//! The launcher's steps, in order (DESIGN §3): read its own container, verify
//! it if asked, check the glibc floor, choose and check the cache root, find or
//! make the extraction, prune old ones after a new extraction, then `exec` the
//! interpreter (or, with `FERRY_EXTRACT_ONLY`, print the directory and stop).
//! Each step's error carries its exit code; `main` prints it.

use std::env;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;

use ferry_format::{Container, ContainerError};

use crate::cache::{self, CacheError};
use crate::cache_root::{self, CacheRootError};
use crate::exec::{self, ExecError};
use crate::glibc::{self, GlibcError};
use crate::lock;
use crate::prune;
use crate::trace;
use crate::verify::{self, VerifyError};

/// Internal error or a damaged binary (stripped, truncated, bad payload).
pub const EXIT_INTERNAL: u8 = 70;
/// `FERRY_VERIFY` is set and the signature does not check out.
pub const EXIT_VERIFY: u8 = 77;
/// The system or its configuration is unsuitable (cache root, missing Python).
pub const EXIT_CONFIG: u8 = 78;

/// Where the launcher reads itself from.
const SELF_EXE: &str = "/proc/self/exe";

/// Why the launcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// `/proc/self/exe` could not be opened.
    #[error("cannot open this program's own file `{SELF_EXE}`: {0}")]
    OpenSelf(io::Error),
    /// The container is stripped, truncated, corrupt…
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// `FERRY_VERIFY` refused the binary.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The system's glibc is too old.
    #[error(transparent)]
    Glibc(#[from] GlibcError),
    /// The cache root is unusable.
    #[error(transparent)]
    CacheRoot(#[from] CacheRootError),
    /// The extraction could not be made.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The run lock could not be handed to the app.
    #[error("cannot keep the run lock open for the app: {0}")]
    KeepLock(io::Error),
    /// The interpreter could not be found or started.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// `FERRY_EXTRACT_ONLY` could not print the directory.
    #[error("cannot print the extraction directory: {0}")]
    Print(io::Error),
}

impl LaunchError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Verify(_) => EXIT_VERIFY,
            Self::CacheRoot(_) => EXIT_CONFIG,
            Self::Cache(e) if e.is_environment() => EXIT_CONFIG,
            Self::Exec(e) => e.exit_code(),
            Self::OpenSelf(_)
            | Self::Container(_)
            | Self::Glibc(_)
            | Self::Cache(_)
            | Self::KeepLock(_)
            | Self::Print(_) => EXIT_INTERNAL,
        }
    }
}

/// Runs the launcher. Returns only in `FERRY_EXTRACT_ONLY` mode or on error;
/// otherwise the process becomes the interpreter.
pub fn run() -> Result<(), LaunchError> {
    let mut file = File::open(SELF_EXE).map_err(LaunchError::OpenSelf)?;
    let container = Container::read_from(&mut file)?;
    let meta = &container.metadata;
    trace!(
        "read {} {} (build {}, {} payload bytes)",
        meta.name,
        meta.version,
        meta.build_id,
        container.trailer.payload_len
    );

    if let Some(setting) = env::var_os("FERRY_VERIFY").filter(|v| !v.is_empty()) {
        verify::verify(&container, &mut file, &setting)?;
    }
    if let Some(floor) = &meta.glibc_floor {
        glibc::check(&meta.name, floor)?;
    }

    let (root, origin) = cache_root::choose(|k| env::var_os(k))?;
    let shared = cache_root::prepare(&root, origin)?;
    trace!("cache root `{}` ({origin})", root.display());

    let name_dir = root.join(&meta.name);
    let range = container.payload_range();
    let source = &file;
    let extraction = cache::ensure(&name_dir, &meta.build_id, shared, || {
        let mut f = source;
        f.seek(SeekFrom::Start(range.start))?;
        Ok(f.take(range.end - range.start))
    })?;
    if extraction.cold {
        prune::prune(&name_dir, &meta.build_id);
        trace!("pruned `{}`", name_dir.display());
    }

    if crate::debug::is_on(env::var_os("FERRY_EXTRACT_ONLY")) {
        let mut out = io::stdout().lock();
        out.write_all(extraction.dir.as_os_str().as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(LaunchError::Print)?;
        trace!("extract only: done");
        return Ok(());
    }

    let interpreter = exec::interpreter(&extraction.dir, meta)?;
    let args = exec::arguments(&extraction.dir, env::args_os(), |k| env::var_os(k));
    let fd = lock::keep_across_exec(extraction.run_lock).map_err(LaunchError::KeepLock)?;
    trace!(
        "exec `{}` (run lock on fd {fd}) with {} arguments",
        interpreter.display(),
        args.len()
    );
    Err(exec::exec(&interpreter, &args).into())
}

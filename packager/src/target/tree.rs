//! A target's interpreter as files on this machine: where its executable,
//! standard library and libraries are, described without running it (it is
//! another architecture's). Made from Debian's packages ([`super::debian`])
//! or from a prefix the user gives ([`super::prefix`]).

use std::path::PathBuf;

use super::Target;

/// A target's interpreter tree.
#[derive(Debug, Clone)]
pub struct PythonTree {
    /// The target it is for.
    pub target: Target,
    /// CPython's version, e.g. `3.11.2`.
    pub version: String,
    /// Its `(major, minor)`.
    pub minor: (u32, u32),
    /// `…/bin/python3.X`.
    pub executable: PathBuf,
    /// `…/lib/python3.X` (holds `os.py` and `lib-dynload/`).
    pub stdlib: PathBuf,
    /// Its `sys.base_prefix` on the build machine.
    pub prefix: PathBuf,
    /// Where a shared libpython is.
    pub libdir: PathBuf,
    /// The shared libpython's file name, when the executable links one.
    pub libpython: Option<String>,
    /// Where the libraries the bundle needs are looked for, in order.
    pub library_dirs: Vec<PathBuf>,
    /// What errors call it, e.g. `Debian 12's arm64 packages unpacked in …`.
    pub label: String,
}

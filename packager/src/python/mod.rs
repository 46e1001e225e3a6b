//! Asking a Python interpreter about itself: a small embedded script run with
//! `-I`, JSON back, typed into [`Interpreter`]. Errors keep the interpreter's
//! stderr so a broken interpreter is explained, not just reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::process;
use crate::target::tree::PythonTree;

/// What ferry needs to know about the build interpreter.
#[derive(Debug, Clone, Deserialize)]
pub struct Interpreter {
    /// The path ferry was given (may be a venv or a shim): what ferry runs
    /// to install, list and compile. In a cross build, the host's Python of
    /// the target's version, while the fields below describe the target's.
    #[serde(skip)]
    pub invoked: PathBuf,
    /// `3.11.7`.
    pub version: String,
    /// 3.
    pub major: u32,
    /// 11.
    pub minor: u32,
    /// `cpython`.
    pub implementation: String,
    /// The real interpreter binary (venvs and symlinks resolved).
    pub executable: PathBuf,
    /// `sys.base_prefix`.
    pub base_prefix: PathBuf,
    /// The standard library directory.
    pub stdlib: PathBuf,
    /// The platform standard library (`lib-dynload`'s parent).
    pub platstdlib: PathBuf,
    /// Where a shared libpython lives.
    pub libdir: PathBuf,
    /// File name of the shared libpython, e.g. `libpython3.11.so.1.0`.
    pub instsoname: String,
    /// Whether libpython is a shared library.
    pub enable_shared: bool,
    /// `x86_64`, `aarch64`, …
    pub machine: String,
    /// Whether `-m pip` works.
    pub has_pip: bool,
}

impl Interpreter {
    /// `python3.11`.
    pub fn versioned_name(&self) -> String {
        format!("python{}.{}", self.major, self.minor)
    }

    /// The interpreter a cross build ships: the target's, from its tree,
    /// described without running it. `invoked` stays the host interpreter
    /// `host`, which installs, lists and compiles bytecode for it; bytecode
    /// is portable only within one minor version, so `host` must be the
    /// target's minor version.
    pub fn for_target(host: &Interpreter, tree: &PythonTree) -> Result<Interpreter> {
        let (major, minor) = tree.minor;
        if (host.major, host.minor) != (major, minor) {
            bail!(
                "the {} interpreter is Python {major}.{minor}, but the build Python `{}` is {}; its bytecode would not load there\nhint: pass --python with a Python {major}.{minor} of this machine (Debian 12: /usr/bin/python{major}.{minor}; pyenv: `pyenv install {major}.{minor}`)",
                tree.target,
                host.invoked.display(),
                host.version
            );
        }
        for needed in [&tree.executable, &tree.stdlib.join("os.py")] {
            if !needed.is_file() {
                bail!(
                    "the {} interpreter in {} has no `{}`\nhint: for a fetched Debian tree, delete that directory so ferry fetches it again",
                    tree.target,
                    tree.label,
                    needed.display()
                );
            }
        }
        Ok(Interpreter {
            invoked: host.invoked.clone(),
            version: tree.version.clone(),
            major,
            minor,
            implementation: "cpython".to_owned(),
            executable: tree.executable.clone(),
            base_prefix: tree.prefix.clone(),
            platstdlib: tree.stdlib.clone(),
            stdlib: tree.stdlib.clone(),
            libdir: tree.libdir.clone(),
            instsoname: tree
                .libpython
                .clone()
                .unwrap_or_else(|| format!("libpython{major}.{minor}.so.1.0")),
            enable_shared: tree.libpython.is_some(),
            machine: tree.target.wheel_machine().to_owned(),
            has_pip: host.has_pip,
        })
    }
}

/// Queries the interpreter at `path` (a path or a name on `PATH`).
pub fn query(path: &Path) -> Result<Interpreter> {
    let resolved = if path.components().count() == 1 {
        process::find_on_path(&path.to_string_lossy()).with_context(|| {
            format!(
                "no Python interpreter `{}` on PATH\nhint: install Python 3 or pass --python /path/to/python3",
                path.display()
            )
        })?
    } else {
        path.to_path_buf()
    };
    if !resolved.exists() {
        bail!(
            "Python interpreter `{}` does not exist\nhint: pass --python with the path of a working python3",
            resolved.display()
        );
    }
    let out = process::run(
        Command::new(&resolved)
            .arg("-I")
            .arg("-c")
            .arg(include_str!("interpreter.py")),
    )
    .with_context(|| {
        format!(
            "`{}` does not work as a Python interpreter\nhint: pass --python with the path of a working python3",
            resolved.display()
        )
    })?;
    let mut interp: Interpreter = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`{}` answered something that is not Python's",
            resolved.display()
        )
    })?;
    if interp.implementation != "cpython" || interp.major != 3 {
        bail!(
            "`{}` is {} {}; ferry freezes CPython 3",
            resolved.display(),
            interp.implementation,
            interp.version
        );
    }
    interp.invoked = resolved;
    Ok(interp)
}

/// A distribution found in a site-packages directory.
#[derive(Debug, Clone, Deserialize)]
pub struct Distribution {
    /// Project name as in its metadata.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// `direct_url.json`'s URL, set for projects installed from a path.
    pub url: Option<String>,
    /// Its own console scripts, name → `module:attr` (a setup.py project's
    /// `entry_points` are known only this way).
    #[serde(default)]
    pub scripts: BTreeMap<String, String>,
}

/// Distributions and console scripts of a site-packages directory.
#[derive(Debug, Clone, Deserialize)]
pub struct SiteContents {
    /// Installed distributions.
    pub dists: Vec<Distribution>,
    /// Console script name → `module:attr`.
    pub console_scripts: BTreeMap<String, String>,
}

/// Lists what was installed into `site`.
pub fn site_contents(interp: &Interpreter, site: &Path) -> Result<SiteContents> {
    let out = process::run(
        Command::new(&interp.invoked)
            .arg("-I")
            .arg("-c")
            .arg(include_str!("distributions.py"))
            .arg(site),
    )?;
    serde_json::from_slice(&out.stdout).context("cannot read the list of installed distributions")
}

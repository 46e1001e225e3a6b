//! Precompiling bytecode at build time with hash-based, unchecked `.pyc` files:
//! they stay valid after extraction (no source timestamps to compare) and spare
//! the device both compiling at start and writing `__pycache__` (read-only
//! devices, `PYTHONDONTWRITEBYTECODE`). Paths inside are made bundle-relative so
//! two builds give identical bytes.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::log;
use crate::process;
use crate::python::Interpreter;

/// Where the `.pyc` files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PycLayout {
    /// `__pycache__/x.cpython-3XY.pyc`: what imports from directories read.
    Cache,
    /// `x.pyc` beside `x.py`: the only place zipimport looks.
    BesideSource,
}

/// Compiles every `.py` under `dirs` (relative to `bundle`).
pub fn compile(
    interp: &Interpreter,
    bundle: &Path,
    dirs: &[&str],
    layout: PycLayout,
) -> Result<()> {
    let mut cmd = Command::new(&interp.invoked);
    cmd.args([
        "-I",
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
    ])
    .arg(bundle)
    .args(["-p", "/"]);
    if layout == PycLayout::BesideSource {
        cmd.arg("-b");
    }
    let mut any = false;
    for d in dirs {
        let p = bundle.join(d);
        if p.exists() {
            cmd.arg(p);
            any = true;
        }
    }
    if !any {
        return Ok(());
    }
    if let Err(e) = process::run(&mut cmd) {
        // Some packages ship files that are not valid Python (templates, Python 2
        // leftovers): those stay uncompiled, as pip leaves them too.
        log::note(format!("some files were not precompiled: {e:#}"));
    }
    Ok(())
}

//! Copying the build interpreter into the bundle for standalone mode: its
//! executable, its standard library (without tests, GUI toolkits and its own
//! site-packages) and its shared libpython. The copy finds its prefix from
//! where it stands (`lib/python3.X/os.py` next to `bin/`), so it runs from any
//! extraction directory.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::addons::copy_path;
use crate::log;
use crate::python::Interpreter;

/// Standard library entries left out: tests, GUI toolkits, installers, the
/// static library of `config-*`, and the interpreter's own packages.
const STDLIB_EXCLUDED: &[&str] = &[
    "site-packages",
    "dist-packages",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "turtle.py",
    "ensurepip",
    "__pycache__",
];

/// Files distributions add to the standard library that only make sense on
/// the machine they were installed on (Debian's sitecustomize links into
/// /etc and loads apport; EXTERNALLY-MANAGED guards the host's own packages).
const DISTRIBUTION_HOOKS: &[&str] = &["sitecustomize.py", "usercustomize.py", "EXTERNALLY-MANAGED"];

/// Nested test packages of the standard library.
const STDLIB_EXCLUDED_NESTED: &[&str] = &[
    "unittest/test",
    "ctypes/test",
    "sqlite3/test",
    "distutils/tests",
    "tkinter/test",
    "lib2to3/tests",
];

/// Extension modules left out: test modules, Tk (would pull in X11) and the
/// deprecated `nis` (would pull in libtirpc and Kerberos).
fn dynload_excluded(name: &str) -> bool {
    [
        "_tkinter",
        "_test",
        "xxlimited",
        "_xxtestfuzz",
        "_ctypes_test",
        "xxsubtype",
        "nis.",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

fn copy_filtered(from: &Path, to: &Path, rel: &str) -> Result<()> {
    fs::create_dir_all(to)?;
    let mut entries: Vec<_> = fs::read_dir(from)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if (rel.is_empty()
            && (STDLIB_EXCLUDED.contains(&name.as_str()) || name.starts_with("config-")))
            || name == "__pycache__"
            || STDLIB_EXCLUDED_NESTED.contains(&child_rel.as_str())
            || (rel == "lib-dynload" && dynload_excluded(&name))
        {
            continue;
        }
        if rel.is_empty() && DISTRIBUTION_HOOKS.contains(&name.as_str()) {
            log::note(format!("left out `{}` of the build interpreter: a distribution's hook that assumes the build host",
                e.path().display()));
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_filtered(&e.path(), &to.join(&name), &child_rel)?;
        } else if ft.is_symlink() && fs::read_link(e.path())?.is_absolute() {
            // Debian links parts of the stdlib into /etc: the bundle carries
            // the file itself (a link out of the bundle would not exist on
            // the device, and the launcher refuses one).
            match fs::metadata(e.path()) {
                Ok(m) if m.is_file() => {
                    fs::copy(e.path(), to.join(&name))
                        .with_context(|| format!("cannot copy `{}`", e.path().display()))?;
                }
                _ => log::note(format!(
                    "left out `{}`: a link to `{}`, which is not a file here",
                    e.path().display(),
                    fs::read_link(e.path())?.display()
                )),
            }
        } else {
            copy_path(&e.path(), &to.join(&name))?;
        }
    }
    Ok(())
}

/// Copies the interpreter under `<bundle>/python/`; returns the executable's
/// path relative to the bundle root.
pub fn copy_interpreter(interp: &Interpreter, bundle: &Path) -> Result<String> {
    let name = interp.versioned_name();
    let prefix = bundle.join("python");
    let bin = prefix.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(&interp.executable, bin.join(&name)).with_context(|| {
        format!(
            "cannot copy the interpreter `{}`",
            interp.executable.display()
        )
    })?;
    std::os::unix::fs::symlink(&name, bin.join("python3"))?;
    let stdlib_dest = prefix.join("lib").join(&name);
    copy_filtered(&interp.stdlib, &stdlib_dest, "").with_context(|| {
        format!(
            "cannot copy the standard library `{}`",
            interp.stdlib.display()
        )
    })?;
    if interp.platstdlib != interp.stdlib {
        let dynload = interp.platstdlib.join("lib-dynload");
        if dynload.is_dir() {
            copy_filtered(&dynload, &stdlib_dest.join("lib-dynload"), "lib-dynload")?;
        }
    }
    if interp.enable_shared && !interp.instsoname.is_empty() {
        let lib = interp.libdir.join(&interp.instsoname);
        fs::copy(&lib, prefix.join("lib").join(&interp.instsoname))
            .with_context(|| format!("cannot copy libpython `{}`", lib.display()))?;
    }
    Ok(format!("python/bin/{name}"))
}

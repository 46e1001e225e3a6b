//! Where the example projects in `examples/` live, and what they promise. The
//! tests here keep each example honest: its metadata agrees with itself, its
//! pins hold, and it runs as documented, so the examples never go stale.

use std::path::PathBuf;

/// The version in `examples/simple_api` (`pyproject.toml` and `__version__`),
/// which `--version` and `/version` report.
pub const SIMPLE_API_VERSION: &str = "1.0.0";

/// The version in `examples/c_addon/pyproject.toml`.
pub const C_ADDON_VERSION: &str = "0.1.0";

/// `<workspace>/examples/<name>`.
pub fn dir(name: &str) -> PathBuf {
    crate::workspace_root().join("examples").join(name)
}

/// `examples/simple_api`: a Flask API with probe flags (`--version`,
/// `--echo-args`, `--cat`, `--exit N`, `--env-probe`), entry point
/// `simple-api = simple_api.app:main`, no `ferry.toml`.
pub fn simple_api() -> PathBuf {
    dir("simple_api")
}

/// `examples/c_addon`: a ctypes caller of libgreet, which its `ferry.toml`
/// builds with a build add-on; prints `hello from libgreet` then `5`.
pub fn c_addon() -> PathBuf {
    dir("c_addon")
}

#[cfg(test)]
mod tests;

/// A copy of `examples/simple_api` under `dest` at `version`, with `patch`
/// (`from`, `to`) applied to `simple_api/app.py` if given: the releases the
/// agent's tests and the demo publish.
pub fn simple_api_variant(
    dest: &std::path::Path,
    version: &str,
    patch: Option<(&str, &str)>,
) -> anyhow::Result<PathBuf> {
    use anyhow::{bail, Context as _};
    let p = dest.join(format!("simple_api-{version}"));
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(simple_api())
        .arg(&p)
        .status()
        .context("cannot run cp")?;
    if !status.success() {
        bail!("cannot copy the simple_api example to `{}`", p.display());
    }
    let _ = std::fs::remove_dir_all(p.join("build"));
    let _ = std::fs::remove_dir_all(p.join("dist"));
    let edit = |rel: &str, from: &str, to: &str| -> anyhow::Result<()> {
        let f = p.join(rel);
        let t = std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read `{}`", f.display()))?;
        if !t.contains(from) {
            bail!("`{from}` is not in `{rel}` of the simple_api example");
        }
        std::fs::write(&f, t.replacen(from, to, 1))?;
        Ok(())
    };
    edit(
        "simple_api/__init__.py",
        &format!("__version__ = \"{SIMPLE_API_VERSION}\""),
        &format!("__version__ = \"{version}\""),
    )?;
    edit(
        "pyproject.toml",
        &format!("version = \"{SIMPLE_API_VERSION}\""),
        &format!("version = \"{version}\""),
    )?;
    if let Some((from, to)) = patch {
        edit("simple_api/app.py", from, to)?;
    }
    Ok(p)
}

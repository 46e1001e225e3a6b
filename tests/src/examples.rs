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

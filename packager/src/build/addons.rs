//! Build add-ons, pop-build's idea in TOML: fetch pinned sources, run make
//! steps in a scratch directory, copy what they built (`src`) into the bundle
//! (`dest`). A wrong checksum or a failing step stops the build with the step's
//! output.

use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use ferry_format::digest::sha256_file;
use serde::Deserialize;

use crate::process;

/// One file an add-on needs, pinned by SHA-256.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `https://…`, `http://…` or `file://…`.
    pub url: Option<String>,
    /// A local path, relative to the project directory.
    pub path: Option<PathBuf>,
    /// Lowercase hex SHA-256 the file must have.
    pub sha256: String,
}

/// `src`: one path or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SrcSpec {
    /// One file or directory.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `[build.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddonConfig {
    /// Pinned inputs, placed in the scratch directory by file name.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// Shell steps, run in order in the scratch directory.
    #[serde(default)]
    pub make: Vec<String>,
    /// What to take from the scratch directory.
    pub src: SrcSpec,
    /// Where it goes, relative to the bundle root; a trailing `/` means "into".
    pub dest: String,
}

fn relative_inside(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Places one source in `scratch`, checking its hash.
fn fetch(name: &str, spec: &SourceSpec, project_dir: &Path, scratch: &Path) -> Result<()> {
    let (label, local): (String, Option<PathBuf>) = match (&spec.path, &spec.url) {
        (Some(p), None) => (p.display().to_string(), Some(project_dir.join(p))),
        (None, Some(u)) if u.starts_with("file://") => (u.clone(), Some(PathBuf::from(&u[7..]))),
        (None, Some(u)) if u.starts_with("https://") || u.starts_with("http://") => {
            (u.clone(), None)
        }
        (None, Some(u)) => bail!("[build.{name}] source url `{u}` is not http(s):// or file://"),
        _ => bail!("[build.{name}] each source needs exactly one of `path` or `url`"),
    };
    let file_name = label
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && relative_inside(n))
        .with_context(|| format!("[build.{name}] cannot tell a file name from `{label}`"))?;
    let dest = scratch.join(file_name);
    match local {
        Some(path) => {
            fs::copy(&path, &dest).with_context(|| {
                format!("[build.{name}] cannot read source `{}`", path.display())
            })?;
        }
        None => {
            process::run(
                Command::new("curl")
                    .args(["-fsSL", "--retry", "2", "-o"])
                    .arg(&dest)
                    .arg(&label),
            )
            .with_context(|| format!("[build.{name}] cannot download `{label}`"))?;
        }
    }
    let (got, _) =
        sha256_file(&dest).with_context(|| format!("cannot read `{}`", dest.display()))?;
    if !got.eq_ignore_ascii_case(&spec.sha256) {
        bail!(
            "[build.{name}] source `{label}` has sha256 {got}, but {} is pinned\nhint: if the new file is the one you trust, update `sha256` in the project's config",
            spec.sha256
        );
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        let mut entries: Vec<_> = fs::read_dir(from)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if meta.file_type().is_symlink() {
        let target = fs::read_link(from)?;
        let _ = fs::remove_file(to);
        std::os::unix::fs::symlink(target, to)?;
    } else {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(from, to)?;
    }
    Ok(())
}

/// Runs one add-on and copies its output into `bundle`.
pub fn run(
    name: &str,
    cfg: &AddonConfig,
    project_dir: &Path,
    bundle: &Path,
    python: &Path,
    target_env: &[(&'static str, std::ffi::OsString)],
) -> Result<()> {
    if !relative_inside(cfg.dest.trim_end_matches('/')) && cfg.dest != "./" {
        bail!(
            "[build.{name}] dest `{}` must be a relative path inside the bundle",
            cfg.dest
        );
    }
    let scratch = tempfile::Builder::new()
        .prefix(&format!("ferry-addon-{name}-"))
        .tempdir()
        .context("cannot create a scratch directory")?;
    for spec in &cfg.sources {
        fetch(name, spec, project_dir, scratch.path())?;
    }
    let mut env: Vec<(&str, &OsStr)> = vec![
        ("FERRY_BUNDLE", bundle.as_os_str()),
        ("FERRY_PYTHON", python.as_os_str()),
    ];
    env.extend(target_env.iter().map(|(k, v)| (*k, v.as_os_str())));
    for (i, step) in cfg.make.iter().enumerate() {
        process::shell(step, scratch.path(), &env).with_context(|| {
            format!(
                "[build.{name}] make step {} of {} failed: `{step}`",
                i + 1,
                cfg.make.len()
            )
        })?;
    }
    let srcs = match &cfg.src {
        SrcSpec::One(s) => vec![s.clone()],
        SrcSpec::Many(v) => v.clone(),
    };
    let into_dir = cfg.dest.ends_with('/') || srcs.len() > 1;
    for src in &srcs {
        if !relative_inside(src) {
            bail!(
                "[build.{name}] src `{src}` must be a relative path inside the scratch directory"
            );
        }
        let from = scratch.path().join(src);
        if !from.exists() {
            bail!(
                "[build.{name}] src `{src}` was not produced by the make steps\nhint: check the path against what the steps build"
            );
        }
        let to = if into_dir {
            bundle
                .join(&cfg.dest)
                .join(from.file_name().unwrap_or_default())
        } else {
            bundle.join(&cfg.dest)
        };
        copy_tree(&from, &to)
            .with_context(|| format!("[build.{name}] cannot copy `{src}` to `{}`", cfg.dest))?;
    }
    Ok(())
}

/// Copies a tree (used for the interpreter and run.py too).
pub fn copy_path(from: &Path, to: &Path) -> Result<()> {
    copy_tree(from, to)
}

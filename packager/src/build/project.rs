//! Reading a project directory: `pyproject.toml` (PEP 621 `[project]` and
//! `[tool.ferry]`), `ferry.toml`, `setup.py`, `requirements.txt`, `run.py`.
//! Only reading and shape-checking happens here; precedence is `settings.rs`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Deserialize;

use super::addons::AddonConfig;

/// The keys `ferry.toml` and `[tool.ferry]` accept.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// Application name.
    pub name: Option<String>,
    /// Application version.
    pub version: Option<String>,
    /// Entry point: `module:function`, a console-script name, or a `.py` file.
    pub entry: Option<String>,
    /// `standalone`, `system` or `pyz`.
    pub mode: Option<String>,
    /// Interpreter to freeze.
    pub python: Option<PathBuf>,
    /// Requirements files, relative to the project.
    pub requirements: Option<Vec<PathBuf>>,
    /// Extra requirement specifiers.
    pub with: Option<Vec<String>>,
    /// Output path, relative to the project.
    pub output: Option<PathBuf>,
    /// zstd level of the payload (1–22).
    pub compression_level: Option<i32>,
    /// Build add-ons by name.
    #[serde(default)]
    pub build: BTreeMap<String, AddonConfig>,
}

/// PEP 621 `[project]`, the parts ferry reads.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProjectTable {
    /// `name`.
    pub name: Option<String>,
    /// `version` (absent when dynamic).
    pub version: Option<String>,
    /// `[project.scripts]`.
    #[serde(default)]
    pub scripts: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct Pyproject {
    project: Option<ProjectTable>,
    tool: Option<Tool>,
}

#[derive(Debug, Default, Deserialize)]
struct Tool {
    ferry: Option<toml::Value>,
}

/// Everything read from a project directory.
#[derive(Debug, Default, Clone)]
pub struct Project {
    /// The directory.
    pub dir: PathBuf,
    /// `ferry.toml`, if present.
    pub ferry_toml: Option<FileConfig>,
    /// `[tool.ferry]` of `pyproject.toml`, if present.
    pub tool_ferry: Option<FileConfig>,
    /// `[project]` of `pyproject.toml`, if present.
    pub project: Option<ProjectTable>,
    /// Whether `pyproject.toml` or `setup.py` makes this an installable project.
    pub installable: bool,
    /// `run.py`, if present.
    pub run_py: Option<PathBuf>,
    /// `requirements.txt`, if present.
    pub requirements_txt: Option<PathBuf>,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid `{}`", path.display()))
}

impl Project {
    /// Reads the project files in `dir`. A directory with none of them is an error.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!("project directory `{}` does not exist", dir.display());
        }
        let mut p = Project {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let ferry_toml = dir.join("ferry.toml");
        if ferry_toml.exists() {
            p.ferry_toml = Some(read_toml(&ferry_toml)?);
        }
        let pyproject = dir.join("pyproject.toml");
        if pyproject.exists() {
            let parsed: Pyproject = read_toml(&pyproject)?;
            if let Some(tool) = parsed.tool.and_then(|t| t.ferry) {
                let cfg = FileConfig::deserialize(tool).with_context(|| {
                    format!("invalid [tool.ferry] in `{}`", pyproject.display())
                })?;
                p.tool_ferry = Some(cfg);
            }
            p.installable = parsed.project.is_some() || dir.join("setup.py").exists();
            p.project = parsed.project;
        }
        if dir.join("setup.py").exists() {
            p.installable = true;
        }
        let run_py = dir.join("run.py");
        p.run_py = run_py.exists().then_some(run_py);
        let req = dir.join("requirements.txt");
        p.requirements_txt = req.exists().then_some(req);
        if !p.installable
            && p.run_py.is_none()
            && p.requirements_txt.is_none()
            && p.ferry_toml.is_none()
        {
            anyhow::bail!(
                "`{}` is not a Python project: it has no pyproject.toml, setup.py, requirements.txt, run.py or ferry.toml\nhint: run `ferry build` in the project directory, or freeze from PyPI with `ferry build --with PACKAGE --entry SCRIPT`",
                dir.display()
            );
        }
        Ok(p)
    }
}

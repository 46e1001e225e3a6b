//! Layered build settings: command-line flags, then `ferry.toml`, then
//! `[tool.ferry]` in `pyproject.toml`, then the project's own metadata, then
//! defaults. Every value remembers where it came from, so an error about a bad
//! value can say which file or flag to fix.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};

use super::addons::AddonConfig;
use super::project::{FileConfig, Project};
use crate::cli::BuildArgs;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag(&'static str),
    /// `ferry.toml`.
    FerryToml,
    /// `[tool.ferry]` in `pyproject.toml`.
    ToolFerry,
    /// `[project]` in `pyproject.toml`.
    ProjectTable,
    /// Found after installing (distribution metadata, console scripts).
    Installed,
    /// A file convention (`run.py`, `requirements.txt`).
    Convention(&'static str),
    /// ferry's default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "from {flag}"),
            Source::FerryToml => f.write_str("from `ferry.toml`"),
            Source::ToolFerry => f.write_str("from [tool.ferry] in `pyproject.toml`"),
            Source::ProjectTable => f.write_str("from [project] in `pyproject.toml`"),
            Source::Installed => f.write_str("from the installed distribution"),
            Source::Convention(file) => write!(f, "from `{file}`"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and its source.
#[derive(Debug, Clone)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

/// Output modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Interpreter and dependencies in one executable.
    Standalone,
    /// Dependencies only; the target's Python runs them.
    System,
    /// A plain zipapp.
    Pyz,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "standalone" => Some(Mode::Standalone),
            "system" => Some(Mode::System),
            "pyz" => Some(Mode::Pyz),
            _ => None,
        }
    }
}

/// The first value present, in precedence order.
fn pick<T: Clone>(candidates: &[(Option<T>, Source)]) -> Option<Sourced<T>> {
    candidates.iter().find_map(|(v, s)| {
        v.clone().map(|value| Sourced {
            value,
            source: s.clone(),
        })
    })
}

/// Settings known before anything is installed.
#[derive(Debug)]
pub struct Settings {
    /// The project, if building one.
    pub project: Option<Project>,
    /// Application name, if already known.
    pub name: Option<Sourced<String>>,
    /// Application version, if already known.
    pub version: Option<Sourced<String>>,
    /// Entry point as given.
    pub entry: Option<Sourced<String>>,
    /// Output mode.
    pub mode: Sourced<Mode>,
    /// Interpreter to freeze.
    pub python: Sourced<PathBuf>,
    /// Requirements files.
    pub requirements: Vec<Sourced<PathBuf>>,
    /// Extra requirement specifiers.
    pub with: Vec<String>,
    /// Output path, if given.
    pub output: Option<Sourced<PathBuf>>,
    /// zstd level.
    pub compression_level: Sourced<i32>,
    /// Build add-ons, by name.
    pub addons: Vec<(String, AddonConfig)>,
}

/// Default zstd level: a good size for a few seconds of build time.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 12;

impl Settings {
    /// Resolves settings from flags and an optional project.
    pub fn resolve(args: &BuildArgs, project: Option<Project>) -> Result<Self> {
        let empty = FileConfig::default();
        let (ft, tf) = match &project {
            Some(p) => (
                p.ferry_toml.as_ref().unwrap_or(&empty),
                p.tool_ferry.as_ref().unwrap_or(&empty),
            ),
            None => (&empty, &empty),
        };
        let table = project
            .as_ref()
            .and_then(|p| p.project.clone())
            .unwrap_or_default();
        let name = pick(&[
            (args.name.clone(), Source::Flag("--name")),
            (ft.name.clone(), Source::FerryToml),
            (tf.name.clone(), Source::ToolFerry),
            (table.name.clone(), Source::ProjectTable),
        ]);
        let version = pick(&[
            (args.version.clone(), Source::Flag("--version")),
            (ft.version.clone(), Source::FerryToml),
            (tf.version.clone(), Source::ToolFerry),
            (table.version.clone(), Source::ProjectTable),
        ]);
        let entry = pick(&[
            (args.entry.clone(), Source::Flag("--entry")),
            (ft.entry.clone(), Source::FerryToml),
            (tf.entry.clone(), Source::ToolFerry),
        ]);
        let mode_text = pick(&[
            (args.mode.clone(), Source::Flag("--mode")),
            (ft.mode.clone(), Source::FerryToml),
            (tf.mode.clone(), Source::ToolFerry),
        ])
        .unwrap_or(Sourced {
            value: "standalone".into(),
            source: Source::Default,
        });
        let Some(mode) = Mode::parse(&mode_text.value) else {
            bail!(
                "unknown mode `{}` ({})\nhint: use standalone, system or pyz",
                mode_text.value,
                mode_text.source
            );
        };
        let python = pick(&[
            (args.python.clone(), Source::Flag("--python")),
            (ft.python.clone(), Source::FerryToml),
            (tf.python.clone(), Source::ToolFerry),
        ])
        .unwrap_or(Sourced {
            value: PathBuf::from("python3"),
            source: Source::Default,
        });
        let dir = project.as_ref().map(|p| p.dir.clone()).unwrap_or_default();
        let requirements = if !args.requirements.is_empty() {
            args.requirements
                .iter()
                .map(|r| Sourced {
                    value: r.clone(),
                    source: Source::Flag("--requirements"),
                })
                .collect()
        } else if let Some(r) = &ft.requirements {
            r.iter()
                .map(|r| Sourced {
                    value: dir.join(r),
                    source: Source::FerryToml,
                })
                .collect()
        } else if let Some(r) = &tf.requirements {
            r.iter()
                .map(|r| Sourced {
                    value: dir.join(r),
                    source: Source::ToolFerry,
                })
                .collect()
        } else {
            project
                .as_ref()
                .and_then(|p| p.requirements_txt.clone())
                .map(|r| {
                    vec![Sourced {
                        value: r,
                        source: Source::Convention("requirements.txt"),
                    }]
                })
                .unwrap_or_default()
        };
        for r in &requirements {
            if !r.value.is_file() {
                bail!(
                    "requirements file `{}` ({}) does not exist\nhint: create it or fix the path",
                    r.value.display(),
                    r.source
                );
            }
        }
        let mut with = ft
            .with
            .clone()
            .or_else(|| tf.with.clone())
            .unwrap_or_default();
        with.extend(args.with.iter().cloned());
        let output = pick(&[
            (args.output.clone(), Source::Flag("--output")),
            (ft.output.clone().map(|o| dir.join(o)), Source::FerryToml),
            (tf.output.clone().map(|o| dir.join(o)), Source::ToolFerry),
        ]);
        let compression_level = pick(&[
            (args.compression_level, Source::Flag("--compression-level")),
            (ft.compression_level, Source::FerryToml),
            (tf.compression_level, Source::ToolFerry),
        ])
        .unwrap_or(Sourced {
            value: DEFAULT_COMPRESSION_LEVEL,
            source: Source::Default,
        });
        if !(1..=22).contains(&compression_level.value) {
            bail!(
                "compression level {} ({}) is outside 1..=22\nhint: use 1 (fastest) to 22 (smallest); the default is {DEFAULT_COMPRESSION_LEVEL}",
                compression_level.value,
                compression_level.source
            );
        }
        let addons = if !ft.build.is_empty() {
            &ft.build
        } else {
            &tf.build
        };
        let addons = addons.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(Self {
            project,
            name,
            version,
            entry,
            mode: Sourced {
                value: mode,
                source: mode_text.source,
            },
            python,
            requirements,
            with,
            output,
            compression_level,
            addons,
        })
    }
}

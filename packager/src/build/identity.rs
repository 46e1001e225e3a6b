//! What the app is called, which version it is and what starts it: from
//! the settings where they say so, else from what was installed (a setup.py
//! project's metadata, a console script's distribution). Facts nothing can
//! tell are asked for together, before anything is installed.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ferry_format::container;

use super::entry::{self, Entry};
use super::project::Project;
use super::settings::{Settings, Source, Sourced};
use crate::python::{self, SiteContents};

/// The app's name, version and entry point, each with where it came from.
pub struct Identity {
    /// The app's name.
    pub name: Sourced<String>,
    /// Its version.
    pub version: Sourced<String>,
    /// What the bootstrap runs.
    pub entry: Entry,
    /// Where the entry point came from.
    pub entry_source: Source,
}

/// Resolves name, version and entry once the packages are installed into
/// `bundle`; a `.py` entry is copied into the bundle on the way.
pub fn identify(settings: &Settings, contents: &SiteContents, bundle: &Path) -> Result<Identity> {
    let dist = project_dist(contents, settings.project.as_ref());
    let name = settings
        .name
        .clone()
        .or_else(|| dist.map(|d| Sourced { value: d.name.clone(), source: Source::Installed }))
        .or_else(|| settings.entry.clone().filter(|e| !e.value.contains(':') && !e.value.ends_with(".py")))
        .context("no app name\nhint: pass --name, or set `name` in ferry.toml or [project] in pyproject.toml")?;
    check_name(&name)?;
    let (entry, entry_source) = resolve_entry(settings, contents, bundle, Some(&name.value))?;
    let version = settings
        .version
        .clone()
        .or_else(|| dist.map(|d| Sourced { value: d.version.clone(), source: Source::Installed }))
        .or_else(|| {
            // Freezing from PyPI: the version of the distribution whose script runs.
            let Entry::Function { module, .. } = &entry else { return None };
            let top = module.split('.').next()?.replace('_', "-").to_lowercase();
            contents
                .dists
                .iter()
                .find(|d| d.name.to_lowercase().replace('_', "-") == top)
                .map(|d| Sourced { value: d.version.clone(), source: Source::Installed })
        })
        .context("no app version\nhint: pass --version, or set `version` in ferry.toml or [project] in pyproject.toml")?;
    check_version(&version)?;
    Ok(Identity {
        name,
        version,
        entry,
        entry_source,
    })
}

fn file_url_matches(url: &str, dir: &Path) -> bool {
    url.strip_prefix("file://")
        .map(|p| Path::new(p) == dir)
        .unwrap_or(false)
}

/// The name and version of the project as installed, for setup.py projects
/// and dynamic versions.
fn project_dist<'a>(
    contents: &'a SiteContents,
    project: Option<&Project>,
) -> Option<&'a python::Distribution> {
    let dir = project.filter(|p| p.installable)?.dir.canonicalize().ok()?;
    contents
        .dists
        .iter()
        .find(|d| d.url.as_deref().is_some_and(|u| file_url_matches(u, &dir)))
}

/// Resolves the entry point to what the bootstrap runs.
fn resolve_entry(
    settings: &Settings,
    contents: &SiteContents,
    bundle: &Path,
    name: Option<&str>,
) -> Result<(Entry, Source)> {
    let project = settings.project.as_ref();
    let from_spec = |spec: &Sourced<String>| -> Result<Entry> {
        let v = spec.value.trim();
        if v.ends_with(".py") {
            let dir = project
                .map(|p| p.dir.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let script = dir.join(v);
            if !script.is_file() {
                bail!(
                    "entry script `{}` ({}) does not exist",
                    script.display(),
                    spec.source
                );
            }
            let dest = format!(
                "ferry/app/{}",
                Path::new(v)
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            );
            std::fs::create_dir_all(bundle.join("ferry/app"))?;
            std::fs::copy(&script, bundle.join(&dest))?;
            return Ok(Entry::Script { path: dest });
        }
        if let Some(e) = entry::parse_function(v) {
            return Ok(e);
        }
        if let Some(target) = contents.console_scripts.get(v) {
            return entry::parse_function(target).with_context(|| {
                format!("console script `{v}` points at `{target}`, which is not module:function")
            });
        }
        bail!(
            "entry point `{v}` ({}) is neither module:function, a .py file, nor a console script of the installed packages{}",
            spec.source,
            if contents.console_scripts.is_empty() {
                String::new()
            } else {
                format!(
                    "\nhint: console scripts available: {}",
                    contents.console_scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        )
    };
    if let Some(spec) = &settings.entry {
        return Ok((from_spec(spec)?, spec.source.clone()));
    }
    if let Some(table) = project.and_then(|p| p.project.as_ref()) {
        let scripts = &table.scripts;
        let chosen = if scripts.len() == 1 {
            scripts.values().next()
        } else {
            name.and_then(|n| scripts.get(n))
        };
        if let Some(target) = chosen {
            let e = entry::parse_function(target).with_context(|| {
                format!(
                    "[project.scripts] entry `{target}` in `pyproject.toml` is not module:function"
                )
            })?;
            return Ok((e, Source::ProjectTable));
        }
        if scripts.len() > 1 {
            bail!(
                "pyproject.toml declares several scripts ({}); ferry cannot tell which one starts the app\nhint: pass --entry NAME or set `entry` in ferry.toml",
                scripts.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if let Some(dist) = project_dist(contents, project) {
        let scripts = &dist.scripts;
        let chosen = if scripts.len() == 1 {
            scripts.values().next()
        } else {
            name.and_then(|n| scripts.get(n))
        };
        if let Some(target) = chosen {
            let e = entry::parse_function(target).with_context(|| {
                format!("console script `{target}` of the installed project `{}` is not module:function", dist.name)
            })?;
            return Ok((e, Source::Installed));
        }
        if scripts.len() > 1 {
            bail!(
                "the project `{}` declares several console scripts ({}); ferry cannot tell which one starts the app\nhint: pass --entry NAME or set `entry` in ferry.toml",
                dist.name,
                scripts.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if project.and_then(|p| p.run_py.as_ref()).is_some() {
        let spec = Sourced {
            value: "run.py".to_owned(),
            source: Source::Convention("run.py"),
        };
        return Ok((from_spec(&spec)?, spec.source));
    }
    let where_ = project
        .map(|p| format!(" in `{}`", p.dir.display()))
        .unwrap_or_default();
    bail!(
        "no entry point{where_}: nothing says what to run\nhint: add [project.scripts] to pyproject.toml, a run.py, or pass --entry module:function"
    )
}

fn check_name(name: &Sourced<String>) -> Result<()> {
    if !container::is_valid_name(&name.value) {
        bail!(
            "app name `{}` ({}) is not usable: it must be 1-128 of A-Z a-z 0-9 . _ - and not start with `.`\nhint: pass --name",
            name.value,
            name.source
        );
    }
    Ok(())
}

fn check_version(version: &Sourced<String>) -> Result<()> {
    if !container::is_valid_version(&version.value) {
        bail!(
            "version `{}` ({}) is not usable: it must be printable without spaces or `/`\nhint: pass --version",
            version.value,
            version.source
        );
    }
    Ok(())
}

/// Without a project, says at once (before anything is installed) every
/// fact that nothing will tell: the name unless the entry is a console
/// script, the version when the entry is a `.py` file.
pub fn check_facts_known(settings: &Settings) -> Result<()> {
    if settings.project.is_some() {
        return Ok(());
    }
    let entry = settings.entry.as_ref().map(|e| e.value.as_str());
    let script = entry.is_some_and(|e| e.ends_with(".py"));
    let function = entry.is_some_and(|e| e.contains(':'));
    let mut missing = Vec::new();
    if entry.is_none() {
        missing.push("--entry (a console script of the packages, module:function, or a .py file)");
    }
    if settings.name.is_none() && (script || function) {
        missing.push("--name (only a console-script entry gives one)");
    }
    if settings.version.is_none() && script {
        missing.push("--version (a .py entry belongs to no package)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "building without a project, ferry needs: {}\nhint: pass them all, e.g. `ferry build --with SPEC --entry tool.py --name tool --version 1.0`",
        missing.join("; ")
    )
}

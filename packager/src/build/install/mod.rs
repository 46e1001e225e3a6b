//! Installing requirements and the project into the bundle's site-packages,
//! with uv when it is on PATH (much faster) and pip otherwise. Both install
//! into an empty `--target`, isolated from the build interpreter's own packages.

pub mod cross;
mod failure;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::log;
use crate::process;
use crate::python::Interpreter;

/// What to install.
pub struct InstallPlan<'a> {
    /// Requirements files.
    pub requirement_files: &'a [PathBuf],
    /// The project directory, when it is installable.
    pub project: Option<&'a Path>,
    /// Extra requirement specifiers.
    pub specs: &'a [String],
    /// The board's platform, when it is not this machine's.
    pub platform: Option<cross::Platform>,
}

impl InstallPlan<'_> {
    fn is_empty(&self) -> bool {
        self.requirement_files.is_empty() && self.project.is_none() && self.specs.is_empty()
    }
}

/// Which installer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installer {
    /// `uv pip install`.
    Uv,
    /// `python -m pip install`.
    Pip,
}

/// Picks the installer: `$FERRY_INSTALLER` (`uv` or `pip`), else uv if on PATH.
pub fn choose(interp: &Interpreter) -> Result<Installer> {
    match std::env::var("FERRY_INSTALLER").ok().as_deref() {
        Some("uv") => return Ok(Installer::Uv),
        Some("pip") => return Ok(Installer::Pip),
        Some(other) => bail!("FERRY_INSTALLER is `{other}`; use `uv` or `pip`"),
        None => {}
    }
    if process::find_on_path("uv").is_some() {
        return Ok(Installer::Uv);
    }
    if !interp.has_pip {
        bail!(
            "`{}` has no pip and uv is not on PATH\nhint: install pip for that interpreter (`{} -m ensurepip --upgrade`, or Debian's `apt-get install python3-pip`) or install uv",
            interp.invoked.display(),
            interp.invoked.display()
        );
    }
    Ok(Installer::Pip)
}

/// The installer of a build for another architecture: pip, whose
/// `--platform` ferry drives (uv's platform selection is not wired yet).
pub fn choose_for_cross(interp: &Interpreter) -> Result<Installer> {
    if std::env::var("FERRY_INSTALLER").is_ok_and(|v| v == "uv") {
        bail!("FERRY_INSTALLER is `uv`, but builds for another architecture install with pip\nhint: unset FERRY_INSTALLER for this build");
    }
    if !interp.has_pip {
        bail!(
            "`{}` has no pip, which a build for another architecture installs with\nhint: `{} -m ensurepip --upgrade`, or Debian's `apt-get install python3-pip`",
            interp.invoked.display(),
            interp.invoked.display()
        );
    }
    Ok(Installer::Pip)
}

/// Installs everything in `plan` into `site`.
pub fn install(
    interp: &Interpreter,
    installer: Installer,
    site: &Path,
    plan: &InstallPlan<'_>,
) -> Result<()> {
    std::fs::create_dir_all(site)?;
    if plan.is_empty() {
        return Ok(());
    }
    let mut cmd = match installer {
        Installer::Uv => {
            let mut c = Command::new("uv");
            c.args(["pip", "install", "--no-progress", "--python"])
                .arg(&interp.invoked);
            c
        }
        Installer::Pip => {
            let mut c = Command::new(&interp.invoked);
            c.args([
                "-I",
                "-m",
                "pip",
                "install",
                "--no-compile",
                "--no-warn-script-location",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ]);
            c
        }
    };
    cmd.arg("--target").arg(site);
    if let Some(platform) = &plan.platform {
        cmd.args(platform.pip_args());
    }
    for r in plan.requirement_files {
        cmd.arg("-r").arg(r);
    }
    let mut before = None;
    let wheels = tempfile::Builder::new().prefix("ferry-wheel-").tempdir()?;
    if let Some(p) = plan.project {
        // An absolute path: `ferry-src` alone would be taken for a package
        // name on PyPI.
        let abs = std::path::absolute(p)
            .with_context(|| format!("cannot resolve the project directory `{}`", p.display()))?;
        before = Some((abs.clone(), build_leftovers(&abs)));
        match &plan.platform {
            Some(platform) => {
                let built = cross::project_wheel(interp, &abs, wheels.path(), platform);
                if built.is_err() {
                    remove_new_leftovers(&abs, &before.as_ref().expect("set above").1);
                }
                cmd.arg(built?);
            }
            None => {
                cmd.arg(abs);
            }
        }
    }
    cmd.args(plan.specs);
    cmd.env("PIP_NO_INPUT", "1");
    // On a terminal the installer's lines are shown as they come, indented:
    // a long source build is seen progressing.
    let echo = std::io::stderr().is_terminal().then_some("    ");
    let line = process::describe(&cmd);
    let result = process::output_echoing(&mut cmd, echo);
    if let Some((dir, existing)) = before {
        remove_new_leftovers(&dir, &existing);
    }
    let out = result?;
    if !out.status.success() {
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let why = failure::classify(&text, failure::offline_from_env());
        let python = format!("{}.{}", interp.major, interp.minor);
        let hint = plan
            .platform
            .and_then(|p| p.hint(&why))
            .unwrap_or_else(|| why.hint(&python));
        return Err(process::failed(&line, &out, echo.is_none())
            .context(format!("cannot install the requirements\nhint: {hint}")));
    }
    // Console-script wrappers point at the build interpreter: useless in the bundle.
    let bin = site.join("bin");
    if bin.is_dir() {
        std::fs::remove_dir_all(&bin)?;
    }
    Ok(())
}

/// `build/` and `*.egg-info` at the top of a project: what setuptools
/// leaves in the source tree when pip builds it there.
fn build_leftovers(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .filter(|n| n == "build" || n.to_string_lossy().ends_with(".egg-info"))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the build leftovers the install made (not those that were there
/// before it): the project directory stays as the user left it.
fn remove_new_leftovers(dir: &Path, existing: &[std::ffi::OsString]) {
    for name in build_leftovers(dir) {
        if !existing.contains(&name) {
            let path = dir.join(&name);
            if let Err(e) = std::fs::remove_dir_all(&path) {
                log::warn(format!(
                    "cannot remove `{}` the build left: {e}",
                    path.display()
                ));
            }
        }
    }
}

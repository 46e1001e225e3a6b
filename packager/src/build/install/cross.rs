//! Installing for another architecture: pip picks wheels for the target's
//! platform and Python (`--platform`, `--python-version`, `--abi`), never
//! building anything for the host by mistake (`--only-binary=:all:`). The
//! project itself is the one thing built from source, into a wheel first:
//! pure Python, it fits any board; with compiled code, it would be the
//! host's, so it is refused with the ways out.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::failure::Failure;
use crate::process;
use crate::python::Interpreter;
use crate::target::Target;

/// The platform a cross install is for.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    /// The board's architecture.
    pub target: Target,
    /// The board's Python, `(3, 11)`.
    pub python: (u32, u32),
}

impl Platform {
    /// pip's arguments that restrict it to wheels this platform loads.
    pub fn pip_args(&self) -> Vec<String> {
        let (major, minor) = self.python;
        let mut args = vec!["--only-binary=:all:".to_owned()];
        for p in self.target.wheel_platforms() {
            args.push("--platform".to_owned());
            args.push(p);
        }
        args.extend([
            "--python-version".to_owned(),
            format!("{major}.{minor}"),
            "--implementation".to_owned(),
            "cp".to_owned(),
        ]);
        for abi in [
            format!("cp{major}{minor}"),
            "abi3".to_owned(),
            "none".to_owned(),
        ] {
            args.push("--abi".to_owned());
            args.push(abi);
        }
        args
    }

    /// The hint for a failed install, when the failure is a requirement
    /// without a wheel for the board.
    pub fn hint(&self, failure: &Failure) -> Option<String> {
        let Failure::Unresolvable { what } = failure else {
            return None;
        };
        let what = what.as_deref().unwrap_or("a requirement");
        let t = self.target;
        Some(format!(
            "`{what}` has no wheel for {t} (Python {}.{}, manylinux_2_17 to _2_36 on {}) on the index, and a cross build compiles nothing for the board by itself. Ways out: pick a version of it that ships such a wheel; build its wheel (`pip wheel --no-deps '{what}' -w DIR`: here if it is pure Python, on a board if it has C code) and give it with `PIP_FIND_LINKS=DIR`; compile it in a build add-on, where CC is {t}-gcc; or run ferry on a board",
            self.python.0,
            self.python.1,
            t.wheel_machine()
        ))
    }
}

/// Builds the project at `project` into a wheel in `out` with the host's
/// pip, and returns it; refuses a wheel that is not for `platform`.
pub fn project_wheel(
    interp: &Interpreter,
    project: &Path,
    out: &Path,
    platform: &Platform,
) -> Result<PathBuf> {
    std::fs::create_dir_all(out)?;
    let mut cmd = Command::new(&interp.invoked);
    cmd.args([
        "-I",
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--wheel-dir",
    ])
    .arg(out)
    .arg(project)
    .env("PIP_NO_INPUT", "1");
    process::run(&mut cmd).with_context(|| {
        format!(
            "cannot build the project `{}` into a wheel",
            project.display()
        )
    })?;
    let wheel = std::fs::read_dir(out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip built no wheel of `{}`", project.display()))?;
    let name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !platform.target.accepts_wheel(&name) {
        bail!(
            "the project `{}` builds compiled code, and its wheel `{name}` is for this machine, not {}\nhint: move the compiled part into a build add-on (its CC is {}-gcc), or build on a board of that architecture",
            project.display(),
            platform.target,
            platform.target.gnu_prefix()
        );
    }
    Ok(wheel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_is_told_the_platform_python_and_abis() {
        let p = Platform {
            target: Target::Aarch64,
            python: (3, 11),
        };
        let args = p.pip_args().join(" ");
        assert!(args.starts_with("--only-binary=:all: --platform manylinux_2_36_aarch64"));
        assert!(args.contains("--platform manylinux2014_aarch64"));
        assert!(args.ends_with(
            "--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none"
        ));
    }

    #[test]
    fn a_missing_wheel_names_the_package_and_the_ways_out() {
        let p = Platform {
            target: Target::Armhf,
            python: (3, 11),
        };
        let hint = p
            .hint(&Failure::Unresolvable {
                what: Some("numpy==2.2.0".into()),
            })
            .unwrap();
        assert!(hint.starts_with("`numpy==2.2.0` has no wheel for arm-linux-gnueabihf"));
        assert!(hint.contains("build add-on"), "{hint}");
        assert!(p.hint(&Failure::Network).is_none());
    }
}

//! The hand-over: find the interpreter (the payload's own in standalone mode,
//! the system's `python3.X` in system mode) and `exec` it, never spawn, so the
//! app keeps the launcher's PID (systemd's main PID, `sd_notify`, signals and
//! exit codes work unchanged). Arguments pass through as bytes; stdin, stdout,
//! stderr and the environment are left exactly as they came: nothing ferry
//! sets can leak into the app's own subprocesses.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_format::container::PythonMode;
use ferry_format::Metadata;

/// Where the bootstrap script sits in every payload.
pub const ENTRY_SCRIPT: &str = "ferry/entry.py";

/// Directories searched after `$PATH` for a system Python.
const FALLBACK_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin"];

/// Why the interpreter could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No `python` in the metadata.
    #[error("the metadata of {0} names no Python to run")]
    NoPython(String),
    /// Standalone without an interpreter path.
    #[error("the metadata of {0} says standalone but names no interpreter in the payload")]
    NoExecutable(String),
    /// A version without major.minor.
    #[error("the metadata of {name} has python version `{version}`, which has no major.minor")]
    BadVersion {
        /// The app.
        name: String,
        /// The version.
        version: String,
    },
    /// System mode and no matching Python.
    #[error("{name} needs {program} on this system (system mode) and none was found on PATH")]
    NotFound {
        /// The app.
        name: String,
        /// E.g. `python3.11`.
        program: String,
    },
    /// `execve` failed.
    #[error("cannot run `{path}`: {err}")]
    Exec {
        /// The interpreter.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
}

impl ExecError {
    /// The exit code: 78 for what the system lacks, 70 for a broken binary.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotFound { .. } => 78,
            Self::NoPython(_)
            | Self::NoExecutable(_)
            | Self::BadVersion { .. }
            | Self::Exec { .. } => 70,
        }
    }
}

/// `python3.11` for `3.11.7`.
pub fn versioned_name(version: &str) -> Option<String> {
    let mut parts = version.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("python{major}.{minor}"))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first executable `program` in `path_var`'s absolute directories, then
/// in the fallback directories.
pub fn search(program: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let from_path = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        // Empty or relative entries mean "the current directory": not a
        // place to pick an interpreter from.
        .filter(|d| d.is_absolute())
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| is_executable(p))
}

/// The interpreter to run for the extraction at `dir`.
pub fn interpreter(dir: &Path, meta: &Metadata) -> Result<PathBuf, ExecError> {
    let python = meta
        .python
        .as_ref()
        .ok_or_else(|| ExecError::NoPython(meta.name.clone()))?;
    match python.mode {
        PythonMode::Standalone => {
            let exe = python
                .executable
                .as_ref()
                .ok_or_else(|| ExecError::NoExecutable(meta.name.clone()))?;
            Ok(dir.join(exe))
        }
        PythonMode::System => {
            let program = versioned_name(&python.version).ok_or_else(|| ExecError::BadVersion {
                name: meta.name.clone(),
                version: python.version.clone(),
            })?;
            search(&program, std::env::var_os("PATH").as_deref()).ok_or(ExecError::NotFound {
                name: meta.name.clone(),
                program,
            })
        }
    }
}

/// The interpreter's arguments: `-I` (plus `-u`/`-B` standing in for the
/// `PYTHONUNBUFFERED`/`PYTHONDONTWRITEBYTECODE` that `-I` makes Python
/// ignore), the entry script, then the launcher's own argv, argv[0] included.
pub fn arguments(
    dir: &Path,
    launcher_argv: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Vec<OsString> {
    let on = |k: &str| env(k).is_some_and(|v| !v.is_empty());
    let mut args = vec![OsString::from("-I")];
    if on("PYTHONUNBUFFERED") {
        args.push("-u".into());
    }
    if on("PYTHONDONTWRITEBYTECODE") {
        args.push("-B".into());
    }
    args.push(dir.join(ENTRY_SCRIPT).into_os_string());
    let mut argv = launcher_argv.into_iter();
    // argv[0] may be missing (execve with an empty argv): keep positions.
    args.push(argv.next().unwrap_or_default());
    args.extend(argv);
    args
}

/// Replaces this process with `interpreter args`; returns only on failure.
pub fn exec(interpreter: &Path, args: &[OsString]) -> ExecError {
    let err = Command::new(interpreter).args(args).exec();
    ExecError::Exec {
        path: interpreter.to_owned(),
        err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn version_names() {
        assert_eq!(versioned_name("3.11.7").as_deref(), Some("python3.11"));
        assert_eq!(versioned_name("3.13").as_deref(), Some("python3.13"));
        assert_eq!(versioned_name("3"), None);
        assert_eq!(versioned_name("x.y"), None);
    }

    #[test]
    fn argument_order_and_flags() {
        let argv = vec![
            OsString::from("./app"),
            OsString::from("a b"),
            OsString::from_vec(vec![0xff, b'x']),
        ];
        let none = |_: &str| None;
        let args = arguments(Path::new("/c/app/id"), argv.clone(), none);
        assert_eq!(
            args,
            [
                OsString::from("-I"),
                "/c/app/id/ferry/entry.py".into(),
                "./app".into(),
                "a b".into(),
                OsString::from_vec(vec![0xff, b'x']),
            ]
        );
        let both = |k: &str| match k {
            "PYTHONUNBUFFERED" | "PYTHONDONTWRITEBYTECODE" => Some("1".into()),
            _ => None,
        };
        let args = arguments(Path::new("/d"), argv.clone(), both);
        assert_eq!(&args[..3], ["-I", "-u", "-B"]);
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(arguments(Path::new("/d"), argv, empty).len(), 5);
        assert_eq!(arguments(Path::new("/d"), Vec::new(), none)[2], "");
    }

    #[test]
    fn searches_path_then_fallbacks() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let not_exec = a.join("python3.99");
        std::fs::write(&not_exec, b"").unwrap();
        let good = b.join("python3.99");
        std::fs::write(&good, b"").unwrap();
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(search("python3.99", Some(&path)), Some(good));
        assert_eq!(search("python3.99", None), None);
        // `sh` is in /usr/bin on every system these tests run on.
        assert_eq!(
            search("sh", Some(OsStr::new(""))),
            Some(PathBuf::from("/usr/bin/sh"))
        );
    }
}

//! Running a binary on this machine as if no Python were installed: ferry's
//! standalone binaries must not lean, by accident, on the interpreter that built
//! them or on the system's.
//!
//! [`command`] starts the binary in a private mount namespace
//! (`unshare --mount --propagation private`) where an empty read-only tmpfs is
//! mounted over every Python installation directory and `/dev/null` is bound
//! over every interpreter and `libpython` file. Nothing changes outside that
//! namespace, and it vanishes with the process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::tools;

/// Runs as `sh -c`: `d:PATH` and `f:PATH` arguments up to `--`, then the
/// command. A directory gets an empty tmpfs, a file `/dev/null` (not
/// executable, not a library).
const HIDE_SCRIPT: &str = r#"set -eu
while [ "$1" != "--" ]; do
  case $1 in
    d:*) mount -t tmpfs -o ro,mode=755,size=16k ferry-hidden-python "${1#d:}" ;;
    f:*) mount --bind /dev/null "${1#f:}" ;;
  esac
  shift
done
shift
exec "$@"
"#;

/// One thing to hide.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hidden {
    /// A directory (an interpreter prefix or a library directory).
    Dir(PathBuf),
    /// A file (an interpreter binary, a `libpython`).
    File(PathBuf),
}

/// A command that runs `binary` with every Python on this machine hidden (see
/// [`hidden_paths`]). Add arguments, environment and stdio to it as usual; the
/// environment is inherited, `PATH` included, so a Python on `PATH` would be
/// found if it were not hidden. Errors if `unshare` or `mount` is missing.
pub fn command(binary: &Path) -> Result<Command> {
    let unshare = tools::find("unshare", "util-linux")?;
    tools::find("mount", "mount")?;
    let mut cmd = tools::private_mount_shell(&unshare, HIDE_SCRIPT, "ferry-hide-python");
    for hidden in hidden_paths() {
        let arg = match hidden {
            Hidden::Dir(p) => format!("d:{}", p.display()),
            Hidden::File(p) => format!("f:{}", p.display()),
        };
        cmd.arg(arg);
    }
    cmd.arg("--").arg(binary);
    Ok(cmd)
}

/// What [`command`] hides, as it exists on this machine: pyenv's root, the
/// `python3*` directories under `/usr/lib` and `/usr/local/lib`, the `python*`
/// programs in `/usr/bin` and `/usr/local/bin`, `libpython3*` files, and the
/// installation prefix of every `python3` on `PATH` (and of the interpreter it
/// reports, which sees through pyenv's shims and venvs) unless that prefix is a
/// system one like `/usr`.
pub fn hidden_paths() -> Vec<Hidden> {
    let mut dirs = BTreeSet::new();
    let mut files = BTreeSet::new();
    let pyenv_root = std::env::var_os("PYENV_ROOT").map(PathBuf::from);
    for root in pyenv_root
        .into_iter()
        .chain([PathBuf::from("/root/.pyenv")])
    {
        add(&root, &mut dirs, &mut files);
    }
    for dir in ["/usr/lib", "/usr/local/lib"] {
        for path in glob(Path::new(dir), |n| n.starts_with("python3")) {
            add(&path, &mut dirs, &mut files);
        }
        for path in glob(Path::new(dir), |n| n.starts_with("libpython3")) {
            add(&path, &mut dirs, &mut files);
        }
    }
    for arch_dir in glob(Path::new("/usr/lib"), |n| n.ends_with("-linux-gnu")) {
        for path in glob(&arch_dir, |n| n.starts_with("libpython3")) {
            add(&path, &mut dirs, &mut files);
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin"] {
        for path in glob(Path::new(dir), |n| {
            n == "python" || n.starts_with("python3")
        }) {
            add(&path, &mut dirs, &mut files);
        }
    }
    for prefix in path_python_prefixes() {
        add(&prefix, &mut dirs, &mut files);
    }
    // A mount over a directory hides what is below it, and a later mount
    // below it would fail: keep only the outermost directories.
    let outer: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect();
    let under_outer = |p: &Path| outer.iter().any(|o| p.starts_with(o));
    let mut hidden: Vec<Hidden> = outer.iter().cloned().map(Hidden::Dir).collect();
    hidden.extend(
        files
            .into_iter()
            .filter(|f| !under_outer(f))
            .map(Hidden::File),
    );
    hidden
}

/// Records `path` (resolved through symlinks, as `mount` resolves it) if it
/// exists.
fn add(path: &Path, dirs: &mut BTreeSet<PathBuf>, files: &mut BTreeSet<PathBuf>) {
    let Ok(real) = path.canonicalize() else {
        return;
    };
    if real.is_dir() {
        dirs.insert(real);
    } else {
        files.insert(real);
    }
}

/// The entries of `dir` whose names satisfy `keep`.
fn glob(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .collect()
}

/// Prefixes that must never be hidden whole: the system itself.
const SYSTEM_PREFIXES: &[&str] = &[
    "/",
    "/usr",
    "/usr/local",
    "/opt",
    "/root",
    "/home",
    "/tmp",
    "/var",
];

/// Installation prefixes of the `python3` programs on `PATH`: the parent of
/// the `bin` directory each resolves into, and the `sys.base_prefix` and
/// `sys.prefix` each reports when asked.
fn path_python_prefixes() -> Vec<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut prefixes = Vec::new();
    for dir in std::env::split_paths(&path_var) {
        let program = dir.join("python3");
        let Ok(real) = program.canonicalize() else {
            continue;
        };
        if let Some(bin) = real.parent().filter(|b| b.ends_with("bin")) {
            prefixes.extend(bin.parent().map(Path::to_path_buf));
        }
        let asked = Command::new(&program)
            .args([
                "-I",
                "-c",
                "import sys; print(sys.base_prefix); print(sys.prefix)",
            ])
            .env_remove("PYTHONHOME")
            .output();
        if let Some(out) = asked.ok().filter(|o| o.status.success()) {
            prefixes.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(PathBuf::from),
            );
        }
    }
    prefixes.retain(|p| p.is_absolute() && !SYSTEM_PREFIXES.iter().any(|s| p == Path::new(s)));
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a shell script with Python hidden; returns (exit code, stdout).
    fn hidden_sh(script: &str) -> (Option<i32>, String) {
        let out = command(Path::new("/bin/sh"))
            .unwrap()
            .args(["-c", script])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ferry-hide-python:"),
            "hiding failed: {stderr}"
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn no_python_runs_inside() {
        let (code, out) = hidden_sh("python3 -c 1 >/dev/null 2>&1 && echo python3-runs; echo done");
        assert_eq!((code, out.as_str()), (Some(0), "done\n"));
        // Each interpreter found on the host is unusable inside, by its real path too.
        for hidden in hidden_paths() {
            let Hidden::File(file) = hidden else { continue };
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("python3") && !name.contains("config") {
                let (code, _) = hidden_sh(&format!("exec '{}' -c 1 2>/dev/null", file.display()));
                assert_ne!(code, Some(0), "`{}` still runs", file.display());
            }
        }
    }

    #[test]
    fn interpreter_prefixes_are_empty_inside() {
        let dirs: Vec<PathBuf> = hidden_paths()
            .into_iter()
            .filter_map(|h| {
                if let Hidden::Dir(d) = h {
                    Some(d)
                } else {
                    None
                }
            })
            .collect();
        // The machines ferry is tested on have pyenv or Debian's python3.
        assert!(!dirs.is_empty(), "no Python directory found to hide");
        if Path::new("/root/.pyenv").is_dir() {
            assert!(dirs.contains(&PathBuf::from("/root/.pyenv")), "{dirs:?}");
        }
        for dir in dirs {
            let (code, out) = hidden_sh(&format!("ls -A '{}' | wc -l", dir.display()));
            assert_eq!(
                (code, out.trim()),
                (Some(0), "0"),
                "`{}` is not empty inside",
                dir.display()
            );
        }
    }

    #[test]
    fn the_binary_itself_runs_with_its_arguments() {
        let out = command(Path::new("/bin/echo"))
            .unwrap()
            .args(["a b", "c"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b c\n");
    }

    #[test]
    fn nothing_is_hidden_outside_the_namespace() {
        let _ = command(Path::new("/bin/true")).unwrap().status().unwrap();
        if Path::new("/usr/lib/python3").is_dir() {
            assert!(std::fs::read_dir("/usr/lib/python3")
                .unwrap()
                .next()
                .is_some());
        }
    }
}

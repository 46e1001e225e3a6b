//! The host tools the harness runs (`debootstrap`, `unshare`, `mount`, `chroot`,
//! `make`…): finding each one with an error that names the Debian package to
//! install, and running a command with its output in the error when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Directories searched after `$PATH`: admin tools live in `sbin`, which a
/// non-login `PATH` often lacks.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The absolute path of the executable `name`, or an error saying which Debian
/// `package` provides it.
pub(crate) fn find(name: &str, package: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("`{name}` is not installed (needed by ferry's end-to-end tests)\nhint: apt-get install {package} (scripts/install-deps.sh installs every test prerequisite)")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `cmd` to completion; a failure to start or a non-zero exit is an error
/// that shows the command and the tail of its output.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({})\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
            output.status,
            tail(&output.stdout),
            tail(&output.stderr)
        );
    }
    Ok(output)
}

/// The last lines of a program's output, for error messages.
pub(crate) fn tail(bytes: &[u8]) -> String {
    const LINES: usize = 40;
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// `unshare --mount --propagation private -- /bin/sh -c SCRIPT NAME`: a shell
/// script run in a private mount namespace, whose mounts vanish with it.
/// The caller adds the script's arguments.
pub(crate) fn private_mount_shell(unshare: &Path, script: &str, name: &str) -> Command {
    let mut cmd = Command::new(unshare);
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        script,
        name,
    ]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_names_the_package_of_a_missing_tool() {
        assert!(find("sh", "dash").unwrap().is_absolute());
        let err = find("ferry-no-such-tool", "ferry-pkg")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install ferry-pkg"), "{err}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let text: String = (0..100).map(|i| format!("{i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("60\n") && t.ends_with("99"), "{t}");
    }
}

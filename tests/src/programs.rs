//! The workspace's own programs, as cargo built them for this test run.

use std::path::PathBuf;

/// `target/<profile>/`, found from the running executable: a test's
/// (`target/<profile>/deps/<test>-<hash>`) or a program's (`target/<profile>/<name>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let dir = exe.parent().expect("an executable sits in a directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A program of the workspace; panics with the fix if it was not built.
pub fn program(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.is_file(),
        "`{}` is missing: build the workspace's programs first (`cargo build --workspace --bins`; scripts/test.sh does)",
        p.display()
    );
    p
}

/// Runs the workspace's `ferry ARGS…` in `cwd` with its output captured;
/// an error shows the command, its status and what it printed.
pub fn run_ferry(cwd: &std::path::Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let out = std::process::Command::new(program("ferry"))
        .current_dir(cwd)
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run ferry: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`ferry {}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// Runs `program ARGS` in `cwd` five times with its stdout closed before it
/// writes (as `… | head` does) and asserts each run ends without a panic:
/// by SIGPIPE, or with success when it finished first.
pub fn assert_survives_closed_stdout(
    program: &std::path::Path,
    cwd: &std::path::Path,
    args: &[&str],
) {
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    for _ in 0..5 {
        let mut child = std::process::Command::new(program)
            .current_dir(cwd)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_string(&mut err)
            .expect("stderr is text");
        let status = child.wait().expect("the child ends");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            status.success() || status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {status:?}: {err}"
        );
    }
}

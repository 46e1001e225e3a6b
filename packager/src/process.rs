//! Running child processes (Python, pip, uv, make, patchelf) so that a failure
//! carries the command line and the child's output into the error.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result};

/// Most bytes of a child's output repeated in an error.
const OUTPUT_TAIL: usize = 6000;

/// The command line as a user would type it.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            let _ = write!(s, " '{a}'");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= OUTPUT_TAIL {
        return text.to_owned();
    }
    let mut start = text.len() - OUTPUT_TAIL;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Runs `cmd` to completion, capturing its output; a non-zero exit becomes an
/// error holding the command and the end of its stdout and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let line = describe(cmd);
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        return Err(failed(&line, &out, true));
    }
    Ok(out)
}

/// The error for a child that exited non-zero: its command line, its status
/// and, with `with_output`, the end of what it printed.
pub fn failed(line: &str, out: &Output, with_output: bool) -> anyhow::Error {
    let mut msg = format!("`{line}` failed ({})", out.status);
    if !with_output {
        msg.push_str(", its output is above");
    }
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let t = tail(bytes);
        if with_output && !t.is_empty() {
            let _ = write!(msg, "\n--- {name} ---\n{t}");
        }
    }
    anyhow::anyhow!(msg)
}

/// Runs `cmd` to completion and returns its output whatever its status. With
/// `echo`, each line it prints is also shown on stderr as it comes, after
/// that prefix, so a long install is seen progressing.
pub fn output_echoing(cmd: &mut Command, echo: Option<&str>) -> Result<Output> {
    cmd.stdin(Stdio::null());
    let line = describe(cmd);
    let Some(prefix) = echo else {
        return cmd.output().with_context(|| format!("cannot run `{line}`"));
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let pump = |stream: Option<Box<dyn Read + Send>>| {
        let prefix = prefix.to_owned();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            if let Some(stream) = stream {
                for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "{prefix}{}",
                        String::from_utf8_lossy(&line).trim_end()
                    );
                    all.extend_from_slice(&line);
                    all.push(b'\n');
                }
            }
            all
        })
    };
    let out = pump(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = pump(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{line}`"))?;
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs a shell command line in `dir` (build add-on make steps).
pub fn shell(line: &str, dir: &Path, env: &[(&str, &OsStr)]) -> Result<Output> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-ec").arg(line).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Whether `name` is an executable on `PATH`.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt as _;
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

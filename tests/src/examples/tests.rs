//! The examples, checked: metadata against itself, the add-on's pin against
//! the tarball, and runs of each with the machine's `python3` (no ferry yet:
//! the end-to-end tests in `tests/tests/` package them).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::*;
use crate::{server, tools};

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read `{}`: {e}", path.display()))
}

fn toml_file(path: &Path) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("bad TOML in `{}`: {e}", path.display()))
}

fn python3() -> std::path::PathBuf {
    tools::find("python3", "python3").unwrap()
}

/// `python3 -B args…` in `dir`, with `env` added.
fn python(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(python3())
        .arg("-B")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn simple_api_metadata_agrees_with_itself() {
    let project = toml_file(&simple_api().join("pyproject.toml"))["project"].clone();
    assert_eq!(project["name"].as_str(), Some("simple_api"));
    assert_eq!(project["version"].as_str(), Some(SIMPLE_API_VERSION));
    assert_eq!(
        project["scripts"]["simple-api"].as_str(),
        Some("simple_api.app:main")
    );
    let init = read(&simple_api().join("simple_api/__init__.py"));
    assert!(
        init.contains(&format!("__version__ = \"{SIMPLE_API_VERSION}\"")),
        "{init}"
    );

    let deps: Vec<&str> = project["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let requirements = read(&simple_api().join("requirements.txt"));
    let pins: Vec<&str> = requirements
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        deps, pins,
        "pyproject.toml and requirements.txt pin different versions"
    );
    assert!(
        pins.iter().all(|p| p.contains("==")),
        "not exact pins: {pins:?}"
    );
    let names: Vec<&str> = pins.iter().map(|p| p.split("==").next().unwrap()).collect();
    assert_eq!(names, ["flask", "requests"]);
}

#[test]
fn simple_api_probe_flags_work_from_the_source_directory() {
    let dir = simple_api();
    let out = python(&dir, &["-m", "simple_api.app", "--version"], &[]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), format!("simple_api {SIMPLE_API_VERSION}\n"))
    );

    let out = python(
        &dir,
        &[
            "-m",
            "simple_api.app",
            "--echo-args",
            "a b",
            "",
            "--exit",
            "é",
        ],
        &[],
    );
    assert_eq!(
        stdout(&out),
        "[\"--echo-args\", \"a b\", \"\", \"--exit\", \"\\u00e9\"]\n"
    );

    let out = python(&dir, &["-m", "simple_api.app", "--exit", "7"], &[]);
    assert_eq!(out.status.code(), Some(7));

    let out = python(
        &dir,
        &["-m", "simple_api.app", "--version"],
        &[("SIMPLE_API_FAIL_AT_START", "1")],
    );
    assert_eq!(out.status.code(), Some(3));

    let out = python(
        &dir,
        &["-m", "simple_api.app", "--env-probe"],
        &[("LD_LIBRARY_PATH", "/nowhere")],
    );
    let probe = stdout(&out);
    assert!(
        probe.contains("\"LD_LIBRARY_PATH\": \"/nowhere\""),
        "{probe}"
    );
    assert!(probe.contains("\"child_ok\": true"), "{probe}");
    // The variable was in this process's environment, so the child inherits it.
    assert!(probe.contains("\"child_env_has_ferry\": true"), "{probe}");

    let mut cat = Command::new(python3())
        .args(["-B", "-m", "simple_api.app", "--cat"])
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let data: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let mut stdin = cat.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data).unwrap())
    };
    let out = cat.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    assert!(out.stdout == data, "--cat changed the bytes");
}

/// Installs simple_api and its pinned dependencies with pip (from PyPI or the
/// machine's wheel cache), serves it, and checks its routes and its signals.
#[test]
fn simple_api_serves_and_dies_by_its_signals() {
    use std::os::unix::process::ExitStatusExt;

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("src");
    copy_tree(&simple_api(), &source);
    let site = work.path().join("site");
    let out = Command::new(python3())
        .args(["-m", "pip", "install", "--quiet", "--no-input", "--target"])
        .arg(&site)
        .arg("-r")
        .arg(source.join("requirements.txt"))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        site.join("bin/simple-api").is_file(),
        "no `simple-api` console script"
    );

    for (signal, status) in [(libc::SIGTERM, "503"), (libc::SIGINT, "200")] {
        let port = server::free_port().unwrap();
        let mut child = Command::new(python3())
            .args([
                "-B",
                "-c",
                "import sys; from simple_api.app import main; sys.exit(main())",
            ])
            .env("PYTHONPATH", &site)
            .env("PORT", port.to_string())
            .env("SIMPLE_API_HEALTH_STATUS", status)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let health = server::wait_http_while(
            &format!("{base}/health"),
            Duration::from_secs(30),
            &mut child,
        )
        .unwrap();
        assert_eq!(
            health,
            (status.parse().unwrap(), "{\"status\":\"ok\"}\n".to_string())
        );
        let (_, version) = server::get(&format!("{base}/version")).unwrap();
        assert_eq!(
            version,
            format!("{{\"version\":\"{SIMPLE_API_VERSION}\"}}\n")
        );
        let (_, pid) = server::get(&format!("{base}/pid")).unwrap();
        assert_eq!(pid, format!("{{\"pid\":{}}}\n", child.id()));
        let (_, ssl) = server::get(&format!("{base}/ssl")).unwrap();
        assert!(ssl.contains("OpenSSL"), "{ssl}");

        // SAFETY: kill(2) on our own unreaped child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let exit = child.wait().unwrap();
        assert_eq!(exit.signal(), Some(signal), "{exit:?}");
    }
}

#[test]
fn c_addon_pin_matches_the_vendored_tarball() {
    let config = toml_file(&c_addon().join("ferry.toml"));
    let addon = &config["build"]["libgreet"];
    let source = &addon["sources"].as_array().unwrap()[0];
    let tarball = c_addon().join(source["path"].as_str().unwrap());
    let (digest, _) = ferry_format::digest::sha256_file(&tarball).unwrap();
    assert_eq!(
        source["sha256"].as_str(),
        Some(digest.as_str()),
        "stale pin for `{}`",
        tarball.display()
    );
    assert_eq!(addon["dest"].as_str(), Some("site-packages/c_addon/"));

    let project = toml_file(&c_addon().join("pyproject.toml"))["project"].clone();
    assert_eq!(project["name"].as_str(), Some("c_addon"));
    assert_eq!(project["version"].as_str(), Some(C_ADDON_VERSION));
    assert_eq!(
        project["scripts"]["c-addon"].as_str(),
        Some("c_addon.app:main")
    );
}

/// Does by hand what ferry's build add-on does (make steps in a scratch
/// directory, `src` copied to `dest`), then runs the example against the result.
#[test]
fn c_addon_builds_and_runs() {
    for (tool, package) in [
        ("make", "make"),
        ("cc", "gcc"),
        ("tar", "tar"),
        ("gzip", "gzip"),
    ] {
        tools::find(tool, package).unwrap();
    }
    let config = toml_file(&c_addon().join("ferry.toml"));
    let addon = &config["build"]["libgreet"];
    let scratch = tempfile::tempdir().unwrap();
    let source = c_addon().join(addon["sources"][0]["path"].as_str().unwrap());
    fs::copy(&source, scratch.path().join(source.file_name().unwrap())).unwrap();
    for step in addon["make"].as_array().unwrap() {
        let out = Command::new("/bin/sh")
            .args(["-c", step.as_str().unwrap()])
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make step {step} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bundle = tempfile::tempdir().unwrap();
    let site = bundle.path().join("site-packages");
    copy_tree(&c_addon().join("c_addon"), &site.join("c_addon"));
    let built = scratch.path().join(addon["src"].as_str().unwrap());
    let dest = bundle.path().join(addon["dest"].as_str().unwrap());
    fs::copy(&built, dest.join(built.file_name().unwrap())).unwrap();

    let out = python(&site, &["-m", "c_addon.app"], &[]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), "hello from libgreet\n5\n".to_string()),
        "{out:?}"
    );
}

/// Copies a source tree, leaving out build leftovers.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == "__pycache__" || name_str == "build" || name_str.ends_with(".egg-info") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

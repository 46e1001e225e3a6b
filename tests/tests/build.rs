//! `ferry build` end to end: real Python projects built with the real
//! interpreter and pip, run with every Python hidden and inside a minimal Debian
//! root that has no Python and no libssl.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_no_output, ferry_build, text};
use ferry_tests::{examples, hidden_python, rootfs, server};

#[test]
fn standalone_binary_runs_with_every_python_hidden() {
    let bin = common::simple_api();
    let cache = tempfile::tempdir().unwrap();
    // The cache through XDG_CACHE_HOME, so no FERRY_ variable is set by the
    // test itself and any the app's children see would be ferry's doing.
    let (k, v) = ("XDG_CACHE_HOME", cache.path().to_str().unwrap().to_owned());
    let run = |args: &[&str], stdin: &[u8]| {
        let mut cmd = hidden_python::command(&bin).unwrap();
        let mut child = cmd
            .args(args)
            .env(k, &v)
            // cargo's test runner sets LD_LIBRARY_PATH: start clean, so any
            // such variable the app sees came from ferry.
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("PYTHONHOME")
            .env_remove("PYTHONPATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run(&["--version"], b"");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("simple_api {}", examples::SIMPLE_API_VERSION)
    );

    let o = run(&["--imports"], b"");
    assert!(
        o.status.success(),
        "flask and requests must import from the bundle: {}",
        text(&o)
    );

    // Arguments, stdin and exit codes pass through untouched.
    let o = run(&["--echo-args", "two words", "ünï", "--", "-x"], b"");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        r#"["--echo-args", "two words", "\u00fcn\u00ef", "--", "-x"]"#
    );
    let o = run(&["--cat"], b"line one\nline two\x00\xff");
    assert_eq!(o.stdout, b"line one\nline two\x00\xff", "{}", text(&o));
    let o = run(&["--exit", "7"], b"");
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));

    // Nothing ferry did leaks into the app's own subprocesses, and they work.
    let o = run(&["--env-probe"], b"");
    assert!(o.status.success(), "{}", text(&o));
    let probe: serde_probe::Probe = serde_probe::parse(&o.stdout);
    assert!(
        probe.child_ok,
        "a subprocess of sys.executable failed: {}",
        text(&o)
    );
    assert!(
        !probe.child_env_has_ferry,
        "ferry leaked variables into subprocesses: {}",
        text(&o)
    );
    assert!(
        probe.clean,
        "PYTHONHOME/LD_LIBRARY_PATH/PYTHONPATH were set: {}",
        text(&o)
    );

    // Serving: /health answers, the server has the PID the launcher started
    // with, and SIGTERM ends it by that signal.
    let port = server::free_port().unwrap();
    let mut child = hidden_python::command(&bin)
        .unwrap()
        .env(k, &v)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let (status, _) = server::wait_http_while(
        &format!("{base}/health"),
        Duration::from_secs(60),
        &mut child,
    )
    .unwrap();
    assert_eq!(status, 200);
    let (_, body) = server::get(&format!("{base}/pid")).unwrap();
    assert!(
        body.contains(&format!("\"pid\":{}", child.id()))
            || body.contains(&format!("\"pid\": {}", child.id())),
        "{body} vs {}",
        child.id()
    );
    let (_, body) = server::get(&format!("{base}/ssl")).unwrap();
    assert!(body.contains("OpenSSL"), "{body}");
    unsafe_kill(child.id(), 15);
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this test owns; no memory is involved.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0);
}

/// `--env-probe`'s JSON, read without a JSON crate.
mod serde_probe {
    pub struct Probe {
        pub child_ok: bool,
        pub child_env_has_ferry: bool,
        pub clean: bool,
    }

    pub fn parse(bytes: &[u8]) -> Probe {
        let s = String::from_utf8_lossy(bytes);
        let flag = |k: &str| s.contains(&format!("\"{k}\": true"));
        Probe {
            child_ok: flag("child_ok"),
            child_env_has_ferry: flag("child_env_has_ferry"),
            clean: ["PYTHONHOME", "LD_LIBRARY_PATH", "PYTHONPATH"]
                .iter()
                .all(|k| s.contains(&format!("\"{k}\": null"))),
        }
    }
}

#[test]
fn standalone_binary_runs_in_minimal_debian_without_python() {
    let bin = common::simple_api();
    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &bin, &["--version"], &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(examples::SIMPLE_API_VERSION));
    let (_served, port) = common::serves_health_in(&root, &bin, Duration::from_secs(60));
    let (_, body) = server::get(&format!("http://127.0.0.1:{port}/ssl")).unwrap();
    assert!(
        body.contains("OpenSSL"),
        "bundled libssl did not load: {body}"
    );
}

#[test]
fn two_builds_of_the_same_inputs_are_byte_identical() {
    let out = tempfile::tempdir().unwrap();
    let project = examples::simple_api();
    for name in ["one", "two"] {
        let o = ferry_build(out.path(), &[project.to_str().unwrap(), "-o", name]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let one = std::fs::read(out.path().join("one")).unwrap();
    let two = std::fs::read(out.path().join("two")).unwrap();
    assert!(
        one == two,
        "two builds differ ({} and {} bytes)",
        one.len(),
        two.len()
    );
}

#[test]
fn eight_simultaneous_first_runs_share_one_extraction() {
    let bin = common::simple_api();
    let cache = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(&bin)
                .arg("--version")
                .env("FERRY_CACHE_DIR", cache.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let app_dir = cache.path().join("simple_api");
    let entries: Vec<String> = std::fs::read_dir(&app_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') || n.contains("partial"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "expected one extraction, found {entries:?}"
    );
}

#[test]
fn c_addon_library_is_built_bundled_and_loaded_in_minimal_debian() {
    let bin = common::built(&examples::c_addon(), &[], "c_addon").unwrap();
    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &bin, &[], &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("hello from libgreet") && out.contains('5'),
        "{out}"
    );
}

/// A copy of the c_addon example whose ferry.toml is edited by `edit`.
fn c_addon_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(examples::c_addon())
        .arg(dir.path().join("p"))
        .status()
        .unwrap();
    assert!(status.success());
    let cfg = dir.path().join("p/ferry.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, edit(text)).unwrap();
    dir
}

#[test]
fn addon_with_wrong_checksum_or_failing_step_stops_the_build() {
    let wrong_sum = c_addon_copy(|t| {
        let start = t.find("sha256 = \"").unwrap() + 10;
        format!("{}{}{}", &t[..start], "0".repeat(64), &t[start + 64..])
    });
    let p = wrong_sum.path().join("p");
    let o = ferry_build(&p, &[]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("sha256") && msg.contains("[build.libgreet]"),
        "{msg}"
    );
    assert_no_output(&p.join("dist"));

    let failing = c_addon_copy(|t| {
        t.replace(
            "make -C libgreet-1.0",
            "make -C libgreet-1.0 && echo step-output-marker && false",
        )
    });
    let p = failing.path().join("p");
    let o = ferry_build(&p, &[]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(
        msg.contains("make step 2") && msg.contains("step-output-marker"),
        "{msg}"
    );
    assert_no_output(&p.join("dist"));
}

#[test]
fn pyz_runs_with_python_and_system_mode_uses_the_matching_interpreter() {
    let pyz = common::built(
        &examples::simple_api(),
        &["--mode", "pyz"],
        "simple_api.pyz",
    )
    .unwrap();
    let o = Command::new("python3")
        .arg(&pyz)
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(examples::SIMPLE_API_VERSION));

    let sys_bin =
        common::built(&examples::simple_api(), &["--mode", "system"], "simple_api").unwrap();
    let cache = tempfile::tempdir().unwrap();
    // Debian's own python3.11 (not the build interpreter) runs it.
    let o = Command::new(&sys_bin)
        .arg("--version")
        .env("PATH", "/usr/bin:/bin")
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // A mismatching interpreter is refused by the bootstrap: run the extracted
    // bootstrap as if the binary had been built for another minor version.
    let o = Command::new(&sys_bin)
        .env("FERRY_EXTRACT_ONLY", "1")
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let dir = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let entry = std::path::Path::new(&dir).join("ferry/entry.py");
    let original = std::fs::read_to_string(&entry).unwrap();
    assert!(original.contains("_python = [3,11]"), "{original}");
    let other = original.replace("_python = [3,11]", "_python = [3,99]");
    let other_entry = cache.path().join("entry-3.99.py");
    std::fs::write(&other_entry, other).unwrap();
    let o = Command::new("/usr/bin/python3.11")
        .arg("-I")
        .arg(&other_entry)
        .arg("app")
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("built for Python 3.99 but runs on 3.11"),
        "{}",
        text(&o)
    );
    // Where no python3.11 exists, it says so plainly.
    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &sys_bin, &["--version"], &[]).unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("python3.11"), "{}", text(&o));
}

#[test]
fn each_bad_input_gets_one_clear_error_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let project = |name: &str, pyproject: &str, extra: &[(&str, &str)]| {
        let d = p.join(name);
        std::fs::create_dir_all(d.join("pkg")).unwrap();
        std::fs::write(d.join("pyproject.toml"), pyproject).unwrap();
        std::fs::write(d.join("pkg/__init__.py"), "def main():\n    print('hi')\n").unwrap();
        for (f, t) in extra {
            std::fs::write(d.join(f), t).unwrap();
        }
        d
    };
    let base = "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"pkg\"\nversion = \"1.0\"\n";
    let cases: Vec<(std::path::PathBuf, Vec<&str>, &[&str])> = vec![
        (
            project("no_entry", base, &[]),
            vec![],
            &["no entry point", "hint:"],
        ),
        (
            project(
                "bad_level",
                &format!("{base}[tool.ferry]\ncompression-level = 23\n"),
                &[],
            ),
            vec!["--entry", "pkg:main"],
            &[
                "compression level 23 (from [tool.ferry] in `pyproject.toml`)",
                "1 (fastest) to 22",
            ],
        ),
        (
            project("missing_req", base, &[]),
            vec!["--requirements", "nope.txt", "--entry", "pkg:main"],
            &["nope.txt", "does not exist"],
        ),
        (
            project(
                "bad_req",
                base,
                &[("requirements.txt", "ferry-no-such-package-xyz==9.9.9\n")],
            ),
            vec!["--entry", "pkg:main"],
            &[
                "cannot install the requirements",
                "no release of `ferry-no-such-package-xyz",
                "check its name and version on PyPI",
            ],
        ),
        (
            project(
                "broken_setup",
                base,
                &[("setup.py", "raise SystemExit('this setup.py fails on purpose')\n")],
            ),
            vec!["--entry", "pkg:main"],
            &[
                "cannot install the requirements",
                "not a name or version problem",
            ],
        ),
        (
            project(
                "needs_header",
                base,
                &[
                    (
                        "setup.py",
                        "from setuptools import Extension, setup\nsetup(ext_modules=[Extension('pkg._native', ['native.c'])])\n",
                    ),
                    ("native.c", "#include <ferry_no_such_header.h>\n"),
                ],
            ),
            vec!["--entry", "pkg:main"],
            &[
                "needs the header `ferry_no_such_header.h`",
                "apt-file search ferry_no_such_header.h",
            ],
        ),
        (
            project(
                "unknown_key",
                base,
                &[("ferry.toml", "entry = \"pkg:main\"\nnmae = \"x\"\n")],
            ),
            vec![],
            &["ferry.toml", "nmae"],
        ),
        (
            project("bad_python", base, &[]),
            vec!["--python", "/nonexistent/python3", "--entry", "pkg:main"],
            &["/nonexistent/python3", "--python"],
        ),
    ];
    for (dir, args, needles) in cases {
        let o = ferry_build(&dir, &args);
        let msg = text(&o);
        assert!(
            !o.status.success(),
            "{}: build succeeded\n{msg}",
            dir.display()
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        // The installer's own output, quoted after `--- stderr ---`, may
        // say `error:` too.
        let ours = stderr.split("\n--- ").next().unwrap_or_default();
        assert_eq!(
            ours.matches("error:").count(),
            1,
            "{}: want exactly one error\n{msg}",
            dir.display()
        );
        for n in needles {
            assert!(
                msg.contains(n),
                "{}: error lacks `{n}`\n{msg}",
                dir.display()
            );
        }
        assert_no_output(&dir.join("dist"));
    }
}

/// numpy's wheel ships OpenBLAS and gfortran libraries (patched by
/// auditwheel, already stripped): they must reach the device as the wheel
/// has them, and a matrix inversion must run where no Python is.
#[test]
fn numpy_inverts_a_matrix_in_minimal_debian() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("numcheck");
    std::fs::create_dir_all(p.join("numcheck")).unwrap();
    std::fs::write(
        p.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"numcheck\"\nversion = \"1.0.0\"\ndependencies = [\"numpy\"]\n\n[project.scripts]\nnumcheck = \"numcheck:main\"\n",
    )
    .unwrap();
    std::fs::write(
        p.join("numcheck/__init__.py"),
        "import numpy as np\n\n\ndef main():\n    rng = np.random.default_rng(7)\n    a = rng.random((60, 60)) + 60 * np.eye(60)\n    inv = np.linalg.inv(a)\n    ok = np.allclose(a @ inv, np.eye(60))\n    print(\"identity\", ok, \"checksum\", f\"{float(np.round(inv.trace(), 6))}\")\n",
    )
    .unwrap();
    let bin = common::built(&p, &[], "numcheck").unwrap();
    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &bin, &[], &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("identity True"), "{out}");
}

/// A mistyped `module:function` fails the build, with nothing in `dist/`.
#[test]
fn a_broken_entry_point_fails_the_build_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist/simple_api");
    let o = common::ferry_build(
        dir.path(),
        &[
            examples::simple_api().to_str().unwrap(),
            "--entry",
            "simple_api.app:no_such_function",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("cannot start")
            && msg.contains("no_such_function")
            && msg.contains("spelling"),
        "{msg}"
    );
    assert!(!out.exists(), "dist/ holds a binary that cannot start");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("dist"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Debian's own interpreter (`/usr/bin/python3.11`: stdlib links into
/// /etc, a sitecustomize, EXTERNALLY-MANAGED) as the build source: the
/// binary serves in a root without Python.
#[test]
fn debians_interpreter_builds_a_binary_that_serves_in_minimal_debian() {
    let python = "/usr/bin/python3.11";
    assert!(
        Path::new(python).exists(),
        "{python} is missing: scripts/install-deps.sh installs Debian's python3"
    );
    let bin = common::built(&examples::simple_api(), &["--python", python], "simple_api").unwrap();
    let root = rootfs::minimal_debian().unwrap();
    let (_served, _) = common::serves_health_in(&root, &bin, Duration::from_secs(60));
}

/// `ferry build ferry-src` (a relative directory, no slash) builds that
/// directory, not a package of that name from PyPI, and leaves it as it
/// was: no `build/`, no `*.egg-info`.
#[test]
fn a_relative_project_directory_is_built_and_left_clean() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("ferry-src");
    let status = Command::new("cp")
        .arg("-r")
        .arg(examples::simple_api())
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let leftovers = |d: &Path| -> Vec<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n == "build" || n.ends_with(".egg-info"))
            .collect()
    };
    for l in leftovers(&src) {
        std::fs::remove_dir_all(src.join(l)).unwrap();
    }
    let o = ferry_build(dir.path(), &["ferry-src", "-o", "out/simple_api"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.path().join("out/simple_api").is_file());
    assert_eq!(
        leftovers(&src),
        Vec::<String>::new(),
        "the build left files in the project"
    );
}

/// Freezing a script straight from PyPI: what nothing can tell (name,
/// version) is asked for in one error, before anything is installed.
#[test]
fn freezing_a_script_asks_for_every_missing_fact_at_once_before_installing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tool.py"), "print('hi')\n").unwrap();
    let o = ferry_build(dir.path(), &["--with", "six", "--entry", "tool.py"]);
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(msg.contains("--name") && msg.contains("--version"), "{msg}");
    assert!(
        !msg.contains("installing requirements"),
        "asked after installing: {msg}"
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).matches("error:").count(),
        1,
        "{msg}"
    );
}

/// How many regular files an extracted tree holds and their bytes.
fn regular_files(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            let (f, b) = regular_files(&e.path());
            total = (total.0 + f, total.1 + b);
        } else if meta.is_file() && e.file_name() != ".ferry-lock" {
            // `.ferry-lock` is the launcher's run lock, not the payload's.
            total = (total.0 + 1, total.1 + meta.len());
        }
    }
    total
}

fn inspect_json(file: &Path) -> serde_json::Value {
    let o = Command::new(common::ferry())
        .arg("inspect")
        .arg("--json")
        .arg(file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn has_distribution(contents: &serde_json::Value, name: &str) -> bool {
    contents["distributions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"].as_str().unwrap().eq_ignore_ascii_case(name) && d["version"].is_string())
}

/// `ferry inspect` tells what a binary and a zipapp hold: the packages with
/// versions, the bundled native libraries, and the disk an extraction takes.
#[test]
fn inspect_lists_packages_native_libraries_and_extracted_size() {
    let bin = common::simple_api();
    let v = inspect_json(&bin);
    let contents = &v["contents"];
    for name in ["flask", "requests", "simple_api"] {
        assert!(
            has_distribution(contents, name),
            "{name} missing: {contents}"
        );
    }
    let libs = contents["native_libraries"].as_array().unwrap();
    assert!(
        libs.iter()
            .any(|l| l.as_str().unwrap().starts_with("libssl")),
        "{libs:?}"
    );
    let extracted = contents["extracted_bytes"].as_u64().unwrap();
    assert!(extracted > v["sizes"]["payload"].as_u64().unwrap(), "{v}");
    // What inspect counts is what an extraction holds.
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new(&bin)
        .env("FERRY_EXTRACT_ONLY", "1")
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let tree = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let (files, bytes) = regular_files(Path::new(&tree));
    assert_eq!(contents["files"].as_u64().unwrap(), files, "{v}");
    assert_eq!(extracted, bytes, "{v}");

    let o = Command::new(common::ferry())
        .arg("inspect")
        .arg(&bin)
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&o.stdout);
    assert!(
        human.contains("extracted:") && human.contains("  Flask 3.1.3"),
        "{human}"
    );

    let pyz = common::built(
        &examples::simple_api(),
        &["--mode", "pyz"],
        "simple_api.pyz",
    )
    .unwrap();
    let v = inspect_json(&pyz);
    assert_eq!(v["kind"], "pyz", "{v}");
    assert_eq!(v["metadata"]["name"], "simple_api", "{v}");
    assert_eq!(
        v["metadata"]["version"],
        examples::SIMPLE_API_VERSION,
        "{v}"
    );
    assert_eq!(v["signature"]["state"], "unsigned", "{v}");
    assert!(has_distribution(&v["contents"], "flask"), "{v}");
}

/// A zipapp carries its bytecode, so a start with PYTHONDONTWRITEBYTECODE
/// (usual for services) compiles nothing: zipimport reads `.pyc` files
/// beside the sources, an unpacked tree its `__pycache__`. A zipapp that
/// must unpack native modules refuses a `noexec` cache plainly.
#[test]
fn pyz_ships_bytecode_and_refuses_a_noexec_cache_for_native_modules() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pure");
    std::fs::create_dir_all(p.join("pkg")).unwrap();
    std::fs::write(
        p.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n[project]\nname = \"pure\"\nversion = \"1.0\"\n[project.scripts]\npure = \"pkg:main\"\n",
    )
    .unwrap();
    std::fs::write(
        p.join("pkg/__init__.py"),
        "def main():\n    print(__file__)\n",
    )
    .unwrap();
    let o = ferry_build(&p, &["--mode", "pyz"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new("python3")
        .arg(p.join("dist/pure.pyz"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let file = String::from_utf8_lossy(&o.stdout);
    assert!(
        file.trim()
            .ends_with("pure.pyz/site-packages/pkg/__init__.pyc"),
        "zipimport compiled the source instead of reading shipped bytecode: {file}"
    );

    let pyz = common::built(
        &examples::simple_api(),
        &["--mode", "pyz"],
        "simple_api.pyz",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .arg(&pyz)
        .arg("--version")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let builds: Vec<_> = std::fs::read_dir(cache.path().join("simple_api"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    let pycache = builds[0].join("site-packages/flask/__pycache__");
    assert!(
        std::fs::read_dir(&pycache)
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "no shipped bytecode in `{}`",
        pycache.display()
    );

    let noexec = tempfile::tempdir().unwrap();
    let o = Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o noexec,size=64m ferry-noexec \"$1\" && FERRY_CACHE_DIR=\"$1\" exec python3 \"$2\" --version",
            "sh",
        ])
        .arg(noexec.path())
        .arg(&pyz)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("noexec") && stderr.contains("FERRY_CACHE_DIR"),
        "{}",
        text(&o)
    );
}

/// Whether an ELF file has DWARF debug sections (`readelf -S`).
fn has_debug_sections(file: &Path) -> bool {
    let o = Command::new("readelf")
        .arg("-S")
        .arg(file)
        .output()
        .expect("run readelf");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).contains(".debug_info")
}

/// The files under `dir` whose names start with `prefix` and end with `.so`.
fn shared_objects(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            found.extend(shared_objects(&e.path(), prefix));
        } else if ft.is_file() && name.starts_with(prefix) && name.ends_with(".so") {
            found.push(e.path());
        }
    }
    found
}

/// A wheel whose extension module carries debug sections (built with `-g`):
/// they are dropped (the log names the file), the symbols stay, and the
/// rewritten module loads where no Python is.
#[test]
fn a_wheel_with_debug_sections_is_stripped_safely_and_runs_in_minimal_debian() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dbgext");
    std::fs::create_dir_all(p.join("dbgext")).unwrap();
    std::fs::write(
        p.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n",
    )
    .unwrap();
    std::fs::write(
        p.join("setup.py"),
        "from setuptools import Extension, setup\n\nsetup(\n    name=\"dbgext\",\n    version=\"1.0.0\",\n    packages=[\"dbgext\"],\n    ext_modules=[Extension(\"dbgext._fast\", [\"dbgext/_fast.c\"], extra_compile_args=[\"-g\", \"-O1\"])],\n    entry_points={\"console_scripts\": [\"dbgext = dbgext:main\"]},\n)\n",
    )
    .unwrap();
    std::fs::write(
        p.join("dbgext/_fast.c"),
        "#include <Python.h>\n\nstatic PyObject *triangle(PyObject *self, PyObject *arg) {\n    long n = PyLong_AsLong(arg), sum = 0;\n    for (long i = 1; i <= n; i++) sum += i;\n    return PyLong_FromLong(sum);\n}\n\nstatic PyMethodDef methods[] = {{\"triangle\", triangle, METH_O, \"1 + ... + n\"}, {NULL, NULL, 0, NULL}};\nstatic struct PyModuleDef module = {PyModuleDef_HEAD_INIT, \"_fast\", NULL, -1, methods};\nPyMODINIT_FUNC PyInit__fast(void) { return PyModule_Create(&module); }\n",
    )
    .unwrap();
    std::fs::write(
        p.join("dbgext/__init__.py"),
        "from dbgext._fast import triangle\n\n\ndef main():\n    print(\"triangle\", triangle(100))\n",
    )
    .unwrap();
    let out = dir.path().join("out/dbgext");
    let o = ferry_build(
        dir.path(),
        &[p.to_str().unwrap(), "-o", out.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.lines()
            .any(|l| l.contains("debug sections dropped") && l.contains("dbgext/_fast.cpython-")),
        "the log does not name the wheel's rewritten module: {log}"
    );

    let cache = tempfile::tempdir().unwrap();
    let o = Command::new(&out)
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let libs = shared_objects(cache.path(), "_fast");
    assert_eq!(libs.len(), 1, "{libs:?}");
    assert!(
        !has_debug_sections(&libs[0]),
        "`{}` still carries debug sections",
        libs[0].display()
    );

    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &out, &[], &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("triangle 5050"),
        "{}",
        text(&o)
    );
}

/// A pure-Python console script frozen straight from PyPI in one command:
/// its name comes from the script, its version from the distribution.
#[test]
fn a_console_script_from_pypi_is_frozen_in_one_command_and_runs_in_minimal_debian() {
    let dir = tempfile::tempdir().unwrap();
    let o = ferry_build(
        dir.path(),
        &["--with", "pyflakes==3.2.0", "--entry", "pyflakes"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let bin = dir.path().join("dist/pyflakes");
    let info = inspect_json(&bin);
    assert_eq!(info["metadata"]["name"], "pyflakes", "{info}");
    assert_eq!(info["metadata"]["version"], "3.2.0", "{info}");

    let root = rootfs::minimal_debian().unwrap();
    let o = rootfs::run_in(&root, &bin, &["--version"], &[]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3.2.0"),
        "{}",
        text(&o)
    );
}

fn ferry_cache(cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(common::ferry())
        .arg("cache")
        .args(args)
        .arg("--dir")
        .arg(cache)
        .output()
        .unwrap()
}

/// `(build id, in use)` of every extraction `ferry cache list --json` shows.
fn cache_listing(cache: &Path) -> Vec<(String, bool)> {
    let o = ferry_cache(cache, &["list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["extractions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["app"], "simple_api", "{e}");
            (
                e["build_id"].as_str().unwrap().to_owned(),
                e["in_use"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Extractions of binaries run by hand: `ferry cache list` tells which one
/// an app runs from, `ferry cache prune` removes the others and what a
/// killed run left, and removes the last one only once its app has exited.
#[test]
fn cache_prune_removes_extractions_no_app_runs_from() {
    let standalone = common::simple_api();
    let system =
        common::built(&examples::simple_api(), &["--mode", "system"], "simple_api").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new(&system)
        .arg("--version")
        .env("FERRY_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let port = server::free_port().unwrap();
    let mut serving = Command::new(&standalone)
        .env("FERRY_CACHE_DIR", cache.path())
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let health = format!("http://127.0.0.1:{port}/health");
    server::wait_http_while(&health, Duration::from_secs(60), &mut serving).unwrap();

    let listed = cache_listing(cache.path());
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed.iter().filter(|(_, in_use)| *in_use).count(),
        1,
        "{listed:?}"
    );
    let (running, _) = listed.iter().find(|(_, in_use)| *in_use).unwrap().clone();
    let leftover = cache
        .path()
        .join(format!("simple_api/.{running}.partial-4000000"));
    std::fs::create_dir_all(leftover.join("ferry")).unwrap();

    let o = ferry_cache(cache.path(), &["prune", "--dry-run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(cache_listing(cache.path()).len(), 2, "a dry run removed");

    let o = ferry_cache(cache.path(), &["prune"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("removed 1 extractions") && out.contains("1 in use kept"),
        "{out}"
    );
    assert!(out.contains("1 leftovers of killed runs removed"), "{out}");
    assert!(!leftover.exists(), "the killed run's partial tree stays");
    assert_eq!(cache_listing(cache.path()), vec![(running.clone(), true)]);
    let (status, _) = server::get(&health).unwrap();
    assert_eq!(status, 200, "the app stopped serving after the prune");

    serving.kill().unwrap();
    serving.wait().unwrap();
    let o = ferry_cache(cache.path(), &["prune"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(cache_listing(cache.path()), vec![]);
}

/// A `.py` entry (here pop-build's `run.py`) in a zipapp runs as
/// `__main__` with its arguments and exit status, from the archive itself.
#[test]
fn a_script_entry_runs_from_a_zipapp() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("scripted");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("pyproject.toml"),
        "[project]\nname = \"scripted\"\nversion = \"2.1\"\n",
    )
    .unwrap();
    std::fs::write(
        p.join("run.py"),
        "import sys\n\nif __name__ == \"__main__\":\n    print(\"args\", sys.argv[1:])\n    sys.exit(3)\n",
    )
    .unwrap();
    let o = ferry_build(&p, &["--mode", "pyz"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new("python3")
        .arg(p.join("dist/scripted.pyz"))
        .args(["one", "two"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "args ['one', 'two']",
        "{}",
        text(&o)
    );
}

/// Offline (no index, a wheelhouse without the project's build backend):
/// the hint names the backend and how to put it in the wheelhouse, not
/// pip's bare "could not find a version".
#[test]
fn an_offline_build_without_its_backend_names_the_wheelhouse_fix() {
    let dir = tempfile::tempdir().unwrap();
    let wheelhouse = dir.path().join("wheelhouse");
    std::fs::create_dir_all(&wheelhouse).unwrap();
    let out = dir.path().join("dist/simple_api");
    let o = Command::new(common::ferry())
        .arg("build")
        .arg(examples::simple_api())
        .arg("-o")
        .arg(&out)
        .env("PIP_NO_INDEX", "1")
        .env("PIP_FIND_LINKS", &wheelhouse)
        .env("FERRY_INSTALLER", "pip")
        .output()
        .unwrap();
    let msg = text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("build backend `setuptools")
            && msg.contains("no index is used")
            && msg.contains("-d WHEELHOUSE"),
        "{msg}"
    );
    assert_no_output(&dir.path().join("dist"));
}

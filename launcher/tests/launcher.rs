//! The launcher as users run it: real containers assembled with
//! `ferry_format::container::write_container` around the built
//! `ferry-launcher`, whose "interpreter" is a small shell script that records
//! exactly what it was exec'd with (`/proc/$$/cmdline`, `/proc/$$/environ`,
//! its PID, its stdin) and exits with a chosen code.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry_format::container::{write_container, PythonMode, FORMAT_VERSION};
use ferry_format::digest::sha256_file;
use ferry_format::{Metadata, PythonInfo, SecretKey};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_ferry-launcher");
const INTERPRETER: &str = "python/bin/python3.11";

/// The stand-in interpreter: records how it was started, then exits.
const SCRIPT: &str = r#"#!/bin/sh
out="$FERRY_TEST_OUT"
if [ -n "$out" ]; then
  cat /proc/$$/cmdline > "$out/cmdline"
  cat /proc/$$/environ > "$out/environ"
  echo $$ > "$out/pid.tmp" && mv "$out/pid.tmp" "$out/pid"
  cat > "$out/stdin"
fi
exit "${FERRY_TEST_EXIT:-0}"
"#;

// ---------------------------------------------------------------- fixtures

/// A tar being built, with raw headers where the `tar` crate would refuse.
struct TarBuilder<W: Write>(tar::Builder<W>);

impl<W: Write> TarBuilder<W> {
    fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        Self(b)
    }

    fn raw(
        &mut self,
        kind: tar::EntryType,
        path: &[u8],
        link: &[u8],
        mode: u32,
        data: impl Read,
        len: u64,
    ) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(len);
        h.set_mtime(1_700_000_000);
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.raw(
            tar::EntryType::Regular,
            path.as_bytes(),
            b"",
            mode,
            data,
            data.len() as u64,
        );
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.raw(
            tar::EntryType::Symlink,
            path.as_bytes(),
            target.as_bytes(),
            0o777,
            io::empty(),
            0,
        );
    }

    /// `ferry/entry.py`, the stand-in interpreter and a symlink to it.
    fn standard(&mut self, tag: &str) {
        self.file(
            "ferry/entry.py",
            0o644,
            b"raise SystemExit('not run by tests')\n",
        );
        self.file(INTERPRETER, 0o755, SCRIPT.as_bytes());
        self.symlink("python/bin/python3", "python3.11");
        self.file("site-packages/tag.txt", 0o644, tag.as_bytes());
    }

    /// `site-packages/data/blob000…` : `count` incompressible files of `len`
    /// bytes, the i-th from noise seed `seed + i`.
    fn noise_files(&mut self, count: u64, len: u64, seed: u64) {
        for i in 0..count {
            let path = format!("site-packages/data/blob{i:03}");
            self.raw(
                tar::EntryType::Regular,
                path.as_bytes(),
                b"",
                0o644,
                noise(seed + i, len),
                len,
            );
        }
    }

    fn finish(self) -> W {
        self.0.into_inner().unwrap()
    }
}

/// Pseudo-random bytes (xorshift), incompressible for zstd.
struct Noise {
    state: u64,
    left: u64,
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            chunk.copy_from_slice(&self.state.to_le_bytes()[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn noise(seed: u64, len: u64) -> Noise {
    Noise {
        state: seed | 1,
        left: len,
    }
}

/// A built container.
struct App {
    path: PathBuf,
    name: String,
    build_id: String,
}

struct Spec<'a> {
    name: &'a str,
    mode: PythonMode,
    python_version: &'a str,
    glibc_floor: Option<&'a str>,
    key: Option<&'a SecretKey>,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Self {
            name: "demo",
            mode: PythonMode::Standalone,
            python_version: "3.11.7",
            glibc_floor: None,
            key: None,
        }
    }
}

/// Assembles `dir/file_name` from a compressed payload file.
fn assemble(dir: &Path, file_name: &str, payload: &Path, spec: &Spec<'_>) -> App {
    let (build_id, _) = sha256_file(payload).unwrap();
    let meta = Metadata {
        format_version: FORMAT_VERSION,
        name: spec.name.into(),
        version: "1.0.0".into(),
        entry_point: "app:main".into(),
        python: Some(PythonInfo {
            mode: spec.mode,
            version: spec.python_version.into(),
            executable: (spec.mode == PythonMode::Standalone).then(|| INTERPRETER.into()),
        }),
        build_id: build_id.clone(),
        created_at: 1_700_000_000,
        launcher_version: "0.1.0".into(),
        glibc_floor: spec.glibc_floor.map(Into::into),
    };
    let path = dir.join(file_name);
    let mut out = io::BufWriter::new(File::create(&path).unwrap());
    write_container(
        &mut out,
        &mut File::open(LAUNCHER).unwrap(),
        &mut File::open(payload).unwrap(),
        &meta,
        spec.key,
    )
    .unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    App {
        path,
        name: spec.name.into(),
        build_id,
    }
}

/// A container around a tar built in memory.
fn app_with(
    dir: &Path,
    file_name: &str,
    spec: &Spec<'_>,
    fill: impl FnOnce(&mut TarBuilder<Vec<u8>>),
) -> App {
    let mut tar = TarBuilder::new(Vec::new());
    fill(&mut tar);
    let compressed = zstd::stream::encode_all(&tar.finish()[..], 3).unwrap();
    let payload = dir.join(format!("{file_name}.payload"));
    fs::write(&payload, compressed).unwrap();
    let app = assemble(dir, file_name, &payload, spec);
    fs::remove_file(payload).unwrap();
    app
}

/// The standard app, built once for the tests that only run it.
static SHARED: OnceLock<(tempfile::TempDir, App)> = OnceLock::new();

/// Statics are never dropped: remove the shared app's directory when the
/// test binary exits (the harness ends with `exit`, which runs `atexit`).
extern "C" fn remove_shared_app() {
    if let Some((dir, _)) = SHARED.get() {
        let _ = fs::remove_dir_all(dir.path());
    }
}

fn shared_app() -> &'static App {
    &SHARED
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let app = app_with(dir.path(), "demo", &Spec::default(), |t| {
                t.standard("shared")
            });
            // SAFETY: registers a plain function; it only reads a static.
            unsafe { libc::atexit(remove_shared_app) };
            (dir, app)
        })
        .1
}

/// A test's scratch space: a private cache root and an output directory.
struct Scratch {
    tmp: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("cache")).unwrap();
        fs::set_permissions(tmp.path().join("cache"), fs::Permissions::from_mode(0o700)).unwrap();
        Self { tmp }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// A fresh output directory for one run.
    fn out(&self, tag: &str) -> PathBuf {
        let out = self.path().join(format!("out-{tag}"));
        fs::create_dir(&out).unwrap();
        out
    }

    /// The launcher with a clean, known environment.
    fn command(&self, app: &App, out: &Path) -> Command {
        let mut c = Command::new(&app.path);
        c.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("FERRY_CACHE_DIR", self.cache())
            .env("FERRY_TEST_OUT", out)
            .stdin(Stdio::null());
        c
    }

    fn names(&self, app: &App) -> BTreeSet<String> {
        match fs::read_dir(self.cache().join(&app.name)) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }
}

/// Spawning that retries on `ETXTBSY`: another test thread may fork while a
/// just-written executable is still open for writing in this process, and the
/// child holds that descriptor until its own exec.
trait Spawn {
    fn spawn_ok(&mut self) -> Child;
    fn output_ok(&mut self) -> Output;
    fn status_ok(&mut self) -> std::process::ExitStatus;
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> T {
    for _ in 0..100 {
        match f() {
            Ok(t) => return t,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot start: {e}"),
        }
    }
    panic!("executable stayed busy");
}

impl Spawn for Command {
    fn spawn_ok(&mut self) -> Child {
        retry(|| self.spawn())
    }

    fn output_ok(&mut self) -> Output {
        retry(|| self.output())
    }

    fn status_ok(&mut self) -> std::process::ExitStatus {
        retry(|| self.status())
    }
}

fn split_nul(bytes: &[u8]) -> Vec<Vec<u8>> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Asserts the launcher stopped with `code` and one `ferry: …` line holding
/// every one of `needles`.
fn assert_refused(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("ferry: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` missing from: {err}");
    }
}

// ---------------------------------------------------------------- running the app

#[test]
fn argv_passthrough_including_non_utf8_and_spaces() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("argv");
    let odd = OsString::from_vec(vec![b'c', b'a', b'f', 0xe9, 0xff]);
    let o = {
        use std::os::unix::process::CommandExt;
        s.command(app, &out)
            .arg0("my app")
            .args([
                OsStr::new("two words"),
                OsStr::new(""),
                &odd,
                OsStr::new("--flag=x"),
            ])
            .output()
            .unwrap()
    };
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "silent on success: {}", stderr(&o));
    let dir = s.cache().join(&app.name).join(&app.build_id);
    let argv = split_nul(&fs::read(out.join("cmdline")).unwrap());
    // The kernel runs `#!/bin/sh` as `/bin/sh <script> <args…>`.
    let expected: Vec<Vec<u8>> = vec![
        b"/bin/sh".to_vec(),
        dir.join(INTERPRETER).into_os_string().into_vec(),
        b"-I".to_vec(),
        dir.join("ferry/entry.py").into_os_string().into_vec(),
        b"my app".to_vec(),
        b"two words".to_vec(),
        b"".to_vec(),
        odd.into_vec(),
        b"--flag=x".to_vec(),
    ];
    assert_eq!(argv, expected);
}

#[test]
fn python_flags_stand_in_for_ignored_variables() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("flags");
    let o = s
        .command(app, &out)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "x")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let argv = split_nul(&fs::read(out.join("cmdline")).unwrap());
    assert_eq!(argv[2..5], [b"-I".to_vec(), b"-u".to_vec(), b"-B".to_vec()]);
}

#[test]
fn exit_code_and_stdin_pass_through() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("exit");
    let mut child = s
        .command(app, &out)
        .env("FERRY_TEST_EXIT", "42")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let input: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(fs::read(out.join("stdin")).unwrap(), input);
}

#[test]
fn app_keeps_the_launchers_pid() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("pid");
    let mut child = s.command(app, &out).spawn_ok();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let seen: u32 = fs::read_to_string(out.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(seen, pid, "exec, not spawn");
}

#[test]
fn environment_is_left_exactly_as_it_came() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("env");
    let odd = OsString::from_vec(vec![b'v', 0xfe, b' ', b'\n', b'=']);
    let o = s
        .command(app, &out)
        .env("CUSTOM", "a b")
        .env("ODD", &odd)
        .env("FERRY_DEBUG", "")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seen: BTreeSet<Vec<u8>> = split_nul(&fs::read(out.join("environ")).unwrap())
        .into_iter()
        .collect();
    let mut given: BTreeSet<Vec<u8>> = [
        "PATH=/usr/bin:/bin".to_string(),
        format!("FERRY_CACHE_DIR={}", s.cache().display()),
        format!("FERRY_TEST_OUT={}", out.display()),
        "CUSTOM=a b".into(),
        "FERRY_DEBUG=".into(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    given.insert([b"ODD=".as_slice(), odd.as_bytes()].concat());
    assert_eq!(seen, given, "nothing added, removed or changed");
}

#[test]
fn warm_run_reuses_the_extraction() {
    let app = shared_app();
    let s = Scratch::new();
    assert!(s.command(app, &s.out("1")).status_ok().success());
    let dir = s.cache().join(&app.name).join(&app.build_id);
    fs::write(dir.join("sentinel"), b"still here").unwrap();
    let o = s
        .command(app, &s.out("2"))
        .env("FERRY_DEBUG", "1")
        .output_ok();
    assert!(o.status.success());
    assert!(dir.join("sentinel").exists(), "not extracted again");
    let err = stderr(&o);
    assert!(err.contains("warm:"), "{err}");
    assert!(!err.contains("unpacked"), "{err}");
    assert_eq!(s.names(app), BTreeSet::from([app.build_id.clone()]));
}

#[test]
fn debug_traces_each_step_with_microseconds() {
    let app = shared_app();
    let s = Scratch::new();
    let o = s
        .command(app, &s.out("dbg"))
        .env("FERRY_DEBUG", "1")
        .output_ok();
    assert!(o.status.success());
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 4, "{err}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("ferry-launcher: [") && l.contains("us] ")),
        "{err}"
    );
    for step in ["read demo", "cache root", "unpacked", "exec"] {
        assert!(err.contains(step), "`{step}` not traced: {err}");
    }
}

#[test]
fn extract_only_prints_the_directory_and_runs_nothing() {
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("x");
    for _ in 0..2 {
        let o = s
            .command(app, &out)
            .env("FERRY_EXTRACT_ONLY", "1")
            .output_ok();
        assert!(o.status.success(), "{}", stderr(&o));
        let dir = s.cache().join(&app.name).join(&app.build_id);
        assert_eq!(o.stdout, [dir.as_os_str().as_bytes(), b"\n"].concat());
        assert!(dir.join(INTERPRETER).is_file());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing was run");
    }
}

#[test]
fn system_mode_finds_python_on_path() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec {
        mode: PythonMode::System,
        python_version: "3.99.1",
        ..Spec::default()
    };
    let app = app_with(tmp.path(), "sys", &spec, |t| t.standard("system"));
    let s = Scratch::new();

    let o = s.command(&app, &s.out("missing")).output_ok();
    assert_refused(
        &o,
        78,
        &["ferry: demo needs python3.99 on this system (system mode) and none was found on PATH"],
    );

    let bin = s.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("python3.99"), SCRIPT).unwrap();
    fs::set_permissions(bin.join("python3.99"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.out("found");
    let o = s
        .command(&app, &out)
        .env("PATH", format!("/nonexistent::{}:/usr/bin", bin.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let argv = split_nul(&fs::read(out.join("cmdline")).unwrap());
    assert_eq!(argv[1], bin.join("python3.99").into_os_string().into_vec());
    assert_eq!(argv[2], b"-I");
}

// ---------------------------------------------------------------- damaged or untrusted binaries

#[test]
fn stripped_binary_says_stripped() {
    let app = shared_app();
    let s = Scratch::new();
    let copy = s.path().join("stripped");
    fs::copy(&app.path, &copy).unwrap();
    let st = Command::new("strip")
        .arg(&copy)
        .status()
        .expect("`strip` (binutils) is needed");
    assert!(st.success());
    let o = Command::new(&copy)
        .env("FERRY_CACHE_DIR", s.cache())
        .output_ok();
    assert_refused(&o, 70, &["stripped"]);
    assert_eq!(fs::read_dir(s.cache()).unwrap().count(), 0);
}

#[test]
fn truncated_binary_says_truncated() {
    let app = shared_app();
    let s = Scratch::new();
    let copy = s.path().join("cut");
    fs::copy(&app.path, &copy).unwrap();
    let len = fs::metadata(&copy).unwrap().len();
    File::options()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let o = Command::new(&copy)
        .env("FERRY_CACHE_DIR", s.cache())
        .output_ok();
    assert_refused(&o, 70, &["truncated"]);
}

#[test]
fn ferry_verify_checks_the_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let other = SecretKey::generate().unwrap();
    let signed = app_with(
        tmp.path(),
        "signed",
        &Spec {
            key: Some(&key),
            ..Spec::default()
        },
        |t| t.standard("signed"),
    );
    let s = Scratch::new();
    let keyfile = s.path().join("k.pub");
    fs::write(&keyfile, key.public_key().to_text()).unwrap();

    let good = format!("{},{}", other.public_key().to_base64(), keyfile.display());
    let o = s
        .command(&signed, &s.out("good"))
        .env("FERRY_VERIFY", good)
        .output_ok();
    assert!(o.status.success(), "{}", stderr(&o));

    let o = s
        .command(&signed, &s.out("wrong"))
        .env("FERRY_VERIFY", other.public_key().to_base64())
        .output()
        .unwrap();
    assert_refused(&o, 77, &["signature"]);

    let o = s
        .command(shared_app(), &s.out("unsigned"))
        .env("FERRY_VERIFY", key.public_key().to_base64())
        .output()
        .unwrap();
    assert_refused(&o, 77, &["not signed"]);

    let o = s
        .command(&signed, &s.out("bad"))
        .env("FERRY_VERIFY", "junk")
        .output_ok();
    assert_refused(&o, 77, &["FERRY_VERIFY", "`junk`"]);
}

#[test]
fn glibc_floor_is_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_with(
        tmp.path(),
        "future",
        &Spec {
            glibc_floor: Some("99.1"),
            ..Spec::default()
        },
        |t| t.standard("future"),
    );
    let s = Scratch::new();
    let o = s.command(&app, &s.out("g")).output_ok();
    assert_refused(
        &o,
        70,
        &["ferry: demo needs glibc 99.1 or newer; this system has 2."],
    );
    assert_eq!(
        fs::read_dir(s.cache()).unwrap().count(),
        0,
        "nothing unpacked"
    );
}

#[test]
fn unsafe_payload_entries_are_refused_with_nothing_outside_the_cache() {
    type Fill = fn(&mut TarBuilder<Vec<u8>>);
    let cases: [(&str, Fill, &str); 6] = [
        (
            "dotdot",
            |t| t.file("../../../escaped", 0o644, b"x"),
            "`../../../escaped`",
        ),
        (
            "absolute",
            |t| t.file("/tmp/ferry-test-escaped", 0o644, b"x"),
            "absolute",
        ),
        (
            "symlink",
            |t| {
                t.symlink("site-packages/out", "../../../..");
                t.file("site-packages/out/escaped", 0o644, b"x");
            },
            "`site-packages/out`",
        ),
        (
            "through-link",
            |t| {
                t.symlink("lib", "site-packages");
                t.file("lib/escaped", 0o644, b"x");
            },
            "passes through `lib`",
        ),
        (
            "hardlink",
            |t| {
                t.raw(
                    tar::EntryType::Link,
                    b"escaped",
                    b"ferry/entry.py",
                    0o644,
                    io::empty(),
                    0,
                )
            },
            "hard links",
        ),
        (
            "fifo",
            |t| t.raw(tar::EntryType::Fifo, b"escaped", b"", 0o644, io::empty(), 0),
            "fifos",
        ),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (tag, fill, needle) in cases {
        let app = app_with(tmp.path(), tag, &Spec::default(), |t| {
            t.standard(tag);
            fill(t);
        });
        let s = Scratch::new();
        let o = s.command(&app, &s.out("o")).output_ok();
        assert_refused(&o, 70, &["payload entry", needle]);
        let beside: BTreeSet<_> = fs::read_dir(s.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            beside,
            BTreeSet::from(["cache".into(), "out-o".into()]),
            "{tag}"
        );
        assert!(
            s.names(&app).is_empty(),
            "{tag}: partial tree and lock removed: {:?}",
            s.names(&app)
        );
        assert!(!Path::new("/tmp/ferry-test-escaped").exists());
    }
}

// ---------------------------------------------------------------- cache roots

#[test]
fn unsafe_cache_roots_are_refused_naming_the_variable() {
    let app = shared_app();
    let s = Scratch::new();

    let open = s.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let o = s
        .command(app, &s.out("open"))
        .env("FERRY_CACHE_DIR", &open)
        .output_ok();
    assert_refused(
        &o,
        78,
        &[
            "writable by group or others",
            "FERRY_CACHE_DIR",
            &open.display().to_string(),
        ],
    );

    let link = s.path().join("link");
    std::os::unix::fs::symlink(s.cache(), &link).unwrap();
    let o = s
        .command(app, &s.out("link"))
        .env("FERRY_CACHE_DIR", &link)
        .output_ok();
    assert_refused(&o, 78, &["symlink", "FERRY_CACHE_DIR"]);

    // $XDG_CACHE_HOME/ferry that is world-writable: the origin is named too.
    let xdg = s.path().join("xdg");
    fs::create_dir_all(xdg.join("ferry")).unwrap();
    fs::set_permissions(xdg.join("ferry"), fs::Permissions::from_mode(0o757)).unwrap();
    let o = s
        .command(app, &s.out("xdg"))
        .env_remove("FERRY_CACHE_DIR")
        .env("XDG_CACHE_HOME", &xdg)
        .output()
        .unwrap();
    assert_refused(&o, 78, &["$XDG_CACHE_HOME", "FERRY_CACHE_DIR"]);

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = s.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let o = s
            .command(app, &s.out("theirs"))
            .env("FERRY_CACHE_DIR", &theirs)
            .output_ok();
        assert_refused(&o, 78, &["owned by uid 65534", "FERRY_CACHE_DIR"]);
    }
}

#[test]
fn cache_root_without_home_falls_back_and_is_created_private() {
    let app = shared_app();
    let s = Scratch::new();
    // A service with CacheDirectory=a b: systemd passes both, `:`-separated.
    let first = s.path().join("svc/first");
    let value = format!(
        "{}:{}",
        first.display(),
        s.path().join("svc/second").display()
    );
    let o = s
        .command(app, &s.out("svc"))
        .env_remove("FERRY_CACHE_DIR")
        .env("CACHE_DIRECTORY", value)
        .env("FERRY_EXTRACT_ONLY", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.starts_with(first.as_os_str().as_bytes()));
    assert_eq!(
        fs::metadata(&first).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // No variable at all (a service without $HOME): /var/cache/ferry, which
    // an unprivileged user cannot create (or does not own); the error says
    // what to set. Run as uid 65534 when the tests run as root.
    fs::set_permissions(s.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = s.path().join("demo");
    fs::copy(&app.path, &copy).unwrap();
    let copy = App {
        path: copy,
        name: app.name.clone(),
        build_id: app.build_id.clone(),
    };
    let mut c = s.command(&copy, &s.out("none"));
    c.env_remove("FERRY_CACHE_DIR")
        .env("FERRY_EXTRACT_ONLY", "1");
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        c.uid(65534).gid(65534);
    }
    let o = c.output_ok();
    assert_refused(
        &o,
        78,
        &["/var/cache/ferry", "FERRY_CACHE_DIR", "no $FERRY_CACHE_DIR"],
    );
}

// ---------------------------------------------------------------- concurrency, crashes, pruning

#[test]
fn eight_concurrent_first_runs_extract_once() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app_with(tmp.path(), "busy", &Spec::default(), |t| {
        t.standard("busy");
        for i in 0..24 {
            let len = 256 * 1024;
            let path = format!("site-packages/blob{i}");
            t.raw(
                tar::EntryType::Regular,
                path.as_bytes(),
                b"",
                0o644,
                noise(i, len),
                len,
            );
        }
    });
    let s = Scratch::new();
    let children: Vec<(Child, PathBuf)> = (0..8)
        .map(|i| {
            let out = s.out(&i.to_string());
            (s.command(&app, &out).spawn_ok(), out)
        })
        .collect();
    for (mut child, out) in children {
        let status = child.wait().unwrap();
        assert!(status.success(), "every run succeeds");
        assert_eq!(
            fs::read_to_string(out.join("pid")).unwrap().trim(),
            child.id().to_string()
        );
    }
    assert_eq!(
        s.names(&app),
        BTreeSet::from([app.build_id.clone()]),
        "one extraction, no partial or lock left"
    );
}

#[test]
fn killed_extraction_is_followed_by_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    for (attempt, files) in [20u64, 80].into_iter().enumerate() {
        const FILE_LEN: u64 = 10 << 20;
        // ~200 MB (then ~800 MB) of incompressible data, streamed to disk.
        let payload = tmp.path().join(format!("big{attempt}.payload"));
        {
            let enc =
                zstd::stream::write::Encoder::new(File::create(&payload).unwrap(), 1).unwrap();
            let mut t = TarBuilder::new(enc);
            t.standard("big");
            t.noise_files(files, FILE_LEN, 7);
            t.finish().finish().unwrap();
        }
        let app = assemble(
            tmp.path(),
            &format!("big{attempt}"),
            &payload,
            &Spec::default(),
        );
        fs::remove_file(&payload).unwrap();
        let s = Scratch::new();
        let name_dir = s.cache().join(&app.name);
        let final_dir = name_dir.join(&app.build_id);
        let partial_prefix = format!(".{}.partial-", app.build_id);
        let partial = || {
            fs::read_dir(&name_dir)
                .ok()?
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&partial_prefix))
                .map(|e| e.path())
        };

        let mut child = s
            .command(&app, &s.out("killed"))
            .env("FERRY_EXTRACT_ONLY", "1")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the extraction to start", Duration::from_secs(30), || {
            partial().is_some_and(|p| p.join("site-packages/data").exists())
        });
        std::thread::sleep(Duration::from_millis(50));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if final_dir.exists() {
            eprintln!("extraction of {files} files finished within 50 ms; retrying bigger");
            continue;
        }
        assert!(partial().is_some(), "the killed run left its partial tree");

        // The next run succeeds; its memory does not grow with the payload.
        let mut next = s
            .command(&app, &s.out("next"))
            .env("FERRY_EXTRACT_ONLY", "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, max_rss_kib) = wait_with_peak_rss(&mut next);
        assert_eq!(status, 0);
        let mut stdout = Vec::new();
        next.stdout
            .take()
            .unwrap()
            .read_to_end(&mut stdout)
            .unwrap();
        assert_eq!(stdout, [final_dir.as_os_str().as_bytes(), b"\n"].concat());
        assert!(partial().is_none(), "leftover removed");
        for i in 0..files {
            let p = final_dir.join(format!("site-packages/data/blob{i:03}"));
            assert_eq!(fs::metadata(&p).unwrap().len(), FILE_LEN);
        }
        assert_eq!(s.names(&app), BTreeSet::from([app.build_id.clone()]));
        eprintln!("{files} x 10 MiB: peak RSS of the extracting launcher {max_rss_kib} KiB");
        assert!(
            max_rss_kib < 64 * 1024,
            "peak RSS {max_rss_kib} KiB for a {} MiB payload",
            files * 10
        );
        return;
    }
    panic!("extraction always finished before the kill");
}

/// Waits for `child` and returns its exit code and peak RSS in KiB, read from
/// `VmHWM` while it runs. (`wait4`'s `ru_maxrss` would not do: a child started
/// with `vfork` records this test process's peak at its `exec`.)
fn wait_with_peak_rss(child: &mut Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak = kib;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap(), peak);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn pruning_keeps_three_and_never_an_app_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let apps: Vec<App> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|tag| app_with(tmp.path(), tag, &Spec::default(), |t| t.standard(tag)))
        .collect();
    let id = |i: usize| apps[i].build_id.clone();
    let s = Scratch::new();

    // A runs and stays running (its stand-in interpreter reads stdin).
    let out_a = s.out("a");
    let mut a = s.command(&apps[0], &out_a).stdin(Stdio::piped()).spawn_ok();
    wait_for("app a to start", Duration::from_secs(30), || {
        out_a.join("pid").exists()
    });

    let runs = std::cell::Cell::new(0);
    let extract = |i: usize| {
        std::thread::sleep(Duration::from_millis(20)); // distinct mtimes
        runs.set(runs.get() + 1);
        let o = s
            .command(&apps[i], &s.out(&format!("x{}", runs.get())))
            .env("FERRY_EXTRACT_ONLY", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    for i in 1..=4 {
        extract(i);
    }
    // Newest three are E, D, C; B is pruned; A is older but in use.
    assert_eq!(
        s.names(&apps[0]),
        BTreeSet::from([id(0), id(2), id(3), id(4)])
    );

    drop(a.stdin.take());
    assert!(a.wait().unwrap().success());
    // A warm run prunes nothing.
    extract(4);
    assert_eq!(
        s.names(&apps[0]),
        BTreeSet::from([id(0), id(2), id(3), id(4)])
    );
    // A new extraction does: A is no longer in use.
    extract(5);
    assert_eq!(s.names(&apps[0]), BTreeSet::from([id(3), id(4), id(5)]));
}

// ---------------------------------------------------------------- faults

/// An app of `files` incompressible files of `len` bytes each.
fn sized_app(dir: &Path, file_name: &str, name: &str, files: u64, len: u64) -> App {
    let spec = Spec {
        name,
        ..Spec::default()
    };
    app_with(dir, file_name, &spec, |t| {
        t.standard(file_name);
        t.noise_files(files, len, 11);
    })
}

/// Runs `script` (sh) in a private mount namespace, so mounts made for one
/// test vanish with it; `$APP`, `$CACHE` and `$OUT` are set.
fn in_mount_namespace(app: &App, cache: &Path, out: &Path, script: &str) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("APP", &app.path)
        .env("CACHE", cache)
        .env("OUT", out)
        .env("FERRY_CACHE_DIR", cache)
        .env("FERRY_TEST_OUT", out)
        .env("FERRY_EXTRACT_ONLY", "1")
        .stdin(Stdio::null())
        .output_ok()
}

/// Whether the tests may mount (root, with `unshare`).
fn can_mount() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare").arg("--version").output().is_ok()
}

#[test]
fn a_full_disk_during_extraction_is_one_clear_error_and_leaves_nothing() {
    assert!(can_mount(), "this test needs root and unshare(1)");
    let tmp = tempfile::tempdir().unwrap();
    // 12 MiB of payload into a 4 MiB filesystem.
    let app = sized_app(tmp.path(), "fat", "fat", 12, 1 << 20);
    let s = Scratch::new();
    let out = s.out("full");
    let o = in_mount_namespace(
        &app,
        &s.cache(),
        &out,
        r#"mount -t tmpfs -o size=4m,mode=0700 ferry-full "$CACHE" || exit 99
"$APP"; rc=$?
echo "left: $(ls -A "$CACHE/fat" 2>/dev/null | tr '\n' ' ')"
df -k "$CACHE" | tail -n 1
exit $rc"#,
    );
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(99), "mount failed: {err}");
    assert_refused(
        &o,
        70,
        &["no space left on device", "FERRY_CACHE_DIR", "fat"],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let left = stdout
        .lines()
        .find_map(|l| l.strip_prefix("left: "))
        .expect("the listing");
    assert!(
        left.trim().is_empty(),
        "the cache holds what the failed run wrote: {stdout}"
    );
    // Room again: the same binary extracts and runs.
    let o = in_mount_namespace(
        &app,
        &s.cache(),
        &out,
        r#"mount -t tmpfs -o size=64m,mode=0700 ferry-room "$CACHE" || exit 99
"$APP""#,
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_read_only_cache_root_is_refused_naming_the_variable() {
    assert!(can_mount(), "this test needs root and unshare(1)");
    let app = shared_app();
    let s = Scratch::new();
    let out = s.out("ro");
    let o = in_mount_namespace(
        app,
        &s.cache(),
        &out,
        r#"mount -t tmpfs -o ro,mode=0700 ferry-ro "$CACHE" || exit 99
"$APP""#,
    );
    assert_ne!(o.status.code(), Some(99), "mount failed: {}", stderr(&o));
    assert_refused(&o, 78, &["read-only", "FERRY_CACHE_DIR"]);
}

#[test]
fn two_builds_of_one_app_started_together_each_run_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec {
        name: "twin",
        ..Spec::default()
    };
    let a = app_with(tmp.path(), "twin-a", &spec, |t| t.standard("build a"));
    let b = app_with(tmp.path(), "twin-b", &spec, |t| t.standard("build b"));
    assert_ne!(a.build_id, b.build_id);
    let s = Scratch::new();
    let runs: Vec<(Child, &App)> = (0..8)
        .map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            let mut c = s.command(app, &s.out(&format!("twin{i}")));
            c.env("FERRY_EXTRACT_ONLY", "1").stdout(Stdio::piped());
            (c.spawn_ok(), app)
        })
        .collect();
    for (child, app) in runs {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let dir = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
        assert_eq!(dir, s.cache().join("twin").join(&app.build_id));
        let tag = fs::read_to_string(dir.join("site-packages/tag.txt")).unwrap();
        let expected = if app.build_id == a.build_id {
            "build a"
        } else {
            "build b"
        };
        assert_eq!(tag, expected, "each build runs its own files");
    }
    assert_eq!(
        s.names(&a),
        BTreeSet::from([a.build_id.clone(), b.build_id.clone()]),
        "one tree per build, no partial or lock left"
    );
}

#[test]
fn random_kills_during_extraction_never_leave_a_tree_that_is_not_whole() {
    let tmp = tempfile::tempdir().unwrap();
    const FILES: u64 = 60;
    const LEN: u64 = 512 * 1024;
    let app = sized_app(tmp.path(), "killme", "killme", FILES, LEN);
    let s = Scratch::new();
    let final_dir = s.cache().join("killme").join(&app.build_id);
    let whole = || {
        (0..FILES).all(|i| {
            fs::metadata(final_dir.join(format!("site-packages/data/blob{i:03}")))
                .is_ok_and(|m| m.len() == LEN)
        })
    };
    // A fixed spread of delays over the extraction (which takes tens to
    // hundreds of milliseconds here): some kills land before the first
    // file, most in the middle, some after the rename.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut kills = 0;
    for round in 0..30 {
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).unwrap();
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 150_000);
        let mut child = s
            .command(&app, &s.out(&format!("kill{round}")))
            .env("FERRY_EXTRACT_ONLY", "1")
            .stdout(Stdio::null())
            .spawn_ok();
        std::thread::sleep(delay);
        if child.kill().is_ok() {
            kills += 1;
        }
        child.wait().unwrap();
        assert!(
            !final_dir.exists() || whole(),
            "round {round} (killed after {delay:?}): a tree that is not whole is in place"
        );
    }
    let o = s
        .command(&app, &s.out("after"))
        .env("FERRY_EXTRACT_ONLY", "1")
        .output_ok();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(whole());
    assert_eq!(
        s.names(&app),
        BTreeSet::from([app.build_id.clone()]),
        "leftovers of {kills} killed runs are gone"
    );
}

//! ferry's programs on the boards' architectures: ferryd and ferry-launcher
//! cross-built by `scripts/cross.sh` for aarch64 and armhf, run through
//! qemu-user in a Debian 12 root of that architecture, and ferryd's Debian
//! packages (`scripts/deb.sh`) installed the way a board's owner would.
//! `scripts/test.sh` builds all of them before the tests run. The examples
//! built with `ferry build --target` for each ARM board run there too,
//! serving `/health` from a root that has no Python and no libssl.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::repo::{current_version, version_served, Repo, ANSWERS_500};
use common::{assert_no_output, ferry_build};
use ferry_format::tuf::layout::app_target_dir;
use ferry_tests::arch::{elf_machine_of, Arch};
use ferry_tests::board::{AgentConfig, Board, FERRYD_INSIDE};
use ferry_tests::rootfs::{self, scratch, Staged};
use ferry_tests::{examples, server};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn cross_program(arch: Arch, name: &str) -> PathBuf {
    let path = arch.release_program(name);
    assert!(
        path.is_file(),
        "`{}` is missing: run scripts/cross.sh {} (scripts/test.sh does)",
        path.display(),
        arch.multiarch()
    );
    path
}

fn deb(arch: Arch) -> PathBuf {
    let path = ferry_tests::workspace_root()
        .join("target/deb")
        .join(format!("ferryd_{VERSION}_{}.deb", arch.deb()));
    assert!(
        path.is_file(),
        "`{}` is missing: run scripts/deb.sh {} (scripts/test.sh does)",
        path.display(),
        arch.deb()
    );
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn runs_in_its_own_root(arch: Arch) {
    let root = rootfs::minimal_debian_for(arch).unwrap();
    for name in ["ferryd", "ferry-launcher"] {
        let program = cross_program(arch, name);
        assert_eq!(
            elf_machine_of(&program).unwrap(),
            arch.elf_machine(),
            "`{}` is not an {} binary",
            program.display(),
            arch.deb()
        );
    }
    let staged = Staged::new(&root, &cross_program(arch, "ferryd")).unwrap();
    let out = staged.run(&["--version"], &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), format!("ferryd {VERSION}"));
    // The launcher alone is no app: it says so, in the target's root.
    let staged = Staged::new(&root, &cross_program(arch, "ferry-launcher")).unwrap();
    let out = staged.run(&[], &[]).unwrap();
    assert!(!out.status.success());
    assert!(
        !text(&out.stderr).is_empty(),
        "the bare launcher explains itself"
    );
}

#[test]
fn ferryd_and_the_launcher_for_aarch64_run_in_an_arm64_root() {
    runs_in_its_own_root(Arch::Arm64);
}

#[test]
fn ferryd_and_the_launcher_for_armhf_run_in_an_armhf_root() {
    runs_in_its_own_root(Arch::Armhf);
}

/// `apt install ./ferryd_….deb` in a scratch copy of a minimal root of the
/// package's architecture: it installs with what the root has, puts the
/// binary, unit, config and docs in place, and the installed ferryd runs.
fn installs_in_a_root_of_its_arch(arch: Arch) {
    let root = rootfs::minimal_debian_for(arch).unwrap();
    let package = deb(arch);
    let name = package.file_name().unwrap().to_str().unwrap();
    let script = format!(
        "set -e\n\
         apt-get install -y --no-install-recommends /tmp/{name} >/tmp/apt.log 2>&1 || {{ cat /tmp/apt.log >&2; exit 1; }}\n\
         dpkg-query -W -f='${{Status}} ${{Architecture}}\\n' ferryd\n\
         ls /lib/systemd/system/ferryd.service /usr/share/doc/ferryd/agent.md\n\
         grep -c '^#' /etc/ferry/agent.toml\n\
         /usr/bin/ferryd --version\n\
         /usr/bin/ferryd status && exit 1 || echo \"status exit $?\"\n"
    );
    let out = scratch::run_script(&root, &[&package], &script).unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "installing {name} failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("install ok installed {}", arch.deb())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("ferryd {VERSION}")), "{stdout}");
    // The packaged config is only comments: every command but `run` refuses
    // with the configuration exit status and says what to set.
    assert!(stdout.contains("status exit 78"), "{stdout}");
    assert!(
        text(&out.stderr).contains("not configured"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_amd64_package_installs_in_an_amd64_root() {
    installs_in_a_root_of_its_arch(Arch::Amd64);
}

#[test]
fn the_arm64_package_installs_in_an_arm64_root() {
    installs_in_a_root_of_its_arch(Arch::Arm64);
}

#[test]
fn the_armhf_package_installs_in_an_armhf_root() {
    installs_in_a_root_of_its_arch(Arch::Armhf);
}

/// The files of a package, unpacked with `dpkg-deb -x`.
fn unpack(package: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("dpkg-deb")
        .arg("-x")
        .arg(package)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

/// What a fresh `apt install` leaves on a systemd board: the packaged unit
/// starting the packaged ferryd with the packaged, commented config. It is
/// active, says what to configure, and does not restart in a loop.
#[test]
fn the_amd64_package_starts_unconfigured_on_a_board_without_a_restart_loop() {
    let files = unpack(&deb(Arch::Amd64));
    let board = Board::start_with_agent("deb-amd64", &files.path().join("usr/bin/ferryd")).unwrap();
    std::fs::copy(
        files.path().join("etc/ferry/agent.toml"),
        board.etc.join("agent.toml"),
    )
    .unwrap();
    let unit = std::fs::read_to_string(files.path().join("lib/systemd/system/ferryd.service"))
        .unwrap()
        .replace("/usr/bin/ferryd", FERRYD_INSIDE);
    board.sandbox.install_unit("ferryd.service", &unit).unwrap();
    let out = board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = board
            .sandbox
            .property("ferryd.service", "StatusText")
            .unwrap();
        if status.contains("not configured") || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.contains("not configured"), "StatusText={status}");
    assert!(status.contains("/etc/ferry/agent.toml"), "{status}");
    // Longer than the unit's RestartSec: a loop would have shown by now.
    std::thread::sleep(Duration::from_secs(12));
    board.assert_active_without_restarts("ferryd.service");
    // A stop is clean: not a failure systemd would record.
    let out = board
        .sandbox
        .systemctl(&["stop", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        board.sandbox.property("ferryd.service", "Result").unwrap(),
        "success"
    );
}

/// `ferry build --target` of `project` for `arch`, made once per test run.
fn built_for(arch: Arch, project: &Path, name: &str) -> PathBuf {
    cross_program(arch, "ferry-launcher");
    let bin = common::built(project, &["--target", arch.multiarch()], name).unwrap();
    assert_eq!(
        elf_machine_of(&bin).unwrap(),
        arch.elf_machine(),
        "`{}` is not an {} binary",
        bin.display(),
        arch.deb()
    );
    bin
}

/// simple_api built on this x86_64 machine for `arch` starts in a Debian
/// root of that architecture (no Python, no libssl), serves `/health`, and
/// its bundled OpenSSL (the target's, from Debian's packages) loads.
fn simple_api_serves_health_on(arch: Arch) {
    let bin = built_for(arch, &examples::simple_api(), "simple_api");
    let root = rootfs::minimal_debian_for(arch).unwrap();
    let out = rootfs::run_in(&root, &bin, &["--version"], &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("simple_api {}", examples::SIMPLE_API_VERSION)
    );
    // Emulated: the first start unpacks and imports Flask under qemu.
    let (_served, port) = common::serves_health_in(&root, &bin, Duration::from_secs(120));
    let (_, body) = server::get(&format!("http://127.0.0.1:{port}/ssl")).unwrap();
    assert!(
        body.contains("OpenSSL"),
        "the bundled libssl did not load: {body}"
    );
}

#[test]
fn simple_api_built_for_aarch64_serves_health_in_an_arm64_root() {
    simple_api_serves_health_on(Arch::Arm64);
}

#[test]
fn simple_api_built_for_armhf_serves_health_in_an_armhf_root() {
    simple_api_serves_health_on(Arch::Armhf);
}

/// c_addon's add-on compiles libgreet with the target's cross compiler (its
/// Makefile uses `$(CC)`), and the library loads on the board.
fn c_addon_runs_on(arch: Arch) {
    let bin = built_for(arch, &examples::c_addon(), "c_addon");
    let root = rootfs::minimal_debian_for(arch).unwrap();
    let out = rootfs::run_in(&root, &bin, &[], &[]).unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("hello from libgreet") && stdout.contains('5'),
        "{stdout}"
    );
}

#[test]
fn c_addon_built_for_aarch64_loads_its_library_in_an_arm64_root() {
    c_addon_runs_on(Arch::Arm64);
}

#[test]
fn c_addon_built_for_armhf_loads_its_library_in_an_armhf_root() {
    c_addon_runs_on(Arch::Armhf);
}

/// A requirement with no wheel for the board (docopt ships only a source
/// archive) stops the build naming it and the ways out; nothing reaches
/// the output directory.
#[test]
fn a_requirement_without_a_wheel_for_the_board_is_named_with_the_ways_out() {
    cross_program(Arch::Arm64, "ferry-launcher");
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("dist");
    let o = ferry_build(
        dir.path(),
        &[
            "--target",
            "aarch64-linux-gnu",
            "--with",
            "docopt==0.6.2",
            "--entry",
            "docopt:docopt",
            "--name",
            "d",
            "--no-check",
            "-o",
            out_dir.join("d").to_str().unwrap(),
        ],
    );
    let stderr = text(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains("`docopt==0.6.2` has no wheel for aarch64-linux-gnu"),
        "{stderr}"
    );
    assert!(stderr.contains("PIP_FIND_LINKS"), "{stderr}");
    assert!(stderr.contains("build add-on"), "{stderr}");
    assert_no_output(&out_dir);
}

/// A launcher of another architecture is refused before anything is built.
#[test]
fn a_launcher_for_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = ferry_build(
        dir.path(),
        &[
            examples::simple_api().to_str().unwrap(),
            "--target",
            "aarch64-linux-gnu",
            "--launcher",
            common::launcher().to_str().unwrap(),
        ],
    );
    let stderr = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("is built for x86_64-linux-gnu, and this build is for aarch64-linux-gnu"),
        "{stderr}"
    );
}

/// One board of the emulated fleet: its architecture, the board, its app's port.
struct FleetBoard {
    arch: Arch,
    board: Board,
    port: u16,
}

/// A systemd board whose ferryd is `arch`'s (an ARM one runs through
/// qemu-user), following `repo`.
fn fleet_board(repo: &Repo, arch: Arch) -> FleetBoard {
    let agent = match arch {
        Arch::Amd64 => ferry_tests::programs::program("ferryd"),
        other => cross_program(other, "ferryd"),
    };
    ferry_tests::binfmt::ensure_runs(arch).unwrap();
    let board = Board::start_with_agent(&format!("fleet-{}", arch.deb()), &agent).unwrap();
    let port = server::free_port().unwrap();
    board
        .configure(&AgentConfig {
            repository: &repo.nginx.url(),
            root: &repo.root(),
            app_extra: "probation = \"5s\"\nrestart-timeout = \"180s\"",
            top_extra: "",
            port,
        })
        .unwrap();
    if arch != Arch::Amd64 {
        // qemu translates the ARM code into host code at run time: it needs
        // writable, executable memory. A real board runs the unit as shipped.
        board
            .agent_drop_in("emulated", "[Service]\nMemoryDenyWriteExecute=no\n")
            .unwrap();
    }
    FleetBoard { arch, board, port }
}

/// simple_api at `version` (patched by `patch`) for every architecture,
/// signed and published as one release of three artifacts.
fn publish_for_all(repo: &Repo, version: &str, patch: Option<(&str, &str)>) {
    repo.ferry(&publish_args(&signed_builds(
        repo,
        version,
        patch,
        &Arch::ALL,
    )));
}

/// simple_api at `version` built for each of `arches`, signed, as file
/// names in the repository's directory.
fn signed_builds(
    repo: &Repo,
    version: &str,
    patch: Option<(&str, &str)>,
    arches: &[Arch],
) -> Vec<String> {
    let project_dir = tempfile::tempdir().unwrap();
    let project = examples::simple_api_variant(project_dir.path(), version, patch).unwrap();
    let mut names = Vec::new();
    for &arch in arches {
        let bin = match arch {
            Arch::Amd64 => common::built(&project, &[], "simple_api").unwrap(),
            other => built_for(other, &project, "simple_api"),
        };
        let name = format!("release-{version}-{}", arch.deb());
        std::fs::copy(&bin, repo.dir.path().join(&name)).unwrap();
        repo.ferry(&["sign", &name, "--key", "release.key"]);
        names.push(name);
    }
    names
}

/// `ferry publish FILES… --key release.key <trust>`.
fn publish_args(files: &[String]) -> Vec<&str> {
    let mut args = vec!["publish"];
    args.extend(files.iter().map(String::as_str));
    args.extend_from_slice(&["--key", "release.key"]);
    args.extend_from_slice(&Repo::TRUST);
    args
}

fn wait_all(fleet: &[FleetBoard], what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
    for b in fleet {
        b.board
            .wait_for(
                &format!("{what} on the {} board", b.arch.deb()),
                Duration::from_secs(400),
                &pred,
            )
            .unwrap();
    }
}

/// GETs of `version`'s artifact for `arch` that nginx answered in full.
fn artifact_fetches(log: &str, version: &str, arch: Arch) -> usize {
    // `targets/simple_api/<version>/<target>/<sha256>.simple_api`.
    let dir = format!("/simple_api/{version}/{}/", arch.multiarch());
    log.lines()
        .filter(|l| {
            l.starts_with("\"GET ")
                && l.contains(&dir)
                && l.contains(".simple_api HTTP/")
                && l.contains("\" 200 ")
        })
        .count()
}

/// The fleet the issue asks for: an x86_64, an aarch64 and an armhf board
/// (their agents and apps each that architecture's binaries, ARM ones run
/// through qemu-user) follow one channel. A release of three artifacts
/// reaches all three; a broken one is rolled back on all three; and each
/// board downloaded only its own architecture's artifact.
#[test]
fn an_emulated_fleet_of_three_architectures_updates_and_rolls_back_on_one_channel() {
    let repo = Repo::new();
    let fleet: Vec<FleetBoard> = Arch::ALL
        .into_iter()
        .map(|a| fleet_board(&repo, a))
        .collect();

    publish_for_all(&repo, "1.0.0", None);
    for b in &fleet {
        let out = b
            .board
            .sandbox
            .systemctl(&["start", "ferryd.service"])
            .unwrap();
        let journal = || {
            let j = b.board.sandbox.journal(&["-u", "ferryd.service"]).unwrap();
            text(&j.stdout)
        };
        assert!(
            out.status.success(),
            "ferryd did not start on the {} board: {}\n{}",
            b.arch.deb(),
            text(&out.stderr),
            journal()
        );
    }
    wait_all(&fleet, "1.0.0 committed", |s| {
        current_version(s) == "1.0.0" && s["phase"] == "idle"
    });

    publish_for_all(&repo, "2.0.0", None);
    wait_all(&fleet, "2.0.0 committed", |s| {
        current_version(s) == "2.0.0" && s["phase"] == "idle"
    });
    for b in &fleet {
        assert_eq!(version_served(b.port).as_deref(), Some("2.0.0"));
        let running = b.board.current_binary();
        assert_eq!(
            elf_machine_of(&running).unwrap(),
            b.arch.elf_machine(),
            "the {} board runs another architecture's build",
            b.arch.deb()
        );
    }

    publish_for_all(&repo, "3.0.0", Some(ANSWERS_500));
    wait_all(&fleet, "3.0.0 rolled back", |s| {
        s["last_result"]["outcome"] == "rolled_back"
            && s["last_result"]["version"] == "3.0.0"
            && current_version(s) == "2.0.0"
            && s["phase"] == "idle"
    });
    for b in &fleet {
        assert_eq!(version_served(b.port).as_deref(), Some("2.0.0"));
    }

    let log = repo.nginx.access_log();
    for version in ["1.0.0", "2.0.0", "3.0.0"] {
        for arch in Arch::ALL {
            assert_eq!(
                artifact_fetches(&log, version, arch),
                1,
                "{version}'s {} artifact was not fetched exactly once (each board fetches its own, once):\n{log}",
                arch.deb()
            );
        }
    }
}

/// A release without this board's architecture: the aarch64 board says so
/// once ("no aarch64-linux-gnu artifact in release 2.0.0"), keeps running
/// its version, and neither retries nor refuses again on later polls.
#[test]
fn a_release_without_the_boards_artifact_is_refused_once_and_the_board_keeps_its_version() {
    let repo = Repo::new();
    let b = fleet_board(&repo, Arch::Arm64);
    publish_for_all(&repo, "1.0.0", None);
    let out = b
        .board
        .sandbox
        .systemctl(&["start", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_all(std::slice::from_ref(&b), "1.0.0 committed", |s| {
        current_version(s) == "1.0.0" && s["phase"] == "idle"
    });

    let others = signed_builds(&repo, "2.0.0", None, &[Arch::Amd64, Arch::Armhf]);
    repo.ferry(&publish_args(&others));
    let s = b
        .board
        .wait_for("2.0.0 refused", Duration::from_secs(120), |s| {
            s["last_result"]["outcome"] == "refused" && s["last_result"]["version"] == "2.0.0"
        })
        .unwrap();
    let message = s["last_result"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("no aarch64-linux-gnu artifact in release 2.0.0"),
        "{s}"
    );
    // Several polls later (the board polls every second): still one refusal.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(b.board.count_events("refused", Some("2.0.0")).unwrap(), 1);
    let s = b.board.app_status().unwrap();
    assert_eq!(current_version(&s), "1.0.0");
    assert_eq!(version_served(b.port).as_deref(), Some("1.0.0"));
    let log = repo.nginx.access_log();
    for arch in [Arch::Amd64, Arch::Armhf] {
        assert_eq!(artifact_fetches(&log, "2.0.0", arch), 0, "{log}");
    }
}

/// `ferry publish` of several binaries checks they are one release: one app
/// and version, one binary per architecture.
#[test]
fn publish_refuses_binaries_of_different_versions_or_two_of_one_architecture() {
    let repo = Repo::new();
    let v1 = signed_builds(&repo, "1.0.0", None, &[Arch::Arm64, Arch::Amd64]);
    let v2 = signed_builds(&repo, "2.0.0", None, &[Arch::Amd64]);
    let run = |files: &[String]| {
        let args = publish_args(files);
        ferry_tests::programs::run_ferry(repo.dir.path(), &args)
            .map(|_| ())
            .unwrap_err()
    };
    let err = format!("{:#}", run(&[v1[0].clone(), v2[0].clone()]));
    assert!(
        err.contains("is simple_api 2.0.0, but")
            && err.contains("one release is one app and version"),
        "{err}"
    );
    let err = format!("{:#}", run(&[v1[0].clone(), v1[0].clone()]));
    assert!(err.contains("two files for aarch64-linux-gnu"), "{err}");
    // Nothing was published: no artifact of either version is in the repository.
    for version in ["1.0.0", "2.0.0"] {
        let dir = repo.path().join(app_target_dir("simple_api")).join(version);
        assert!(!dir.exists(), "`{}` exists", dir.display());
    }
}

/// `--target-python DIR`: the board's CPython as an installed prefix (here
/// Debian's armhf interpreter with its /lib merged into the prefix, as on a
/// merged-/usr board) instead of the packages ferry fetches; the target is
/// the prefix's architecture, no `--target` needed.
#[test]
fn a_target_python_prefix_builds_for_its_architecture() {
    built_for(Arch::Armhf, &examples::c_addon(), "c_addon");
    let cache = ferry_tests::cache_dir().join("target-pythons");
    let tree = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("debian12-armhf-"))
        })
        .expect("the armhf interpreter ferry fetched");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    for (from, to) in [
        (tree.join("usr"), prefix.clone()),
        (tree.join("lib"), prefix.join("lib")),
    ] {
        std::fs::create_dir_all(&to).unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(from.join("."))
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = dir.path().join("c_addon");
    let o = ferry_build(
        dir.path(),
        &[
            examples::c_addon().to_str().unwrap(),
            "--target-python",
            prefix.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(elf_machine_of(&out).unwrap(), Arch::Armhf.elf_machine());
    let root = rootfs::minimal_debian_for(Arch::Armhf).unwrap();
    let run = rootfs::run_in(&root, &out, &[], &[]).unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("hello from libgreet"));

    // A prefix of one architecture with --target of another is refused.
    let o = ferry_build(
        dir.path(),
        &[
            examples::c_addon().to_str().unwrap(),
            "--target-python",
            prefix.to_str().unwrap(),
            "--target",
            "aarch64-linux-gnu",
        ],
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr)
            .contains("is built for arm-linux-gnueabihf, and --target asks for aarch64-linux-gnu"),
        "{}",
        text(&o.stderr)
    );
}

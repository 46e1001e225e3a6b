//! `ferry build`: a Python project becomes one executable.
//!
//! The pipeline, one named step after another (each in its own module):
//! [`Settings::resolve`] (flags, `ferry.toml`, `[tool.ferry]`, project
//! metadata) → [`prepare`] (key, launcher, interpreter, installer: what can
//! fail fast) → [`install`] → [`identity::identify`] → [`addons`] → either
//! [`pyz::finish`] or [`assemble::binary`]. The output appears in `dist/`
//! only when complete.

pub mod addons;
pub mod assemble;
pub mod bytecode;
pub mod entry;
pub mod for_target;
pub mod identity;
pub mod install;
pub mod native;
pub mod pack;
pub mod project;
pub mod pyz;
pub mod settings;
pub mod smoke;
pub mod standalone;
pub mod stdlib_zip;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::SecretKey;

use crate::cli::BuildArgs;
use crate::keyfile;
use crate::log::{self, Progress};
use crate::python::{self, Interpreter};
use crate::target::{self, debian, Target};
use for_target::TargetBuild;
use project::Project;
use settings::{Mode, Settings};

/// Steps before the mode's own: installing, add-ons.
const COMMON_STEPS: usize = 2;

/// `SOURCE_DATE_EPOCH`, else the project's last git commit time, else
/// 1980-01-01: a default that keeps builds reproducible.
fn build_time(project_dir: Option<&Path>) -> Result<u64> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH `{v}` is not a number of seconds"));
    }
    if let Some(dir) = project_dir {
        let out = std::process::Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .output();
        if let Ok(out) = out {
            if let Ok(t) = String::from_utf8_lossy(&out.stdout).trim().parse() {
                return Ok(t);
            }
        }
    }
    Ok(315_532_800)
}

/// The launcher to put at the head of the binary: `--launcher`, else the
/// first of the target's [`Target::launcher_candidates`] built for it.
fn launcher_path(args: &BuildArgs, target: Target) -> Result<PathBuf> {
    if let Some(p) = &args.launcher {
        let built_for = target::of_file(p).context("--launcher")?;
        if built_for != target {
            bail!(
                "--launcher `{}` is built for {built_for}, and this build is for {target}\nhint: pass the launcher built for {target} (scripts/cross.sh {target})",
                p.display()
            );
        }
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("cannot locate the ferry executable")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let candidates = target.launcher_candidates(dir);
    for candidate in &candidates {
        if candidate.is_file() && target::of_file(candidate).is_ok_and(|t| t == target) {
            return Ok(candidate.clone());
        }
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|c| format!("`{}`", c.display()))
        .collect();
    let build = if target == Target::host() {
        "cargo build -p ferry-launcher".to_owned()
    } else {
        format!("scripts/cross.sh {target}")
    };
    bail!(
        "no ferry-launcher for {target}: looked at {}\nhint: build it ({build}) and put it there, or pass --launcher PATH",
        looked.join(", ")
    )
}

/// The board the build is for: `--target`, else this machine. Another
/// architecture's interpreter is fetched here (modes that ship or link
/// against one), so a missing archive fails before anything is installed.
fn target_build(args: &BuildArgs, mode: Mode) -> Result<TargetBuild> {
    let given = match &args.target {
        Some(t) => Some(Target::parse(t).context("--target")?),
        None => None,
    };
    if let Some(dir) = &args.target_python {
        if mode == Mode::Pyz {
            bail!("--target-python gives an interpreter to bundle, and a pyz bundles none\nhint: drop --target-python (a zipapp runs on the board's own Python)");
        }
        let tree = target::prefix::python_tree(dir, given)?;
        return Ok(TargetBuild {
            target: tree.target,
            tree: Some(tree),
        });
    }
    let target = given.unwrap_or_else(Target::host);
    if target == Target::host() {
        return Ok(TargetBuild::host());
    }
    let tree = match mode {
        Mode::Pyz => None,
        _ => Some(debian::python_tree(target)?),
    };
    Ok(TargetBuild { target, tree })
}

/// What is checked and loaded before anything is installed, so that a key
/// that does not load or a missing tool never costs a whole build.
struct Prepared {
    key: Option<SecretKey>,
    launcher: Option<PathBuf>,
    board: TargetBuild,
    interp: Interpreter,
    installer: install::Installer,
    created_at: u64,
}

fn prepare(args: &BuildArgs, settings: &Settings) -> Result<Prepared> {
    let mode = settings.mode.value;
    let key = match &args.sign_key {
        Some(path) => Some(keyfile::load_secret(path, &args.password)?),
        None => None,
    };
    let board = target_build(args, mode)?;
    let launcher = match mode {
        Mode::Pyz => None,
        _ => Some(launcher_path(args, board.target)?),
    };
    if mode == Mode::Standalone {
        native::require_tools(&board.strip_program())?;
    }
    let host_interp = python::query(&settings.python.value).with_context(|| {
        format!(
            "interpreter `{}` ({})",
            settings.python.value.display(),
            settings.python.source
        )
    })?;
    let interp = match &board.tree {
        Some(tree) => Interpreter::for_target(&host_interp, tree)?,
        None => host_interp,
    };
    let installer = if board.is_cross() {
        install::choose_for_cross(&interp)?
    } else {
        install::choose(&interp)?
    };
    if !settings.addons.is_empty() {
        board.addon_env()?;
    }
    let project_dir = installable_dir(settings);
    let created_at = build_time(project_dir.as_deref())?;
    Ok(Prepared {
        key,
        launcher,
        board,
        interp,
        installer,
        created_at,
    })
}

/// The project directory pip installs, if there is an installable project.
fn installable_dir(settings: &Settings) -> Option<PathBuf> {
    settings
        .project
        .as_ref()
        .filter(|p| p.installable)
        .map(|p| p.dir.clone())
}

/// Runs `ferry build`.
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let project = match (&args.dir, args.with.is_empty()) {
        (Some(dir), _) => Some(Project::read(dir)?),
        (None, true) => Some(Project::read(Path::new("."))?),
        (None, false) => None,
    };
    let settings = Settings::resolve(&args, project)?;
    identity::check_facts_known(&settings)?;
    let prepared = prepare(&args, &settings)?;
    let Prepared {
        key,
        launcher,
        board,
        interp,
        installer,
        created_at,
    } = &prepared;
    let mode = settings.mode.value;
    let check = !args.no_check;
    let mut progress = Progress::new(
        COMMON_STEPS
            + match mode {
                Mode::Pyz => pyz::STEPS,
                _ => assemble::steps(check),
            },
    );

    let work = tempfile::Builder::new()
        .prefix("ferry-build-")
        .tempdir()
        .context("cannot create a build directory")?;
    let bundle = work.path().join("bundle");
    let site = bundle.join("site-packages");
    progress.step(&format!(
        "installing requirements with {installer:?} for Python {}",
        interp.version
    ));
    let req_files: Vec<PathBuf> = settings
        .requirements
        .iter()
        .map(|r| r.value.clone())
        .collect();
    let project_dir = installable_dir(&settings);
    install::install(
        interp,
        *installer,
        &site,
        &install::InstallPlan {
            requirement_files: &req_files,
            project: project_dir.as_deref(),
            specs: &settings.with,
            platform: board.platform((interp.major, interp.minor)),
        },
    )?;
    let contents = python::site_contents(interp, &site)?;
    let identity = identity::identify(&settings, &contents, &bundle)?;

    progress.step("running build add-ons");
    let addon_dir = settings
        .project
        .as_ref()
        .map(|p| p.dir.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let addon_env = board.addon_env()?;
    // FERRY_PYTHON runs on this machine: the target's does not in a cross build.
    let addon_python = if board.is_cross() {
        &interp.invoked
    } else {
        &interp.executable
    };
    for (addon, cfg) in &settings.addons {
        addons::run(addon, cfg, &addon_dir, &bundle, addon_python, &addon_env)?;
    }

    if mode == Mode::Pyz {
        return pyz::finish(
            &settings,
            interp,
            &bundle,
            &identity,
            key.as_ref(),
            *created_at,
            &mut progress,
        );
    }
    let launcher = launcher
        .as_deref()
        .expect("a launcher is resolved for every mode but pyz");
    let built = assemble::binary(
        &assemble::Inputs {
            settings: &settings,
            interp,
            board,
            identity: &identity,
            launcher,
            key: key.as_ref(),
            created_at: *created_at,
            check,
        },
        work.path(),
        &mut progress,
    )?;

    let size = std::fs::metadata(&built.output)?.len();
    log::note(format!(
        "built `{}` in {:.1}s: {} {} ({}, {}, Python {}), {:.1} MB, {} files, build {}",
        built.output.display(),
        progress.elapsed_secs(),
        identity.name.value,
        identity.version.value,
        match mode {
            Mode::Standalone => "standalone",
            Mode::System => "system",
            Mode::Pyz => "pyz",
        },
        board.target,
        interp.version,
        size as f64 / 1e6,
        built.entries,
        &built.build_id[..12]
    ));
    match key {
        Some(k) => log::note(format!("signed with key {}", k.id())),
        None => log::note(format!(
            "the binary is UNSIGNED; sign it with `ferry sign {} --key KEY` or build with --sign-key",
            built.output.display()
        )),
    }
    println!("{}", built.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Where the binary goes: `--output`, config, else `dist/<name>` (`.pyz` for zipapps).
pub fn output_path(settings: &Settings, name: &str, mode: Mode) -> PathBuf {
    if let Some(o) = &settings.output {
        return o.value.clone();
    }
    let base = settings
        .project
        .as_ref()
        .map(|p| p.dir.join("dist"))
        .unwrap_or_else(|| PathBuf::from("dist"));
    match mode {
        Mode::Pyz => base.join(format!("{name}.pyz")),
        _ => base.join(name),
    }
}

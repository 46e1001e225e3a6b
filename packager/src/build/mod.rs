//! `ferry build`: a Python project becomes one executable.
//!
//! resolve settings → query the interpreter → install requirements and the
//! project → resolve name, version and entry point → run build add-ons →
//! (standalone) copy the interpreter → bundle native libraries → write the
//! bootstrap → precompile bytecode → pack a deterministic payload → assemble
//! and sign. The output appears in `dist/` only when complete.

pub mod addons;
pub mod bytecode;
pub mod entry;
pub mod install;
pub mod native;
pub mod pack;
pub mod project;
pub mod pyz;
pub mod settings;
pub mod smoke;
pub mod standalone;
pub mod stdlib_zip;

use std::fs::File;
use std::io::{BufReader, IsTerminal as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use ferry_format::container::{self, Metadata, PythonInfo, PythonMode, FORMAT_VERSION};
use ferry_format::SecretKey;
use ferry_fsutil::AtomicFile;

use crate::cli::BuildArgs;
use crate::keyfile;
use crate::python::{self, SiteContents};
use entry::Entry;
use project::Project;
use settings::{Mode, Settings, Source, Sourced};

/// Progress lines on stderr: numbered steps with timings on a terminal, plain
/// lines otherwise.
struct Progress {
    start: Instant,
    tty: bool,
    step: usize,
}

impl Progress {
    const STEPS: usize = 8;

    fn new() -> Self {
        Self {
            start: Instant::now(),
            tty: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            step: 0,
        }
    }

    fn step(&mut self, what: &str) {
        self.step += 1;
        let t = self.start.elapsed().as_secs_f64();
        if self.tty {
            eprintln!(
                "\x1b[1m[{}/{}]\x1b[0m {what} \x1b[2m({t:.1}s)\x1b[0m",
                self.step,
                Self::STEPS
            );
        } else {
            eprintln!("ferry: [{}/{}] {what} ({t:.1}s)", self.step, Self::STEPS);
        }
    }
}

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

/// The launcher to put at the head of the binary.
fn launcher_path(args: &BuildArgs) -> Result<PathBuf> {
    if let Some(p) = &args.launcher {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe().context("cannot locate the ferry executable")?;
    let sibling = exe.with_file_name("ferry-launcher");
    if sibling.is_file() {
        return Ok(sibling);
    }
    bail!(
        "no `ferry-launcher` next to `{}`\nhint: install ferry-launcher beside ferry (cargo build -p ferry-launcher) or pass --launcher PATH",
        exe.display()
    )
}

fn file_url_matches(url: &str, dir: &Path) -> bool {
    url.strip_prefix("file://")
        .map(|p| Path::new(p) == dir)
        .unwrap_or(false)
}

/// The name and version of the project as installed, for setup.py projects
/// and dynamic versions.
fn project_dist<'a>(
    contents: &'a SiteContents,
    project: Option<&Project>,
) -> Option<&'a python::Distribution> {
    let dir = project.filter(|p| p.installable)?.dir.canonicalize().ok()?;
    contents
        .dists
        .iter()
        .find(|d| d.url.as_deref().is_some_and(|u| file_url_matches(u, &dir)))
}

/// Resolves the entry point to what the bootstrap runs.
fn resolve_entry(
    settings: &Settings,
    contents: &SiteContents,
    bundle: &Path,
    name: Option<&str>,
) -> Result<(Entry, Source)> {
    let project = settings.project.as_ref();
    let from_spec = |spec: &Sourced<String>| -> Result<Entry> {
        let v = spec.value.trim();
        if v.ends_with(".py") {
            let dir = project
                .map(|p| p.dir.clone())
                .unwrap_or_else(|| PathBuf::from("."));
            let script = dir.join(v);
            if !script.is_file() {
                bail!(
                    "entry script `{}` ({}) does not exist",
                    script.display(),
                    spec.source
                );
            }
            let dest = format!(
                "ferry/app/{}",
                Path::new(v)
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
            );
            std::fs::create_dir_all(bundle.join("ferry/app"))?;
            std::fs::copy(&script, bundle.join(&dest))?;
            return Ok(Entry::Script { path: dest });
        }
        if let Some(e) = entry::parse_function(v) {
            return Ok(e);
        }
        if let Some(target) = contents.console_scripts.get(v) {
            return entry::parse_function(target).with_context(|| {
                format!("console script `{v}` points at `{target}`, which is not module:function")
            });
        }
        bail!(
            "entry point `{v}` ({}) is neither module:function, a .py file, nor a console script of the installed packages{}",
            spec.source,
            if contents.console_scripts.is_empty() {
                String::new()
            } else {
                format!(
                    "\nhint: console scripts available: {}",
                    contents.console_scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        )
    };
    if let Some(spec) = &settings.entry {
        return Ok((from_spec(spec)?, spec.source.clone()));
    }
    if let Some(table) = project.and_then(|p| p.project.as_ref()) {
        let scripts = &table.scripts;
        let chosen = if scripts.len() == 1 {
            scripts.values().next()
        } else {
            name.and_then(|n| scripts.get(n))
        };
        if let Some(target) = chosen {
            let e = entry::parse_function(target).with_context(|| {
                format!(
                    "[project.scripts] entry `{target}` in `pyproject.toml` is not module:function"
                )
            })?;
            return Ok((e, Source::ProjectTable));
        }
        if scripts.len() > 1 {
            bail!(
                "pyproject.toml declares several scripts ({}); ferry cannot tell which one starts the app\nhint: pass --entry NAME or set `entry` in ferry.toml",
                scripts.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if let Some(dist) = project_dist(contents, project) {
        let scripts = &dist.scripts;
        let chosen = if scripts.len() == 1 {
            scripts.values().next()
        } else {
            name.and_then(|n| scripts.get(n))
        };
        if let Some(target) = chosen {
            let e = entry::parse_function(target).with_context(|| {
                format!("console script `{target}` of the installed project `{}` is not module:function", dist.name)
            })?;
            return Ok((e, Source::Installed));
        }
        if scripts.len() > 1 {
            bail!(
                "the project `{}` declares several console scripts ({}); ferry cannot tell which one starts the app\nhint: pass --entry NAME or set `entry` in ferry.toml",
                dist.name,
                scripts.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if project.and_then(|p| p.run_py.as_ref()).is_some() {
        let spec = Sourced {
            value: "run.py".to_owned(),
            source: Source::Convention("run.py"),
        };
        return Ok((from_spec(&spec)?, spec.source));
    }
    let where_ = project
        .map(|p| format!(" in `{}`", p.dir.display()))
        .unwrap_or_default();
    bail!(
        "no entry point{where_}: nothing says what to run\nhint: add [project.scripts] to pyproject.toml, a run.py, or pass --entry module:function"
    )
}

fn check_name(name: &Sourced<String>) -> Result<()> {
    if !container::is_valid_name(&name.value) {
        bail!(
            "app name `{}` ({}) is not usable: it must be 1-128 of A-Z a-z 0-9 . _ - and not start with `.`\nhint: pass --name",
            name.value,
            name.source
        );
    }
    Ok(())
}

fn check_version(version: &Sourced<String>) -> Result<()> {
    if !container::is_valid_version(&version.value) {
        bail!(
            "version `{}` ({}) is not usable: it must be printable without spaces or `/`\nhint: pass --version",
            version.value,
            version.source
        );
    }
    Ok(())
}

/// Without a project, says at once (before anything is installed) every
/// fact that nothing will tell: the name unless the entry is a console
/// script, the version when the entry is a `.py` file.
fn check_facts_known(settings: &Settings) -> Result<()> {
    if settings.project.is_some() {
        return Ok(());
    }
    let entry = settings.entry.as_ref().map(|e| e.value.as_str());
    let script = entry.is_some_and(|e| e.ends_with(".py"));
    let function = entry.is_some_and(|e| e.contains(':'));
    let mut missing = Vec::new();
    if entry.is_none() {
        missing.push("--entry (a console script of the packages, module:function, or a .py file)");
    }
    if settings.name.is_none() && (script || function) {
        missing.push("--name (only a console-script entry gives one)");
    }
    if settings.version.is_none() && script {
        missing.push("--version (a .py entry belongs to no package)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "building without a project, ferry needs: {}\nhint: pass them all, e.g. `ferry build --with SPEC --entry tool.py --name tool --version 1.0`",
        missing.join("; ")
    )
}

/// Runs `ferry build`.
pub fn run(args: BuildArgs) -> Result<ExitCode> {
    let mut progress = Progress::new();
    let args_no_check = args.no_check;
    let project = match (&args.dir, args.with.is_empty()) {
        (Some(dir), _) => Some(Project::read(dir)?),
        (None, true) => Some(Project::read(Path::new("."))?),
        (None, false) => None,
    };
    let settings = Settings::resolve(&args, project)?;
    check_facts_known(&settings)?;
    let mode = settings.mode.value;
    // Load the key first: a key that does not load must not cost a whole build.
    let key: Option<SecretKey> = match &args.sign_key {
        Some(path) => Some(keyfile::load_secret(path, &args.password)?),
        None => None,
    };
    let launcher = if mode == Mode::Pyz {
        None
    } else {
        Some(launcher_path(&args)?)
    };
    if mode == Mode::Standalone {
        native::require_tools()?;
    }
    let interp = python::query(&settings.python.value).with_context(|| {
        format!(
            "interpreter `{}` ({})",
            settings.python.value.display(),
            settings.python.source
        )
    })?;
    let installer = install::choose(&interp)?;

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
    let project_dir = settings
        .project
        .as_ref()
        .filter(|p| p.installable)
        .map(|p| p.dir.clone());
    install::install(
        &interp,
        installer,
        &site,
        &install::InstallPlan {
            requirement_files: &req_files,
            project: project_dir.as_deref(),
            specs: &settings.with,
        },
    )?;
    let contents = python::site_contents(&interp, &site)?;
    let dist = project_dist(&contents, settings.project.as_ref());

    let name = settings
        .name
        .clone()
        .or_else(|| dist.map(|d| Sourced { value: d.name.clone(), source: Source::Installed }))
        .or_else(|| settings.entry.clone().filter(|e| !e.value.contains(':') && !e.value.ends_with(".py")))
        .context("no app name\nhint: pass --name, or set `name` in ferry.toml or [project] in pyproject.toml")?;
    check_name(&name)?;
    let (entry, _entry_source) = resolve_entry(&settings, &contents, &bundle, Some(&name.value))?;
    let version = settings
        .version
        .clone()
        .or_else(|| dist.map(|d| Sourced { value: d.version.clone(), source: Source::Installed }))
        .or_else(|| {
            // Freezing from PyPI: the version of the distribution whose script runs.
            let Entry::Function { module, .. } = &entry else { return None };
            let top = module.split('.').next()?.replace('_', "-").to_lowercase();
            contents
                .dists
                .iter()
                .find(|d| d.name.to_lowercase().replace('_', "-") == top)
                .map(|d| Sourced { value: d.version.clone(), source: Source::Installed })
        })
        .context("no app version\nhint: pass --version, or set `version` in ferry.toml or [project] in pyproject.toml")?;
    check_version(&version)?;

    progress.step("running build add-ons");
    for (addon, cfg) in &settings.addons {
        let dir = settings
            .project
            .as_ref()
            .map(|p| p.dir.clone())
            .unwrap_or_else(|| PathBuf::from("."));
        addons::run(addon, cfg, &dir, &bundle, &interp.executable)?;
    }

    if mode == Mode::Pyz {
        return pyz::finish(
            &settings,
            &interp,
            &bundle,
            &name.value,
            &version.value,
            &entry,
            key.as_ref(),
            build_time(project_dir.as_deref())?,
            &mut progress_adapter(&mut progress),
        );
    }

    progress.step("collecting the interpreter and native libraries");
    let executable = match mode {
        Mode::Standalone => Some(standalone::copy_interpreter(&interp, &bundle)?),
        _ => None,
    };
    let provided: Vec<String> = match mode {
        Mode::System if interp.enable_shared => vec![interp.instsoname.clone()],
        _ => Vec::new(),
    };
    let report = if mode == Mode::Standalone || has_elf_files(&bundle)? {
        native::require_tools()?;
        native::bundle(&bundle, &provided)?
    } else {
        native::NativeReport::default()
    };
    if !report.bundled.is_empty() {
        eprintln!(
            "ferry: bundled native libraries: {}",
            report.bundled.join(", ")
        );
    }
    if let Some(line) = describe_stripped(&report.debug_stripped) {
        eprintln!("ferry: {line}");
    }

    progress.step("writing the bootstrap and precompiling bytecode");
    entry::write_bootstrap(&bundle, &name.value, &entry, (interp.major, interp.minor))?;
    let stdlib_rel = format!("python/lib/{}", interp.versioned_name());
    bytecode::compile(
        &interp,
        &bundle,
        &["site-packages", "ferry", &stdlib_rel],
        bytecode::PycLayout::Cache,
    )?;
    if mode == Mode::Standalone {
        stdlib_zip::zip_stdlib(&interp, &bundle)?;
    }

    let output = output_path(&settings, &name.value, mode);
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;

    progress.step(&format!(
        "packing the payload (zstd level {})",
        settings.compression_level
    ));
    let created_at = build_time(project_dir.as_deref())?;
    let payload = pack::pack(
        &bundle,
        &work.path().join("payload.tar.zst"),
        created_at,
        settings.compression_level,
    )?;

    progress.step("assembling the binary");
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        name: name.value.clone(),
        version: version.value.clone(),
        entry_point: entry.display(),
        python: Some(PythonInfo {
            mode: if mode == Mode::Standalone {
                PythonMode::Standalone
            } else {
                PythonMode::System
            },
            version: interp.version.clone(),
            executable,
        }),
        build_id: payload.sha256.clone(),
        created_at,
        launcher_version: env!("CARGO_PKG_VERSION").to_owned(),
        glibc_floor: report.glibc_floor.clone(),
    };
    let launcher = launcher.expect("launcher is resolved for every mode but pyz");
    let mut launcher_file = BufReader::new(
        File::open(&launcher)
            .with_context(|| format!("cannot read the launcher `{}`", launcher.display()))?,
    );
    let mut payload_file = BufReader::new(File::open(&payload.path)?);
    // Assembled in the work directory, checked there, and only then copied
    // to the output: `dist/` never holds a binary that cannot start.
    let assembled = work.path().join("assembled");
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&assembled)
            .with_context(|| format!("cannot create `{}`", assembled.display()))?;
        let mut w = std::io::BufWriter::new(f);
        container::write_container(
            &mut w,
            &mut launcher_file,
            &mut payload_file,
            &metadata,
            key.as_ref(),
        )?;
        std::io::Write::flush(&mut w)?;
    }
    if args_no_check {
        eprintln!("ferry: start-up check skipped (--no-check)");
    } else {
        progress.step("checking that the binary starts");
        smoke::check_starts(&assembled, &work.path().join("check-cache"), &entry)?;
    }
    let mut out = AtomicFile::create(&output, 0o755)
        .with_context(|| format!("cannot create `{}`", output.display()))?;
    std::io::copy(
        &mut File::open(&assembled)
            .with_context(|| format!("cannot read `{}`", assembled.display()))?,
        &mut out,
    )
    .with_context(|| format!("cannot write `{}`", output.display()))?;
    out.commit()
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    progress.step("done");

    let size = std::fs::metadata(&output)?.len();
    eprintln!(
        "ferry: built `{}`: {} {} ({}, Python {}), {:.1} MB, {} files, build {}",
        output.display(),
        name.value,
        version.value,
        match mode {
            Mode::Standalone => "standalone",
            Mode::System => "system",
            Mode::Pyz => "pyz",
        },
        interp.version,
        size as f64 / 1e6,
        payload.entries,
        &payload.sha256[..12]
    );
    match &key {
        Some(k) => eprintln!("ferry: signed with key {}", k.id()),
        None => eprintln!("ferry: the binary is UNSIGNED; sign it with `ferry sign {} --key KEY` or build with --sign-key", output.display()),
    }
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// One line on the debug sections dropped, naming the installed packages'
/// files (the interpreter's own are only counted): those are the rewrites a
/// user may want to know of.
fn describe_stripped(stripped: &[(PathBuf, u64)]) -> Option<String> {
    if stripped.is_empty() {
        return None;
    }
    let total: u64 = stripped.iter().map(|(_, saved)| saved).sum();
    let packages: Vec<String> = stripped
        .iter()
        .filter_map(|(rel, _)| rel.strip_prefix("site-packages").ok())
        .map(|rel| rel.display().to_string())
        .collect();
    let named = match packages.len() {
        0 => String::new(),
        n if n <= 5 => format!("; of the packages: {}", packages.join(", ")),
        n => format!(
            "; of the packages: {} and {} more",
            packages[..5].join(", "),
            n - 5
        ),
    };
    Some(format!(
        "debug sections dropped from {} files ({:.1} MB saved; symbols kept){named}",
        stripped.len(),
        total as f64 / 1e6
    ))
}

/// Whether any ELF file sits in the bundle: system mode bundles libraries
/// only then, and a zipapp with one must be unpacked to run.
pub fn has_elf_files(bundle: &Path) -> Result<bool> {
    fn walk(dir: &Path) -> Result<bool> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                if walk(&e.path())? {
                    return Ok(true);
                }
            } else if ft.is_file() {
                let mut magic = [0u8; 4];
                use std::io::Read as _;
                if File::open(e.path())?.read(&mut magic)? == 4 && &magic == b"\x7fELF" {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
    walk(bundle)
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

/// Lets the zipapp path report progress through the same printer.
fn progress_adapter(p: &mut Progress) -> impl FnMut(&str) + '_ {
    move |s| p.step(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_files_of_the_packages_are_named_the_interpreters_counted() {
        assert_eq!(describe_stripped(&[]), None);
        let line = describe_stripped(&[
            (PathBuf::from("python/lib/libpython3.11.so.1.0"), 20_000_000),
            (PathBuf::from("site-packages/pkg/_fast.so"), 500_000),
        ])
        .unwrap();
        assert_eq!(
            line,
            "debug sections dropped from 2 files (20.5 MB saved; symbols kept); of the packages: pkg/_fast.so"
        );
        let many: Vec<_> = (0..7)
            .map(|i| (PathBuf::from(format!("site-packages/m{i}.so")), 1))
            .collect();
        assert!(describe_stripped(&many)
            .unwrap()
            .ends_with("m0.so, m1.so, m2.so, m3.so, m4.so and 2 more"));
    }
}

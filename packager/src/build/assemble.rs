//! The steps that turn an installed bundle into a ferry binary: the
//! interpreter and native libraries, the bootstrap and bytecode, the packed
//! payload, the container (signed with a key), the start-up check, and only
//! then the output file, so `dist/` never holds a binary that cannot start.

use std::fs::File;
use std::io::BufReader;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use ferry_format::container::{self, Metadata, PythonInfo, PythonMode, FORMAT_VERSION};
use ferry_format::SecretKey;
use ferry_fsutil::AtomicFile;

use super::for_target::TargetBuild;
use super::identity::Identity;
use super::settings::{Mode, Settings};
use super::{bytecode, entry, native, pack, smoke, standalone, stdlib_zip};
use crate::log::{self, Progress};
use crate::python::Interpreter;

/// How many progress steps [`binary`] announces.
pub fn steps(check: bool) -> usize {
    4 + usize::from(check)
}

/// What a binary is made from, beyond the installed bundle.
pub struct Inputs<'a> {
    /// The resolved settings.
    pub settings: &'a Settings,
    /// The build interpreter.
    pub interp: &'a Interpreter,
    /// The board it is for.
    pub board: &'a TargetBuild,
    /// Name, version and entry point.
    pub identity: &'a Identity,
    /// The launcher put at the head of the binary.
    pub launcher: &'a Path,
    /// The signing key, if any.
    pub key: Option<&'a SecretKey>,
    /// The payload's file times and the recorded build time.
    pub created_at: u64,
    /// Whether to run the start-up check.
    pub check: bool,
}

/// What [`binary`] wrote.
pub struct Built {
    /// The output file.
    pub output: PathBuf,
    /// Files in the payload.
    pub entries: u64,
    /// The build id (the payload's SHA-256).
    pub build_id: String,
}

/// Turns `work/bundle` into the binary at the output path.
pub fn binary(inputs: &Inputs<'_>, work: &Path, progress: &mut Progress) -> Result<Built> {
    let Inputs {
        settings,
        interp,
        identity,
        ..
    } = inputs;
    let mode = settings.mode.value;
    let bundle = work.join("bundle");

    progress.step("collecting the interpreter and native libraries");
    let executable = match mode {
        Mode::Standalone => Some(standalone::copy_interpreter(interp, &bundle)?),
        _ => None,
    };
    let glibc_floor = bundle_native(interp, inputs.board, mode, &bundle)?;

    progress.step("writing the bootstrap and precompiling bytecode");
    entry::write_bootstrap(
        &bundle,
        &identity.name.value,
        &identity.entry,
        (interp.major, interp.minor),
    )?;
    let stdlib_rel = format!("python/lib/{}", interp.versioned_name());
    bytecode::compile(
        interp,
        &bundle,
        &["site-packages", "ferry", &stdlib_rel],
        bytecode::PycLayout::Cache,
    )?;
    if mode == Mode::Standalone {
        stdlib_zip::zip_stdlib(interp, &bundle)?;
    }

    progress.step(&format!(
        "packing the payload (zstd level {})",
        settings.compression_level.value
    ));
    let payload = pack::pack(
        &bundle,
        &work.join("payload.tar.zst"),
        inputs.created_at,
        settings.compression_level.value,
    )?;

    progress.step("assembling the binary");
    let metadata = Metadata {
        format_version: FORMAT_VERSION,
        name: identity.name.value.clone(),
        version: identity.version.value.clone(),
        entry_point: identity.entry.display(),
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
        created_at: inputs.created_at,
        launcher_version: env!("CARGO_PKG_VERSION").to_owned(),
        glibc_floor,
    };
    let assembled = work.join("assembled");
    write_container(
        &assembled,
        inputs.launcher,
        &payload.path,
        &metadata,
        inputs.key,
    )?;
    if inputs.check {
        progress.step("checking that the binary starts");
        if inputs.board.can_run() {
            smoke::check_starts(&assembled, &work.join("check-cache"), &identity.entry)?;
        } else {
            log::note(format!(
                "start-up check skipped: {} binaries do not run on this machine (they do with qemu-user-static and the target's libc6 installed)",
                inputs.board.target
            ));
        }
    } else {
        log::note("start-up check skipped (--no-check)");
    }

    let output = super::output_path(settings, &identity.name.value, mode);
    copy_into_place(&assembled, &output)?;
    Ok(Built {
        output,
        entries: payload.entries,
        build_id: payload.sha256,
    })
}

/// Bundles the shared libraries the ELF files need (and strips debug
/// sections where there are some); returns the glibc floor.
fn bundle_native(
    interp: &Interpreter,
    board: &TargetBuild,
    mode: Mode,
    bundle: &Path,
) -> Result<Option<String>> {
    let provided: Vec<String> = match mode {
        Mode::System if interp.enable_shared => vec![interp.instsoname.clone()],
        _ => Vec::new(),
    };
    if mode != Mode::Standalone && !native::has_elf_files(bundle)? {
        return Ok(None);
    }
    let strip = board.strip_program();
    native::require_tools(&strip)?;
    let report = native::bundle(bundle, &provided, &board.libraries(), &strip)?;
    if !report.bundled.is_empty() {
        log::note(format!(
            "bundled native libraries: {}",
            report.bundled.join(", ")
        ));
    }
    if let Some(line) = describe_stripped(&report.debug_stripped) {
        log::note(line);
    }
    Ok(report.glibc_floor)
}

/// Writes launcher + payload + metadata (+ signature) to `dest`, a new file
/// in the work directory.
fn write_container(
    dest: &Path,
    launcher: &Path,
    payload: &Path,
    metadata: &Metadata,
    key: Option<&SecretKey>,
) -> Result<()> {
    let mut launcher_file = BufReader::new(
        File::open(launcher)
            .with_context(|| format!("cannot read the launcher `{}`", launcher.display()))?,
    );
    let mut payload_file = BufReader::new(File::open(payload)?);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(dest)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    let mut w = std::io::BufWriter::new(f);
    container::write_container(&mut w, &mut launcher_file, &mut payload_file, metadata, key)?;
    std::io::Write::flush(&mut w)?;
    Ok(())
}

/// Copies the checked binary to `output` through a temporary file renamed
/// into place.
fn copy_into_place(assembled: &Path, output: &Path) -> Result<()> {
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let mut out = AtomicFile::create(output, 0o755)
        .with_context(|| format!("cannot create `{}`", output.display()))?;
    std::io::copy(
        &mut File::open(assembled)
            .with_context(|| format!("cannot read `{}`", assembled.display()))?,
        &mut out,
    )
    .with_context(|| format!("cannot write `{}`", output.display()))?;
    out.commit()
        .with_context(|| format!("cannot write `{}`", output.display()))
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

//! `pyz` mode: a plain zipapp with a shebang (shiv's model) for targets that
//! have a matching Python. Pure-Python apps run straight from the zip; apps with
//! native extension modules are unpacked once into the cache. Signed with a
//! detached `.minisig`. zipimport cannot read zip64 before Python 3.13, so
//! archives beyond its limits are refused at build time, not on the device.

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::trusted_comment::TrustedComment;
use ferry_format::{Prehasher, SecretKey, Signature};
use ferry_fsutil::{write_atomic, AtomicFile};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

use super::bytecode::{self, PycLayout};
use super::entry::Entry;
use super::identity::Identity;
use super::settings::{Mode, Settings};
use crate::log::{self, Progress};
use crate::python::Interpreter;

/// The zipapp's own description, beside `__main__.py`, for `ferry inspect`.
pub const INFO_ENTRY: &str = "ferry.json";

/// What `ferry.json` in a zipapp says.
#[derive(Debug, Serialize, Deserialize)]
pub struct PyzInfo {
    /// The app's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What the zipapp runs (`module:function` or a script).
    pub entry_point: String,
    /// The Python `major.minor` it needs.
    pub python: String,
    /// SHA-256 of its files: the cache key of an extraction.
    pub build: String,
    /// Build time, Unix seconds.
    pub created_at: u64,
    /// Whether it unpacks native modules on first run.
    pub native: bool,
}

/// zipimport's limits before Python 3.13 (no zip64).
const MAX_ENTRIES: usize = 65_535;
const MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024 - 1;

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let child = rel.join(n);
        let meta = fs::symlink_metadata(root.join(&child))?;
        if meta.is_dir() {
            walk(root, &child, out)?;
        } else {
            out.push(child);
        }
    }
    Ok(())
}

fn zip_time(epoch: u64) -> zip::DateTime {
    // Zip times start in 1980; earlier build times are clamped.
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    let (y, m, d) = civil_from_days(days);
    zip::DateTime::from_date_and_time(
        y.clamp(1980, 2107) as u16,
        m as u8,
        d as u8,
        (secs / 3600) as u8,
        (secs % 3600 / 60) as u8,
        (secs % 60) as u8,
    )
    .unwrap_or_default()
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// How many progress steps [`finish`] announces.
pub const STEPS: usize = 2;

/// Writes the zipapp (and its signature) for an installed bundle.
pub fn finish(
    settings: &Settings,
    interp: &Interpreter,
    bundle: &Path,
    identity: &Identity,
    key: Option<&SecretKey>,
    created_at: u64,
    progress: &mut Progress,
) -> Result<ExitCode> {
    let (name, version, entry) = (
        identity.name.value.as_str(),
        identity.version.value.as_str(),
        &identity.entry,
    );
    // Precompiled, so a start with PYTHONDONTWRITEBYTECODE (usual for
    // services and containers) does not compile every module again: beside
    // the sources for zipimport, in __pycache__ for an unpacked tree.
    progress.step("precompiling bytecode");
    let layout = if super::native::has_elf_files(bundle)? {
        PycLayout::Cache
    } else {
        PycLayout::BesideSource
    };
    bytecode::compile(interp, bundle, &["site-packages", "ferry"], layout)?;
    progress.step("writing the zipapp");
    let mut files = Vec::new();
    walk(bundle, Path::new(""), &mut files)?;
    let mut native = false;
    let mut total = 0u64;
    let mut content_hash = Sha256::new();
    for f in &files {
        let full = bundle.join(f);
        let mut bytes = Vec::new();
        File::open(&full)?.read_to_end(&mut bytes)?;
        native |= bytes.starts_with(b"\x7fELF");
        total += bytes.len() as u64;
        content_hash.update(f.to_string_lossy().as_bytes());
        content_hash.update([0]);
        content_hash.update(&bytes);
    }
    if (interp.major, interp.minor) < (3, 13)
        && (files.len() + 2 > MAX_ENTRIES || total > MAX_BYTES)
    {
        bail!(
            "the zipapp would hold {} files and {total} bytes, beyond what zipimport reads on Python {}.{} ({MAX_ENTRIES} files, 2 GiB)\nhint: use --mode standalone or system",
            files.len(),
            interp.major,
            interp.minor
        );
    }
    let build = hex::encode(content_hash.finalize());
    let entry_json = match entry {
        Entry::Function { module, attr } => {
            json!({"kind": "function", "module": module, "attr": attr})
        }
        Entry::Script { path } => json!({"kind": "script", "path": path}),
    };
    let main = include_str!("pyz_main_template.py")
        .replace("__FERRY_NAME__", name)
        .replace("__FERRY_ENTRY__", &entry_json.to_string())
        .replace(
            "__FERRY_PYTHON__",
            &json!([interp.major, interp.minor]).to_string(),
        )
        .replace("__FERRY_NATIVE__", if native { "True" } else { "False" })
        .replace("__FERRY_BUILD__", &build);

    let output = super::output_path(settings, name, Mode::Pyz);
    if let Some(dir) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut out = AtomicFile::create(&output, 0o755)
        .with_context(|| format!("cannot create `{}`", output.display()))?;
    let shebang = format!("#!/usr/bin/env {}\n", interp.versioned_name());
    out.write_all(shebang.as_bytes())?;
    let time = zip_time(created_at);
    {
        let mut zw = zip::ZipWriter::new(out.file());
        let opts = |mode: u32| {
            SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .last_modified_time(time)
                .unix_permissions(mode)
        };
        zw.start_file("__main__.py", opts(0o644))?;
        zw.write_all(main.as_bytes())?;
        let info = PyzInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            entry_point: entry.display(),
            python: format!("{}.{}", interp.major, interp.minor),
            build: build.clone(),
            created_at,
            native,
        };
        zw.start_file(INFO_ENTRY, opts(0o644))?;
        zw.write_all(&serde_json::to_vec_pretty(&info)?)?;
        for f in &files {
            let full = bundle.join(f);
            let meta = fs::symlink_metadata(&full)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let mut bytes = Vec::new();
            File::open(&full)?.read_to_end(&mut bytes)?;
            zw.start_file(f.to_string_lossy(), opts(mode))?;
            zw.write_all(&bytes)?;
        }
        zw.finish()?;
    }
    if let Some(key) = key {
        let f = out.file();
        f.flush()?;
        f.seek(SeekFrom::Start(0))?;
        let prehash = Prehasher::hash_reader(f)?;
        let file_name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let comment = TrustedComment::new()
            .with("timestamp", created_at)?
            .with("file", &file_name)?
            .with("app", name)?
            .with("version", version)?
            .with("build", &build)?;
        let sig = Signature::sign_prehashed(
            key,
            &prehash,
            &comment.to_string(),
            &format!("ferry signature of {name} {version} by key {}", key.id()),
        )?;
        let mut sig_path = output.as_os_str().to_owned();
        sig_path.push(".minisig");
        write_atomic(Path::new(&sig_path), sig.to_text().as_bytes(), 0o644)?;
    }
    out.commit()
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    log::note(format!(
        "built `{}` in {:.1}s: {name} {version} (pyz, Python {}.{}{}), {:.1} MB, {} files",
        output.display(),
        progress.elapsed_secs(),
        interp.major,
        interp.minor,
        if native {
            ", native modules: unpacked on first run"
        } else {
            ""
        },
        fs::metadata(&output)?.len() as f64 / 1e6,
        files.len() + 2
    ));
    if key.is_none() {
        log::note(format!(
            "the zipapp is UNSIGNED; sign it with `ferry sign {} --key KEY`",
            output.display()
        ));
    }
    println!("{}", output.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(3652), (1980, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}

//! Packing the standard library into `python/lib/python3XY.zip`, which CPython
//! puts on `sys.path` by itself: one file instead of ~1,300, so the first run
//! (which must create every file of the payload) has far less to write —
//! file creation dominates a cold start on small devices' storage.
//!
//! zipimport finds compiled modules only beside their sources (`mod.pyc`, not
//! `__pycache__/`), so each `.py` goes in with its unchecked hash-based `.pyc`
//! next to it; the sources stay for tracebacks. Extension modules
//! (`lib-dynload/`) and data files stay on disk; `os.py` stays too, as the
//! landmark by which the interpreter finds its prefix.

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use zip::write::SimpleFileOptions;

use crate::python::Interpreter;

fn collect(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for n in names {
        let child = rel.join(&n);
        let meta = fs::symlink_metadata(dir.join(&child))?;
        if meta.is_dir() {
            if n != "lib-dynload" && n != "__pycache__" && n != "site-packages" {
                collect(dir, &child, out)?;
            }
        } else if meta.is_file() && child.extension().is_some_and(|e| e == "py") {
            out.push(child);
        }
    }
    Ok(())
}

/// Zips the standard library of a standalone bundle; returns how many modules
/// went into the archive.
pub fn zip_stdlib(interp: &Interpreter, bundle: &Path) -> Result<usize> {
    let lib = bundle.join("python/lib");
    let stdlib = lib.join(interp.versioned_name());
    let zip_path = lib.join(format!("python{}{}.zip", interp.major, interp.minor));
    let tag = format!("cpython-{}{}", interp.major, interp.minor);
    let mut sources = Vec::new();
    collect(&stdlib, Path::new(""), &mut sources)?;
    let file = File::create(&zip_path)
        .with_context(|| format!("cannot create `{}`", zip_path.display()))?;
    let mut zw = zip::ZipWriter::new(file);
    // Stored, not deflated: the payload is compressed as a whole, and
    // zipimport reads stored entries without inflating them.
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let read = |p: &Path| -> Result<Vec<u8>> {
        let mut v = Vec::new();
        File::open(p)
            .with_context(|| format!("cannot read `{}`", p.display()))?
            .read_to_end(&mut v)?;
        Ok(v)
    };
    for rel in &sources {
        let src = stdlib.join(rel);
        let name = rel.to_string_lossy().into_owned();
        zw.start_file(name.as_str(), opts)?;
        zw.write_all(&read(&src)?)?;
        let stem = rel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pyc = src
            .parent()
            .unwrap_or(&stdlib)
            .join("__pycache__")
            .join(format!("{stem}.{tag}.pyc"));
        if pyc.is_file() {
            zw.start_file(format!("{}c", name), opts)?;
            zw.write_all(&read(&pyc)?)?;
            fs::remove_file(&pyc)?;
        }
        if rel != Path::new("os.py") {
            fs::remove_file(&src)?;
        }
    }
    zw.finish()?;
    remove_empty_dirs(&stdlib)?;
    Ok(sources.len())
}

/// Removes directories left empty (and empty `__pycache__`s) below `dir`.
fn remove_empty_dirs(dir: &Path) -> Result<bool> {
    let mut empty = true;
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            if !remove_empty_dirs(&e.path())? {
                empty = false;
            }
        } else {
            empty = false;
        }
    }
    if empty {
        fs::remove_dir(dir)?;
    }
    Ok(empty)
}

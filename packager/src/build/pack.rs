//! Packing the bundle into the payload: a deterministic tar (entries sorted by
//! name, one fixed mtime, owner 0, normalised modes) compressed with zstd, so
//! the same inputs give the same bytes and therefore the same build id.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};

/// A writer that hashes what passes through.
struct Sha256Writer<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The packed payload.
pub struct Payload {
    /// Where the compressed bytes are.
    pub path: PathBuf,
    /// SHA-256 (hex) of the compressed bytes: the build id.
    pub sha256: String,
    /// Number of tar entries.
    pub entries: u64,
    /// Uncompressed size of the files.
    pub unpacked_bytes: u64,
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        out.push(child.clone());
        if fs::symlink_metadata(root.join(&child))?.is_dir() {
            collect(root, &child, out)?;
        }
    }
    Ok(())
}

/// Packs `bundle` into a zstd-compressed tar at `out_path`.
pub fn pack(bundle: &Path, out_path: &Path, mtime: u64, level: i32) -> Result<Payload> {
    let mut paths = Vec::new();
    collect(bundle, Path::new(""), &mut paths)?;
    let file = File::create(out_path)
        .with_context(|| format!("cannot create `{}`", out_path.display()))?;
    let hashing = Sha256Writer {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
    };
    let mut encoder = zstd::stream::Encoder::new(hashing, level)?;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, 8);
    encoder.multithread(workers)?;
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut unpacked_bytes = 0u64;
    for rel in &paths {
        let full = bundle.join(rel);
        let meta = fs::symlink_metadata(&full)?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            let target = fs::read_link(&full)?;
            tar.append_link(&mut header, rel, &target)?;
        } else if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, io::empty())?;
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if exec { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            unpacked_bytes += meta.len();
            let f =
                File::open(&full).with_context(|| format!("cannot read `{}`", full.display()))?;
            tar.append_data(&mut header, rel, f)?;
        }
    }
    let encoder = tar.into_inner()?;
    let mut hashing = encoder.finish()?;
    hashing.flush()?;
    let sha256 = hex::encode(hashing.hash.finalize());
    hashing
        .inner
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(Payload {
        path: out_path.to_path_buf(),
        sha256,
        entries: paths.len() as u64,
        unpacked_bytes,
    })
}

//! What a payload holds, read from the archive itself (every binary ferry
//! ever built has one, whatever its metadata version): the files and their
//! size once extracted, the Python distributions with versions, the bundled
//! native libraries and the extension modules.

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

/// Where `ferry build` puts the shared libraries it bundles.
const LIBS_DIR: &str = crate::build::native::LIBS_DIR;

/// Longest `METADATA` read for a name and version: the headers come first.
const METADATA_HEAD: u64 = 64 * 1024;

/// A Python distribution in the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distribution {
    /// Its name as its metadata spells it.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// The summary of one payload.
#[derive(Debug, Default, Serialize)]
pub struct Contents {
    /// Regular files.
    pub files: u64,
    /// Bytes of the regular files: the disk an extraction takes.
    pub extracted_bytes: u64,
    /// Installed distributions, sorted by name.
    pub distributions: Vec<Distribution>,
    /// Shared libraries bundled from the build machine (`libs/`), by file name.
    pub native_libraries: Vec<String>,
    /// Python extension modules (`*.so` loaded by import).
    pub extension_modules: u64,
}

impl Contents {
    /// Reads a zstd-compressed tar payload.
    pub fn from_payload(compressed: impl Read) -> Result<Self> {
        let decoder =
            zstd::stream::read::Decoder::new(compressed).context("the payload is not zstd data")?;
        let mut archive = tar::Archive::new(decoder);
        let mut contents = Self::default();
        for entry in archive
            .entries()
            .context("the payload is not a tar archive")?
        {
            let mut entry = entry.context("the payload's tar archive is damaged")?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.to_string_lossy().into_owned();
            let size = entry.size();
            contents.add_file(&path, size, &mut entry)?;
        }
        contents.finish();
        Ok(contents)
    }

    /// Reads a zipapp (`.pyz`), skipping `skip` (its own entries, not the app's).
    pub fn from_zip<R: Read + std::io::Seek>(
        zip: &mut zip::ZipArchive<R>,
        skip: &[&str],
    ) -> Result<Self> {
        let mut contents = Self::default();
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).context("the zipapp is damaged")?;
            if !file.is_file() || skip.contains(&file.name()) {
                continue;
            }
            let path = file.name().to_owned();
            let size = file.size();
            contents.add_file(&path, size, &mut file)?;
        }
        contents.finish();
        Ok(contents)
    }

    fn add_file(&mut self, path: &str, size: u64, body: &mut impl Read) -> Result<()> {
        self.files += 1;
        self.extracted_bytes += size;
        let p = Path::new(path);
        let file_name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.parent() == Some(Path::new(LIBS_DIR)) {
            self.native_libraries.push(file_name);
        } else if is_extension_module(&file_name) {
            self.extension_modules += 1;
        } else if file_name == "METADATA" && is_top_level_dist_info(p) {
            let mut head = String::new();
            body.take(METADATA_HEAD)
                .read_to_string(&mut head)
                .with_context(|| format!("cannot read `{path}`"))?;
            if let Some(d) = parse_metadata(&head) {
                self.distributions.push(d);
            }
        }
        Ok(())
    }

    fn finish(&mut self) {
        self.distributions
            .sort_by_key(|d| (d.name.to_lowercase(), d.version.clone()));
        self.native_libraries.sort();
    }
}

/// `site-packages/<dist>.dist-info/METADATA`, not a vendored copy deeper down.
fn is_top_level_dist_info(path: &Path) -> bool {
    let mut parts = path.components().map(|c| c.as_os_str().to_string_lossy());
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(site), Some(info), Some(_), None)
            if site == "site-packages" && info.ends_with(".dist-info")
    )
}

/// `foo.cpython-311-x86_64-linux-gnu.so`, `foo.abi3.so`, `foo.so`.
fn is_extension_module(file_name: &str) -> bool {
    file_name.ends_with(".so") && !file_name.starts_with("lib")
}

/// The `Name:` and `Version:` headers of core metadata (RFC 822 style).
fn parse_metadata(text: &str) -> Option<Distribution> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("Version:") {
            version = Some(v.trim().to_owned());
        }
    }
    Some(Distribution {
        name: name?,
        version: version?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_zst(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, *body).unwrap();
        }
        zstd::encode_all(&tar.into_inner().unwrap()[..], 1).unwrap()
    }

    #[test]
    fn a_payload_lists_its_distributions_libraries_and_extracted_size() {
        let files: &[(&str, &[u8])] = &[
            (
                "site-packages/Flask-3.0.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: Flask\nVersion: 3.0.0\n\nName: not-a-header\n",
            ),
            (
                "site-packages/numpy-2.1.0.dist-info/METADATA",
                b"Name: numpy\nVersion: 2.1.0\n",
            ),
            (
                "site-packages/pip/_vendor/x-1.0.dist-info/METADATA",
                b"Name: vendored\nVersion: 1\n",
            ),
            (
                "site-packages/numpy/core/_multiarray.cpython-311-x86_64-linux-gnu.so",
                b"\x7fELF",
            ),
            ("libs/libssl.so.3", b"\x7fELF...."),
            ("python/bin/python3.11", b"0123456789"),
        ];
        let c = Contents::from_payload(&tar_zst(files)[..]).unwrap();
        assert_eq!(c.files, 6);
        assert_eq!(
            c.distributions,
            vec![
                Distribution {
                    name: "Flask".into(),
                    version: "3.0.0".into()
                },
                Distribution {
                    name: "numpy".into(),
                    version: "2.1.0".into()
                },
            ]
        );
        assert_eq!(c.native_libraries, vec!["libssl.so.3".to_owned()]);
        assert_eq!(c.extension_modules, 1);
        let bytes: usize = files.iter().map(|(_, body)| body.len()).sum();
        assert_eq!(c.extracted_bytes, bytes as u64);
    }

    #[test]
    fn a_damaged_payload_is_an_error_not_a_panic() {
        let err = Contents::from_payload(&b"not zstd at all"[..]).unwrap_err();
        assert!(format!("{err:#}").contains("payload"), "{err:#}");
    }
}

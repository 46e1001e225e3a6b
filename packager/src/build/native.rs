//! Native libraries: every ELF file in the bundle is read for the shared
//! libraries it needs (`DT_NEEDED`); those that glibc does not provide and the
//! bundle does not already carry are copied from the build host (or, for
//! another architecture, from its unpacked packages: [`Libraries`]) into `libs/`,
//! and each ELF that needs them gets an `$ORIGIN`-relative run path (set with
//! patchelf), so they load from wherever the bundle is extracted — without
//! `LD_LIBRARY_PATH`, which would leak into the app's subprocesses. Absolute run
//! paths (pyenv's interpreter has one) are dropped on the way. The newest glibc
//! symbol version any of them needs becomes the binary's glibc floor.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use std::os::unix::fs::PermissionsExt as _;

use goblin::elf::Elf;

use crate::process;

/// Directory of bundled libraries, relative to the bundle root.
pub const LIBS_DIR: &str = "libs";

/// Libraries of glibc itself: always the target's own.
fn provided_by_glibc(soname: &str) -> bool {
    const GLIBC: &[&str] = &[
        "libc.so",
        "libm.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
        "libutil.so",
        "libresolv.so",
        "libanl.so",
        "libnsl.so",
        "libBrokenLocale.so",
        "libmvec.so",
        "libthread_db.so",
        "libc_malloc_debug.so",
        "libmemusage.so",
        "libpcprofile.so",
    ];
    soname.starts_with("ld-linux")
        || soname.starts_with("ld64.so")
        || soname.starts_with("libnss_")
        || GLIBC.iter().any(|g| soname.starts_with(g))
}

/// What bundling found.
#[derive(Debug, Default)]
pub struct NativeReport {
    /// Libraries copied from the build host, by file name.
    pub bundled: Vec<String>,
    /// Newest `GLIBC_x.y` version needed, e.g. `2.34`.
    pub glibc_floor: Option<String>,
    /// Files whose debug sections were dropped (bundle-relative), with the
    /// bytes each lost, so the build log says what was rewritten.
    pub debug_stripped: Vec<(PathBuf, u64)>,
}

struct ElfInfo {
    needed: Vec<String>,
    runpaths: Vec<String>,
    glibc_versions: Vec<String>,
    machine: u16,
    is_64: bool,
    /// Whether it carries `.debug_*` sections (only those are stripped).
    has_debug: bool,
}

fn read_elf(path: &Path) -> Result<Option<ElfInfo>> {
    let bytes = fs::read(path)?;
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let elf = Elf::parse(&bytes)
        .with_context(|| format!("cannot parse ELF file `{}`", path.display()))?;
    let mut runpaths: Vec<String> = Vec::new();
    for r in elf.runpaths.iter().chain(elf.rpaths.iter()) {
        runpaths.extend(r.split(':').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let mut glibc_versions = Vec::new();
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            for aux in need.iter() {
                if let Some(name) = elf.dynstrtab.get_at(aux.vna_name) {
                    if let Some(v) = name.strip_prefix("GLIBC_") {
                        if v.starts_with(|c: char| c.is_ascii_digit()) {
                            glibc_versions.push(v.to_owned());
                        }
                    }
                }
            }
        }
    }
    let has_debug = elf.section_headers.iter().any(|sh| {
        elf.shdr_strtab
            .get_at(sh.sh_name)
            .is_some_and(|n| n.starts_with(".debug") || n.starts_with(".zdebug"))
    });
    Ok(Some(ElfInfo {
        needed: elf.libraries.iter().map(|s| (*s).to_owned()).collect(),
        runpaths,
        glibc_versions,
        machine: elf.header.e_machine,
        is_64: elf.is_64,
        has_debug,
    }))
}

/// Checks that a rewritten ELF file still loads: every `PT_LOAD` segment's
/// file offset and address agree modulo its alignment (what `ld.so` maps
/// by), and it still parses. strip and patchelf can break both; a file
/// that fails here would fail on the device as "ELF load command
/// address/offset not page-aligned".
pub fn check_loadable(path: &Path, rel: &Path) -> Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let elf = Elf::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "bundled `{}` no longer parses as ELF after it was rewritten: {e}",
            rel.display()
        )
    })?;
    for (i, ph) in elf.program_headers.iter().enumerate() {
        if ph.p_type != goblin::elf::program_header::PT_LOAD || ph.p_align <= 1 {
            continue;
        }
        if ph.p_offset % ph.p_align != ph.p_vaddr % ph.p_align {
            bail!(
                "bundled `{}` would not load: its load segment {i} has file offset {:#x} and address {:#x}, which disagree modulo the alignment {:#x} (a rewrite by strip or patchelf broke it)\nhint: report it with the wheel's name; ferry leaves files without debug sections unstripped",
                rel.display(),
                ph.p_offset,
                ph.p_vaddr,
                ph.p_align
            );
        }
    }
    Ok(())
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// `a/b` relative to `from_dir`, as `../..`-style text.
fn relative(from_dir: &Path, to: &Path) -> String {
    let from: Vec<Component> = from_dir.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        String::new()
    } else {
        parts.join("/")
    }
}

fn origin_path(elf_dir_rel: &Path, target_rel: &Path) -> String {
    let rel = relative(elf_dir_rel, target_rel);
    if rel.is_empty() {
        "$ORIGIN".into()
    } else {
        format!("$ORIGIN/{rel}")
    }
}

/// Where the libraries a bundle needs are taken from.
pub enum Libraries {
    /// The build host's: `ldconfig -p`, then the usual directories.
    Host(HostLibraries),
    /// Only the given directories of a target's unpacked packages, never
    /// the host's (whose libraries are for another architecture, or
    /// another distribution).
    Target {
        /// Searched in order.
        dirs: Vec<PathBuf>,
        /// What errors call them, e.g. `Debian 12's aarch64-linux-gnu packages`.
        label: String,
    },
}

impl Libraries {
    /// The build host's libraries.
    pub fn host() -> Libraries {
        Libraries::Host(HostLibraries::load())
    }

    fn find(&self, soname: &str, hints: &[String], machine: u16, is_64: bool) -> Option<PathBuf> {
        match self {
            Libraries::Host(host) => host.find(soname, hints, machine, is_64),
            Libraries::Target { dirs, .. } => dirs
                .iter()
                .map(|d| d.join(soname))
                .find(|p| p.is_file() && arch_matches(p, machine, is_64)),
        }
    }

    fn not_found(&self, soname: &str, needed_by: &Path) -> String {
        match self {
            Libraries::Host(_) => format!(
                "cannot find `{soname}`, needed by `{}`, on the build host\nhint: install the package that provides it",
                needed_by.display()
            ),
            Libraries::Target { label, .. } => format!(
                "cannot find `{soname}`, needed by `{}`, in {label}\nhint: a wheel that needs a library the board's Debian has is not bundled from this machine; add the library with a build add-on (copy it into `libs/`)",
                needed_by.display()
            ),
        }
    }
}

fn arch_matches(p: &Path, machine: u16, is_64: bool) -> bool {
    fs::read(p)
        .ok()
        .and_then(|b| {
            Elf::parse(&b)
                .ok()
                .map(|e| e.header.e_machine == machine && e.is_64 == is_64)
        })
        .unwrap_or(false)
}

/// The build host's library search: `ldconfig -p`, then the usual directories.
pub struct HostLibraries {
    cache: BTreeMap<String, Vec<PathBuf>>,
}

impl HostLibraries {
    fn load() -> Self {
        let mut cache: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let out = Command::new("ldconfig")
            .arg("-p")
            .output()
            .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output());
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
                if let (Some(name), Some((_, path))) =
                    (line.split_whitespace().next(), line.split_once("=> "))
                {
                    cache
                        .entry(name.to_owned())
                        .or_default()
                        .push(PathBuf::from(path.trim()));
                }
            }
        }
        Self { cache }
    }

    fn find(&self, soname: &str, hints: &[String], machine: u16, is_64: bool) -> Option<PathBuf> {
        let hinted = hints
            .iter()
            .filter(|h| h.starts_with('/'))
            .map(|d| Path::new(d).join(soname));
        let cached = self.cache.get(soname).into_iter().flatten().cloned();
        let standard = STANDARD_DIRS.iter().map(|d| Path::new(d).join(soname));
        hinted
            .chain(cached)
            .chain(standard)
            .find(|p| p.is_file() && arch_matches(p, machine, is_64))
    }
}

/// Where libraries live when the loader cache does not say.
const STANDARD_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/arm-linux-gnueabihf",
    "/usr/lib/arm-linux-gnueabihf",
    "/usr/local/lib",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

fn walk_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e.file_type()?;
        let child = rel.join(e.file_name());
        if ft.is_dir() {
            walk_files(root, &child, out)?;
        } else if ft.is_file() {
            out.push(child);
        }
    }
    Ok(())
}

/// Checks that patchelf and `strip` are there before a long build starts.
pub fn require_tools(strip: &str) -> Result<()> {
    if process::find_on_path("patchelf").is_none() {
        bail!("`patchelf` is not installed; standalone builds need it to set relative run paths\nhint: apt-get install patchelf");
    }
    if process::find_on_path(strip).is_none() {
        let package = match strip.strip_suffix("-strip") {
            Some(prefix) => format!("binutils-{prefix}"),
            None => "binutils".to_owned(),
        };
        bail!("`{strip}` is not installed; standalone builds need it to drop debug information\nhint: apt-get install {package}");
    }
    Ok(())
}

/// Bundles the native libraries every ELF in `bundle` needs, from
/// `libraries`, dropping debug sections with the program `strip`.
/// `provided` lists sonames the target supplies besides glibc (libpython
/// in system mode).
pub fn bundle(
    bundle: &Path,
    provided: &[String],
    libraries: &Libraries,
    strip: &str,
) -> Result<NativeReport> {
    let mut files = Vec::new();
    walk_files(bundle, Path::new(""), &mut files)?;
    let host = libraries;
    let libs_rel = PathBuf::from(LIBS_DIR);
    let mut report = NativeReport::default();
    let mut queue: VecDeque<PathBuf> = VecDeque::new();
    let mut infos: BTreeMap<PathBuf, ElfInfo> = BTreeMap::new();
    // Which file names exist in which bundle directories (for $ORIGIN lookups).
    let mut present: BTreeSet<PathBuf> = files.iter().cloned().collect();
    for f in files {
        if let Some(info) = read_elf(&bundle.join(&f))? {
            infos.insert(f.clone(), info);
            queue.push_back(f);
        }
    }
    let mut stripped: Vec<PathBuf> = infos.keys().cloned().collect();
    // ELF → bundle directories it must be able to load from.
    let mut wanted_dirs: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    while let Some(rel) = queue.pop_front() {
        let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let (needed, runpaths, machine, is_64) = {
            let i = &infos[&rel];
            (i.needed.clone(), i.runpaths.clone(), i.machine, i.is_64)
        };
        for soname in needed {
            if provided_by_glibc(&soname) || provided.contains(&soname) {
                continue;
            }
            // Already reachable through the ELF's own $ORIGIN run paths?
            let own = runpaths
                .iter()
                .filter_map(|r| r.strip_prefix("$ORIGIN"))
                .any(|suffix| {
                    let candidate =
                        normalize(&dir.join(suffix.trim_start_matches('/'))).join(&soname);
                    present.contains(&candidate)
                });
            if own || present.contains(&dir.join(&soname)) {
                continue;
            }
            // Elsewhere in the bundle (libpython under python/lib, earlier copies in libs/)?
            let elsewhere = ["python/lib", LIBS_DIR]
                .iter()
                .map(PathBuf::from)
                .find(|d| present.contains(&d.join(&soname)));
            let target_dir = match elsewhere {
                Some(d) => d,
                None => {
                    let host_path = host
                        .find(&soname, &runpaths, machine, is_64)
                        .with_context(|| host.not_found(&soname, &rel))?;
                    let dest_rel = libs_rel.join(&soname);
                    fs::create_dir_all(bundle.join(&libs_rel))?;
                    fs::copy(&host_path, bundle.join(&dest_rel))
                        .with_context(|| format!("cannot copy `{}`", host_path.display()))?;
                    let info = read_elf(&bundle.join(&dest_rel))?.with_context(|| {
                        format!("`{}` is not an ELF library", host_path.display())
                    })?;
                    infos.insert(dest_rel.clone(), info);
                    present.insert(dest_rel.clone());
                    stripped.push(dest_rel.clone());
                    queue.push_back(dest_rel);
                    report.bundled.push(soname.clone());
                    libs_rel.clone()
                }
            };
            wanted_dirs
                .entry(rel.clone())
                .or_default()
                .insert(target_dir);
        }
        if infos[&rel]
            .runpaths
            .iter()
            .any(|r| !r.starts_with("$ORIGIN"))
        {
            wanted_dirs.entry(rel.clone()).or_default();
        }
    }
    // Only what carries debug sections is stripped: wheels' libraries come
    // stripped already, and rewriting them gains nothing and can break them
    // (numpy's OpenBLAS after strip: misaligned load segments).
    stripped.retain(|rel| infos[rel].has_debug);
    let sizes_before = stripped
        .iter()
        .map(|rel| Ok(fs::metadata(bundle.join(rel))?.len()))
        .collect::<Result<Vec<u64>>>()?;
    strip_debug(bundle, &stripped, strip)?;
    for (rel, before) in stripped.iter().zip(sizes_before) {
        let after = fs::metadata(bundle.join(rel))?.len();
        report
            .debug_stripped
            .push((rel.clone(), before.saturating_sub(after)));
    }
    for (rel, dirs) in &wanted_dirs {
        let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut entries: Vec<String> = infos[rel]
            .runpaths
            .iter()
            .filter(|r| r.starts_with("$ORIGIN"))
            .cloned()
            .collect();
        for d in dirs {
            let e = origin_path(&dir, d);
            if !entries.contains(&e) {
                entries.push(e);
            }
        }
        let mut cmd = Command::new("patchelf");
        if entries.is_empty() {
            cmd.arg("--remove-rpath");
        } else {
            cmd.arg("--set-rpath").arg(entries.join(":"));
        }
        process::run(cmd.arg(bundle.join(rel)))
            .with_context(|| format!("cannot set the run path of `{}`", rel.display()))?;
    }
    let rewritten: BTreeSet<&PathBuf> = stripped.iter().chain(wanted_dirs.keys()).collect();
    for rel in rewritten {
        check_loadable(&bundle.join(rel), rel)?;
    }
    report.glibc_floor = infos
        .values()
        .flat_map(|i| i.glibc_versions.iter())
        .max_by_key(|v| version_key(v))
        .cloned();
    report.bundled.sort();
    Ok(report)
}

/// Drops debug information (not symbols) from ELF files: interpreters built
/// from source carry tens of megabytes of it, which devices never use.
fn strip_debug(bundle: &Path, files: &[PathBuf], strip: &str) -> Result<()> {
    for chunk in files.chunks(200) {
        let mut cmd = Command::new(strip);
        cmd.arg("--strip-debug");
        for f in chunk {
            let full = bundle.join(f);
            // Some wheels ship read-only files.
            let mode = fs::metadata(&full)?.permissions().mode();
            fs::set_permissions(&full, fs::Permissions::from_mode(mode | 0o200))?;
            cmd.arg(full);
        }
        process::run(&mut cmd).context("cannot strip debug information")?;
    }
    Ok(())
}

/// Lexically resolves `..` and `.` in a bundle-relative path.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
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
                if fs::File::open(e.path())?.read(&mut magic)? == 4 && &magic == b"\x7fELF" {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
    walk(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 file with one `PT_LOAD` header at `offset`/`vaddr`.
    fn elf_with_load(offset: u64, vaddr: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        b[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut b[64..];
        ph[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[8..16].copy_from_slice(&offset.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes()); // p_align
        b
    }

    #[test]
    fn a_misaligned_load_segment_stops_the_build_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.so");
        fs::write(&good, elf_with_load(0x1000, 0x201000)).unwrap();
        check_loadable(&good, Path::new("numpy.libs/good.so")).unwrap();
        let bad = d.path().join("bad.so");
        fs::write(&bad, elf_with_load(0x1200, 0x201000)).unwrap();
        let err = check_loadable(&bad, Path::new("numpy.libs/libopenblas.so"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("numpy.libs/libopenblas.so") && err.contains("would not load"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            origin_path(Path::new("python/bin"), Path::new("python/lib")),
            "$ORIGIN/../lib"
        );
        assert_eq!(
            origin_path(
                Path::new("python/lib/python3.11/lib-dynload"),
                Path::new("libs")
            ),
            "$ORIGIN/../../../../libs"
        );
        assert_eq!(origin_path(Path::new("libs"), Path::new("libs")), "$ORIGIN");
    }

    #[test]
    fn glibc_family() {
        assert!(provided_by_glibc("libc.so.6"));
        assert!(provided_by_glibc("ld-linux-x86-64.so.2"));
        assert!(!provided_by_glibc("libssl.so.3"));
        assert!(!provided_by_glibc("libcrypt.so.1"));
    }

    #[test]
    fn version_order() {
        let mut v = vec!["2.9", "2.34", "2.17"];
        v.sort_by_key(|s| version_key(s));
        assert_eq!(v, ["2.9", "2.17", "2.34"]);
    }
}

//! A target's CPython from Debian 12's own packages of that architecture:
//! `python3.11-minimal`, `libpython3.11-stdlib` and the libraries they
//! depend on, downloaded by apt (which checks them against the archive's
//! signed index) and unpacked with `dpkg-deb -x` into a tree ferry builds
//! from as if it were an installed interpreter. Nothing is installed on the
//! build machine.
//!
//! The tree is cached under [`cache_root`] by a hash of the exact package
//! versions, so a second build downloads nothing and a Debian point release
//! makes a new tree instead of mixing versions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::tree::PythonTree;
use super::Target;
use crate::{log, process};

/// Debian 12's Python: the minor version its packages carry.
pub const PYTHON_MINOR: (u32, u32) = (3, 11);

/// The packages the interpreter comes from, and the C++ runtime manylinux
/// wheels may link against; their library dependencies are followed from
/// here. Unpacked is not bundled: only what an ELF file needs is copied.
const ROOTS: &[&str] = &["python3.11-minimal", "libpython3.11-stdlib", "libstdc++6"];

/// Dependencies never unpacked: glibc, which the board has (its version is
/// the floor the binary records), and what is not a library.
const NOT_BUNDLED: &[&str] = &["libc6", "gcc-12-base"];

/// Written last into a finished tree: the packages it holds.
const MARKER: &str = ".ferry-packages";

/// Where unpacked target trees are kept: `$FERRY_TARGET_CACHE`, else
/// `$XDG_CACHE_HOME/ferry-targets`, else `~/.cache/ferry-targets` (beside,
/// not inside, the launcher's cache, whose entries are apps).
pub fn cache_root() -> Result<PathBuf> {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = from_env("FERRY_TARGET_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = from_env("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("ferry-targets"));
    }
    let home = from_env("HOME")
        .context("neither FERRY_TARGET_CACHE, XDG_CACHE_HOME nor HOME is set\nhint: set FERRY_TARGET_CACHE to a directory for the targets' interpreters")?;
    Ok(PathBuf::from(home).join(".cache/ferry-targets"))
}

/// One package as apt's index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Package {
    name: String,
    version: String,
    architecture: String,
    depends: Vec<String>,
}

/// Debian 12's CPython for `target`, from the cache or downloaded now.
pub fn python_tree(target: Target) -> Result<PythonTree> {
    for (tool, package) in [
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
    ] {
        if process::find_on_path(tool).is_none() {
            bail!("`{tool}` is not installed; ferry takes the {target} interpreter from Debian's packages\nhint: build on Debian or Ubuntu (apt-get install {package})");
        }
    }
    let arch = target.deb_arch();
    require_architecture(target)?;
    let packages = resolve(arch)?;
    let python = packages
        .get(ROOTS[0])
        .context("apt's index has no python3.11-minimal")?;
    let version = upstream_version(&python.version);
    let key = cache_key(&packages);
    let dir = cache_root()?;
    let root = dir.join(format!("debian12-{arch}-{key}"));
    if !root.join(MARKER).is_file() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        log::note(format!(
            "fetching Debian 12's Python {version} for {target} ({} packages, once; cached in `{}`)",
            packages.len(),
            dir.display()
        ));
        unpack(&packages, arch, &dir, &root)?;
    }
    Ok(tree_of(&root, target, version))
}

/// The interpreter tree of an unpacked Debian root.
fn tree_of(root: &Path, target: Target, version: String) -> PythonTree {
    let (major, minor) = PYTHON_MINOR;
    let ma = target.multiarch();
    let usr = root.join("usr");
    PythonTree {
        target,
        version,
        minor: PYTHON_MINOR,
        executable: usr.join(format!("bin/python{major}.{minor}")),
        stdlib: usr.join(format!("lib/python{major}.{minor}")),
        libdir: usr.join("lib").join(ma),
        // Debian links libpython into the executable.
        libpython: None,
        library_dirs: vec![
            root.join("lib").join(ma),
            usr.join("lib").join(ma),
            root.join("lib"),
            usr.join("lib"),
        ],
        label: format!(
            "Debian 12's {} packages unpacked in `{}`",
            target.deb_arch(),
            root.display()
        ),
        prefix: usr,
    }
}

/// Fails with the two commands that fix it unless dpkg knows `target`'s
/// architecture (apt fetches nothing of an architecture it was not told of).
fn require_architecture(target: Target) -> Result<()> {
    let arch = target.deb_arch();
    let native = process::run(Command::new("dpkg").arg("--print-architecture"))
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if native == arch {
        return Ok(());
    }
    let foreign = process::run(Command::new("dpkg").arg("--print-foreign-architectures"))
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if foreign.split_whitespace().any(|a| a == arch) {
        return Ok(());
    }
    bail!(
        "apt knows no {arch} packages on this machine, so it cannot fetch the {target} interpreter\nhint: run `dpkg --add-architecture {arch} && apt-get update` (as root; scripts/install-deps.sh does)"
    )
}

/// The interpreter's packages and, transitively, the libraries they depend
/// on, as apt's index has them for `arch`.
fn resolve(arch: &str) -> Result<BTreeMap<String, Package>> {
    let mut found: BTreeMap<String, Package> = BTreeMap::new();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut wanted: Vec<String> = ROOTS.iter().map(|s| s.to_string()).collect();
    while !wanted.is_empty() {
        asked.extend(wanted.iter().cloned());
        let described = show(&wanted, arch)?;
        let mut next = Vec::new();
        for pkg in described {
            // Only the architecture's own packages: `all` ones are data.
            if pkg.architecture != arch {
                continue;
            }
            for dep in &pkg.depends {
                if !asked.contains(dep) && !next.contains(dep) && is_library(dep) {
                    next.push(dep.clone());
                }
            }
            found.insert(pkg.name.clone(), pkg);
        }
        wanted = next;
    }
    for root in ROOTS {
        if !found.contains_key(*root) {
            bail!("apt's index has no {root}:{arch}\nhint: run `apt-get update` (with `dpkg --add-architecture {arch}` done first)");
        }
    }
    Ok(found)
}

/// Whether a dependency is a shared library package worth following
/// (Debian names them `lib…`, zlib's is the one exception here).
fn is_library(name: &str) -> bool {
    (name.starts_with("lib") || name == "zlib1g") && !NOT_BUNDLED.contains(&name)
}

/// `apt-cache show` of `names` for `arch`: one entry per package it knows.
fn show(names: &[String], arch: &str) -> Result<Vec<Package>> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["show", "--no-all-versions"]);
    for n in names {
        cmd.arg(format!("{n}:{arch}"));
    }
    let out = cmd.output().context("cannot run apt-cache")?;
    // apt-cache fails when any name is unknown, yet prints the others.
    let text = String::from_utf8_lossy(&out.stdout);
    let packages = parse_stanzas(&text);
    if packages.is_empty() && !out.status.success() {
        bail!(
            "apt-cache knows none of {} for {arch}: {}\nhint: run `apt-get update`",
            names.join(", "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(packages)
}

/// Reads `Package`, `Version`, `Architecture`, `Depends` and `Pre-Depends`
/// of each stanza of apt's index format.
fn parse_stanzas(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut last: Option<&str> = None;
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(key) = last {
                    if let Some(value) = fields.get_mut(key) {
                        value.push_str(line);
                    }
                }
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                fields.insert(key, value.trim().to_owned());
                last = Some(key);
            }
        }
        let (Some(name), Some(version), Some(architecture)) = (
            fields.get("Package"),
            fields.get("Version"),
            fields.get("Architecture"),
        ) else {
            continue;
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(list) = fields.get(key) {
                depends.extend(list.split(',').filter_map(first_alternative));
            }
        }
        out.push(Package {
            name: name.clone(),
            version: version.clone(),
            architecture: architecture.clone(),
            depends,
        });
    }
    out
}

/// `libssl3 (>= 3.0.0) | libssl1.1` → `libssl3`; `python3:any` → `python3`.
fn first_alternative(dep: &str) -> Option<String> {
    let first = dep.split('|').next()?.trim();
    let name = first.split([' ', '(']).next()?.trim();
    let name = name.split(':').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `3.11.2-6+deb12u9` → `3.11.2`.
fn upstream_version(debian: &str) -> String {
    let no_epoch = debian.split_once(':').map_or(debian, |(_, v)| v);
    no_epoch
        .rsplit_once('-')
        .map_or(no_epoch, |(v, _)| v)
        .to_owned()
}

/// The first 16 hex digits of the SHA-256 of the sorted `name=version` list.
fn cache_key(packages: &BTreeMap<String, Package>) -> String {
    let mut h = Sha256::new();
    for p in packages.values() {
        h.update(format!("{}={}\n", p.name, p.version));
    }
    hex::encode(h.finalize())[..16].to_owned()
}

/// Downloads the packages with apt and unpacks them into `root`, through a
/// temporary sibling renamed into place, so the cache holds whole trees only.
fn unpack(packages: &BTreeMap<String, Package>, arch: &str, dir: &Path, root: &Path) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".ferry-target-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a directory in `{}`", dir.display()))?;
    let debs = scratch.path().join("debs");
    let tree = scratch.path().join("root");
    std::fs::create_dir_all(&debs)?;
    let mut cmd = Command::new("apt-get");
    cmd.arg("download").current_dir(&debs);
    for p in packages.values() {
        cmd.arg(format!("{}:{arch}={}", p.name, p.version));
    }
    process::run(&mut cmd).context(
        "apt could not download the target's Python packages\nhint: check the network and apt's sources (`apt-get update`)",
    )?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    files.sort();
    if files.len() != packages.len() {
        bail!(
            "apt downloaded {} of the {} packages the target's Python needs",
            files.len(),
            packages.len()
        );
    }
    for deb in &files {
        process::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tree))
            .with_context(|| format!("cannot unpack `{}`", deb.display()))?;
    }
    let list: String = packages
        .values()
        .map(|p| format!("{}:{arch}={}\n", p.name, p.version))
        .collect();
    std::fs::write(tree.join(MARKER), list)?;
    match std::fs::rename(&tree, root) {
        Ok(()) => Ok(()),
        // Another build unpacked the same packages first: theirs is as good.
        Err(_) if root.join(MARKER).is_file() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot move the tree to `{}`", root.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: python3.11-minimal\nVersion: 3.11.2-6+deb12u9\nArchitecture: arm64\nDepends: libpython3.11-minimal (= 3.11.2-6+deb12u9), libexpat1 (>= 2.1~beta3),\n zlib1g (>= 1:1.2.0)\nPre-Depends: libc6 (>= 2.35)\n\nPackage: libpython3.11-stdlib\nVersion: 3.11.2-6+deb12u9\nArchitecture: arm64\nDepends: media-types | mime-support, libssl3 (>= 3.0.0) | libssl1.1, python3:any\n";

    #[test]
    fn stanzas_give_versions_and_first_alternatives() {
        let pkgs = parse_stanzas(INDEX);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "python3.11-minimal");
        assert_eq!(
            pkgs[0].depends,
            ["libc6", "libpython3.11-minimal", "libexpat1", "zlib1g"]
        );
        assert_eq!(pkgs[1].depends, ["media-types", "libssl3", "python3"]);
        let followed: Vec<&String> = pkgs[0].depends.iter().filter(|d| is_library(d)).collect();
        assert_eq!(followed, ["libpython3.11-minimal", "libexpat1", "zlib1g"]);
    }

    #[test]
    fn debian_versions_lose_epoch_and_revision() {
        assert_eq!(upstream_version("3.11.2-6+deb12u9"), "3.11.2");
        assert_eq!(upstream_version("1:1.2.13.dfsg-1"), "1.2.13.dfsg");
        assert_eq!(upstream_version("3.11.2"), "3.11.2");
    }

    #[test]
    fn the_cache_key_follows_every_version() {
        let mut a: BTreeMap<String, Package> = parse_stanzas(INDEX)
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let before = cache_key(&a);
        a.get_mut("libpython3.11-stdlib").unwrap().version = "3.11.2-6+deb12u10".into();
        assert_ne!(before, cache_key(&a));
    }
}

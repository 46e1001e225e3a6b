//! The boards a build is for: `ferry build --target TARGET`, with TARGET a
//! Debian multiarch name. A target names everything that differs between
//! architectures — its Debian architecture (for its packages), its ELF
//! machine (to check launchers and libraries), the wheel platforms pip may
//! pick for it, its cross compiler and where `scripts/cross.sh` leaves its
//! launcher — so the rest of the build asks the target instead of `cfg!`.

pub mod debian;
pub mod prefix;
pub mod tree;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// One architecture ferry builds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// x86_64 PCs and servers.
    X86_64,
    /// 64-bit ARM: Raspberry Pi 3/4/5 on a 64-bit OS, ODROIDs, Home Assistant's boards.
    Aarch64,
    /// ARMv7 with hard float: 32-bit Raspberry Pi OS and older boards.
    Armhf,
}

/// The oldest and newest glibc a wheel's `manylinux_2_X` tag may name for a
/// Debian 12 board (its glibc is 2.36).
const MANYLINUX_MINOR: std::ops::RangeInclusive<u32> = 17..=36;

impl Target {
    /// Every target, in the order errors list them.
    pub const ALL: [Target; 3] = [Target::X86_64, Target::Aarch64, Target::Armhf];

    /// The machine ferry itself runs on.
    pub fn host() -> Target {
        if cfg!(target_arch = "aarch64") {
            Target::Aarch64
        } else if cfg!(target_arch = "arm") {
            Target::Armhf
        } else {
            Target::X86_64
        }
    }

    /// Reads a Debian multiarch name (`aarch64-linux-gnu`), or Debian's
    /// architecture name (`arm64`), or Rust's triple.
    pub fn parse(text: &str) -> Result<Target> {
        for t in Target::ALL {
            if text == t.multiarch() || text == t.deb_arch() || text == t.rust_triple() {
                return Ok(t);
            }
        }
        bail!(
            "unknown target `{text}`\nhint: use one of {}",
            Target::ALL
                .iter()
                .map(|t| format!("`{}`", t.multiarch()))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Debian's multiarch tuple: the name `--target` takes and manifests use.
    pub fn multiarch(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-linux-gnu",
            Target::Aarch64 => "aarch64-linux-gnu",
            Target::Armhf => "arm-linux-gnueabihf",
        }
    }

    /// Debian's architecture name (`apt-get download python3.11:arm64`).
    pub fn deb_arch(self) -> &'static str {
        match self {
            Target::X86_64 => "amd64",
            Target::Aarch64 => "arm64",
            Target::Armhf => "armhf",
        }
    }

    /// Rust's target triple: `scripts/cross.sh` builds into
    /// `target/<triple>/release/`.
    pub fn rust_triple(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64-unknown-linux-gnu",
            Target::Aarch64 => "aarch64-unknown-linux-gnu",
            Target::Armhf => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// The ELF header's `e_machine` and whether the class is 64-bit.
    pub fn elf(self) -> (u16, bool) {
        match self {
            Target::X86_64 => (62, true),
            Target::Aarch64 => (183, true),
            Target::Armhf => (40, false),
        }
    }

    /// The machine name in wheel platform tags and `uname -m`.
    pub fn wheel_machine(self) -> &'static str {
        match self {
            Target::X86_64 => "x86_64",
            Target::Aarch64 => "aarch64",
            Target::Armhf => "armv7l",
        }
    }

    /// The wheel platform tags a Debian 12 board of this target can load,
    /// newest first: `manylinux_2_36_<machine>` down to `_2_17` and its
    /// legacy alias `manylinux2014`. `linux_<machine>` wheels are left out:
    /// they promise nothing about the libraries they link against.
    pub fn wheel_platforms(self) -> Vec<String> {
        let machine = self.wheel_machine();
        let mut tags: Vec<String> = MANYLINUX_MINOR
            .rev()
            .map(|minor| format!("manylinux_2_{minor}_{machine}"))
            .collect();
        tags.push(format!("manylinux2014_{machine}"));
        tags
    }

    /// Whether a wheel file's platform tag is one this target loads (or
    /// `any`).
    pub fn accepts_wheel(self, file_name: &str) -> bool {
        let Some(platforms) = file_name
            .strip_suffix(".whl")
            .and_then(|stem| stem.rsplit('-').next())
        else {
            return false;
        };
        let accepted = self.wheel_platforms();
        platforms
            .split('.')
            .any(|p| p == "any" || accepted.iter().any(|a| a == p))
    }

    /// The prefix of the target's GNU cross tools (`aarch64-linux-gnu-gcc`).
    pub fn gnu_prefix(self) -> &'static str {
        self.multiarch()
    }

    /// The Debian package holding its cross C compiler.
    pub fn cross_gcc_package(self) -> String {
        format!("gcc-{}", self.multiarch())
    }

    /// Where a launcher for this target is looked for, given the directory
    /// of the running `ferry`: `ferry-launcher-<multiarch>` beside it (how
    /// an installation lays them out), then
    /// `<ferry's dir>/../<rust triple>/release/ferry-launcher` (a checkout's
    /// `target/debug/ferry` after `scripts/cross.sh`). For the host, plain
    /// `ferry-launcher` beside `ferry` comes first.
    pub fn launcher_candidates(self, ferry_dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self == Target::host() {
            out.push(ferry_dir.join("ferry-launcher"));
        }
        out.push(ferry_dir.join(format!("ferry-launcher-{}", self.multiarch())));
        if let Some(target_dir) = ferry_dir.parent() {
            out.push(
                target_dir
                    .join(self.rust_triple())
                    .join("release")
                    .join("ferry-launcher"),
            );
        }
        out
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.multiarch())
    }
}

/// The target an ELF file is for, from its header, if it is one ferry ships.
pub fn of_elf(head: &[u8]) -> Option<Target> {
    if head.len() < 20 || &head[..4] != b"\x7fELF" || head[5] != 1 {
        return None;
    }
    let machine = u16::from_le_bytes([head[18], head[19]]);
    let is_64 = head[4] == 2;
    Target::ALL
        .into_iter()
        .find(|t| t.elf() == (machine, is_64))
}

/// The target of the ELF file at `path`, or an error naming what it is.
pub fn of_file(path: &Path) -> Result<Target> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read the ELF header of `{}`", path.display()))?;
    if &head[..4] != b"\x7fELF" {
        bail!("`{}` is not an ELF file", path.display());
    }
    of_elf(&head).with_context(|| {
        format!(
            "`{}` is built for ELF machine {}, which ferry does not ship to",
            path.display(),
            u16::from_le_bytes([head[18], head[19]])
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_names_the_choices() {
        assert_eq!(Target::parse("aarch64-linux-gnu").unwrap(), Target::Aarch64);
        assert_eq!(Target::parse("arm64").unwrap(), Target::Aarch64);
        assert_eq!(
            Target::parse("armv7-unknown-linux-gnueabihf").unwrap(),
            Target::Armhf
        );
        let err = format!("{:#}", Target::parse("riscv64").unwrap_err());
        assert!(err.contains("`arm-linux-gnueabihf`"), "{err}");
    }

    #[test]
    fn wheels_are_taken_by_platform_tag() {
        let t = Target::Aarch64;
        assert!(t.accepts_wheel("flask-3.1.3-py3-none-any.whl"));
        assert!(t.accepts_wheel(
            "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
        ));
        assert!(!t.accepts_wheel("MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.whl"));
        assert!(!t.accepts_wheel("c_addon-0.1.0-cp311-cp311-linux_aarch64.whl"));
        assert!(!t.accepts_wheel("pkg-1-cp311-cp311-manylinux_2_39_aarch64.whl"));
        assert_eq!(Target::Armhf.wheel_platforms()[0], "manylinux_2_36_armv7l");
    }

    #[test]
    fn elf_headers_name_their_target() {
        let mut head = [0u8; 20];
        head[..4].copy_from_slice(b"\x7fELF");
        head[4] = 2;
        head[5] = 1;
        head[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(of_elf(&head), Some(Target::Aarch64));
        head[4] = 1;
        assert_eq!(of_elf(&head), None, "a 32-bit aarch64 file is no target");
        head[18..20].copy_from_slice(&40u16.to_le_bytes());
        assert_eq!(of_elf(&head), Some(Target::Armhf));
    }

    #[test]
    fn a_checkout_finds_cross_built_launchers() {
        let c = Target::Aarch64.launcher_candidates(Path::new("/w/target/debug"));
        assert!(c.contains(&PathBuf::from(
            "/w/target/aarch64-unknown-linux-gnu/release/ferry-launcher"
        )));
        assert!(c.contains(&PathBuf::from(
            "/w/target/debug/ferry-launcher-aarch64-linux-gnu"
        )));
    }
}

//! The architectures ferry's boards run: Debian's names for them, Rust's,
//! and what their ELF files say they are.

/// One board architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64 (the machine the tests run on).
    Amd64,
    /// aarch64: Raspberry Pi 3/4/5 on a 64-bit OS, ODROIDs, Home Assistant's boards.
    Arm64,
    /// ARMv7 hard float: 32-bit Raspberry Pi OS and older boards.
    Armhf,
}

impl Arch {
    /// Every architecture, host first.
    pub const ALL: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::Armhf];

    /// Debian's architecture name (`dpkg --print-architecture`, `.deb` names).
    pub fn deb(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Armhf => "armhf",
        }
    }

    /// Debian's multiarch tuple, what `ferry build --target` and
    /// `scripts/cross.sh` take.
    pub fn multiarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-gnu",
            Arch::Arm64 => "aarch64-linux-gnu",
            Arch::Armhf => "arm-linux-gnueabihf",
        }
    }

    /// Rust's target triple (where `scripts/cross.sh` puts the binaries).
    pub fn rust_triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::Armhf => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// `e_machine` of its ELF files.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
            Arch::Armhf => 40,
        }
    }

    /// The qemu-user emulator that runs it on the host, if it needs one.
    pub fn qemu(self) -> Option<&'static str> {
        match self {
            Arch::Amd64 => None,
            Arch::Arm64 => Some("aarch64"),
            Arch::Armhf => Some("arm"),
        }
    }

    /// `target/<triple>/release/<name>`: a program `scripts/cross.sh` built.
    pub fn release_program(self, name: &str) -> std::path::PathBuf {
        crate::workspace_root()
            .join("target")
            .join(self.rust_triple())
            .join("release")
            .join(name)
    }
}

/// The ELF `e_machine` of the file at `path`, or an error naming it when it
/// is not a little-endian ELF file.
pub fn elf_machine_of(path: &std::path::Path) -> anyhow::Result<u16> {
    use anyhow::Context as _;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        anyhow::bail!("`{}` is not a little-endian ELF file", path.display());
    }
    Ok(u16::from_le_bytes([bytes[18], bytes[19]]))
}

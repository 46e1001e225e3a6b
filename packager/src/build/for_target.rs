//! What a build needs to know about the board it is for, beyond the
//! interpreter: which libraries it may bundle, which tools rewrite its ELF
//! files, what pip may install, what add-ons compile with, and whether this
//! machine can run the result for the start-up check.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Result};

use super::install::cross::Platform;
use super::native::Libraries;
use crate::process;
use crate::target::tree::PythonTree;
use crate::target::Target;

/// The board a build is for.
pub struct TargetBuild {
    /// Its architecture.
    pub target: Target,
    /// The target's unpacked interpreter, for a build for another machine.
    pub tree: Option<PythonTree>,
}

impl TargetBuild {
    /// A build for this machine.
    pub fn host() -> TargetBuild {
        TargetBuild {
            target: Target::host(),
            tree: None,
        }
    }

    /// Whether the board is another architecture than this machine.
    pub fn is_cross(&self) -> bool {
        self.target != Target::host()
    }

    /// The `strip` that understands the target's ELF files.
    pub fn strip_program(&self) -> String {
        if self.is_cross() {
            format!("{}-strip", self.target.gnu_prefix())
        } else {
            "strip".to_owned()
        }
    }

    /// Where bundled libraries come from: the target's packages, or this
    /// machine's.
    pub fn libraries(&self) -> Libraries {
        match &self.tree {
            Some(tree) => Libraries::Target {
                dirs: tree.library_dirs.clone(),
                label: tree.label.clone(),
            },
            None => Libraries::host(),
        }
    }

    /// The platform pip installs for, when it is not this machine's.
    pub fn platform(&self, python: (u32, u32)) -> Option<Platform> {
        self.is_cross().then_some(Platform {
            target: self.target,
            python,
        })
    }

    /// The environment build add-ons run in: `FERRY_TARGET` always; for
    /// another architecture the target's compilers (`CC`, `CXX`, `AR`,
    /// `STRIP`), so a Makefile that honours them and
    /// `./configure --host=$FERRY_TARGET` build for the board. Errors name
    /// the cross compiler's package when it is missing.
    pub fn addon_env(&self) -> Result<Vec<(&'static str, OsString)>> {
        let mut env = vec![("FERRY_TARGET", OsString::from(self.target.multiarch()))];
        if !self.is_cross() {
            return Ok(env);
        }
        let prefix = self.target.gnu_prefix();
        let gcc = format!("{prefix}-gcc");
        if process::find_on_path(&gcc).is_none() {
            bail!(
                "the build add-ons compile for {}, and its C compiler `{gcc}` is not installed\nhint: apt-get install {} (scripts/install-deps.sh installs it)",
                self.target,
                self.target.cross_gcc_package()
            );
        }
        for (var, tool) in [
            ("CC", "gcc"),
            ("CXX", "g++"),
            ("AR", "ar"),
            ("STRIP", "strip"),
        ] {
            env.push((var, OsString::from(format!("{prefix}-{tool}"))));
        }
        Ok(env)
    }

    /// Whether this machine can run the target's binaries for the start-up
    /// check: its own, or another's through qemu-user registered with
    /// binfmt_misc, with the target's dynamic loader installed (Debian's
    /// `libc6:<arch>`).
    pub fn can_run(&self) -> bool {
        if !self.is_cross() {
            return true;
        }
        let (binfmt, loader) = match self.target {
            Target::Aarch64 => ("qemu-aarch64", "/lib/ld-linux-aarch64.so.1"),
            Target::Armhf => ("qemu-arm", "/lib/ld-linux-armhf.so.3"),
            Target::X86_64 => ("qemu-x86_64", "/lib64/ld-linux-x86-64.so.2"),
        };
        let entry = Path::new("/proc/sys/fs/binfmt_misc").join(binfmt);
        std::fs::read_to_string(entry).is_ok_and(|s| s.starts_with("enabled"))
            && Path::new(loader).exists()
    }
}

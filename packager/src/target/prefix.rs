//! A target's interpreter from a prefix the user gives (`--target-python
//! DIR`): an installed CPython for the board, such as an unpacked
//! python-build-standalone `install/` tree or a board's `/usr` copied over.
//! The layout is CPython's own: `bin/python3.X`, `lib/python3.X/os.py`,
//! optionally `lib/libpython3.X.so.1.0`; libraries are looked for under
//! `lib/` (and `lib/<multiarch>/`) of the prefix only.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::tree::PythonTree;
use super::{of_file, Target};

/// The interpreter tree under `dir`. Its architecture is its executable's;
/// `expected`, when given (`--target`), must agree.
pub fn python_tree(dir: &Path, expected: Option<Target>) -> Result<PythonTree> {
    let lib = dir.join("lib");
    let minor = stdlib_minor(&lib).with_context(|| {
        format!(
            "--target-python `{}` holds no CPython 3 standard library (lib/python3.X/os.py)\nhint: give the prefix of an installed CPython for the board: the directory holding its bin/ and lib/",
            dir.display()
        )
    })?;
    let name = format!("python3.{minor}");
    let executable = dir.join("bin").join(&name);
    if !executable.is_file() {
        bail!(
            "--target-python `{}` has lib/{name} but no bin/{name}",
            dir.display()
        );
    }
    let target = of_file(&executable).context("--target-python")?;
    if let Some(expected) = expected {
        if expected != target {
            bail!(
                "--target-python `{}` is built for {target}, and --target asks for {expected}",
                executable.display()
            );
        }
    }
    let libpython = format!("libpython3.{minor}.so.1.0");
    let shared = lib.join(&libpython).is_file();
    let version = patch_version(dir, minor).unwrap_or_else(|| format!("3.{minor}"));
    Ok(PythonTree {
        target,
        version,
        minor: (3, minor),
        stdlib: lib.join(&name),
        executable,
        prefix: dir.to_path_buf(),
        libdir: lib.clone(),
        libpython: shared.then_some(libpython),
        library_dirs: vec![lib.join(target.multiarch()), lib.clone()],
        label: format!("the {target} Python in `{}`", dir.display()),
    })
}

/// The `X` of the one `lib/python3.X/os.py` under `lib`.
fn stdlib_minor(lib: &Path) -> Option<u32> {
    let mut found: Vec<u32> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("os.py").is_file())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("python3.")?
                .parse()
                .ok()
        })
        .collect();
    found.sort_unstable();
    found.pop()
}

/// `PY_VERSION` of `include/python3.X/patchlevel.h`, when the prefix has
/// its headers.
fn patch_version(dir: &Path, minor: u32) -> Option<String> {
    let header: PathBuf = dir.join(format!("include/python3.{minor}/patchlevel.h"));
    let text = std::fs::read_to_string(header).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("#define PY_VERSION")?;
        Some(rest.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_gives_minor_and_patch_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/python3.12")).unwrap();
        std::fs::write(dir.path().join("lib/python3.12/os.py"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("lib/python3.9")).unwrap();
        assert_eq!(stdlib_minor(&dir.path().join("lib")), Some(12));
        std::fs::create_dir_all(dir.path().join("include/python3.12")).unwrap();
        std::fs::write(
            dir.path().join("include/python3.12/patchlevel.h"),
            "#define PY_MINOR_VERSION 12\n#define PY_VERSION \"3.12.8\"\n",
        )
        .unwrap();
        assert_eq!(patch_version(dir.path(), 12).as_deref(), Some("3.12.8"));
        let err = format!("{:#}", python_tree(dir.path(), None).unwrap_err());
        assert!(
            err.contains("has lib/python3.12 but no bin/python3.12"),
            "{err}"
        );
    }
}

//! The workspace's own programs, as cargo built them for this test run.

use std::path::{Path, PathBuf};

/// `target/<profile>/`, found from the running test executable
/// (`target/<profile>/deps/<test>-<hash>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps")
        .to_path_buf()
}

/// A program of the workspace; panics with the fix if it was not built.
pub fn program(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.is_file(),
        "`{}` is missing: build the workspace's programs first (`cargo build --workspace --bins`; scripts/test.sh does)",
        p.display()
    );
    p
}

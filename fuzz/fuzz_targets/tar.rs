//! The launcher's payload reader (`extract::unpack_tar`) on arbitrary bytes:
//! it unpacks or refuses, never panics, and never creates anything outside
//! its destination, directly or through a symlink it made.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fn assert_links_stay_inside(dir: &Path, root: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let ty = e.file_type().unwrap();
        if ty.is_symlink() {
            if let Ok(resolved) = std::fs::canonicalize(&path) {
                assert!(
                    resolved.starts_with(root),
                    "{} resolves to {} outside the destination",
                    path.display(),
                    resolved.display()
                );
            }
        } else if ty.is_dir() {
            assert_links_stay_inside(&path, root);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().unwrap();
    let dest = scratch.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let _ = ferry_launcher::extract::unpack_tar(data, &dest);
    let outside: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        outside,
        vec![std::ffi::OsString::from("dest")],
        "written outside"
    );
    let root = std::fs::canonicalize(&dest).unwrap();
    assert_links_stay_inside(&dest, &root);
});

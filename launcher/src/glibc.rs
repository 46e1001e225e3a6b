//! The glibc floor: the build host's glibc version recorded in the metadata.
//! On an older system the payload's native code would die in the dynamic
//! loader with a cryptic "version `GLIBC_2.34' not found"; the launcher stops
//! first with one line saying what is needed and what is there.

/// The payload needs a newer glibc than the running one.
#[derive(Debug, thiserror::Error)]
#[error("{name} needs glibc {floor} or newer; this system has {have}")]
pub struct GlibcError {
    /// The app.
    pub name: String,
    /// The recorded floor.
    pub floor: String,
    /// The running glibc.
    pub have: String,
}

/// The running glibc's version, `None` where the C library is not glibc.
pub fn running_version() -> Option<String> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: gnu_get_libc_version returns a pointer to a static
        // NUL-terminated string owned by glibc.
        let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        Some(version.to_string_lossy().into_owned())
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Numeric parts of a version: `2.35` → `[2, 35]`; trailing junk in a part
/// (`2.35-ubuntu`) is ignored.
fn parts(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        })
        .collect()
}

/// Whether `have` is older than `need`, comparing numeric parts (missing = 0).
pub fn is_older(have: &str, need: &str) -> bool {
    let (mut a, mut b) = (parts(have), parts(need));
    let n = a.len().max(b.len());
    a.resize(n, 0);
    b.resize(n, 0);
    a < b
}

/// Checks the floor against the running glibc.
pub fn check(name: &str, floor: &str) -> Result<(), GlibcError> {
    let Some(have) = running_version() else {
        crate::trace!("not glibc: floor {floor} not checked");
        return Ok(());
    };
    crate::trace!("glibc {have}, floor {floor}");
    if is_older(&have, floor) {
        return Err(GlibcError {
            name: name.to_owned(),
            floor: floor.to_owned(),
            have,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_numerically() {
        assert!(is_older("2.9", "2.34"));
        assert!(is_older("2.31", "2.34"));
        assert!(!is_older("2.34", "2.34"));
        assert!(!is_older("2.34.1", "2.34"));
        assert!(!is_older("2.36", "2.34"));
        assert!(is_older("2", "2.1"));
        assert!(!is_older("3.0", "2.99"));
    }

    #[test]
    fn message_names_both_versions() {
        let have = running_version().expect("tests run on glibc");
        check("app", "2.0").unwrap();
        let err = check("app", "99.0").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("app needs glibc 99.0 or newer; this system has {have}")
        );
    }
}

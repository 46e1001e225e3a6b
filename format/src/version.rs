//! Ordering release versions by Semantic Versioning 2.0.0's precedence
//! rules (§11), with a lenient reading of versions that are not strictly
//! SemVer (`1.2`, `2024.12.1.3`), since apps version themselves as they
//! like: the dot-separated core compares numerically part by part (missing
//! parts are 0), a pre-release (`-rc.1`) comes before its release, and build
//! metadata (`+build.5`) does not count.

use std::cmp::Ordering;

/// Compares two versions by precedence.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split(a);
    let (b_core, b_pre) = split(b);
    compare_core(a_core, b_core).then_with(|| match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        // A pre-release comes before the release it leads to.
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(a), Some(b)) => compare_pre(a, b),
    })
}

/// Whether `a` is older than `b`.
pub fn is_older(a: &str, b: &str) -> bool {
    compare(a, b) == Ordering::Less
}

/// `1.2.3-rc.1+build` → (`1.2.3`, `Some("rc.1")`).
fn split(v: &str) -> (&str, Option<&str>) {
    let v = v.split_once('+').map_or(v, |(v, _)| v);
    match v.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (v, None),
    }
}

fn compare_core(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parts(a), parts(b));
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| {
            a.get(i)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(i).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// §11.4: identifier by identifier; numeric ones numerically and before
/// alphanumeric ones, which compare in ASCII order; a longer list wins a tie.
fn compare_pre(a: &str, b: &str) -> Ordering {
    let mut a_ids = a.split('.');
    let mut b_ids = b.split('.');
    loop {
        match (a_ids.next(), b_ids.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if o.is_ne() {
                    return o;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_precedence_of_the_specifications_example() {
        // SemVer 2.0.0 §11.4's own chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in chain.windows(2) {
            assert_eq!(compare(pair[0], pair[1]), Ordering::Less, "{pair:?}");
            assert_eq!(compare(pair[1], pair[0]), Ordering::Greater, "{pair:?}");
        }
    }

    #[test]
    fn a_release_candidate_is_older_than_its_release() {
        assert!(is_older("0.2.0-rc.1", "0.2.0"));
        assert!(!is_older("0.2.0", "0.2.0-rc.1"));
    }

    #[test]
    fn build_metadata_does_not_count_and_short_versions_pad_with_zero() {
        assert_eq!(compare("1.0.0+build.7", "1.0.0+build.9"), Ordering::Equal);
        assert_eq!(compare("1.2", "1.2.0"), Ordering::Equal);
        assert!(is_older("1.2", "1.2.1"));
        assert!(is_older("2024.12.1", "2024.12.1.3"));
    }
}

//! Which Debian mirror `debootstrap` downloads from: the one this machine's apt
//! already uses for bookworm (machines that run the tests may reach no other),
//! read from deb822 `.sources` files or the one-line `sources.list` format.

use std::path::Path;

/// Used when the apt configuration names no bookworm mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The machine's bookworm mirror, or [`DEFAULT_MIRROR`].
pub fn from_apt_config() -> String {
    let candidates = [
        Path::new("/etc/apt/sources.list.d/debian.sources"),
        Path::new("/etc/apt/sources.list"),
    ];
    let mut files: Vec<std::path::PathBuf> = candidates.iter().map(|p| p.to_path_buf()).collect();
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut others: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        others.sort();
        files.extend(others);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let found = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => from_deb822(&text, "bookworm"),
            Some("list") => from_one_line(&text, "bookworm"),
            _ => None,
        };
        if let Some(mirror) = found {
            return mirror;
        }
    }
    DEFAULT_MIRROR.to_string()
}

/// The first URI of the first `Types: deb` stanza whose `Suites` holds `suite`.
pub fn from_deb822(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let mut types = "";
        let mut uris = "";
        let mut suites = "";
        for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((key, value)) = line.split_once(':') {
                match key.trim().to_ascii_lowercase().as_str() {
                    "types" => types = value,
                    "uris" => uris = value,
                    "suites" => suites = value,
                    _ => {}
                }
            }
        }
        let has = |field: &str, word: &str| field.split_whitespace().any(|w| w == word);
        if has(types, "deb") && has(suites, suite) {
            if let Some(uri) = uris.split_whitespace().next() {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// The URI of the first `deb [options] URI SUITE …` line for `suite`.
pub fn from_one_line(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let end = rest.iter().position(|w| w.ends_with(']')).unwrap_or(0);
            rest.drain(..=end);
        }
        if let [uri, line_suite, ..] = rest.as_slice() {
            if *line_suite == suite {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_takes_the_stanza_of_the_suite_not_security() {
        let text = "Types: deb\n# comment\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb deb-src\nURIs: http://mirror.example/debian/ http://other.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            from_deb822(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(from_deb822(text, "trixie"), None);
    }

    #[test]
    fn one_line_format_skips_options_and_other_suites() {
        let text = "# deb http://commented.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            from_one_line(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn this_machine_yields_an_http_mirror() {
        let mirror = from_apt_config();
        assert!(
            mirror.starts_with("http://") || mirror.starts_with("https://"),
            "{mirror}"
        );
    }
}

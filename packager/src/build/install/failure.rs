//! Telling why an install failed from what pip or uv printed, so the hint
//! says what to do: a requirement that does not resolve, a package whose
//! build needs a compiler or a header (named, with the Debian package that
//! has it), a build backend missing from an offline wheelhouse, a package's
//! own build script failing, or the network.

/// Why the installer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No release matches a requirement (`what` as the installer names it).
    Unresolvable { what: Option<String> },
    /// A build backend could not be installed while no index is used.
    OfflineBuildBackend { what: String },
    /// A C compile needs a header that is not installed.
    MissingHeader {
        header: String,
        package: Option<&'static str>,
    },
    /// A tool a build needs is not installed (a C compiler, `pg_config`, Rust).
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    /// A package's own build script failed for another reason.
    BuildScript,
    /// The index could not be reached.
    Network,
    /// Nothing recognisable.
    Unknown,
}

/// Headers that source builds on PyPI most often miss, and the Debian 12
/// package that installs each.
const HEADERS: &[(&str, &str)] = &[
    ("Python.h", "python3-dev"),
    ("lber.h", "libldap2-dev"),
    ("ldap.h", "libldap2-dev"),
    ("sasl/sasl.h", "libsasl2-dev"),
    ("ffi.h", "libffi-dev"),
    ("openssl/ssl.h", "libssl-dev"),
    ("openssl/opensslv.h", "libssl-dev"),
    ("libxml/xmlversion.h", "libxml2-dev"),
    ("libxslt/xsltconfig.h", "libxslt1-dev"),
    ("zlib.h", "zlib1g-dev"),
    ("bzlib.h", "libbz2-dev"),
    ("lzma.h", "liblzma-dev"),
    ("sqlite3.h", "libsqlite3-dev"),
    ("libpq-fe.h", "libpq-dev"),
    ("mysql.h", "default-libmysqlclient-dev"),
    ("yaml.h", "libyaml-dev"),
    ("jpeglib.h", "libjpeg-dev"),
    ("png.h", "libpng-dev"),
    ("gmp.h", "libgmp-dev"),
    ("krb5.h", "libkrb5-dev"),
    ("gssapi/gssapi.h", "libkrb5-dev"),
    ("dbus/dbus.h", "libdbus-1-dev"),
    ("systemd/sd-daemon.h", "libsystemd-dev"),
    ("cairo.h", "libcairo2-dev"),
    ("portaudio.h", "portaudio19-dev"),
    ("libudev.h", "libudev-dev"),
    ("bluetooth/bluetooth.h", "libbluetooth-dev"),
    ("usb.h", "libusb-dev"),
    ("libusb-1.0/libusb.h", "libusb-1.0-0-dev"),
    ("cups/cups.h", "libcups2-dev"),
    ("readline/readline.h", "libreadline-dev"),
    ("ncurses.h", "libncurses-dev"),
    ("curl/curl.h", "libcurl4-openssl-dev"),
    ("pcap.h", "libpcap-dev"),
];

/// Reads the installer's combined output; `offline` when no index is used.
pub fn classify(output: &str, offline: bool) -> Failure {
    if let Some(header) = missing_header(output) {
        let package = HEADERS
            .iter()
            .find(|(h, _)| header == *h || header.ends_with(&format!("/{h}")))
            .map(|(_, p)| *p);
        return Failure::MissingHeader { header, package };
    }
    let lower = output.to_lowercase();
    for (needle, tool, package) in [
        (
            "command 'gcc' failed: no such file",
            "a C compiler",
            "build-essential",
        ),
        ("unable to execute 'gcc'", "a C compiler", "build-essential"),
        (
            "-linux-gnu-gcc' failed: no such file",
            "a C compiler",
            "build-essential",
        ),
        (
            "command 'cc' failed: no such file",
            "a C compiler",
            "build-essential",
        ),
        (
            "error: command 'g++' failed: no such file",
            "a C++ compiler",
            "g++",
        ),
        ("pg_config executable not found", "pg_config", "libpq-dev"),
        ("can't find rust compiler", "a Rust compiler", "cargo"),
        (
            "cargo, the rust package manager, is not installed",
            "a Rust compiler",
            "cargo",
        ),
    ] {
        if lower.contains(needle) {
            return Failure::MissingTool { tool, package };
        }
    }
    let unresolved = unresolved_requirement(output);
    let installing_backend = lower.contains("installing build dependencies")
        && !lower.contains("installing build dependencies: finished with status 'done'");
    if let (Some(what), true) = (&unresolved, installing_backend && offline) {
        return Failure::OfflineBuildBackend { what: what.clone() };
    }
    for needle in [
        "temporary failure in name resolution",
        "failed to establish a new connection",
        "network is unreachable",
        "connection refused",
        "read timed out",
        "connecttimeouterror",
        "dns error",
        "failed to fetch",
        "error sending request",
    ] {
        if lower.contains(needle) {
            return Failure::Network;
        }
    }
    if unresolved.is_some()
        || lower.contains("no solution found when resolving")
        || lower.contains("resolutionimpossible")
        || lower.contains("because there are no versions of")
    {
        return Failure::Unresolvable { what: unresolved };
    }
    if lower.contains("subprocess-exited-with-error")
        || lower.contains("failed to build")
        || lower.contains("build backend returned an error")
        || lower.contains("did not run successfully")
    {
        return Failure::BuildScript;
    }
    Failure::Unknown
}

impl Failure {
    /// One hint line (after `hint: `) for the user, for Python `python`.
    pub fn hint(&self, python: &str) -> String {
        match self {
            Failure::Unresolvable { what: Some(what) } => format!(
                "no release of `{what}` fits Python {python} and the other requirements: check its name and version on PyPI"
            ),
            Failure::Unresolvable { what: None } => format!(
                "the requirements cannot all be met on Python {python}: check the names and versions the installer names above"
            ),
            Failure::OfflineBuildBackend { what } => format!(
                "building the project needs its build backend `{what}`, and no index is used: put it in the wheelhouse (`pip download '{what}' wheel -d WHEELHOUSE`)"
            ),
            Failure::MissingHeader { header, package: Some(package) } => format!(
                "a package is compiled from source and needs the header `{header}`: install it (`apt-get install {package}`) or choose a version that has a wheel for Python {python}"
            ),
            Failure::MissingHeader { header, package: None } => format!(
                "a package is compiled from source and needs the header `{header}`: install the development package that has it (`apt-file search {header}`) or choose a version that has a wheel for Python {python}"
            ),
            Failure::MissingTool { tool, package } => format!(
                "a package is compiled from source and needs {tool}: install it (`apt-get install {package}`) or choose a version that has a wheel for Python {python}"
            ),
            Failure::BuildScript => format!(
                "a package's own build failed (its output is above); this is not a name or version problem: choose a version that has a wheel for Python {python}, or fix what its build reports"
            ),
            Failure::Network => "the package index could not be reached: check the network, a proxy (`HTTPS_PROXY`) or the index (`PIP_INDEX_URL`); offline, give a wheelhouse (`PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR`)".to_owned(),
            Failure::Unknown => "the installer's output is above".to_owned(),
        }
    }
}

/// Whether pip or uv is told not to use an index.
pub fn offline_from_env() -> bool {
    std::env::var("PIP_NO_INDEX").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "no"))
        || std::env::var_os("UV_OFFLINE").is_some()
}

/// `fatal error: lber.h: No such file or directory` → `lber.h`.
fn missing_header(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let rest = &line[line.find("fatal error: ")? + "fatal error: ".len()..];
        let (name, why) = rest.split_once(": ")?;
        (name.ends_with(".h") && why.starts_with("No such file")).then(|| name.trim().to_owned())
    })
}

/// pip's `Could not find a version that satisfies the requirement X (…)` or
/// `No matching distribution found for X`; uv's `Because X was not found`.
fn unresolved_requirement(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        for marker in [
            "Could not find a version that satisfies the requirement ",
            "No matching distribution found for ",
            "Because there are no versions of ",
            "Because ",
        ] {
            if let Some(i) = line.find(marker) {
                let rest = &line[i + marker.len()..];
                let what = rest
                    .split([' ', '('])
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(',');
                if marker == "Because " && !rest.contains("was not found in the package registry") {
                    continue;
                }
                if !what.is_empty() {
                    return Some(what.to_owned());
                }
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_header_is_named_with_its_debian_package() {
        let out = "      Modules/LDAPObject.c:1: In file included from Modules/common.h:15\n      Modules/constants.h:7:10: fatal error: lber.h: No such file or directory\n      compilation terminated.\n      error: command '/usr/bin/x86_64-linux-gnu-gcc' failed with exit code 1\n  error: subprocess-exited-with-error\n";
        let f = classify(out, false);
        assert_eq!(
            f,
            Failure::MissingHeader {
                header: "lber.h".into(),
                package: Some("libldap2-dev")
            }
        );
        assert!(f.hint("3.11").contains("apt-get install libldap2-dev"));
        let f = classify(
            "x.c:1:10: fatal error: weird/thing.h: No such file or directory\n",
            false,
        );
        assert!(f.hint("3.11").contains("`weird/thing.h`"), "{f:?}");
    }

    #[test]
    fn an_unknown_name_is_a_resolution_failure_that_names_it() {
        let pip = "ERROR: Could not find a version that satisfies the requirement flaskk==9.9 (from versions: none)\nERROR: No matching distribution found for flaskk==9.9\n";
        assert_eq!(
            classify(pip, false),
            Failure::Unresolvable {
                what: Some("flaskk==9.9".into())
            }
        );
        let uv = "  × No solution found when resolving dependencies:\n  ╰─▶ Because flaskk was not found in the package registry and you require flaskk, we can conclude that your requirements are unsatisfiable.\n";
        assert_eq!(
            classify(uv, false),
            Failure::Unresolvable {
                what: Some("flaskk".into())
            }
        );
    }

    #[test]
    fn a_failing_setup_py_is_not_blamed_on_names() {
        let out = "  error: subprocess-exited-with-error\n  × python setup.py egg_info did not run successfully.\n  │ exit code: 1\n  ╰─> [1 lines of output]\n      ZeroDivisionError: division by zero\n";
        let f = classify(out, false);
        assert_eq!(f, Failure::BuildScript);
        assert!(f.hint("3.11").contains("not a name or version problem"));
    }

    #[test]
    fn offline_a_missing_build_backend_is_named_with_the_wheelhouse_fix() {
        let out = "Processing /src/app\n  Installing build dependencies: started\n  Installing build dependencies: finished with status 'error'\n  ERROR: Could not find a version that satisfies the requirement setuptools>=61 (from versions: none)\n";
        let f = classify(out, true);
        assert_eq!(
            f,
            Failure::OfflineBuildBackend {
                what: "setuptools>=61".into()
            }
        );
        assert!(f
            .hint("3.11")
            .contains("pip download 'setuptools>=61' wheel -d WHEELHOUSE"));
        assert!(matches!(classify(out, false), Failure::Unresolvable { .. }));
    }

    #[test]
    fn missing_compilers_and_the_network_are_told_apart() {
        assert_eq!(
            classify(
                "error: command 'gcc' failed: No such file or directory\n",
                false
            ),
            Failure::MissingTool {
                tool: "a C compiler",
                package: "build-essential"
            }
        );
        assert_eq!(
            classify("WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(... Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')'\nERROR: Could not find a version that satisfies the requirement flask (from versions: none)\n", false),
            Failure::Network
        );
        assert_eq!(classify("something else\n", false), Failure::Unknown);
    }
}

//! A private certificate authority made with `openssl` for the tests' TLS
//! servers (nginx, Mosquitto): a CA the system does not trust, and a
//! certificate for `localhost` and `127.0.0.1` that it signed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// A server's certificate and key (PEM files).
#[derive(Debug, Clone)]
pub struct Tls {
    /// PEM certificate (chain).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A CA of its own in `dir` (`ca.pem`) and a server certificate it signed
/// for `localhost` and `127.0.0.1` (P-256, valid two days): the server's
/// files, and the CA certificate a client must be told to trust.
pub fn private_ca(dir: &Path) -> Result<(Tls, PathBuf)> {
    let openssl = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .context("cannot run openssl: apt-get install openssl")?;
        if !out.status.success() {
            bail!(
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=ferry test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca)?;
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "leaf.csr"]);
    openssl(&csr)?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ])?;
    Ok((
        Tls {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        },
        dir.join("ca.pem"),
    ))
}

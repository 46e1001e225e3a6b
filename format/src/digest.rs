//! SHA-256 as ferry names files by it: lowercase hex, the form TUF metadata,
//! manifests and build add-on pins all carry. One copy, so every program
//! hashes an artifact the same way.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Bytes read per call: large enough to keep syscalls rare on a
/// multi-gigabyte artifact, small enough for a board's memory.
const BUF_LEN: usize = 256 * 1024;

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The lowercase hex SHA-256 of what `r` yields to its end, and how many
/// bytes that was. Streamed: memory does not grow with the input.
pub fn sha256_reader(r: &mut impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF_LEN];
    let mut len = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok((hex::encode(hasher.finalize()), len)),
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The lowercase hex SHA-256 of the file at `path`, and its length in bytes
/// (as read, so the two always describe the same bytes).
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    sha256_reader(&mut File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn known_digests() {
        assert_eq!(sha256_hex(b""), EMPTY);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_file_over_several_buffers_hashes_as_its_bytes() {
        let bytes: Vec<u8> = (0..BUF_LEN * 2 + 17).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            (sha256_hex(&bytes), bytes.len() as u64)
        );
        assert!(sha256_file(&dir.path().join("missing")).is_err());
    }
}

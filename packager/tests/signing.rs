//! The `ferry` CLI's keys and signatures against the real `minisign` tool:
//! whatever one signs, the other checks, both ways, with unencrypted and
//! password-protected keys; and every kind of damage to a signed ferry binary
//! is refused with its own message.

mod common;

use std::path::{Path, PathBuf};

use common::{fails, ferry, make_container, minisign, ok, text, work};

#[test]
fn ferry_signed_files_verify_with_minisign() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(p.join("ferry.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "secret key must be private");
    ok(ferry(p, &["sign", "data.txt", "--key", "ferry.key"], &[]));
    let out = ok(minisign(
        p,
        &["-V", "-p", "ferry.pub", "-m", "data.txt"],
        "",
    ));
    assert!(String::from_utf8_lossy(&out.stdout).contains("file:data.txt"));
    ok(ferry(
        p,
        &["verify", "data.txt", "--pubkey", "ferry.pub"],
        &[],
    ));

    std::fs::write(p.join("data.txt"), b"tampered").unwrap();
    assert!(
        !minisign(p, &["-V", "-p", "ferry.pub", "-m", "data.txt"], "")
            .status
            .success()
    );
    let msg = fails(ferry(
        p,
        &["verify", "data.txt", "--pubkey", "ferry.pub"],
        &[],
    ));
    assert!(msg.contains("FAILED") && msg.contains("modified"), "{msg}");
}

#[test]
fn password_protected_ferry_key_works_in_minisign() {
    let d = work();
    let p = d.path();
    ok(ferry(
        p,
        &["keygen", "-s", "p.key", "-p", "p.pub"],
        &[("FERRY_KEY_PASSWORD", "correct horse")],
    ));
    // minisign reads the password from stdin when it is not a terminal.
    ok(minisign(
        p,
        &["-S", "-s", "p.key", "-m", "data.txt"],
        "correct horse\n",
    ));
    ok(ferry(p, &["verify", "data.txt", "-p", "p.pub"], &[]));
    let msg = text(&ferry(p, &["sign", "data.txt", "--key", "p.key"], &[]));
    assert!(
        msg.contains("password-protected") && msg.contains("FERRY_KEY_PASSWORD"),
        "{msg}"
    );
    let bad = ferry(
        p,
        &["sign", "data.txt", "--key", "p.key"],
        &[("FERRY_KEY_PASSWORD", "wrong")],
    );
    assert!(!bad.status.success());
    assert!(text(&bad).contains("wrong password"), "{}", text(&bad));
    std::fs::write(p.join("pw"), "correct horse\n").unwrap();
    // A password file others can read is refused (packager/tests/hygiene.rs).
    std::fs::set_permissions(
        p.join("pw"),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    ok(ferry(
        p,
        &[
            "sign",
            "data.txt",
            "--key",
            "p.key",
            "--password-file",
            "pw",
        ],
        &[],
    ));
    ok(minisign(p, &["-V", "-p", "p.pub", "-m", "data.txt"], ""));
}

#[test]
fn minisign_keys_and_signatures_work_in_ferry() {
    let d = work();
    let p = d.path();
    // Unencrypted key (-W).
    ok(minisign(p, &["-G", "-W", "-p", "w.pub", "-s", "w.key"], ""));
    ok(minisign(
        p,
        &["-S", "-s", "w.key", "-m", "data.txt", "-t", "from minisign"],
        "",
    ));
    let out = ok(ferry(p, &["verify", "data.txt", "-p", "w.pub"], &[]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("from minisign"));
    ok(ferry(p, &["sign", "data.txt", "--key", "w.key"], &[]));
    ok(minisign(p, &["-V", "-p", "w.pub", "-m", "data.txt"], ""));
    // Legacy (non-prehashed) signatures still verify.
    ok(minisign(
        p,
        &["-S", "-l", "-s", "w.key", "-m", "data.txt"],
        "",
    ));
    ok(ferry(p, &["verify", "data.txt", "-p", "w.pub"], &[]));
    // Password-protected key.
    ok(minisign(
        p,
        &["-G", "-p", "e.pub", "-s", "e.key"],
        "s3cret\ns3cret\n",
    ));
    ok(ferry(
        p,
        &["sign", "data.txt", "--key", "e.key"],
        &[("FERRY_KEY_PASSWORD", "s3cret")],
    ));
    ok(minisign(p, &["-V", "-p", "e.pub", "-m", "data.txt"], ""));
    // The base64 form of the key works as --pubkey too.
    let b64 = std::fs::read_to_string(p.join("e.pub"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    ok(ferry(p, &["verify", "data.txt", "-p", &b64], &[]));
    // Several trusted keys: the right one is picked by key id.
    ok(ferry(
        p,
        &["verify", "data.txt", "-p", "w.pub", "-p", "e.pub"],
        &[],
    ));
}

fn flip(path: &Path, at: u64) -> PathBuf {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    let out = path.with_file_name(format!("flipped-{at}"));
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn embedded_signature_checks_out_and_exports_for_minisign() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    make_container(&p.join("demo"));

    let out = ok(ferry(p, &["inspect", "demo"], &[]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unsigned"));
    let msg = fails(ferry(p, &["verify", "demo", "-p", "ferry.pub"], &[]));
    assert!(msg.contains("not signed"), "{msg}");

    ok(ferry(p, &["sign", "demo", "--key", "ferry.key"], &[]));
    assert!(
        !p.join("demo.minisig").exists(),
        "ferry binaries carry their signature inside"
    );
    let out = ok(ferry(p, &["verify", "demo", "-p", "ferry.pub"], &[]));
    let key_id = std::fs::read_to_string(p.join("ferry.pub")).unwrap();
    let key_id = key_id
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&key_id));

    // Signing again replaces the signature instead of stacking one more.
    let len = std::fs::metadata(p.join("demo")).unwrap().len();
    ok(ferry(p, &["sign", "demo", "--key", "ferry.key"], &[]));
    assert_eq!(std::fs::metadata(p.join("demo")).unwrap().len(), len);

    let out = ok(ferry(
        p,
        &[
            "inspect",
            "demo",
            "--json",
            "-p",
            "ferry.pub",
            "--export-signed",
            "signed.bin",
        ],
        &[],
    ));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["signature"]["state"], "valid");
    assert_eq!(v["signature"]["key_id"], key_id.as_str());
    assert_eq!(v["metadata"]["name"], "demo");
    assert_eq!(v["sizes"]["launcher"], 4096);
    assert_eq!(v["sizes"]["total"], len);
    let minisign_out = ok(minisign(
        p,
        &["-V", "-p", "ferry.pub", "-m", "signed.bin"],
        "",
    ));
    assert!(String::from_utf8_lossy(&minisign_out.stdout).contains("app:demo\tversion:1.2.3"));
}

#[test]
fn every_kind_of_damage_is_refused() {
    let d = work();
    let p = d.path();
    ok(ferry(p, &["keygen", "--no-password"], &[]));
    ok(ferry(
        p,
        &[
            "keygen",
            "--no-password",
            "-s",
            "other.key",
            "-p",
            "other.pub",
        ],
        &[],
    ));
    let demo = p.join("demo");
    make_container(&demo);
    ok(ferry(p, &["sign", "demo", "--key", "ferry.key"], &[]));
    let len = std::fs::metadata(&demo).unwrap().len();

    // A flipped byte anywhere: launcher, payload, metadata, trailer, signature, footer.
    let samples = [
        0,
        17,
        100,
        4095,
        4096,
        30_000,
        54_095,
        54_200,
        len - 300,
        len - 120,
        len - 20,
        len - 1,
    ];
    for at in samples {
        let f = flip(&demo, at);
        let o = ferry(p, &["verify", f.to_str().unwrap(), "-p", "ferry.pub"], &[]);
        assert!(!o.status.success(), "flip at {at} of {len} went unnoticed");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("FAILED") || !o.stderr.is_empty(),
            "{}",
            text(&o)
        );
    }

    // A wrong key names both key ids.
    let ids: Vec<String> = ["ferry.pub", "other.pub"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(p.join(f))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let msg = fails(ferry(p, &["verify", "demo", "-p", "other.pub"], &[]));
    assert!(
        msg.contains(&ids[0]) && msg.contains(&ids[1]) && msg.contains("not trusted"),
        "{msg}"
    );

    // Truncated and stripped files get their own errors.
    let bytes = std::fs::read(&demo).unwrap();
    std::fs::write(p.join("cut"), &bytes[..bytes.len() / 2]).unwrap();
    let msg = fails(ferry(p, &["verify", "cut", "-p", "ferry.pub"], &[]));
    assert!(msg.contains("truncated"), "{msg}");
    std::fs::write(p.join("stripped"), &bytes[..4096]).unwrap();
    let msg = fails(ferry(p, &["verify", "stripped", "-p", "ferry.pub"], &[]));
    assert!(msg.contains("stripped"), "{msg}");
    let o = ferry(p, &["inspect", "stripped"], &[]);
    assert!(
        !o.status.success() && text(&o).contains("stripped"),
        "{}",
        text(&o)
    );
    let o = ferry(p, &["inspect", "data.txt"], &[]);
    assert!(
        !o.status.success() && text(&o).contains("not a ferry binary"),
        "{}",
        text(&o)
    );
}

#[test]
fn help_explains_each_subcommand() {
    let d = work();
    for sub in ["keygen", "sign", "verify", "inspect"] {
        let out = ok(ferry(d.path(), &[sub, "--help"], &[]));
        assert!(
            String::from_utf8_lossy(&out.stdout).len() > 200,
            "{sub} --help is too thin"
        );
    }
}

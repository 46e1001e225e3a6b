//! `ferryd status | head` and friends: a closed stdout ends ferryd's
//! read-only commands quietly (SIGPIPE, or exit 0 when done first), never
//! with a panic.

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Stdio};

#[test]
fn read_only_commands_survive_a_closed_stdout() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"https://updates.invalid\"\nroot = \"root.json\"\nstate-dir = \"{}\"\ndevice-id = \"d\"\n\n[[app]]\nname = \"demo\"\nunit = \"demo.service\"\n",
            d.path().join("state").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["-c", cfg, "status"],
        &["-c", cfg, "status", "--json"],
        &["--help"],
        &["--version"],
    ];
    for args in commands {
        for _ in 0..5 {
            let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            let status = child.wait().unwrap();
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert!(
                status.success() || status.signal() == Some(libc::SIGPIPE),
                "{args:?}: {status:?}: {err}"
            );
        }
    }
}

//! `ferryd status | head` and friends: a closed stdout ends ferryd's
//! read-only commands quietly (SIGPIPE, or exit 0 when done first), never
//! with a panic.

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
        ferry_tests::programs::assert_survives_closed_stdout(
            std::path::Path::new(env!("CARGO_BIN_EXE_ferryd")),
            d.path(),
            args,
        );
    }
}

//! The command line: every subcommand, its flags and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Package Python applications into one signed executable, and check them.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a signing key pair (minisign format).
    ///
    /// The secret key is password-protected unless --no-password is given; the
    /// password comes from --password-file, $FERRY_KEY_PASSWORD, or a prompt.
    /// The public key is what devices trust; it also works with `minisign -V -p`.
    Keygen(KeygenArgs),
    /// Sign a file.
    ///
    /// A ferry binary gets the signature embedded (replacing any previous one);
    /// any other file gets a detached FILE.minisig that `minisign -V` checks.
    Sign(SignArgs),
    /// Check a file's signature against trusted public keys.
    ///
    /// Prints one verdict line naming the signing key; exits 0 when the
    /// signature is valid and made by one of the keys, 1 otherwise.
    Verify(VerifyArgs),
    /// Show what a ferry binary holds: metadata, sizes, signature state.
    Inspect(InspectArgs),
    /// Build a Python project into one executable.
    ///
    /// Reads, in order of precedence: flags, `ferry.toml`, `[tool.ferry]` in
    /// pyproject.toml, then the project's own metadata (`[project]`, setup.py,
    /// requirements.txt, run.py). Without a project, `--with` requirement
    /// specifiers and `--entry` freeze an application straight from PyPI.
    /// The output (default `dist/<name>`) appears only when complete.
    Build(BuildArgs),
    /// Publish a release to a static update repository.
    ///
    /// Writes the artifact to `<repo>/blobs/sha256/<hex>`, then the signed
    /// manifest `<repo>/apps/<app>/<channel>.json` (+ `.minisig`) with a serial
    /// one above the channel's last. Serve the directory with any static HTTP
    /// server; see docs/repository.md.
    Publish(PublishArgs),
    /// Change a published release's rollout: --percent, --halt or --resume.
    ///
    /// Re-signs the channel's manifest with the same artifact, a serial one
    /// higher and the same validity window starting now.
    Rollout(RolloutArgs),
    /// Receive the agents' status reports over HTTP into a JSON-lines file.
    ///
    /// Accepts `POST` of one JSON report (docs/reports.md), appends it to --out
    /// unless its id is already stored, and answers 200; runs until killed.
    Collect(CollectArgs),
    /// Look at the fleet through the collected reports.
    Fleet(FleetArgs),
}

/// Where the secret key's password comes from.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the secret key's password from the first line of this file
    /// (default: $FERRY_KEY_PASSWORD, else a prompt on the terminal).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// `ferry keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (created 0600).
    #[arg(long, short = 's', default_value = "ferry.key")]
    pub secret: PathBuf,
    /// Where to write the public key.
    #[arg(long, short = 'p', default_value = "ferry.pub")]
    pub public: PathBuf,
    /// Write the secret key unencrypted (for CI secret stores).
    #[arg(long)]
    pub no_password: bool,
    /// Replace existing key files.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Password source.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The file to sign.
    pub file: PathBuf,
    /// Secret key file (ferry's or minisign's).
    #[arg(long, short = 'k', value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// Write a detached FILE.minisig even for a ferry binary.
    #[arg(long)]
    pub detached: bool,
    /// Trusted comment of a detached signature (default: timestamp and file name,
    /// as minisign writes it). Ferry binaries always bind their metadata.
    #[arg(long, short = 't')]
    pub trusted_comment: Option<String>,
    /// Password source.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The file to check.
    pub file: PathBuf,
    /// Trusted public key: a key file or the base64 key itself. Repeat for
    /// several trusted keys (key rotation).
    #[arg(long = "pubkey", short = 'p', value_name = "KEY", required = true)]
    pub pubkeys: Vec<String>,
    /// Detached signature to check (default: embedded for a ferry binary,
    /// FILE.minisig otherwise).
    #[arg(long, short = 'x', value_name = "SIGFILE")]
    pub signature: Option<PathBuf>,
}

/// `ferry inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The ferry binary.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also check the signature against these trusted keys.
    #[arg(long = "pubkey", short = 'p', value_name = "KEY")]
    pub pubkeys: Vec<String>,
    /// Write the signed bytes to OUT and the embedded signature to OUT.minisig,
    /// so `minisign -V -p KEY -m OUT` can check it by hand.
    #[arg(long, value_name = "OUT")]
    pub export_signed: Option<PathBuf>,
}

/// `ferry build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Project directory (default: the current directory, unless only --with is given).
    pub dir: Option<PathBuf>,
    /// Output mode: `standalone` (interpreter included, the default), `system`
    /// (uses the target's matching python3.X) or `pyz` (a zipapp).
    #[arg(long)]
    pub mode: Option<String>,
    /// Entry point: `module:function`, a console-script name, or a `.py` file.
    #[arg(long, short = 'e')]
    pub entry: Option<String>,
    /// Application name (default: the project's).
    #[arg(long)]
    pub name: Option<String>,
    /// Application version (default: the project's).
    #[arg(long)]
    pub version: Option<String>,
    /// Interpreter to freeze and build with (default: `python3` on PATH).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Requirements file (repeatable; default: the project's requirements.txt).
    #[arg(long = "requirements", short = 'r', value_name = "FILE")]
    pub requirements: Vec<PathBuf>,
    /// Requirement specifier to install as well, e.g. `httpie==3.2.4` (repeatable).
    #[arg(long = "with", value_name = "SPEC")]
    pub with: Vec<String>,
    /// Output file (default: `dist/<name>`, `dist/<name>.pyz` for pyz).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Sign the output with this secret key (without it the output is unsigned).
    #[arg(long, value_name = "SECRET_KEY")]
    pub sign_key: Option<PathBuf>,
    /// Launcher to put at the head of the binary (default: `ferry-launcher`
    /// next to `ferry`; pass one built for the target's architecture).
    #[arg(long, value_name = "PATH")]
    pub launcher: Option<PathBuf>,
    /// zstd level of the payload, 1-22 (default 12).
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// Password source for --sign-key.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The release: a signed ferry binary, or any file (then --app and --version are needed).
    pub file: PathBuf,
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// App name (default: the ferry binary's own).
    #[arg(long)]
    pub app: Option<String>,
    /// Channel, e.g. `stable` or `beta`.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// Version (default: the ferry binary's own).
    #[arg(long)]
    pub version: Option<String>,
    /// Secret key that signs the manifest (and signed the binary).
    #[arg(long, short = 'k', value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// How long the manifest stays valid: devices refuse it afterwards (freeze attacks).
    #[arg(long, default_value = "30d")]
    pub expires_in: String,
    /// Share of devices that take the release, 0-100.
    #[arg(long, default_value_t = 100)]
    pub percent: u8,
    /// Serial to use (default: one above the channel's current); must be higher.
    #[arg(long)]
    pub serial: Option<u64>,
    /// Oldest agent version allowed to install it.
    #[arg(long)]
    pub min_agent_version: Option<String>,
    /// Release notes for people.
    #[arg(long)]
    pub notes: Option<String>,
    /// Password source for --key.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry rollout`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["percent", "halt", "resume"])))]
pub struct RolloutArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// App name.
    #[arg(long)]
    pub app: String,
    /// Channel, e.g. `stable` or `beta`.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// New share of devices that take the release, 0-100.
    #[arg(long)]
    pub percent: Option<u8>,
    /// Stop further devices from taking the release.
    #[arg(long)]
    pub halt: bool,
    /// Undo --halt.
    #[arg(long)]
    pub resume: bool,
    /// Secret key that signs the manifest.
    #[arg(long, short = 'k', value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// Password source for --key.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry collect`.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Address to listen on, e.g. `0.0.0.0:8080`.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// JSON-lines file the reports are appended to.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `ferry fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// `ferry fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Summarise the devices' latest reports per app: versions, rollbacks, holds.
    Status(FleetStatusArgs),
}

/// `ferry fleet status`.
#[derive(Debug, Args)]
pub struct FleetStatusArgs {
    /// JSON-lines file written by `ferry collect`.
    #[arg(long, value_name = "FILE")]
    pub reports: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

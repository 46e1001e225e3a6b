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
    /// Checks the repository from the trusted root down, then writes the
    /// artifacts and the channel's manifest as targets of the app's role
    /// (signed with the release key), a new snapshot and timestamp (signed
    /// with the timestamp key), timestamp last. Serve the directory with any
    /// static HTTP server; see docs/repository.md.
    Publish(PublishArgs),
    /// Change a published release's rollout: --percent, --halt or --resume.
    ///
    /// Checks the channel's manifest and artifacts against the signed
    /// metadata, then publishes it again with a serial one higher.
    Rollout(RolloutArgs),
    /// Create and maintain the repository's roles: init, delegate an app,
    /// rotate keys, re-sign the timestamp, verify.
    Repo(RepoArgs),
    /// Receive the agents' status reports over HTTP into a JSON-lines file.
    ///
    /// Accepts `POST` of one JSON report (docs/reports.md), appends it to --out
    /// unless its id is already stored, and answers 200; runs until killed.
    Collect(CollectArgs),
    /// Look at the fleet through the collected reports.
    Fleet(FleetArgs),
    /// List or prune the extractions of ferry binaries run by hand.
    ///
    /// Each binary unpacks once into the cache (`$FERRY_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`); the launcher keeps
    /// the 3 newest builds of each app. An extraction an app runs from is
    /// never removed (its run lock tells). ferryd prunes its own.
    Cache(CacheArgs),
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
    /// The board's architecture: `aarch64-linux-gnu`, `arm-linux-gnueabihf`
    /// or `x86_64-linux-gnu` (default: this machine's). Another machine's
    /// build takes its Python from Debian 12's packages of that
    /// architecture, its wheels for that platform, and its launcher from
    /// beside `ferry` (see docs/building.md).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// The board's CPython as an installed prefix (its `bin/python3.X` and
    /// `lib/python3.X`, e.g. an unpacked python-build-standalone tree),
    /// instead of Debian 12's packages; its architecture is the target.
    #[arg(long, value_name = "DIR")]
    pub target_python: Option<PathBuf>,
    /// Launcher to put at the head of the binary (default: `ferry-launcher`
    /// next to `ferry`, or the target's; see --target).
    #[arg(long, value_name = "PATH")]
    pub launcher: Option<PathBuf>,
    /// zstd level of the payload, 1-22 (default 12).
    #[arg(long)]
    pub compression_level: Option<i32>,
    /// Skip the start-up check: by default the built binary resolves its
    /// entry point once (imports the module, finds the function, does not
    /// call it) before it is written to the output, so a binary that cannot
    /// start is never reported as built.
    #[arg(long)]
    pub no_check: bool,
    /// Password source for --sign-key.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// The repository, the root it is checked from, and the online key.
#[derive(Debug, Args)]
pub struct RepoTrustArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// The trusted root: the file devices are provisioned with (any version;
    /// newer roots in the repository are walked from it).
    #[arg(long, value_name = "ROOT_JSON")]
    pub root: PathBuf,
    /// Secret key of the timestamp (and snapshot) role.
    #[arg(long, value_name = "SECRET_KEY")]
    pub timestamp_key: PathBuf,
}

/// `ferry publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The release: one signed ferry binary per target architecture (same
    /// app and version), or one other file (then --app and --version are needed).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Repository, trusted root, timestamp key.
    #[command(flatten)]
    pub trust: RepoTrustArgs,
    /// App name (default: the ferry binary's own).
    #[arg(long)]
    pub app: Option<String>,
    /// Channel, e.g. `stable` or `beta`.
    #[arg(long, default_value = "stable")]
    pub channel: String,
    /// Version (default: the ferry binary's own).
    #[arg(long)]
    pub version: Option<String>,
    /// Target of a file that is not a ferry binary (ferry binaries: read from
    /// their ELF header): x86_64-linux-gnu, aarch64-linux-gnu, arm-linux-gnueabihf.
    #[arg(long)]
    pub target: Option<String>,
    /// The app's release key: signs the app's role (and signed the binaries).
    #[arg(long, short = 'k', value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// How long the app's role stays valid.
    #[arg(long, default_value = crate::repository::TARGETS_EXPIRES)]
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
    /// A page about the release (Home Assistant links to it).
    #[arg(long, value_name = "URL")]
    pub release_url: Option<String>,
    /// Password source for the keys.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry rollout`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("change").required(true).args(["percent", "halt", "resume"])))]
pub struct RolloutArgs {
    /// Repository, trusted root, timestamp key.
    #[command(flatten)]
    pub trust: RepoTrustArgs,
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
    /// The app's release key.
    #[arg(long, short = 'k', value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// How long the app's role stays valid.
    #[arg(long, default_value = crate::repository::TARGETS_EXPIRES)]
    pub expires_in: String,
    /// Password source for the keys.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry repo`.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RepoCommand,
}

/// `ferry repo` subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository: root (version 1), targets, snapshot, timestamp.
    ///
    /// Devices are provisioned with the `metadata/1.root.json` it writes.
    Init(RepoInitArgs),
    /// Give an app its release role (or new release keys: rotation).
    Delegate(RepoDelegateArgs),
    /// Write the next root: new root keys, or a new timestamp key.
    ///
    /// Signed by a threshold of the current root keys and of the new ones;
    /// devices walk to it by themselves. A new timestamp key resets the
    /// version floors a leaked one could have raised.
    Rotate(RepoRotateArgs),
    /// Re-sign snapshot and timestamp with fresh expiry: run it on a
    /// schedule (units/ferry-timestamp.timer), well within the timestamp's
    /// validity.
    Timestamp(RepoTimestampArgs),
    /// Check the whole repository from the trusted root, as a device would,
    /// including expiry and every published file.
    Verify(RepoVerifyArgs),
}

/// `ferry repo init`.
#[derive(Debug, Args)]
pub struct RepoInitArgs {
    /// Repository directory (created; must hold no metadata yet).
    #[arg(long)]
    pub repo: PathBuf,
    /// Secret root key (repeat for several; keep them offline).
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub root_key: Vec<PathBuf>,
    /// Root signatures needed (default: all of --root-key).
    #[arg(long)]
    pub root_threshold: Option<u32>,
    /// Secret key of the timestamp (and snapshot) role: the online key.
    #[arg(long, value_name = "SECRET_KEY")]
    pub timestamp_key: PathBuf,
    /// How long the root stays valid.
    #[arg(long, default_value = crate::repository::ROOT_EXPIRES)]
    pub expires_in: String,
    /// Password source for the keys.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry repo delegate`.
#[derive(Debug, Args)]
pub struct RepoDelegateArgs {
    /// Repository, trusted root, timestamp key.
    #[command(flatten)]
    pub trust: RepoTrustArgs,
    /// Secret root key(s): the targets role that delegates apps.
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub root_key: Vec<PathBuf>,
    /// The app.
    #[arg(long)]
    pub app: String,
    /// Public release key of the app (repeat for several).
    #[arg(long, value_name = "PUBLIC_KEY", required = true)]
    pub release_pubkey: Vec<String>,
    /// Release signatures needed (default 1).
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
    /// A new secret release key, to re-sign the app's current role when its
    /// keys change (needed then: devices check the role with the new keys).
    #[arg(long, value_name = "SECRET_KEY")]
    pub release_key: Vec<PathBuf>,
    /// Password source for the keys.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry repo rotate`.
#[derive(Debug, Args)]
pub struct RepoRotateArgs {
    /// Repository, trusted root, timestamp key (the new one when rotating it).
    #[command(flatten)]
    pub trust: RepoTrustArgs,
    /// Secret key(s) of the current root.
    #[arg(long, value_name = "SECRET_KEY", required = true)]
    pub root_key: Vec<PathBuf>,
    /// Secret key(s) of the new root (default: keep the current root keys).
    #[arg(long, value_name = "SECRET_KEY")]
    pub new_root_key: Vec<PathBuf>,
    /// Root signatures needed from now on (default: all root keys).
    #[arg(long)]
    pub root_threshold: Option<u32>,
    /// How long the new root stays valid.
    #[arg(long, default_value = crate::repository::ROOT_EXPIRES)]
    pub expires_in: String,
    /// Password source for the keys.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry repo timestamp`.
#[derive(Debug, Args)]
pub struct RepoTimestampArgs {
    /// Repository, trusted root, timestamp key.
    #[command(flatten)]
    pub trust: RepoTrustArgs,
    /// How long the new timestamp stays valid.
    #[arg(long, default_value = crate::repository::TIMESTAMP_EXPIRES)]
    pub expires_in: String,
    /// Password source for the key.
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// `ferry repo verify`.
#[derive(Debug, Args)]
pub struct RepoVerifyArgs {
    /// Repository directory.
    #[arg(long)]
    pub repo: PathBuf,
    /// The trusted root.
    #[arg(long, value_name = "ROOT_JSON")]
    pub root: PathBuf,
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

/// `ferry cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// `ferry cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List every app's extractions: build, size, when made, whether in use.
    List(CacheListArgs),
    /// Remove extractions no app runs from, and what killed runs left.
    Prune(CachePruneArgs),
}

/// Which cache `ferry cache` looks at.
#[derive(Debug, Args)]
pub struct CacheDirArgs {
    /// The cache root (default: the one a binary run here would use).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `ferry cache list`.
#[derive(Debug, Args)]
pub struct CacheListArgs {
    /// Which cache.
    #[command(flatten)]
    pub cache: CacheDirArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ferry cache prune`.
#[derive(Debug, Args)]
pub struct CachePruneArgs {
    /// Which cache.
    #[command(flatten)]
    pub cache: CacheDirArgs,
    /// Keep the N newest builds of each app; 0 removes every one not in use.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep: usize,
    /// Only this app's extractions.
    #[arg(long, value_name = "NAME")]
    pub app: Option<String>,
    /// Say what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
}

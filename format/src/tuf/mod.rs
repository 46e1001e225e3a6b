//! TUF repository metadata (The Update Framework, specification 1.0), in the
//! exact format python-tuf and go-tuf read: the roles that make a ferry
//! repository trustworthy, and the rules a client checks them by.
//! `docs/security.md` explains the roles; `docs/repository.md` the layout.

pub mod canonical;
pub mod envelope;
pub mod layout;
pub mod metadata;
pub mod refresh;
pub mod time;
pub mod trusted;
pub mod writer;

pub use envelope::{sign, Envelope, MAX_METADATA_LEN};
pub use metadata::{
    DelegatedRole, Delegations, Key, MetaFile, RoleDoc, RoleKeys, Root, Snapshot, TargetFile,
    Targets, Timestamp, SPEC_VERSION,
};
pub use refresh::{Fetch, Refresh};
pub use trusted::{RootChange, Trusted, TrustedSet};

/// Why metadata is refused. Each names the role, so a refusal in the journal
/// says which document of the repository is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TufError {
    /// Not a document of the role's shape.
    #[error("{role} metadata is malformed: {reason}")]
    Malformed {
        /// The role.
        role: String,
        /// What is wrong.
        reason: String,
    },
    /// Fewer valid signatures by the role's keys than its threshold.
    #[error("{role} metadata has {valid} valid signature(s) by its keys, {threshold} needed")]
    Threshold {
        /// The role.
        role: String,
        /// Distinct keys with a valid signature.
        valid: usize,
        /// Needed.
        threshold: u32,
    },
    /// A version lower than the one trusted: a replayed old document.
    #[error("{role} metadata version {got} is lower than the trusted version {trusted} (rollback attack?)")]
    Rollback {
        /// The role.
        role: String,
        /// The version received.
        got: u64,
        /// The version trusted.
        trusted: u64,
    },
    /// Not the version the referring document names.
    #[error("{role} metadata version {got} is not the version {expected} the repository names (mix-and-match?)")]
    VersionMismatch {
        /// The role.
        role: String,
        /// The version received.
        got: u64,
        /// The version expected.
        expected: u64,
    },
    /// Past its expiry.
    #[error("{role} metadata expired at {expires}: the repository may be frozen, or its timestamp was not re-signed")]
    Expired {
        /// The role.
        role: String,
        /// Its `expires`.
        expires: String,
    },
    /// Not the size the referring document names.
    #[error("{role} metadata is {got} bytes, the repository names {expected}")]
    LengthMismatch {
        /// The role.
        role: String,
        /// Bytes received.
        got: u64,
        /// Bytes named.
        expected: u64,
    },
    /// Not the hash the referring document names.
    #[error("{role} metadata does not have the SHA-256 the repository names")]
    HashMismatch {
        /// The role.
        role: String,
    },
    /// A role the trusted snapshot lists is gone from the new one.
    #[error("the new snapshot no longer lists role `{role}`")]
    RoleRemoved {
        /// The role.
        role: String,
    },
    /// Something needed first is not trusted yet.
    #[error("missing {what}")]
    Missing {
        /// What.
        what: String,
    },
}

#[cfg(test)]
mod tests;

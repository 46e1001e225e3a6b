//! ferry's on-disk and on-wire formats, shared by the packager, the launcher and
//! the agent: minisign-compatible keys and signatures, and the single-file
//! container (`launcher | payload | metadata | trailer | signature | footer`).
//!
//! This crate does no I/O policy and no async: it reads and writes through
//! `std::io` traits handed to it, and bounds every length it reads by the size of
//! what it reads from before allocating. The few helpers that open a file
//! themselves ([`digest::sha256_file`], [`keys::load_public_key`]) are here so
//! that every program does that one thing the same way.

pub mod clock;
pub mod container;
pub mod digest;
pub mod duration;
pub mod keys;
pub mod manifest;
pub mod report;
pub mod signature;
pub mod trusted_comment;
pub mod tuf;
pub mod version;

pub use container::{Container, ContainerError, Metadata, PythonInfo, Trailer};
pub use keys::{KeyError, KeyId, PublicKey, SecretKey, SecretKeyFile};
pub use signature::{Prehasher, Signature, SignatureAlgorithm, SignatureError};

//! The launcher's modules as a library, so the binary, its tests and the fuzz
//! targets (the payload's tar reader reads untrusted bytes) share one copy.

pub mod cache;
pub mod cache_root;
pub mod debug;
pub mod exec;
pub mod extract;
pub mod glibc;
pub mod launch;
pub mod lock;
pub mod prune;
pub mod verify;

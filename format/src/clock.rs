//! The wall clock, one way for every program.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now; 0 for a clock set before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

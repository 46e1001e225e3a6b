//! Durations as people write them in `agent.toml` and on ferry's command
//! line, one syntax for both: humantime's (`250ms`, `30s`, `5m`, `2h`, `1d`,
//! `1h 30m`, `3weeks`), or a plain number of seconds.

use std::time::Duration;

/// A duration that does not read.
#[derive(Debug, thiserror::Error)]
#[error("`{text}` is not a duration like 30s, 5m, 2h, 1d or 250ms ({reason})")]
pub struct DurationError {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `text` (surrounding spaces ignored).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let error = |reason: String| DurationError {
        text: text.to_owned(),
        reason,
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Duration::from_secs)
            .map_err(|e| error(e.to_string()));
    }
    humantime::parse_duration(t).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_plain_seconds_and_combinations() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse(" 45 ").unwrap(), Duration::from_secs(45));
        assert_eq!(parse("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        let err = parse("d").unwrap_err().to_string();
        assert!(err.starts_with("`d` is not a duration like 30s"), "{err}");
        assert!(parse("5 parsecs").is_err());
        assert!(parse("").is_err());
    }
}

//! Durations as people type them on the command line: `30d`, `12h`, `90m`,
//! `45s` or plain seconds.

use anyhow::{bail, Context as _, Result};

/// Parses `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 30d, 12h, 90m"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("`{text}` has an unknown unit; use s, m, h or d"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("d").is_err());
    }
}

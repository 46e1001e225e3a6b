//! The trusted comment: `key:value` fields separated by tabs, the shape minisign
//! itself uses (`timestamp:…\tfile:…`).
//!
//! ferry binds what a signature vouches for here (app name, version, build id,
//! and for manifests channel and serial), so a valid signature cannot be moved
//! onto other metadata: the verifier compares these fields with what it read.

use std::fmt;

/// Ordered `key:value` fields of a trusted comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedComment {
    fields: Vec<(String, String)>,
}

/// A field value that would break the comment's framing.
#[derive(Debug, thiserror::Error)]
#[error("trusted comment field `{key}` holds a tab, newline or colon in its key: `{value}`")]
pub struct FieldError {
    key: String,
    value: String,
}

impl TrustedComment {
    /// An empty comment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a field; keys may not hold `:`, and neither may hold tabs or newlines.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Result<Self, FieldError> {
        let value = value.to_string();
        if key.contains([':', '\t', '\n', '\r']) || value.contains(['\t', '\n', '\r']) {
            return Err(FieldError {
                key: key.to_owned(),
                value,
            });
        }
        self.fields.push((key.to_owned(), value));
        Ok(self)
    }

    /// Parses a comment; text that is not `key:value` is kept under an empty key.
    pub fn parse(text: &str) -> Self {
        let fields = text
            .split('\t')
            .map(|f| match f.split_once(':') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (String::new(), f.to_owned()),
            })
            .collect();
        Self { fields }
    }

    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for TrustedComment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str("\t")?;
            }
            write!(f, "{k}:{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = TrustedComment::new()
            .with("timestamp", 5)
            .unwrap()
            .with("app", "demo")
            .unwrap();
        assert_eq!(c.to_string(), "timestamp:5\tapp:demo");
        let back = TrustedComment::parse(&c.to_string());
        assert_eq!(back, c);
        assert_eq!(back.get("app"), Some("demo"));
        assert!(TrustedComment::new().with("a", "x\ty").is_err());
    }
}

//! Text from elsewhere (devices' reports, repository files) shown on a
//! terminal: control characters are escaped, so a hostile report cannot move
//! the cursor, rewrite earlier lines or set the terminal's title.

use std::borrow::Cow;

/// `text` with every control character written as an escape (`\u{1b}`).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_only() {
        assert_eq!(printable("1.0.0"), "1.0.0");
        assert_eq!(
            printable("x\u{1b}]0;pwned\u{7}y"),
            "x\\u{1b}]0;pwned\\u{7}y"
        );
        assert_eq!(printable("a\nb"), "a\\u{a}b");
        assert_eq!(printable("café"), "café");
    }
}

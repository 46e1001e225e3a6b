//! Canonical JSON as TUF signs it (the OLPC form that python-tuf's
//! securesystemslib writes): object keys sorted, no whitespace, strings with
//! only `\` and `"` escaped and every other character as its UTF-8 bytes,
//! integers only. Signatures are over these bytes of a document's `signed`
//! object, so any two implementations that agree on this function agree on
//! every signature.

use serde_json::Value;

/// A value canonical JSON cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("canonical JSON has no floating-point numbers: {0}")]
pub struct FloatError(String);

/// The canonical bytes of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, FloatError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), FloatError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(FloatError(n.to_string()));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map keeps insertion order here: sort by the keys'
            // bytes, which is the code-point order Python sorts by.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": [1, true, null], "a": {"z": "x", "y": -3}});
        assert_eq!(
            to_canonical(&v).unwrap(),
            br#"{"a":{"y":-3,"z":"x"},"b":[1,true,null]}"#
        );
    }

    #[test]
    fn escapes_only_quote_and_backslash() {
        let v = json!({"k": "a\"b\\c\nd\u{e9}"});
        assert_eq!(
            to_canonical(&v).unwrap(),
            "{\"k\":\"a\\\"b\\\\c\nd\u{e9}\"}".as_bytes()
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(to_canonical(&json!({"x": 1.5})).is_err());
        assert_eq!(
            to_canonical(&json!(u64::MAX)).unwrap(),
            b"18446744073709551615"
        );
    }
}

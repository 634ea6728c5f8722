//! Canonical JSON as TUF signs it (the OLPC form, as securesystemslib encodes it).
//!
//! Rules kept here:
//! - Object keys sorted by code point (UTF-8 byte order is the same order), no whitespace.
//! - Strings escape only `\` and `"`; every other character is written as UTF-8 as is.
//!   No Unicode normalisation: securesystemslib does none, and a signature must cover the
//!   bytes python-tuf computes.
//! - Integers only; a float anywhere makes the document unsignable.
//! - The order does not depend on `serde_json`'s `preserve_order` feature: keys are sorted
//!   here explicitly.

use serde_json::Value;

/// A value that has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no canonical JSON form: {reason}")]
pub struct CanonicalError {
    /// What in the value has no canonical form (a floating-point number).
    pub reason: &'static str,
}

/// The canonical JSON bytes of `value`: what a signature over it covers.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError {
                    reason: "floating-point numbers are not allowed",
                });
            }
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
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
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

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'\\' || b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_and_escapes_like_securesystemslib() {
        let v = json!({"b": [1, -2, true, null], "a": "x\"y\\z\n\u{e9}", "A": {}});
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            "{\"A\":{},\"a\":\"x\\\"y\\\\z\n\u{e9}\",\"b\":[1,-2,true,null]}"
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(to_canonical(&json!({"a": 1.5})).is_err());
    }
}

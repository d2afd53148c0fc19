//! The top-level members of a JSON object's text (an audit entry's `old_row`, as jsonb
//! prints it): each key, decoded, with its value's text as written. No tree and no parser
//! limits, so rows with numbers beyond a float's range, deep json or long text are read
//! like any other; equal jsonb values print equal, so their texts compare as the values.

/// (key, value text) of each member of the object `text`; empty when it is not an object.
pub fn members(text: &str) -> Vec<(String, &str)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_space(b, i);
        if b.get(i) != Some(&b'"') {
            return out;
        }
        let (key, after) = string(text, i);
        i = skip_space(b, after);
        if b.get(i) != Some(&b':') {
            return out;
        }
        i = skip_space(b, i + 1);
        let start = i;
        i = value_end(b, i);
        out.push((key, text[start..i].trim_end()));
        i = skip_space(b, i);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return out,
        }
    }
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The decoded string whose opening quote is at `at`, and the index after it.
fn string(text: &str, at: usize) -> (String, usize) {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = at + 1;
    let mut run = i;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&text[run..i]);
                return (out, i + 1);
            }
            b'\\' if i + 1 < b.len() => {
                out.push_str(&text[run..i]);
                let c = b[i + 1];
                i += 2;
                match c {
                    b'n' => out.push('\n'),
                    b't' => out.push('\t'),
                    b'r' => out.push('\r'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'u' => {
                        let code = text
                            .get(i..i + 4)
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .unwrap_or(char::REPLACEMENT_CHARACTER);
                        out.push(code);
                        i = (i + 4).min(b.len());
                    }
                    other => out.push(other as char),
                }
                run = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[run.min(b.len())..]);
    (out, b.len())
}

/// The index after the value starting at `i`: a string, or anything up to the `,` or `}`
/// that ends it at depth 0 (nested arrays and objects, and strings inside them, skipped).
fn value_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                if depth == 0 {
                    return i.min(b.len());
                }
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::members;
    use pgrx::prelude::*;

    #[pg_test]
    fn object_members_as_written() {
        let m = members(r#"{"a": 1e400, "b \"q\"": "x,}", "c": [1, {"d": "]"}], "e": null}"#);
        let keys: Vec<_> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b \"q\"", "c", "e"]);
        assert_eq!(m[0].1, "1e400");
        assert_eq!(m[1].1, r#""x,}""#);
        assert_eq!(m[2].1, r#"[1, {"d": "]"}]"#);
        assert_eq!(m[3].1, "null");
        assert!(members("[1]").is_empty());
    }
}

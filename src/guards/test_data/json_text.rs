//! The string values inside JSON text (json as stored, jsonb as printed), for the
//! test-data check: one pass over the bytes, no tree and no recursion, so every text
//! PostgreSQL accepts as json or jsonb is scanned, however deep its nesting (PostgreSQL
//! allows thousands of levels), however large its numbers (`1e400`), and whatever its
//! escapes (json keeps a lone `\ud800` as written; it is read as U+FFFD). Object keys are
//! not values and are skipped.

/// Calls `visit` with each string value, decoded; stops at the first `true`.
pub fn strings(text: &[u8], visit: &mut dyn FnMut(&str) -> bool) -> bool {
    let mut i = 0;
    let mut decoded = String::new();
    while i < text.len() {
        if text[i] != b'"' {
            i += 1;
            continue;
        }
        let end = decode(text, i + 1, &mut decoded);
        // a string followed by ':' is an object key
        let mut j = end;
        while j < text.len() && text[j].is_ascii_whitespace() {
            j += 1;
        }
        let key = j < text.len() && text[j] == b':';
        if !key && visit(&decoded) {
            return true;
        }
        i = end;
    }
    false
}

/// Decodes the string starting after its opening quote at `start` into `out`; returns
/// the index after its closing quote (or the end of the text).
fn decode(text: &[u8], start: usize, out: &mut String) -> usize {
    out.clear();
    let mut raw: Vec<u8> = Vec::new();
    let mut i = start;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                break;
            }
            b'\\' if i + 1 < text.len() => {
                let c = text[i + 1];
                i += 2;
                match c {
                    b'b' => raw.push(8),
                    b'f' => raw.push(12),
                    b'n' => raw.push(b'\n'),
                    b'r' => raw.push(b'\r'),
                    b't' => raw.push(b'\t'),
                    b'u' => {
                        let (ch, used) = unicode_escape(&text[i..]);
                        i += used;
                        let mut buf = [0u8; 4];
                        raw.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => raw.push(other),
                }
            }
            b => {
                raw.push(b);
                i += 1;
            }
        }
    }
    out.push_str(&String::from_utf8_lossy(&raw));
    i
}

/// The character of a `\u` escape whose four hex digits start `rest` (a surrogate pair
/// written as two escapes is joined; a lone surrogate or bad digits read as U+FFFD), and
/// how many bytes of `rest` it used.
fn unicode_escape(rest: &[u8]) -> (char, usize) {
    let Some(high) = hex4(rest) else {
        return (char::REPLACEMENT_CHARACTER, 0);
    };
    if (0xD800..0xDC00).contains(&high) && rest.len() >= 10 && &rest[4..6] == b"\\u" {
        if let Some(low) = hex4(&rest[6..]) {
            if (0xDC00..0xE000).contains(&low) {
                let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                return (char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 10);
            }
        }
    }
    (
        char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER),
        4,
    )
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn all(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        super::strings(text.as_bytes(), &mut |s| {
            found.push(s.to_string());
            false
        });
        found
    }

    #[pg_test]
    fn json_text_values_not_keys() {
        assert_eq!(
            all(r#"{"name": "Coca Cola", "n": 1e400, "tags": ["a", {"k" : "v"}]}"#),
            ["Coca Cola", "a", "v"]
        );
        assert_eq!(all(r#""top""#), ["top"]);
        assert_eq!(all(r#"["q\"uote\\", "\u00e9\n"]"#), ["q\"uote\\", "é\n"]);
    }

    #[pg_test]
    fn json_text_escapes_and_depth() {
        // a surrogate pair is one character; a lone surrogate is U+FFFD
        assert_eq!(all(r#"["\ud83d\ude00", "x\ud800y"]"#), ["😀", "x\u{FFFD}y"]);
        let deep = format!("{}\"Pepsi Regular\"{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(all(&deep), ["Pepsi Regular"]);
        // an unterminated string still yields what it holds
        assert_eq!(all(r#"["abc"#), ["abc"]);
    }
}

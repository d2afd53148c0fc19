//! The text of the statement being run, as pg_prodguard records it (denial log, audit log,
//! server log lines): only the statement itself, never the other statements of a
//! multi-statement query string, and with secrets masked: the string after `PASSWORD`
//! (CREATE/ALTER ROLE), option values named like a secret (`password`, `secret`, `token`,
//! ... in user mappings, servers and the like) and `password=` inside connection strings
//! are written as `'********'` (issue 19). PostgreSQL's own log keeps them; the audit and
//! denial logs are read by more roles than the server log.

use std::cell::Cell;
use std::ffi::{c_char, CStr};

use pgrx::pg_sys;

thread_local! {
    /// Where the statement being run sits in the query string: (string, start, length).
    static SPAN: Cell<Option<(usize, i32, i32)>> = const { Cell::new(None) };
}

/// Notes where the statement about to run sits in `source`, when `source` is the query
/// string of the client's message (a statement inside a function has its own text, and
/// the client's statement is the one recorded).
pub fn note(source: *const c_char, location: i32, len: i32) {
    // SAFETY: reads a backend global.
    let top = unsafe { pg_sys::debug_query_string };
    if !source.is_null() && source == top {
        SPAN.set(Some((source as usize, location, len)));
    }
}

/// The statement being run, redacted; `None` when PostgreSQL does not know its text.
pub fn current() -> Option<String> {
    current_unredacted().map(|text| redact(&text))
}

/// The statement being run as written (for comparing, never for storing).
pub fn current_unredacted() -> Option<String> {
    // SAFETY: debug_query_string is NULL or the NUL-terminated text of the current query.
    let p = unsafe { pg_sys::debug_query_string };
    if p.is_null() {
        return None;
    }
    // SAFETY: as above.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Some(match SPAN.get() {
        Some((at, location, len)) if at == p as usize => slice(bytes, location, len),
        _ => slice(bytes, -1, 0),
    })
}

/// One statement of a query string, by the location and length PostgreSQL gives it
/// (`stmt_location`, `stmt_len`: -1 and 0 for "unknown" and "to the end"), trimmed.
pub fn slice(query: &[u8], location: i32, len: i32) -> String {
    let start = usize::try_from(location).unwrap_or(0).min(query.len());
    let end = match usize::try_from(len) {
        Ok(n) if n > 0 => (start + n).min(query.len()),
        _ => query.len(),
    };
    String::from_utf8_lossy(&query[start..end])
        .trim()
        .to_string()
}

/// Words after which a string literal is a secret (case-insensitive): role passwords and
/// the options of servers, user mappings and the like.
const SECRET_WORDS: [&str; 12] = [
    "password",
    "passwd",
    "sslpassword",
    "sslkey",
    "secret",
    "secret_key",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "passphrase",
];

const MASK: &str = "'********'";

/// `sql` with its secret literals masked (see the module comment). A lexer of SQL's
/// literals, identifiers and comments; everything else is copied as it is.
pub fn redact(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut last_word = String::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        if (c == b'-' && b.get(i + 1) == Some(&b'-')) || (c == b'/' && b.get(i + 1) == Some(&b'*'))
        {
            // a comment: kept, with any connection-string password in it masked
            let start = i;
            i = if c == b'-' {
                b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |n| i + n)
            } else {
                find(b, i + 2, b"*/").map_or(b.len(), |n| n + 2)
            };
            if let Some(masked) = mask_conninfo(&sql[start..i]) {
                out.push_str(&sql[copied..start]);
                out.push_str(&masked);
                copied = i;
            }
        } else if c == b'\''
            || ((c == b'e' || c == b'E') && b.get(i + 1) == Some(&b'\''))
            || ((c == b'u' || c == b'U')
                && b.get(i + 1) == Some(&b'&')
                && b.get(i + 2) == Some(&b'\''))
        {
            // '...', E'...' (backslash escapes), U&'...' (Unicode escapes)
            let start = i;
            let backslashes = c == b'e' || c == b'E';
            let quote = if c == b'\'' {
                i
            } else if backslashes {
                i + 1
            } else {
                i + 2
            };
            i = literal_end(b, quote, backslashes);
            let literal = &sql[start..i];
            if is_secret_word(&last_word) {
                out.push_str(&sql[copied..start]);
                out.push_str(MASK);
                copied = i;
            } else if let Some(masked) = mask_conninfo(literal).or_else(|| inner_sql(literal)) {
                out.push_str(&sql[copied..start]);
                out.push_str(&masked);
                copied = i;
            }
            last_word.clear();
        } else if c == b'$' {
            // a dollar-quoted string ($$...$$, $tag$...$tag$), else a parameter ($1)
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                .map(|n| i + 1 + n);
            match tag_end {
                Some(e) if b[e] == b'$' && !b[i + 1..e].first().is_some_and(u8::is_ascii_digit) => {
                    let tag = &b[i..=e];
                    let start = i;
                    i = find(b, e + 1, tag).map_or(b.len(), |n| n + tag.len());
                    if is_secret_word(&last_word) {
                        out.push_str(&sql[copied..start]);
                        out.push_str(MASK);
                        copied = i;
                    } else if i >= start + 2 * tag.len() {
                        // a function or DO body: SQL, redacted in turn (or a connection
                        // string)
                        let tag = &sql[start..start + tag.len()];
                        let body = &sql[start + tag.len()..i - tag.len()];
                        let redacted = redact(body);
                        let masked = mask_conninfo(&redacted).unwrap_or(redacted);
                        if masked != body {
                            out.push_str(&sql[copied..start]);
                            out.push_str(&format!("{tag}{masked}{tag}"));
                            copied = i;
                        }
                    }
                    last_word.clear();
                }
                _ => i += 1,
            }
        } else if c == b'"' {
            let start = i + 1;
            i = literal_end(b, i, false);
            // a quoted identifier: OPTIONS ("password" '...')
            last_word = sql[start..i.saturating_sub(1).max(start)].to_ascii_lowercase();
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            last_word = sql[start..i].to_ascii_lowercase();
        } else {
            if !c.is_ascii_whitespace() && c != b'=' {
                last_word.clear();
            }
            i += 1;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// SQL text inside a plain string literal (`EXECUTE 'ALTER ROLE x PASSWORD ''...'''`),
/// redacted, when that changes it.
fn inner_sql(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    let inner = inner.replace("''", "'");
    let masked = redact(&inner);
    (masked != inner).then(|| format!("'{}'", masked.replace('\'', "''")))
}

fn is_secret_word(word: &str) -> bool {
    SECRET_WORDS.contains(&word)
}

/// The index after the literal (or quoted identifier) whose opening quote is at `at`.
fn literal_end(b: &[u8], at: usize, backslashes: bool) -> usize {
    let quote = b[at];
    let mut i = at + 1;
    while i < b.len() {
        if backslashes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from > b.len() {
        return None;
    }
    b[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|n| from + n)
}

/// Text holding a connection string with a password (`'host=db password=s3cret'`,
/// `'postgresql://u:s3cret@db/x'`), with every password masked; `None` when it holds none.
/// A value may be quoted (`password=''two words''` inside an SQL literal) or contain
/// backslash-escaped characters.
fn mask_conninfo(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("password") {
        let mut i = from + at + "password".len();
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        from = i;
        if b.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        if b[i..].starts_with(b"''") {
            // a quoted value inside an SQL literal: up to the next doubled quote
            i += 2;
            while i < b.len() && !(b[i..].starts_with(b"''") && b[i - 1] != b'\\') {
                i += 1;
            }
            i = (i + 2).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(b.len());
        }
        if i > start {
            spans.push((start, i));
        }
        from = i;
    }
    if spans.is_empty() {
        if let Some(scheme) = lower.find("://") {
            // user:password@host
            let rest = &text[scheme + 3..];
            if let (Some(colon), Some(at)) = (rest.find(':'), rest.find('@')) {
                if colon < at {
                    spans.push((scheme + 3 + colon + 1, scheme + 3 + at));
                }
            }
        }
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        out.push_str(&text[copied..start]);
        out.push_str("********");
        copied = end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::redact;
    use pgrx::prelude::*;

    #[pg_test]
    fn redacts_passwords_and_secret_options() {
        assert_eq!(
            redact("ALTER ROLE x PASSWORD 'hunter2'"),
            "ALTER ROLE x PASSWORD '********'"
        );
        assert_eq!(
            redact("create user bob with encrypted password E'it''s\\'s'; DELETE FROM t"),
            "create user bob with encrypted password '********'; DELETE FROM t"
        );
        assert_eq!(
            redact("CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password 's3cret')"),
            "CREATE USER MAPPING FOR bob SERVER s OPTIONS (user 'bob', password '********')"
        );
        assert_eq!(
            redact("ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" $x$p$x$)"),
            "ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET \"password\" '********')"
        );
        assert_eq!(
            redact("SELECT dblink_connect('host=db password=s3cret user=x')"),
            "SELECT dblink_connect('host=db password=******** user=x')"
        );
        assert_eq!(
            redact("SELECT 'postgresql://u:s3cret@db/x'"),
            "SELECT 'postgresql://u:********@db/x'"
        );
        // inside a DO body, and SQL text inside a string
        assert_eq!(
            redact("DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''y'''; END$$"),
            "DO $$BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''********'''; END$$"
        );
        // U& literals, connection strings in dollar quotes and comments, quoted values
        assert_eq!(
            redact("ALTER ROLE x PASSWORD U&'p\\0061ss' UESCAPE '!'"),
            "ALTER ROLE x PASSWORD '********' UESCAPE '!'"
        );
        assert_eq!(
            redact("SELECT dblink_connect($c$host=h password=s3cret$c$) -- password=two"),
            "SELECT dblink_connect($c$host=h password=********$c$) -- password=********"
        );
        assert_eq!(
            redact("SELECT f('host=h password=''two words'' dbname=d', 'password=a\\ b c')"),
            "SELECT f('host=h password=******** dbname=d', 'password=******** c')"
        );
        // the word in a comment or a value is not a keyword; other literals stay
        assert_eq!(
            redact("UPDATE t SET note = 'password' -- password 'x'\n WHERE id = $1"),
            "UPDATE t SET note = 'password' -- password 'x'\n WHERE id = $1"
        );
    }
}

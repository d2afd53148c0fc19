//! Test-data matcher: every enabled dictionary pattern, compiled into one Aho-Corasick
//! automaton, and the rules that decide whether a hit counts.
//!
//! Pure Rust, no PostgreSQL: `test_data` builds one `Matcher` per backend from the
//! dictionary tables and asks it about every text value of a written row; the benchmark
//! in `benches/matcher.rs` includes this file directly.
//!
//! - **Case**: patterns and values are compared case-insensitively with Unicode case
//!   folding (`fold_into`). The automaton holds folded patterns only (half the states, and
//!   half the build time, of an ASCII-case-insensitive one). An ASCII value without capitals
//!   is searched as it is; any other value is folded into the caller's reusable buffer.
//! - **word** patterns must not continue a run of letters or digits: where the pattern
//!   begins (ends) with a letter or digit, the character before (after) the hit must not
//!   be one, or be the edge of the value (as `\m...\M` in PostgreSQL regular expressions).
//!   A word pattern that starts with a dot is a domain suffix (`.test`): it must also end
//!   the host name, so nothing of a host name (letter, digit, `.`, `-`) may follow it.
//! - **substring** patterns match anywhere.
//!
//! Hits are searched overlapping, so that a hit that fails its boundary rule does not hide
//! another pattern's valid hit at the same place.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

/// Total pattern bytes up to which the automaton is a DFA (a few MB at most).
const SMALL_DICTIONARIES: usize = 16 * 1024;

/// How a pattern must sit in a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Word,
    Substring,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "word" => Some(Kind::Word),
            "substring" => Some(Kind::Substring),
            _ => None,
        }
    }
}

/// One pattern of one dictionary.
#[derive(Clone, Debug)]
pub struct Pattern {
    pub dictionary: String,
    pub pattern: String,
    pub kind: Kind,
}

/// What the automaton keeps per pattern to judge a hit.
struct Rule {
    kind: Kind,
    /// The folded pattern begins / ends with a letter or digit.
    open_left: bool,
    open_right: bool,
    /// A word pattern starting with '.': a domain suffix.
    domain_suffix: bool,
}

/// A valid hit in a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index into the patterns the matcher was built from.
    pub pattern: usize,
    /// Character offsets in the original value: first character, and one past the last.
    pub start: usize,
    pub end: usize,
    /// The text of the value that matched, as written.
    pub text: String,
}

pub struct Matcher {
    automaton: Option<AhoCorasick>,
    patterns: Vec<Pattern>,
    rules: Vec<Rule>,
}

impl Matcher {
    /// Compiles the patterns. Empty patterns (after folding) are skipped: the dictionary
    /// functions refuse them, and one would match everywhere.
    pub fn new(patterns: Vec<Pattern>) -> Matcher {
        let mut kept = Vec::with_capacity(patterns.len());
        let mut folded = Vec::with_capacity(patterns.len());
        let mut rules = Vec::with_capacity(patterns.len());
        for p in patterns {
            let mut f = String::with_capacity(p.pattern.len());
            fold_into(&p.pattern, &mut f);
            if f.is_empty() {
                continue;
            }
            rules.push(Rule {
                kind: p.kind,
                open_left: f.chars().next().is_some_and(char::is_alphanumeric),
                open_right: f.chars().next_back().is_some_and(char::is_alphanumeric),
                domain_suffix: p.kind == Kind::Word && f.starts_with('.'),
            });
            folded.push(f);
            kept.push(p);
        }
        // A DFA searches several times faster, but its size grows with the dictionaries:
        // use it while they are small, a contiguous NFA (a few bytes per pattern byte) beyond.
        let total: usize = folded.iter().map(String::len).sum();
        let kind = if total <= SMALL_DICTIONARIES {
            AhoCorasickKind::DFA
        } else {
            AhoCorasickKind::ContiguousNFA
        };
        // A build fails only past the automaton's size limits (billions of states): then
        // the slower non-contiguous NFA, and past that a clean ERROR naming the cause, so
        // that a write is refused rather than let through unchecked.
        let automaton = (!folded.is_empty()).then(|| {
            let build = |kind| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .kind(Some(kind))
                    .build(&folded)
            };
            build(kind)
                .or_else(|_| build(AhoCorasickKind::NoncontiguousNFA))
                .unwrap_or_else(|e| {
                    crate::core::error::raise(
                        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                        "could not build the test-data matcher".to_string(),
                        format!("The enabled dictionaries are too large: {e}."),
                        "Disable a large dictionary (prodguard.dictionary_enable(name, false)) or remove patterns from it (prodguard.dictionary_remove()).",
                    )
                })
        });
        Matcher {
            automaton,
            patterns: kept,
            rules,
        }
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first valid hit in a value, if any (the per-row path).
    pub fn first(&self, value: &str, buffer: &mut String) -> Option<Hit> {
        self.hits(value, buffer, true).into_iter().next()
    }

    /// Every valid hit in a value, in order of position.
    pub fn all(&self, value: &str) -> Vec<Hit> {
        let mut buffer = String::new();
        self.hits(value, &mut buffer, false)
    }

    fn hits(&self, value: &str, buffer: &mut String, first_only: bool) -> Vec<Hit> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let ascii = value.is_ascii();
        let haystack: &str = if ascii && !value.bytes().any(|b| b.is_ascii_uppercase()) {
            value
        } else if ascii {
            // ASCII folding keeps every byte where it is: offsets stay valid.
            buffer.clear();
            buffer.push_str(value);
            buffer.make_ascii_lowercase();
            buffer
        } else {
            buffer.clear();
            fold_into(value, buffer);
            buffer
        };
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        for m in automaton.find_overlapping_iter(haystack) {
            let (start, end, id) = (m.start(), m.end(), m.pattern().as_usize());
            if self.counts(haystack, start, end, &self.rules[id]) {
                found.push((start, end, id));
                if first_only {
                    break;
                }
            }
        }
        found.sort_unstable();
        found
            .into_iter()
            .map(|(start, end, id)| {
                let (start, end, text) = if ascii {
                    (start, end, value[start..end].to_string())
                } else {
                    original_span(value, start, end)
                };
                Hit {
                    pattern: id,
                    start,
                    end,
                    text,
                }
            })
            .collect()
    }

    fn counts(&self, haystack: &str, start: usize, end: usize, rule: &Rule) -> bool {
        if rule.kind == Kind::Substring {
            return true;
        }
        let before = haystack[..start].chars().next_back();
        let after = haystack[end..].chars().next();
        if rule.open_left && before.is_some_and(char::is_alphanumeric) {
            return false;
        }
        if rule.open_right && after.is_some_and(char::is_alphanumeric) {
            return false;
        }
        if rule.domain_suffix && after.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-')
        {
            return false;
        }
        true
    }
}

/// Unicode case folding, as far as it matters for matching text: lower case, plus the
/// full foldings that lower-casing leaves apart (ß = ss, final sigma = sigma, the Latin
/// ligatures ﬁ = fi and friends; found by the property test below).
pub fn fold_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            'ß' | 'ẞ' => out.push_str("ss"),
            'ς' => out.push('σ'),
            // the Latin ligatures, which lower-casing leaves as they are
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' | 'ﬆ' => out.push_str("st"),
            c if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            c => out.extend(c.to_lowercase()),
        }
    }
}

/// Maps a byte range of the folded value back to character offsets and text of the
/// original value: from the character whose folding contains the first byte (a hit may
/// begin inside one, as "s" inside ẞ = "ss") to the one whose folding holds the last.
fn original_span(original: &str, start: usize, end: usize) -> (usize, usize, String) {
    let mut folded_pos = 0;
    let mut first: Option<(usize, usize)> = None;
    let (mut last, mut byte_last) = (original.chars().count(), original.len());
    let mut tmp = String::new();
    for (i, (b, c)) in original.char_indices().enumerate() {
        if folded_pos >= end {
            last = i;
            byte_last = b;
            break;
        }
        tmp.clear();
        fold_into(c.encode_utf8(&mut [0; 4]), &mut tmp);
        folded_pos += tmp.len();
        if first.is_none() && folded_pos > start {
            first = Some((i, b));
        }
    }
    let (first, byte_first) = first.unwrap_or((last, byte_last));
    (first, last, original[byte_first..byte_last].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(words: &[&str], substrings: &[&str]) -> Matcher {
        let p = |s: &&str, kind| Pattern {
            dictionary: "d".into(),
            pattern: s.to_string(),
            kind,
        };
        Matcher::new(
            words
                .iter()
                .map(|s| p(s, Kind::Word))
                .chain(substrings.iter().map(|s| p(s, Kind::Substring)))
                .collect(),
        )
    }

    fn texts(m: &Matcher, value: &str) -> Vec<String> {
        m.all(value).into_iter().map(|h| h.text).collect()
    }

    #[test]
    fn words_need_boundaries_where_they_begin_or_end_with_letters() {
        let m = matcher(&["mountain dew", "john doe", "example.com"], &[]);
        assert_eq!(texts(&m, "Mountain Dew 500ml"), ["Mountain Dew"]);
        assert!(texts(&m, "Mountain Dewberry Jam").is_empty());
        assert!(texts(&m, "Johnny Doerr").is_empty());
        assert_eq!(texts(&m, "jane@EXAMPLE.COM"), ["EXAMPLE.COM"]);
        assert_eq!(texts(&m, "https://www.example.com/x"), ["example.com"]);
        assert!(texts(&m, "bigexample.com").is_empty());
    }

    #[test]
    fn domain_suffixes_end_the_host_name() {
        let m = matcher(&[".test", ".invalid"], &[]);
        assert_eq!(texts(&m, "ana@shop.test"), [".test"]);
        assert_eq!(texts(&m, "http://api.test/v1"), [".test"]);
        assert!(texts(&m, "node app.test.js").is_empty());
        assert!(texts(&m, "my.testament").is_empty());
        assert!(texts(&m, "bar.test-domain.com").is_empty());
    }

    #[test]
    fn substrings_match_anywhere() {
        let m = matcher(&[], &["lorem"]);
        assert_eq!(texts(&m, "XLOREMX"), ["LOREM"]);
    }

    #[test]
    fn unicode_is_folded_and_offsets_are_characters() {
        let m = matcher(&["crème brûlée", "strasse"], &[]);
        let hits = m.all("Dessert: CRÈME BRÛLÉE!");
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].start, hits[0].end), (9, 21));
        assert_eq!(hits[0].text, "CRÈME BRÛLÉE");
        assert_eq!(texts(&m, "Hauptstraße 5"), Vec::<String>::new()); // inside a word
        assert_eq!(texts(&m, "Große Straße"), ["Straße"]);
    }

    #[test]
    fn a_failed_boundary_does_not_hide_another_hit() {
        let m = matcher(&["test", "test user"], &[]);
        assert_eq!(texts(&m, "Test User"), ["Test", "Test User"]);
        assert_eq!(texts(&m, "Testuser"), Vec::<String>::new());
    }

    #[test]
    fn empty_patterns_and_empty_matchers_match_nothing() {
        let m = matcher(&[""], &[]);
        assert!(m.is_empty());
        assert!(m.all("anything").is_empty());
    }

    /// A small deterministic generator (xorshift64*), so that the property tests below
    /// need no dependency and fail the same way every time.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn string(&mut self, alphabet: &[&str], max: usize) -> String {
            let len = self.below(max + 1);
            (0..len)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect()
        }
    }

    fn folded(s: &str) -> String {
        let mut out = String::new();
        fold_into(s, &mut out);
        out
    }

    /// Property: on ASCII lower-case text the automaton finds exactly what a naive search
    /// with the documented boundary rules finds, overlapping hits included.
    #[test]
    fn property_same_hits_as_a_naive_search() {
        let alphabet = ["a", "b", "a", "b", "1", ".", "-", " ", "@"];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..400 {
            let n = 1 + rng.below(6);
            let patterns: Vec<(String, Kind)> = (0..n)
                .map(|_| {
                    let p = rng.string(&alphabet, 4);
                    let kind = if rng.below(2) == 0 {
                        Kind::Word
                    } else {
                        Kind::Substring
                    };
                    (p, kind)
                })
                .filter(|(p, _)| !p.trim().is_empty())
                .collect();
            let m = Matcher::new(
                patterns
                    .iter()
                    .map(|(p, kind)| Pattern {
                        dictionary: "d".into(),
                        pattern: p.clone(),
                        kind: *kind,
                    })
                    .collect(),
            );
            for _ in 0..20 {
                let value = rng.string(&alphabet, 24);
                let mut got: Vec<(usize, usize, String)> = m
                    .all(&value)
                    .into_iter()
                    .map(|h| (h.start, h.end, m.patterns()[h.pattern].pattern.clone()))
                    .collect();
                let mut want = Vec::new();
                for (p, kind) in &patterns {
                    for start in 0..value.len() {
                        if !value[start..].starts_with(p.as_str()) {
                            continue;
                        }
                        let end = start + p.len();
                        let alnum = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
                        let before = start.checked_sub(1).map(|i| value.as_bytes()[i]);
                        let after = value.as_bytes().get(end).copied();
                        let first_alnum = p.as_bytes()[0].is_ascii_alphanumeric();
                        let last_alnum = p.as_bytes()[p.len() - 1].is_ascii_alphanumeric();
                        let ok = *kind == Kind::Substring
                            || (!(first_alnum && alnum(before))
                                && !(last_alnum && alnum(after))
                                && !(p.starts_with('.')
                                    && (alnum(after)
                                        || after == Some(b'.')
                                        || after == Some(b'-'))));
                        if ok {
                            want.push((start, end, p.clone()));
                        }
                    }
                }
                got.sort();
                want.sort();
                assert_eq!(got, want, "patterns {patterns:?} value {value:?}");
                let mut buffer = String::new();
                assert_eq!(m.first(&value, &mut buffer).is_some(), !want.is_empty());
            }
        }
    }

    /// Property: on arbitrary Unicode (case changes that change lengths, combining marks,
    /// scripts without case, emoji) nothing panics, every hit is an occurrence of its
    /// pattern, hits come in order, and a pattern planted between spaces is always found.
    #[test]
    fn property_unicode_hits_are_real_and_planted_patterns_are_found() {
        let alphabet = [
            "a", "B", "s", "S", "ß", "ẞ", "σ", "ς", "Σ", "İ", "ı", "i", "é", "E\u{301}", "ﬁ", "д",
            "Д", "中", "🙂", " ", ".", "-", "@", "1", "\u{0}", "\n",
        ];
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..300 {
            let patterns: Vec<Pattern> = (0..1 + rng.below(5))
                .map(|_| Pattern {
                    dictionary: "d".into(),
                    pattern: rng.string(&alphabet, 5),
                    kind: if rng.below(2) == 0 {
                        Kind::Word
                    } else {
                        Kind::Substring
                    },
                })
                .filter(|p| !p.pattern.trim().is_empty())
                .collect();
            let m = Matcher::new(patterns.clone());
            for _ in 0..20 {
                let value = rng.string(&alphabet, 30);
                let hits = m.all(&value);
                let mut last = 0;
                for h in &hits {
                    assert!(h.start >= last, "hits out of order in {value:?}");
                    assert!(h.start < h.end, "empty hit in {value:?}");
                    last = h.start;
                    let pattern = folded(&m.patterns()[h.pattern].pattern);
                    assert!(
                        folded(&h.text).contains(&pattern),
                        "hit {:?} of {pattern:?} in {value:?}",
                        h.text
                    );
                    assert!(h.end <= value.chars().count());
                }
                let mut buffer = String::new();
                assert_eq!(m.first(&value, &mut buffer).is_some(), !hits.is_empty());
                if let Some(p) = patterns.first() {
                    // verbatim, and in upper case where upper case folds back to the same
                    // text (not for dotless i, whose upper case I folds to dotted i)
                    let upper = p.pattern.to_uppercase();
                    let mut plants = vec![p.pattern.clone()];
                    if folded(&upper) == folded(&p.pattern) {
                        plants.push(upper);
                    }
                    for plant in plants {
                        let planted = format!("{value} {plant} {value}");
                        assert!(
                            !m.all(&planted).is_empty(),
                            "{:?} not found in {planted:?}",
                            p.pattern
                        );
                    }
                }
            }
        }
    }
}

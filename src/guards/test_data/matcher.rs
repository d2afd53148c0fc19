//! Test-data matcher: every enabled dictionary pattern, compiled into one Aho-Corasick
//! automaton, and the rules that decide whether a hit counts.
//!
//! Pure Rust, no PostgreSQL: `test_data` builds one `Matcher` per backend from the
//! dictionary tables and asks it about every text value of a written row; the benchmark
//! in `benches/matcher.rs` includes this file directly.
//!
//! - **Spelling**: patterns and values are compared by their key (`fold`: compatibility
//!   forms, case, look-alike letters, white space, invisible characters and separators in
//!   numbers folded). The automaton holds keys only (half the states, and half the build
//!   time, of an ASCII-case-insensitive one). A plain ASCII value (no capitals, no runs of
//!   white space, no separator between digits) is its own key and is searched as it is;
//!   any other value is folded into the caller's reusable buffer, and its hits are mapped
//!   back to the original text, where their boundaries are judged.
//! - **word** patterns must not continue a run of letters or digits: where the pattern
//!   begins (ends) with a letter or digit, the character before (after) the hit must not
//!   be one, or be the edge of the value (as `\m...\M` in PostgreSQL regular expressions).
//!   A word pattern that starts with a dot is a domain suffix (`.test`): it must also end
//!   the host name, so nothing of a host name (letter, digit, `.`, `-`) may follow it.
//! - **substring** patterns match anywhere.
//!
//! Hits are searched overlapping, so that a hit that fails its boundary rule does not hide
//! another pattern's valid hit at the same place.

use aho_corasick::{
    AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Anchored, Input, MatchKind, StartKind,
};

use super::fold;

/// Total pattern bytes up to which the automaton is a DFA (a few MB at most).
const SMALL_DICTIONARIES: usize = 16 * 1024;

/// How a pattern must sit in a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Where a pattern may start: its first three bytes (hashed), or all of a shorter one.
    starts: StartFilter,
    patterns: Vec<Pattern>,
    /// Per automaton pattern: its rule, its first pattern (index), and any other patterns
    /// that share its key (few: spellings of one number or name).
    rules: Vec<Rule>,
    primary: Vec<usize>,
    others: std::collections::HashMap<usize, Vec<usize>>,
}

impl Matcher {
    /// Compiles the patterns. Empty patterns (after folding) are skipped: the dictionary
    /// functions refuse them, and one would match everywhere. Fails (with the reason) only
    /// when the dictionaries are too large for any automaton.
    pub fn new(patterns: Vec<Pattern>) -> Result<Matcher, String> {
        let mut kept = Vec::with_capacity(patterns.len());
        let mut folded: Vec<String> = Vec::with_capacity(patterns.len());
        let mut rules = Vec::with_capacity(patterns.len());
        let mut primary: Vec<usize> = Vec::with_capacity(patterns.len());
        let mut others: std::collections::HashMap<usize, Vec<usize>> = Default::default();
        // Spellings of one pattern (`4242 4242 ...`, `4242-4242-...`) share a key: one
        // automaton pattern, which reports the spelling that was written where it can.
        let mut by_key: std::collections::HashMap<(String, Kind), usize> =
            std::collections::HashMap::with_capacity(patterns.len());
        for p in patterns {
            let mut f = String::with_capacity(p.pattern.len());
            fold::fold_into(&p.pattern, &mut f);
            // (a pattern of spaces or ignorable characters only would match every value)
            if f.trim().is_empty() {
                continue;
            }
            let index = kept.len();
            let slot = (f, p.kind);
            if let Some(&id) = by_key.get(&slot) {
                others.entry(id).or_default().push(index);
                kept.push(p);
                continue;
            }
            let (f, _) = slot;
            by_key.insert((f.clone(), p.kind), folded.len());
            primary.push(index);
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
        // the slower non-contiguous NFA, and past that the caller is told why.
        let automaton = if folded.is_empty() {
            None
        } else {
            let build = |kind| {
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    .start_kind(StartKind::Both)
                    .kind(Some(kind))
                    .build(&folded)
            };
            Some(
                build(kind)
                    .or_else(|_| build(AhoCorasickKind::NoncontiguousNFA))
                    .map_err(|e| e.to_string())?,
            )
        };
        let starts = StartFilter::new(&folded);
        Ok(Matcher {
            automaton,
            starts,
            patterns: kept,
            rules,
            primary,
            others,
        })
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
        let shape = fold::shape(value);
        if shape != fold::Shape::Other {
            // the value is its own key, or its ASCII lower case: offsets are the same, and
            // boundaries (letters and digits) look the same in both
            let haystack: &str = if shape == fold::Shape::Plain {
                value
            } else {
                buffer.clear();
                buffer.push_str(value);
                buffer.make_ascii_lowercase();
                buffer
            };
            // (most values hold no pattern at all: a plain search, with the automaton's
            // prefilter, says so faster than the overlapping one)
            if !self.any_match(automaton, haystack) {
                return Vec::new();
            }
            let mut found: Vec<(usize, usize, usize)> = Vec::new();
            for m in automaton.find_overlapping_iter(haystack) {
                let (start, end, id) = (m.start(), m.end(), m.pattern().as_usize());
                if self.counts(value, start, end, &self.rules[id]) {
                    found.push((start, end, id));
                    if first_only {
                        break;
                    }
                }
            }
            found.sort_unstable();
            return found
                .into_iter()
                .flat_map(|(start, end, id)| {
                    let text = value[start..end].to_string();
                    self.reported(id, &text, first_only)
                        .into_iter()
                        .map(move |pattern| Hit {
                            pattern,
                            start,
                            end,
                            text: text.clone(),
                        })
                })
                .collect();
        }
        buffer.clear();
        fold::fold_into(value, buffer);
        if !self.any_match(automaton, buffer.as_str()) {
            return Vec::new();
        }
        let mut work = 0usize;
        let candidates: Vec<(usize, usize, usize)> = automaton
            .find_overlapping_iter(buffer.as_str())
            .take(MAX_CANDIDATES)
            .inspect(|_| interruptible(&mut work))
            .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        // Boundaries are judged on the original text, around the original span of the hit.
        let spans = original_spans(value, &candidates);
        let mut found: Vec<Hit> = candidates
            .iter()
            .zip(spans)
            .filter(|((_, _, id), span)| {
                interruptible(&mut work);
                self.counts(value, span.bytes.0, span.bytes.1, &self.rules[*id])
            })
            .flat_map(|((_, _, id), span)| {
                let text = value[span.bytes.0..span.bytes.1].to_string();
                self.reported(*id, &text, first_only)
                    .into_iter()
                    .map(move |pattern| Hit {
                        pattern,
                        start: span.chars.0,
                        end: span.chars.1,
                        text: text.clone(),
                    })
            })
            .collect();
        found.sort_by_key(|h| (h.start, h.end, h.pattern));
        if first_only {
            found.truncate(1);
        }
        found
    }

    /// Whether any pattern occurs in a key. Most values hold none: rather than running the
    /// automaton over every byte (a large NFA costs tens of instructions per byte), only
    /// the places where a pattern may start (by its first bytes) are tried, anchored.
    fn any_match(&self, automaton: &AhoCorasick, key: &str) -> bool {
        let k = key.as_bytes();
        let work = std::cell::Cell::new(0usize);
        let anchored_at = |i: usize| {
            let mut w = work.get();
            interruptible(&mut w);
            work.set(w);
            match automaton.try_find(Input::new(key).range(i..).anchored(Anchored::Yes)) {
                Ok(found) => found.is_some(),
                Err(_) => automaton.is_match(key),
            }
        };
        if self.starts.short {
            return (0..k.len()).any(|i| self.starts.may_start(k, i) && anchored_at(i));
        }
        // (the common case: every pattern has three bytes or more)
        k.windows(3)
            .enumerate()
            .any(|(i, w)| bit(&self.starts.three, three_hash(w[0], w[1], w[2])) && anchored_at(i))
    }

    /// The patterns a hit of automaton pattern `id` reports: one per dictionary among the
    /// patterns that share its key (only the first when `first_only`), each the spelling
    /// written in the value if the dictionary has it, else the dictionary's first.
    fn reported(&self, id: usize, text: &str, first_only: bool) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::new();
        let members = std::iter::once(self.primary[id])
            .chain(self.others.get(&id).into_iter().flatten().copied());
        for i in members {
            let dictionary = &self.patterns[i].dictionary;
            match chosen
                .iter_mut()
                .find(|c| &self.patterns[**c].dictionary == dictionary)
            {
                Some(c) => {
                    if !self.patterns[*c].pattern.eq_ignore_ascii_case(text)
                        && self.patterns[i].pattern.eq_ignore_ascii_case(text)
                    {
                        *c = i;
                    }
                }
                None => chosen.push(i),
            }
        }
        if first_only {
            chosen.truncate(1);
        }
        chosen
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

/// The first bytes of every pattern, as sets: a position of a value where no pattern may
/// start is skipped without running the automaton. Three-byte prefixes are hashed into a
/// 2^19-bit set (64 KB); patterns of one or two bytes are kept exactly.
struct StartFilter {
    three: Vec<u64>,
    two: Vec<u64>,
    one: [u64; 4],
    /// Whether any pattern is shorter than three bytes.
    short: bool,
}

const START_BITS: u32 = 19;

fn set_bit(set: &mut [u64], x: usize) {
    set[x >> 6] |= 1 << (x & 63);
}

fn bit(set: &[u64], x: usize) -> bool {
    set[x >> 6] & (1 << (x & 63)) != 0
}

fn three_hash(a: u8, b: u8, c: u8) -> usize {
    let x = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
    (x.wrapping_mul(0x9E37_79B1) >> (32 - START_BITS)) as usize
}

impl StartFilter {
    fn new(keys: &[String]) -> StartFilter {
        let mut f = StartFilter {
            three: vec![0; 1 << (START_BITS - 6)],
            two: Vec::new(),
            one: [0; 4],
            short: false,
        };
        for k in keys {
            let b = k.as_bytes();
            match b.len() {
                0 => {}
                1 => {
                    set_bit(&mut f.one, usize::from(b[0]));
                    f.short = true;
                }
                2 => {
                    if f.two.is_empty() {
                        f.two = vec![0; 1 << 10];
                    }
                    set_bit(&mut f.two, usize::from(b[0]) << 8 | usize::from(b[1]));
                    f.short = true;
                }
                _ => set_bit(&mut f.three, three_hash(b[0], b[1], b[2])),
            }
        }
        f
    }

    fn may_start(&self, k: &[u8], i: usize) -> bool {
        bit(&self.one, usize::from(k[i]))
            || (i + 1 < k.len()
                && !self.two.is_empty()
                && bit(&self.two, usize::from(k[i]) << 8 | usize::from(k[i + 1])))
            || (i + 2 < k.len() && bit(&self.three, three_hash(k[i], k[i + 1], k[i + 2])))
    }
}

/// Lets a query cancel or statement timeout in every `INTERRUPT_EVERY` steps of work on
/// one value (adversarial patterns make a few hundred kilobytes take seconds).
fn interruptible(work: &mut usize) {
    *work += 1;
    if (*work).is_multiple_of(INTERRUPT_EVERY) {
        super::check_interrupts();
    }
}

const INTERRUPT_EVERY: usize = 4096;

/// Candidate hits in one folded value at most (a bound on the work for adversarial text).
const MAX_CANDIDATES: usize = 100_000;

/// Where a hit of the key lies in the original value: bytes and characters.
struct Span {
    bytes: (usize, usize),
    chars: (usize, usize),
}

/// Maps byte ranges of a value's key back to the original value, all in one more folding
/// pass: a hit starts at the character whose folding holds its first byte, and ends with
/// the one whose folding holds its last.
fn original_spans(value: &str, candidates: &[(usize, usize, usize)]) -> Vec<Span> {
    let n = candidates.len();
    let mut by_start: Vec<usize> = (0..n).collect();
    by_start.sort_by_key(|&i| candidates[i].0);
    let mut by_end: Vec<usize> = (0..n).collect();
    by_end.sort_by_key(|&i| candidates[i].1);
    let mut starts: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut ends: Vec<Option<(usize, usize)>> = vec![None; n];
    let (mut si, mut ei, mut previous, mut index) = (0, 0, 0, 0);
    let mut key = String::with_capacity(value.len());
    fold::fold(value, &mut key, |byte_end, key_len| {
        while si < n && candidates[by_start[si]].0 < key_len {
            starts[by_start[si]] = Some((previous, index));
            si += 1;
        }
        while ei < n && candidates[by_end[ei]].1 <= key_len {
            ends[by_end[ei]] = Some((byte_end, index + 1));
            ei += 1;
        }
        previous = byte_end;
        index += 1;
    });
    starts
        .into_iter()
        .zip(ends)
        .map(|(s, e)| {
            let (eb, ec) = e.unwrap_or((value.len(), index));
            let (sb, sc) = s.unwrap_or((eb, ec));
            Span {
                bytes: (sb, eb),
                chars: (sc, ec),
            }
        })
        .collect()
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
        .unwrap()
    }

    #[test]
    fn respellings_are_found_with_their_original_text() {
        let m = matcher(
            &[
                "Coca Cola Classic",
                "4242 4242 4242 4242",
                "john doe",
                "555-0100",
            ],
            &[],
        );
        for (value, text) in [
            (
                "buy Ｃｏｃａ Ｃｏｌａ Ｃｌａｓｓｉｃ now",
                "Ｃｏｃａ Ｃｏｌａ Ｃｌａｓｓｉｃ",
            ),
            ("Coca  Cola\u{00A0}Classic", "Coca  Cola\u{00A0}Classic"),
            ("Coca\tCola\nClassic!", "Coca\tCola\nClassic"),
            (
                "Co\u{200B}ca Co\u{00AD}la Classic",
                "Co\u{200B}ca Co\u{00AD}la Classic",
            ),
            ("Сoca Сola Сlassic", "Сoca Сola Сlassic"),
            ("card 4242.4242.4242.4242.", "4242.4242.4242.4242"),
            ("card 4242424242424242", "4242424242424242"),
            ("JOHN  DOE", "JOHN  DOE"),
            ("call +1 555 0100", "555 0100"),
        ] {
            assert_eq!(texts(&m, value), vec![text.to_string()], "{value:?}");
        }
        // separators do not join a number to its neighbours
        for value in ["15550100", "555-01000", "4242 4242 4242 42424"] {
            assert!(texts(&m, value).is_empty(), "{value:?}");
        }
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
        fold::fold_into(s, &mut out);
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
                .filter(|(p, _)| !p.trim().is_empty() && fold::is_plain(p))
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
            )
            .unwrap();
            for _ in 0..20 {
                let value = rng.string(&alphabet, 24);
                if !fold::is_plain(&value) {
                    continue; // (spelling folding is fold.rs's, tested there)
                }
                let mut got: Vec<(usize, usize, String)> = m
                    .all(&value)
                    .into_iter()
                    .map(|h| (h.start, h.end, m.patterns()[h.pattern].pattern.clone()))
                    .collect();
                let mut want = Vec::new();
                // (a pattern listed twice in one dictionary is one pattern)
                let mut seen: Vec<&(String, Kind)> = Vec::new();
                for pk in &patterns {
                    if seen.contains(&pk) {
                        continue;
                    }
                    seen.push(pk);
                    let (p, kind) = pk;
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
            let m = Matcher::new(patterns.clone()).unwrap();
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
                        let planted = format!("{value} | {plant} | {value}");
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

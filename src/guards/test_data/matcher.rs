//! Test-data matcher: every enabled dictionary pattern, compiled into one Aho-Corasick
//! automaton (`automaton.rs`) inside one image of words (`image.rs`), and the rules that
//! decide whether a hit counts.
//!
//! Pure Rust, no PostgreSQL: `cache.rs` gets one `Matcher` per backend (mapped from the
//! file every backend shares, `shared.rs`) and asks it about every text value of a written
//! row; the benchmark in `benches/matcher.rs` includes this file directly.
//!
//! - **Spelling**: patterns and values are compared by their key (`fold`: compatibility
//!   forms, case, look-alike letters, white space, invisible characters and separators in
//!   numbers folded). The automaton holds keys only. A plain ASCII value (no capitals, no
//!   runs of white space, no separator between digits) is its own key and is searched as
//!   it is; any other value is folded into the caller's reusable buffer, and its hits are
//!   mapped back to the original text, where their boundaries are judged.
//! - **word** patterns must not continue a run of letters or digits: where the pattern
//!   begins (ends) with a letter or digit, the character before (after) the hit must not
//!   be one, or be the edge of the value (as `\m...\M` in PostgreSQL regular expressions).
//!   A word pattern that starts with a dot is a domain suffix (`.test`): it must also end
//!   the host name, so nothing of a host name (letter, digit, `.`, `-`) may follow it.
//! - **substring** patterns match anywhere.
//!
//! Hits are searched overlapping, so that a hit that fails its boundary rule does not hide
//! another pattern's valid hit at the same place.
//!
//! Everything a search reads is in the image: the automaton, each key's length and rule,
//! the patterns that share a key, the patterns' and dictionaries' names, and the start
//! sets. Nothing is rebuilt from it, so a mapped image costs a backend no private memory.

use std::collections::HashMap;

use super::automaton::{self, Automaton, Layout};
use super::fold;
use super::image::{as_bytes, pack_bytes, Image, Words};
use super::starts::{self, Starts};

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

/// One pattern of one dictionary, as the image holds it.
#[derive(Clone, Copy, Debug)]
pub struct PatternRef<'a> {
    pub dictionary: &'a str,
    pub pattern: &'a str,
    pub kind: Kind,
}

impl PatternRef<'_> {
    pub fn to_owned(self) -> Pattern {
        Pattern {
            dictionary: self.dictionary.to_string(),
            pattern: self.pattern.to_string(),
            kind: self.kind,
        }
    }
}

/// A valid hit in a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index of the pattern (`Matcher::pattern`).
    pub pattern: usize,
    /// Character offsets in the original value: first character, and one past the last.
    pub start: usize,
    pub end: usize,
    /// The text of the value that matched, as written.
    pub text: String,
}

// The image's sections: the automaton's first (automaton::SECTIONS of them), then these.
/// [edge bytes, keys, patterns]
const META: usize = automaton::SECTIONS;
/// Per key: its length in bytes and its rule (the `RULE_*` bits).
const KEY_INFO: usize = META + 1;
/// Per key, where its patterns begin in MEMBERS (one more entry at the end).
const FIRST_MEMBER: usize = META + 2;
/// The patterns of each key: its first one, then others that share the key (spellings of
/// one number or name, or one pattern in several dictionaries).
const MEMBERS: usize = META + 3;
/// Per pattern: dictionary index (| RULE_SUBSTRING for a substring pattern), text offset
/// and length in TEXT.
const PATTERNS: usize = META + 4;
/// Per dictionary: name offset and length in TEXT.
const DICTIONARIES: usize = META + 5;
const TEXT: usize = META + 6;
const STARTS: usize = META + 7; // three sections
pub const SECTIONS: usize = STARTS + 3;

const RULE_SUBSTRING: u32 = 1 << 31;
/// The key begins (ends) with a letter or digit.
const RULE_OPEN_LEFT: u32 = 1 << 30;
const RULE_OPEN_RIGHT: u32 = 1 << 29;
/// A word pattern starting with '.': a domain suffix.
const RULE_DOMAIN: u32 = 1 << 28;
const KEY_LEN: u32 = (1 << 28) - 1;

pub struct Matcher {
    image: Image,
    layout: Layout,
    keys: usize,
    patterns: usize,
    short: bool,
    /// The start sets' words (three, two, one), noted once: every value looks at them.
    starts: [*const [u32]; 3],
}

impl Matcher {
    /// Compiles the patterns. Empty patterns (after folding) are skipped: the dictionary
    /// functions refuse them, and one would match everywhere. Fails (with the reason) only
    /// when the dictionaries are too large for the image's 32-bit offsets.
    pub fn new(patterns: Vec<Pattern>) -> Result<Matcher, String> {
        let mut keys: Vec<String> = Vec::with_capacity(patterns.len());
        let mut key_info: Vec<u32> = Vec::with_capacity(patterns.len());
        let mut members: Vec<Vec<u32>> = Vec::with_capacity(patterns.len());
        let mut text: Vec<u8> = Vec::new();
        let mut table: Vec<u32> = Vec::with_capacity(3 * patterns.len());
        let mut dictionaries: HashMap<String, u32> = HashMap::new();
        let mut names: Vec<u32> = Vec::new();
        // Spellings of one pattern (`4242 4242 ...`, `4242-4242-...`) share a key: one
        // automaton pattern, which reports the spelling that was written where it can.
        let mut by_key: HashMap<(String, Kind), usize> = HashMap::with_capacity(patterns.len());
        let put_text = |text: &mut Vec<u8>, s: &str| -> Result<[u32; 2], String> {
            let at = u32::try_from(text.len()).map_err(|_| "more than 4 GB of pattern text")?;
            text.extend_from_slice(s.as_bytes());
            Ok([at, s.len() as u32])
        };
        let mut kept = 0u32;
        for p in patterns {
            let mut f = String::with_capacity(p.pattern.len());
            fold::fold_into(&p.pattern, &mut f);
            // (a pattern of spaces or ignorable characters only would match every value)
            if f.trim().is_empty() || f.len() > KEY_LEN as usize {
                continue;
            }
            let dictionary = match dictionaries.get(&p.dictionary) {
                Some(&d) => d,
                None => {
                    let d = dictionaries.len() as u32;
                    names.extend(put_text(&mut text, &p.dictionary)?);
                    dictionaries.insert(p.dictionary.clone(), d);
                    d
                }
            };
            let kind_bit = if p.kind == Kind::Substring {
                RULE_SUBSTRING
            } else {
                0
            };
            table.push(dictionary | kind_bit);
            table.extend(put_text(&mut text, &p.pattern)?);
            let index = kept;
            kept += 1;
            let slot = (f, p.kind);
            if let Some(&id) = by_key.get(&slot) {
                members[id].push(index);
                continue;
            }
            let (f, kind) = slot;
            let mut info = f.len() as u32 | kind_bit;
            if f.chars().next().is_some_and(char::is_alphanumeric) {
                info |= RULE_OPEN_LEFT;
            }
            if f.chars().next_back().is_some_and(char::is_alphanumeric) {
                info |= RULE_OPEN_RIGHT;
            }
            if kind == Kind::Word && f.starts_with('.') {
                info |= RULE_DOMAIN;
            }
            by_key.insert((f.clone(), kind), keys.len());
            key_info.push(info);
            members.push(vec![index]);
            keys.push(f);
        }
        drop(by_key);
        let key_bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let built = automaton::build(&key_bytes)?;
        let [three, two, one] = starts::build(&key_bytes);
        let mut first_member = Vec::with_capacity(members.len() + 1);
        let mut flat = Vec::with_capacity(kept as usize);
        for m in &members {
            first_member.push(flat.len() as u32);
            flat.extend_from_slice(m);
        }
        first_member.push(flat.len() as u32);
        let meta = vec![built.edge_bytes_len as u32, keys.len() as u32, kept];
        let mut sections: Vec<Vec<u32>> = built.sections.into_iter().collect();
        sections.extend([
            meta,
            key_info,
            first_member,
            flat,
            table,
            names,
            pack_bytes(&text),
            three,
            two,
            one,
        ]);
        if sections.iter().map(Vec::len).sum::<usize>() >= u32::MAX as usize {
            return Err("the compiled dictionaries exceed 16 GB".into());
        }
        Matcher::from_image(Image::assemble(sections))
    }

    /// The matcher an image holds (built here, or mapped from a file); Err says why the
    /// image is not a sound one.
    pub fn open(store: Box<dyn Words>) -> Result<Matcher, String> {
        Matcher::from_image(Image::open(store, SECTIONS)?)
    }

    fn from_image(image: Image) -> Result<Matcher, String> {
        let r = |i| image.range(i);
        let meta = image.section(META);
        let &[edge_bytes_len, keys, patterns] = meta else {
            return Err("matcher image without its counts".into());
        };
        let layout = Layout {
            root: r(0),
            first_edge: r(1),
            edge_bytes: r(2),
            edge_bytes_len: edge_bytes_len as usize,
            edge_target: r(3),
            fail: r(4),
            first_output: r(5),
            outputs: r(6),
            dict_link: r(7),
        };
        let (keys, patterns) = (keys as usize, patterns as usize);
        let starts: [*const [u32]; 3] = [
            image.section(STARTS),
            image.section(STARTS + 1),
            image.section(STARTS + 2),
        ];
        let mut m = Matcher {
            image,
            layout,
            keys,
            patterns,
            short: false,
            starts,
        };
        let starts = m.starts();
        let short = starts.has_short();
        let sound = starts.is_consistent()
            && m.automaton()
                .is_some_and(|a| a.is_consistent() && a.outputs_below(keys))
            && m.image.section(KEY_INFO).len() == keys
            && m.image.section(FIRST_MEMBER).len() == keys + 1
            && m.image.section(PATTERNS).len() == 3 * patterns
            && m.image.section(PATTERNS).chunks(3).all(|e| {
                2 * (e[0] & !RULE_SUBSTRING) as usize + 2 <= m.image.section(DICTIONARIES).len()
            })
            && m.image
                .section(MEMBERS)
                .iter()
                .all(|&p| (p as usize) < patterns)
            && m.image
                .section(FIRST_MEMBER)
                .windows(2)
                .all(|w| w[0] < w[1])
            && m.image
                .section(FIRST_MEMBER)
                .last()
                .is_some_and(|&l| l as usize == m.image.section(MEMBERS).len());
        if !sound {
            return Err("matcher image sections do not fit together".into());
        }
        m.short = short;
        Ok(m)
    }

    /// The image, to store it.
    pub fn image(&self) -> &Image {
        &self.image
    }

    #[inline]
    fn automaton(&self) -> Option<Automaton<'_>> {
        Automaton::view(self.image.words(), &self.layout)
    }

    #[inline]
    fn starts(&self) -> Starts<'_> {
        // SAFETY: sections of the image's words, which the image owns (or maps) unchanged
        // for as long as the matcher holds it.
        unsafe {
            Starts {
                three: &*self.starts[0],
                two: &*self.starts[1],
                one: &*self.starts[2],
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    /// Pattern `i` (as reported in `Hit::pattern`).
    pub fn pattern(&self, i: usize) -> PatternRef<'_> {
        let entry = &self.image.section(PATTERNS)[3 * i..3 * i + 3];
        let d = (entry[0] & !RULE_SUBSTRING) as usize;
        let name = &self.image.section(DICTIONARIES)[2 * d..2 * d + 2];
        PatternRef {
            dictionary: self.text(name[0], name[1]),
            pattern: self.text(entry[1], entry[2]),
            kind: if entry[0] & RULE_SUBSTRING != 0 {
                Kind::Substring
            } else {
                Kind::Word
            },
        }
    }

    fn text(&self, at: u32, len: u32) -> &str {
        let bytes = as_bytes(self.image.section(TEXT));
        bytes
            .get(at as usize..at as usize + len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
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
        if self.keys == 0 {
            return Vec::new();
        }
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
            // (most values hold no pattern at all: the start sets and short anchored walks
            // say so without running the automaton over every byte)
            if !self.any_match(haystack.as_bytes()) {
                return Vec::new();
            }
            let (Some(automaton), key_info) = (self.automaton(), self.image.section(KEY_INFO))
            else {
                return Vec::new(); // (checked when the image was opened)
            };
            let mut found: Vec<(usize, usize, usize)> = Vec::new();
            let mut work = 0usize;
            automaton.overlapping(haystack.as_bytes(), |end, id| {
                interruptible(&mut work);
                let info = key_info[id as usize];
                // (a key ends where it is reported; checked against a damaged image all
                // the same)
                let Some(start) = end.checked_sub((info & KEY_LEN) as usize) else {
                    return true;
                };
                if counts(value, start, end, info) {
                    found.push((start, end, id as usize));
                    if first_only || found.len() >= MAX_HITS {
                        return false;
                    }
                }
                true
            });
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
        if !self.any_match(buffer.as_bytes()) {
            return Vec::new();
        }
        let (Some(automaton), key_info) = (self.automaton(), self.image.section(KEY_INFO)) else {
            return Vec::new();
        };
        let mut work = 0usize;
        // Boundaries are judged on the original text, around the original span of each
        // hit, a chunk of candidates at a time: however many candidates fail their
        // boundaries, every one is judged (a value cannot hide a hit behind a crowd).
        let mut candidates: Vec<(usize, usize, usize)> = Vec::new();
        let mut found: Vec<Hit> = Vec::new();
        let mut done = false;
        automaton.overlapping(buffer.as_bytes(), |end, id| {
            interruptible(&mut work);
            let Some(start) = end.checked_sub((key_info[id as usize] & KEY_LEN) as usize) else {
                return true;
            };
            candidates.push((start, end, id as usize));
            if candidates.len() == CHUNK {
                done = self.judge(value, &mut candidates, &mut found, first_only, &mut work);
            }
            !done
        });
        if !done {
            self.judge(value, &mut candidates, &mut found, first_only, &mut work);
        }
        found.sort_by_key(|h| (h.start, h.end, h.pattern));
        if first_only {
            found.truncate(1);
        }
        found
    }

    /// Judges a chunk of candidate hits of a folded value (key offsets) on the original
    /// text, adds the valid ones to `found` and empties the chunk; true when the search is
    /// over (a hit found for `first_only`, or `MAX_HITS`).
    fn judge(
        &self,
        value: &str,
        candidates: &mut Vec<(usize, usize, usize)>,
        found: &mut Vec<Hit>,
        first_only: bool,
        work: &mut usize,
    ) -> bool {
        if candidates.is_empty() {
            return false;
        }
        let key_info = self.image.section(KEY_INFO);
        let spans = original_spans(value, candidates);
        for ((_, _, id), span) in candidates.iter().zip(spans) {
            interruptible(work);
            if !counts(value, span.bytes.0, span.bytes.1, key_info[*id]) {
                continue;
            }
            let text = value[span.bytes.0..span.bytes.1].to_string();
            for pattern in self.reported(*id, &text, first_only) {
                found.push(Hit {
                    pattern,
                    start: span.chars.0,
                    end: span.chars.1,
                    text: text.clone(),
                });
            }
        }
        candidates.clear();
        (first_only && !found.is_empty()) || found.len() >= MAX_HITS
    }

    /// Whether any pattern occurs in a key. Most values hold none: rather than running the
    /// automaton over every byte, only the places where a pattern may start (by its first
    /// bytes) are tried, anchored; the automaton is not even looked at when there is none.
    fn any_match(&self, k: &[u8]) -> bool {
        let starts = self.starts();
        let mut automaton = None;
        let mut work = 0usize;
        let mut anchored_at = |i: usize| {
            interruptible(&mut work);
            automaton
                .get_or_insert_with(|| self.automaton())
                .as_ref()
                .is_some_and(|a| a.prefix_at(k, i))
        };
        if self.short {
            return (0..k.len()).any(|i| starts.may_start(k, i) && anchored_at(i));
        }
        // (the common case: every pattern has three bytes or more)
        (0..k.len().saturating_sub(2)).any(|i| starts.may_start_three(k, i) && anchored_at(i))
    }

    /// The patterns a hit of key `id` reports: one per dictionary among the patterns that
    /// share the key (only the first when `first_only`), each the spelling written in the
    /// value if the dictionary has it, else the dictionary's first.
    fn reported(&self, id: usize, text: &str, first_only: bool) -> Vec<usize> {
        let first = self.image.section(FIRST_MEMBER);
        let members = &self.image.section(MEMBERS)[first[id] as usize..first[id + 1] as usize];
        let mut chosen: Vec<usize> = Vec::new();
        for &i in members {
            let i = i as usize;
            let p = self.pattern(i);
            match chosen
                .iter_mut()
                .find(|c| self.pattern(**c).dictionary == p.dictionary)
            {
                Some(c) => {
                    if !self.pattern(*c).pattern.eq_ignore_ascii_case(text)
                        && p.pattern.eq_ignore_ascii_case(text)
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
}

/// Whether a hit at `haystack[start..end]` of a key with rule `info` counts.
fn counts(haystack: &str, start: usize, end: usize, info: u32) -> bool {
    if info & RULE_SUBSTRING != 0 {
        return true;
    }
    // (the neighbours as the fold reads them: invisible characters and accents are
    // passed over, blank fillers are spaces)
    let before = fold::neighbour(haystack[..start].chars().rev());
    let after = fold::neighbour(haystack[end..].chars());
    if info & RULE_OPEN_LEFT != 0 && before.is_some_and(char::is_alphanumeric) {
        return false;
    }
    if info & RULE_OPEN_RIGHT != 0 && after.is_some_and(char::is_alphanumeric) {
        return false;
    }
    if info & RULE_DOMAIN != 0 && after.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '-')
    {
        return false;
    }
    true
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

/// Candidate hits of a folded value judged at a time (each chunk folds the value once more
/// to find the hits' original spans).
const CHUNK: usize = 100_000;

/// Valid hits reported for one value at most (`all`, for scans; the row check stops at
/// the first).
const MAX_HITS: usize = 100_000;

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

    #[test]
    fn boundaries_are_judged_as_the_fold_reads_the_neighbours() {
        let m = matcher(&["John Doe", "555-0100", "4242 4242 4242 4242"], &[]);
        // blank fillers are spaces
        assert_eq!(texts(&m, "\u{3164}John Doe\u{3164}"), ["John Doe"]);
        assert_eq!(
            texts(&m, "\u{FFA0}4242 4242 4242 4242\u{FFA0}"),
            ["4242 4242 4242 4242"]
        );
        // accents and invisible characters belong to the word they are in
        for value in [
            "John Doe\u{0301}rty",
            "A\u{030A}John Doe",
            "John Doe\u{200D}rty",
            "John Doe\u{00AD}rty",
            "x\u{FE0F}John Doe",
            "1\u{0301}555-0100",
            "John Doérty",
        ] {
            assert!(texts(&m, value).is_empty(), "{value:?}");
        }
        assert_eq!(texts(&m, "Mr John Doe\u{0301}, here"), ["John Doe"]);
    }

    #[test]
    fn a_crowd_of_failed_candidates_hides_no_hit() {
        let m = matcher(&["42", "4242 4242 4242 4242"], &[]);
        // (capitals: the folded path; every "42" inside the run of digits fails its
        // boundaries, more of them than one chunk of candidates)
        let value = format!("X{} card 4242 4242 4242 4242", "42".repeat(CHUNK + 10));
        let mut buffer = String::new();
        let hit = m
            .first(&value, &mut buffer)
            .expect("the card number is found");
        assert_eq!(hit.text, "4242 4242 4242 4242");
    }

    #[test]
    fn an_image_opened_again_finds_the_same_and_a_damaged_one_is_refused() {
        let m = matcher(&["Coca Cola Classic", "john doe", ".test"], &["lorem"]);
        let words = m.image().words().to_vec();
        let again = Matcher::open(Box::new(words.clone())).expect("a sound image opens");
        for value in [
            "buy COCA  COLA classic",
            "ana@shop.test",
            "xLOREMx",
            "nothing here",
        ] {
            assert_eq!(texts(&again, value), texts(&m, value), "{value:?}");
        }
        assert_eq!(again.pattern(1).pattern, "john doe");
        assert_eq!(again.pattern(3).kind, Kind::Substring);
        // every single damaged word either is refused or leaves a matcher that answers
        // without panicking
        for i in 0..words.len() {
            let mut bad = words.clone();
            bad[i] = bad[i].wrapping_add(0x9E37_79B9);
            if let Ok(m) = Matcher::open(Box::new(bad)) {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    m.all("buy COCA  COLA classic at shop.test lorem")
                }));
            }
        }
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
                    .map(|h| (h.start, h.end, m.pattern(h.pattern).pattern.to_string()))
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
                    let pattern = folded(m.pattern(h.pattern).pattern);
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

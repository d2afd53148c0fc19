//! Spelling-robust folding for the test-data matcher (issue 16): patterns and values are
//! compared by a key that every usual re-spelling of a text maps to the same way.
//!
//! Per character of the original text, in order:
//! 1. default-ignorable code points (zero-width spaces and joiners, soft hyphen, word
//!    joiner, BOM, variation selectors, bidi controls: Unicode's Default_Ignorable_Code_Point)
//!    are dropped;
//! 2. capital Cyrillic and Greek letters that look like capital Latin ones (А В Е К М Н О Р
//!    С Т Х У, Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ, ...) become those Latin letters, before case
//!    folding can take them apart;
//! 3. Unicode compatibility decomposition (NFKD: full-width letters and digits, ligatures,
//!    circled and styled letters, NBSP become their plain forms; comparing NFKD keys is the
//!    same as comparing NFKC forms), then full case folding (lower case, ß = ss, final
//!    sigma = sigma);
//! 4. small Cyrillic and Greek letters that look like Latin ones (а е о р с у х і ј ѕ ԁ
//!    һ ԛ ԝ ӏ, α ο ρ ν ι υ χ γ ϲ ϳ) become those letters: the Latin/Cyrillic/Greek part of
//!    the confusables of Unicode TR39, whose skeletons map them so;
//! 5. every run of white space (Unicode White_Space: space, NBSP, tab, newline, ...) is one
//!    space, and one separator (space, `.`, `-`) between two digits is dropped, so that card
//!    and phone numbers match whether written `4242 4242`, `4242.4242`, `4242-4242` or
//!    `42424242`.
//!
//! Offsets: `fold` reports, for each original character, how many bytes of the key exist
//! once it has been read, so that a hit in the key is mapped back to the original text
//! (`matcher::original_spans`) by folding again, only for values that hold a hit.

use unicode_normalization::char::decompose_compatible;

/// How much folding a value needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// ASCII without capitals, without white space other than single spaces, and without
    /// a separator between digits: the value is its own key (no copy).
    Plain,
    /// The same, but with capitals: its key is its ASCII lower case, byte for byte (offsets
    /// unchanged).
    Capitals,
    /// Anything else: `fold`.
    Other,
}

/// The shape of a value, in one pass over its bytes (the row trigger's fast path): each
/// byte's class comes from a table, and the common byte (a small letter or another
/// harmless one) costs one comparison.
pub fn shape(value: &str) -> Shape {
    let b = value.as_bytes();
    let mut capitals = false;
    let mut previous = 0u8;
    for (i, &c) in b.iter().enumerate() {
        let class = CLASS[usize::from(c)];
        if class == 0 {
            previous = 0;
            continue;
        }
        if class & OTHER != 0 {
            return Shape::Other;
        }
        capitals |= class & CAPITAL != 0;
        if class & SPACE != 0 && previous & SPACE != 0 {
            return Shape::Other;
        }
        if class & SEPARATOR != 0 && previous & DIGIT != 0 && ascii_digit_follows(b, i) {
            return Shape::Other;
        }
        previous = class;
    }
    if capitals {
        Shape::Capitals
    } else {
        Shape::Plain
    }
}

const CAPITAL: u8 = 1;
const OTHER: u8 = 2;
const SPACE: u8 = 4;
const SEPARATOR: u8 = 8;
const DIGIT: u8 = 16;

/// The class of each byte for `shape`: 0 for the harmless ones.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c >= 0x80 || matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            OTHER
        } else if c.is_ascii_uppercase() {
            CAPITAL
        } else if c == b' ' {
            SPACE | SEPARATOR
        } else if c == b'.' || c == b'-' {
            SEPARATOR
        } else if c.is_ascii_digit() {
            DIGIT
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Whether a value is its own key (`Shape::Plain`).
#[cfg(test)]
pub fn is_plain(value: &str) -> bool {
    shape(value) == Shape::Plain
}

/// The key of a text, appended to `out`.
pub fn fold_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        fold_ascii(s.as_bytes(), out);
    } else {
        fold(s, out, |_, _| {});
    }
}

/// `fold` for ASCII text, byte by byte: the same key (ASCII has nothing to decompose,
/// ignore or map to Latin), several times faster (a value with capitals is the common
/// case: names, titles, product names).
fn fold_ascii(b: &[u8], out: &mut String) {
    // SAFETY: only ASCII bytes are pushed, so `out` stays valid UTF-8.
    let key = unsafe { out.as_mut_vec() };
    key.reserve(b.len());
    let mut last = Last::Start;
    for (i, &byte) in b.iter().enumerate() {
        let c = match byte.to_ascii_lowercase() {
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => b' ',
            c => c,
        };
        if matches!(c, b' ' | b'.' | b'-') && last == Last::Digit && ascii_digit_follows(b, i) {
            continue;
        }
        last = match c {
            b' ' if last == Last::Space => continue,
            b' ' => Last::Space,
            b'0'..=b'9' => Last::Digit,
            _ => Last::Other,
        };
        key.push(c);
    }
}

/// Folds `s` into `out`, calling `after(original_byte_end, key_len)` after each original
/// character: the key's length once that character has been read. Every character's key
/// bytes are written while it is read (a separator between digits looks at the next
/// character), so the key maps back to the original exactly.
pub fn fold(s: &str, out: &mut String, mut after: impl FnMut(usize, usize)) {
    let mut f = Folder {
        out,
        last: Last::Start,
    };
    let mut chars = s.char_indices().peekable();
    while let Some((b, c)) = chars.next() {
        let next_is_digit = digit_follows(chars.clone());
        f.original(c, next_is_digit);
        after(b + c.len_utf8(), f.out.len());
    }
}

/// Whether a digit comes next, after at most two more separators (`4242 - 4242`).
fn digit_follows(rest: impl Iterator<Item = (usize, char)>) -> bool {
    for (n, (_, c)) in rest.enumerate() {
        if n > 2 {
            return false;
        }
        if folds_to_digit(c) {
            return true;
        }
        let separator = c.is_whitespace()
            || matches!(
                c,
                '.' | '-' | '\u{2010}'
                    ..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
            );
        if !separator {
            return false;
        }
    }
    false
}

/// `digit_follows` for ASCII text, at byte `i`.
fn ascii_digit_follows(b: &[u8], i: usize) -> bool {
    for &c in b.iter().skip(i + 1).take(3) {
        if c.is_ascii_digit() {
            return true;
        }
        if !matches!(c, b' ' | b'.' | b'-' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            return false;
        }
    }
    false
}

/// Whether a character's key begins with a digit (ASCII, full-width, ... digits).
fn folds_to_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    if !c.is_numeric() {
        return false; // (the common case: a letter; no decomposition needed)
    }
    let mut first = None;
    decompose_compatible(c, |d| {
        if first.is_none() {
            first = Some(d);
        }
    });
    first.is_some_and(|d| d.is_ascii_digit())
}

#[derive(Clone, Copy, PartialEq)]
enum Last {
    Start,
    Space,
    Digit,
    Other,
}

struct Folder<'a> {
    out: &'a mut String,
    last: Last,
}

impl Folder<'_> {
    fn original(&mut self, c: char, next_is_digit: bool) {
        if c.is_ascii() {
            self.key(c.to_ascii_lowercase(), next_is_digit);
            return;
        }
        // blank-looking fillers (Hangul fillers, Braille blank) read as a space; dashes as `-`
        if is_filler(c) {
            self.key(' ', next_is_digit);
            return;
        }
        if matches!(
            c as u32,
            0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 | 0xFF0D
        ) {
            self.key('-', next_is_digit);
            return;
        }
        if is_default_ignorable(c) || unicode_normalization::char::is_combining_mark(c) {
            return;
        }
        let c = latin_capital(c).unwrap_or(c);
        match c {
            'ß' | 'ẞ' => {
                self.key('s', false);
                self.key('s', false);
            }
            'ς' => self.key('σ', false),
            _ => {
                let mut parts: [char; 18] = ['\0'; 18];
                let mut n = 0;
                decompose_compatible(c, |d| {
                    if n < parts.len() {
                        parts[n] = d;
                        n += 1;
                    }
                });
                for &d in &parts[..n] {
                    if unicode_normalization::char::is_combining_mark(d) {
                        continue; // (accents: `José` and `Jose` are one spelling)
                    }
                    if d == 'ß' {
                        self.key('s', false);
                        self.key('s', false);
                        continue;
                    }
                    for l in d.to_lowercase() {
                        self.key(latin_small(l).unwrap_or(l), next_is_digit);
                    }
                }
            }
        }
    }

    /// One character of the key: white space runs become one space, and a separator
    /// between two digits is dropped.
    fn key(&mut self, c: char, next_is_digit: bool) {
        let c = if c.is_whitespace() { ' ' } else { c };
        if matches!(c, ' ' | '.' | '-') && self.last == Last::Digit && next_is_digit {
            return;
        }
        if c == ' ' {
            if self.last == Last::Space {
                return;
            }
            self.last = Last::Space;
        } else if c.is_ascii_digit() {
            self.last = Last::Digit;
        } else {
            self.last = Last::Other;
        }
        self.out.push(c);
    }
}

/// The first character of `chars` that the fold keeps, as the fold reads it for a word
/// boundary: invisible characters and combining marks (which belong to the letter before
/// them) are passed over, blank fillers read as a space.
pub fn neighbour(chars: impl Iterator<Item = char>) -> Option<char> {
    chars
        .filter(|&c| {
            c.is_ascii()
                || !(is_default_ignorable(c) || unicode_normalization::char::is_combining_mark(c))
        })
        .map(|c| if is_filler(c) { ' ' } else { c })
        .next()
}

/// Blank-looking fillers (Hangul fillers, Braille blank): read as a space.
fn is_filler(c: char) -> bool {
    matches!(c as u32, 0x115F | 0x1160 | 0x3164 | 0xFFA0 | 0x2800)
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15).
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Capital Cyrillic and Greek letters drawn like capital Latin ones (TR39 confusables).
fn latin_capital(c: char) -> Option<char> {
    Some(match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'С' | 'Ϲ' => 'C',
        'Е' | 'Ε' => 'E',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' | 'Ӏ' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'Х' | 'Χ' => 'X',
        'У' | 'Υ' | 'Ү' => 'Y',
        'Ζ' => 'Z',
        _ => return None,
    })
}

/// Small Cyrillic and Greek letters drawn like small Latin ones (TR39 confusables).
fn latin_small(c: char) -> Option<char> {
    Some(match c {
        // Latin small capitals and alpha, Armenian look-alikes
        'ᴀ' | 'ɑ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ꜰ' => 'f',
        'ɢ' => 'g',
        'ʜ' | 'հ' => 'h',
        'ɪ' => 'i',
        'ᴊ' => 'j',
        'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' | 'օ' => 'o',
        'ᴘ' => 'p',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' | 'ս' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        'а' | 'α' => 'a',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' | 'ι' | 'ӏ' => 'i',
        'ј' | 'ϳ' => 'j',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' => 'y',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        let mut out = String::new();
        fold_into(s, &mut out);
        out
    }

    #[test]
    fn respellings_have_one_key() {
        let plain = key("coca cola classic");
        for s in [
            "Coca Cola Classic",
            "COCA  COLA\tCLASSIC",
            "Ｃｏｃａ Ｃｏｌａ Ｃｌａｓｓｉｃ",
            "Coca\u{00A0}Cola\nClassic",
            "Co\u{200B}ca Co\u{00AD}la Classic",
            "Сoca Сola Сlassic", // Cyrillic capital Es
            "cоcа cоlа clаssic", // Cyrillic small o and a
        ] {
            assert_eq!(key(s), plain, "{s:?}");
        }
        assert_eq!(key("4242.4242.4242.4242"), key("4242 4242 4242 4242"));
        assert_eq!(key("4242-4242-4242-4242"), "4242424242424242");
        assert_eq!(key("555 0100"), key("555-0100"));
        assert_eq!(
            key("4242 - 4242 \u{2013} 4242\u{2011}4242"),
            "4242424242424242"
        );
        assert_eq!(key("John\u{3164}Doe"), "john doe");
        assert_eq!(key("J\u{0585}hn D\u{1D0F}e"), "john doe");
        assert_eq!(key("J\u{0251}ne"), "jane");
        assert_eq!(key("Jo\u{0301}hn"), "john");
        assert_eq!(key("JOHN  DOE"), "john doe");
        assert_eq!(key("Straße"), "strasse");
        assert_eq!(key("ﬁle"), "file");
        // a separator not between digits stays
        assert_eq!(key("a-b 1-x 2"), "a-b 1-x 2");
        assert_eq!(key("example.com"), "example.com");
    }

    #[test]
    fn plain_values_are_their_own_key() {
        for s in ["john doe", "a.b-c", "12 ab", "x 1.", "", "card 4242"] {
            assert!(is_plain(s), "{s:?}");
            assert_eq!(key(s), s);
        }
        for s in ["John", "a  b", "a\tb", "1 2", "1.2", "1-2", "é"] {
            assert!(!is_plain(s), "{s:?}");
        }
        for s in ["John Doe", "A.B-C", "Card 4242"] {
            assert_eq!(shape(s), Shape::Capitals, "{s:?}");
            assert_eq!(key(s), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn the_ascii_path_gives_the_general_key() {
        for s in [
            "John  DOE",
            "a\t\tb\n",
            "4242.4242 4242-4242",
            "1- 2",
            " x ",
            "9.",
            "A-1.b",
        ] {
            let mut general = String::new();
            fold(s, &mut general, |_, _| {});
            assert_eq!(key(s), general, "{s:?}");
        }
    }

    #[test]
    fn offsets_follow_the_original() {
        let mut out = String::new();
        let mut ends = Vec::new();
        fold("ＡB", &mut out, |b, k| ends.push((b, k)));
        assert_eq!(out, "ab");
        assert_eq!(ends, vec![(3, 1), (4, 2)]);
    }
}

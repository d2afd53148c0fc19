//! Where a pattern may start: the first bytes of every key, as bit sets, so that a
//! position of a value where no pattern can start is passed over without walking the
//! automaton. Three-byte prefixes are hashed into a 2^19-bit set (64 KB); keys of one or
//! two bytes are kept exactly. The sets are words of the matcher's image.

const THREE_BITS: u32 = 19;
const THREE_WORDS: usize = 1 << (THREE_BITS - 5);
const TWO_WORDS: usize = 1 << (16 - 5);
const ONE_WORDS: usize = 256 / 32;

/// The three sets, built: `three`, `two` (empty when no key has two bytes), `one`.
pub fn build(keys: &[&[u8]]) -> [Vec<u32>; 3] {
    let mut three = vec![0u32; THREE_WORDS];
    let mut two = Vec::new();
    let mut one = vec![0u32; ONE_WORDS];
    for k in keys {
        match k.len() {
            0 => {}
            1 => set(&mut one, usize::from(k[0])),
            2 => {
                if two.is_empty() {
                    two = vec![0; TWO_WORDS];
                }
                set(&mut two, usize::from(k[0]) << 8 | usize::from(k[1]));
            }
            _ => set(&mut three, hash(k[0], k[1], k[2])),
        }
    }
    [three, two, one]
}

/// A view of the three sets.
pub struct Starts<'a> {
    pub three: &'a [u32],
    pub two: &'a [u32],
    pub one: &'a [u32],
}

impl Starts<'_> {
    /// Whether the sets have the sizes `build` gives them.
    pub fn is_consistent(&self) -> bool {
        self.three.len() == THREE_WORDS
            && (self.two.is_empty() || self.two.len() == TWO_WORDS)
            && self.one.len() == ONE_WORDS
    }

    /// Whether some key is shorter than three bytes.
    pub fn has_short(&self) -> bool {
        !self.two.is_empty() || self.one.iter().any(|&w| w != 0)
    }

    /// Whether a key may start at `k[i..]` (exact for short keys, hashed for the others).
    #[inline]
    pub fn may_start(&self, k: &[u8], i: usize) -> bool {
        get(self.one, usize::from(k[i]))
            || (i + 1 < k.len()
                && !self.two.is_empty()
                && get(self.two, usize::from(k[i]) << 8 | usize::from(k[i + 1])))
            || self.may_start_three(k, i)
    }

    /// The same for keys of three bytes or more only.
    #[inline]
    pub fn may_start_three(&self, k: &[u8], i: usize) -> bool {
        i + 2 < k.len() && get(self.three, hash(k[i], k[i + 1], k[i + 2]))
    }
}

fn set(words: &mut [u32], x: usize) {
    words[x >> 5] |= 1 << (x & 31);
}

#[inline]
fn get(words: &[u32], x: usize) -> bool {
    words[x >> 5] & (1 << (x & 31)) != 0
}

#[inline]
fn hash(a: u8, b: u8, c: u8) -> usize {
    let x = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
    (x.wrapping_mul(0x9E37_79B1) >> (32 - THREE_BITS)) as usize
}

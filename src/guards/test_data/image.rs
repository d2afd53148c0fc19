//! The compiled matcher's container: one array of 32-bit words holding a header and
//! numbered sections, read in place from the heap or from a mapped file (`shared.rs`).
//! Pure Rust; what each section means is `matcher.rs`'s.
//!
//! Header (words): magic, format, total length, section count, then each section's
//! offset and length. The magic is written in the machine's byte order, so an image from
//! a machine of the other byte order is refused, as is one of another format.

use std::ops::Range;

const MAGIC: u32 = u32::from_be_bytes(*b"PGPD");
/// Bumped whenever the meaning of a section changes, and whenever `fold.rs` folds any
/// text differently (an image holds keys folded by the rules of the library that wrote
/// it): older files are then rebuilt.
pub const FORMAT: u32 = 1;
const FIXED: usize = 4;

/// Where the words live.
pub trait Words {
    fn words(&self) -> &[u32];
}

impl Words for Vec<u32> {
    fn words(&self) -> &[u32] {
        self
    }
}

pub struct Image {
    /// The words of `store`, noted once (every search reads them).
    words: *const [u32],
    /// Kept for as long as the image: it owns (or maps) the words.
    #[allow(dead_code)]
    store: Box<dyn Words>,
    sections: Vec<Range<usize>>,
}

impl Image {
    /// An image of `sections`, in the heap.
    pub fn assemble(sections: Vec<Vec<u32>>) -> Image {
        let header = FIXED + 2 * sections.len();
        let total = header + sections.iter().map(Vec::len).sum::<usize>();
        let mut words = Vec::with_capacity(total);
        words.extend_from_slice(&[MAGIC, FORMAT, total as u32, sections.len() as u32]);
        let mut ranges = Vec::with_capacity(sections.len());
        let mut at = header;
        for s in &sections {
            words.extend_from_slice(&[at as u32, s.len() as u32]);
            ranges.push(at..at + s.len());
            at += s.len();
        }
        for s in sections {
            words.extend(s);
        }
        Image::of(Box::new(words), ranges)
    }

    /// The image held by `store`, with `count` sections; Err says why it is not one.
    pub fn open(store: Box<dyn Words>, count: usize) -> Result<Image, String> {
        let w = store.words();
        if w.len() < FIXED || w[0] != MAGIC {
            return Err("not a pg_prodguard matcher image".into());
        }
        if w[1] != FORMAT {
            return Err(format!("matcher image format {} (expected {FORMAT})", w[1]));
        }
        if w[2] as usize != w.len() || w[3] as usize != count || w.len() < FIXED + 2 * count {
            return Err("matcher image truncated or of another layout".into());
        }
        let mut sections = Vec::with_capacity(count);
        for i in 0..count {
            let (at, len) = (w[FIXED + 2 * i] as usize, w[FIXED + 2 * i + 1] as usize);
            if at.checked_add(len).is_none_or(|end| end > w.len()) {
                return Err(format!("matcher image section {i} out of bounds"));
            }
            sections.push(at..at + len);
        }
        Ok(Image::of(store, sections))
    }

    fn of(store: Box<dyn Words>, sections: Vec<Range<usize>>) -> Image {
        let words: *const [u32] = store.words();
        Image {
            words,
            store,
            sections,
        }
    }

    #[inline]
    pub fn words(&self) -> &[u32] {
        // SAFETY: the words belong to `store` (a vector's buffer or a mapping), which
        // neither moves nor changes them while the image holds it.
        unsafe { &*self.words }
    }

    /// Where section `i` lies in `words()`.
    #[inline]
    pub fn range(&self, i: usize) -> Range<usize> {
        self.sections[i].clone()
    }

    #[inline]
    pub fn section(&self, i: usize) -> &[u32] {
        &self.words()[self.range(i)]
    }

    /// The image's bytes, for writing it to a file.
    pub fn bytes(&self) -> &[u8] {
        as_bytes(self.words())
    }
}

/// Words as bytes (for text and byte sections).
pub fn as_bytes(words: &[u32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirement; the byte slice covers exactly
    // the words' memory, borrowed for as long as the words are.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}

/// Bytes packed into words (the last one padded with zeros).
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_ne_bytes(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembled_images_open_and_damaged_ones_do_not() {
        let image = Image::assemble(vec![vec![1, 2, 3], vec![], pack_bytes(b"hello")]);
        let words = image.words().to_vec();
        let opened = Image::open(Box::new(words.clone()), 3).unwrap();
        assert_eq!(opened.section(0), [1, 2, 3]);
        assert!(opened.section(1).is_empty());
        assert_eq!(&as_bytes(opened.section(2))[..5], b"hello");
        assert!(Image::open(Box::new(words.clone()), 4).is_err());
        assert!(Image::open(Box::new(words[..words.len() - 1].to_vec()), 3).is_err());
        let mut other = words.clone();
        other[1] = FORMAT + 1;
        assert!(Image::open(Box::new(other), 3).is_err());
        let mut bad = words;
        bad[FIXED + 2] = 1_000;
        assert!(Image::open(Box::new(bad), 3).is_err());
    }
}

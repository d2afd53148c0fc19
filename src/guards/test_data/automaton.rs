//! A flat Aho-Corasick automaton over bytes, laid out in 32-bit words so that it is
//! searched where it lies: in a backend's heap, or in a file every backend of the server
//! maps read-only (`shared.rs`). Pure Rust, no PostgreSQL.
//!
//! - States are numbered breadth first; state 0 is the root. The root's transitions are
//!   a table of 256 words; every other state's are a run of (byte, target) edges sorted
//!   by byte (a trie has few edges per state: a short run is read linearly).
//! - `fail` is the usual failure link, `dict_link` the nearest state along the failure
//!   chain that ends a pattern (0: none), `first_output` indexes the patterns that end at
//!   a state.
//! - The build sorts the keys once and creates each level of the trie from runs of keys
//!   that share a prefix: work proportional to the keys' bytes, no per-state allocation.

use std::ops::Range;

use super::image::{as_bytes, pack_bytes};

/// The automaton's sections, in the order `build` returns them.
pub const SECTIONS: usize = 8;

/// Where each section lies in a word array (offsets and lengths in words; `edge_bytes`
/// holds four bytes per word).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub root: Range<usize>,
    pub first_edge: Range<usize>,
    pub edge_bytes: Range<usize>,
    pub edge_bytes_len: usize,
    pub edge_target: Range<usize>,
    pub fail: Range<usize>,
    pub first_output: Range<usize>,
    pub outputs: Range<usize>,
    pub dict_link: Range<usize>,
}

/// A view of an automaton in a word array.
pub struct Automaton<'a> {
    root: &'a [u32],
    first_edge: &'a [u32],
    edge_bytes: &'a [u8],
    edge_target: &'a [u32],
    fail: &'a [u32],
    first_output: &'a [u32],
    outputs: &'a [u32],
    dict_link: &'a [u32],
}

/// The sections of a built automaton, each a word vector (see `Layout`).
pub struct Built {
    pub sections: [Vec<u32>; SECTIONS],
    pub edge_bytes_len: usize,
}

/// Builds the automaton of `keys` (pattern `i` is `keys[i]`; empty keys are never
/// reported). Fails past 2^32 states.
pub fn build(keys: &[&[u8]]) -> Result<Built, String> {
    let mut order: Vec<u32> = (0..keys.len() as u32)
        .filter(|&i| !keys[i as usize].is_empty())
        .collect();
    order.sort_unstable_by(|&a, &b| keys[a as usize].cmp(keys[b as usize]));
    let key = |j: usize| keys[order[j] as usize];

    // Each state stands for the run of sorted keys [lo, hi) that share its prefix of
    // length `depth`; states are created, and then visited, in breadth-first order.
    let mut runs: Vec<(u32, u32, u32)> = vec![(0, order.len() as u32, 0)];
    let mut first_edge: Vec<u32> = Vec::new();
    let mut edge_bytes: Vec<u8> = Vec::new();
    let mut edge_target: Vec<u32> = Vec::new();
    let mut first_output: Vec<u32> = vec![0];
    let mut outputs: Vec<u32> = Vec::new();
    let mut state = 0usize;
    while state < runs.len() {
        let (lo, hi, depth) = runs[state];
        let (mut j, hi, depth) = (lo as usize, hi as usize, depth as usize);
        // keys that end here sort before the longer ones
        while j < hi && key(j).len() == depth {
            outputs.push(order[j]);
            j += 1;
        }
        first_output.push(outputs.len() as u32);
        first_edge.push(edge_target.len() as u32);
        while j < hi {
            let byte = key(j)[depth];
            let mut k = j + 1;
            while k < hi && key(k)[depth] == byte {
                k += 1;
            }
            let child = u32::try_from(runs.len())
                .ok()
                .filter(|&c| c != u32::MAX)
                .ok_or("more than 2^32 automaton states")?;
            edge_bytes.push(byte);
            edge_target.push(child);
            runs.push((j as u32, k as u32, depth as u32 + 1));
            j = k;
        }
        state += 1;
    }
    first_edge.push(edge_target.len() as u32);
    drop(runs);
    let states = first_edge.len() - 1;

    let mut root = vec![0u32; 256];
    for e in first_edge[0] as usize..first_edge[1] as usize {
        root[usize::from(edge_bytes[e])] = edge_target[e];
    }
    let edge_bytes_len = edge_bytes.len();
    let mut fail = vec![0u32; states];
    let mut dict_link = vec![0u32; states];
    {
        let a = Automaton {
            root: &root,
            first_edge: &first_edge,
            edge_bytes: &edge_bytes,
            edge_target: &edge_target,
            fail: &[],
            first_output: &first_output,
            outputs: &outputs,
            dict_link: &[],
        };
        // Breadth first: a state's failure link is known before its children's.
        for s in 0..states {
            for e in first_edge[s] as usize..first_edge[s + 1] as usize {
                let (byte, child) = (edge_bytes[e], edge_target[e] as usize);
                if s == 0 {
                    continue; // (children of the root fail to the root)
                }
                let mut f = fail[s] as usize;
                fail[child] = loop {
                    if f == 0 {
                        break root[usize::from(byte)];
                    }
                    if let Some(t) = a.edge(f, byte) {
                        break t;
                    }
                    f = fail[f] as usize;
                };
            }
        }
        for s in 1..states {
            let f = fail[s] as usize;
            dict_link[s] = if a.ends_here(f) {
                f as u32
            } else {
                dict_link[f]
            };
        }
    }
    let packed = pack_bytes(&edge_bytes);
    Ok(Built {
        sections: [
            root,
            first_edge,
            packed,
            edge_target,
            fail,
            first_output,
            outputs,
            dict_link,
        ],
        edge_bytes_len,
    })
}

impl<'a> Automaton<'a> {
    /// The automaton laid out in `words`: slices only (every search makes one); None when
    /// a section lies outside the words.
    #[inline]
    pub fn view(words: &'a [u32], l: &Layout) -> Option<Automaton<'a>> {
        Some(Automaton {
            root: words.get(l.root.clone())?,
            first_edge: words.get(l.first_edge.clone())?,
            edge_bytes: as_bytes(words.get(l.edge_bytes.clone())?).get(..l.edge_bytes_len)?,
            edge_target: words.get(l.edge_target.clone())?,
            fail: words.get(l.fail.clone())?,
            first_output: words.get(l.first_output.clone())?,
            outputs: words.get(l.outputs.clone())?,
            dict_link: words.get(l.dict_link.clone())?,
        })
    }

    /// Whether the sections fit together: every index in range, and every failure and
    /// output link pointing to an earlier (shallower) state, so that no search can loop.
    /// Checked once when an automaton is mapped from a file; a search never reads out of
    /// bounds in any case (slices are checked), this keeps it finite.
    pub fn is_consistent(&self) -> bool {
        let states = self.fail.len();
        let edges = self.edge_target.len();
        self.root.len() == 256
            && states >= 1
            && self.first_edge.len() == states + 1
            && self.first_output.len() == states + 1
            && self.dict_link.len() == states
            && self.edge_bytes.len() == edges
            && self.first_edge[states] as usize == edges
            && self.first_output[states] as usize == self.outputs.len()
            && self.first_edge.windows(2).all(|w| w[0] <= w[1])
            && self.first_output.windows(2).all(|w| w[0] <= w[1])
            && self.root.iter().all(|&t| (t as usize) < states)
            && self
                .edge_target
                .iter()
                .all(|&t| t != 0 && (t as usize) < states)
            && self.fail[0] == 0
            && (1..states).all(|s| (self.fail[s] as usize) < s && (self.dict_link[s] as usize) < s)
    }

    /// The target of a non-root state's edge on `byte`.
    #[inline]
    fn edge(&self, state: usize, byte: u8) -> Option<u32> {
        let run = self.first_edge[state] as usize..self.first_edge[state + 1] as usize;
        let bytes = &self.edge_bytes[run.clone()];
        let at = if bytes.len() <= 16 {
            bytes.iter().position(|&b| b == byte)?
        } else {
            bytes.binary_search(&byte).ok()?
        };
        Some(self.edge_target[run.start + at])
    }

    #[inline]
    fn ends_here(&self, state: usize) -> bool {
        self.first_output[state] < self.first_output[state + 1]
    }

    /// Whether some key is a prefix of `haystack[at..]`.
    pub fn prefix_at(&self, haystack: &[u8], at: usize) -> bool {
        let mut rest = haystack[at..].iter();
        let Some(&first) = rest.next() else {
            return false;
        };
        let mut state = self.root[usize::from(first)] as usize;
        if state == 0 {
            return false;
        }
        loop {
            if self.ends_here(state) {
                return true;
            }
            match rest.next().and_then(|&b| self.edge(state, b)) {
                Some(next) => state = next as usize,
                None => return false,
            }
        }
    }

    /// Every occurrence of every key in `haystack`, overlapping, by end position:
    /// `found(end, pattern)` for each, until it returns false.
    pub fn overlapping(&self, haystack: &[u8], mut found: impl FnMut(usize, u32) -> bool) {
        let mut state = 0usize;
        for (i, &byte) in haystack.iter().enumerate() {
            state = loop {
                if state == 0 {
                    break self.root[usize::from(byte)] as usize;
                }
                if let Some(next) = self.edge(state, byte) {
                    break next as usize;
                }
                state = self.fail[state] as usize;
            };
            let mut s = state;
            while s != 0 {
                let run = self.first_output[s] as usize..self.first_output[s + 1] as usize;
                for &pattern in &self.outputs[run] {
                    if !found(i + 1, pattern) {
                        return;
                    }
                }
                s = self.dict_link[s] as usize;
            }
        }
    }

    /// Whether every pattern a state reports is below `patterns`.
    pub fn outputs_below(&self, patterns: usize) -> bool {
        self.outputs.iter().all(|&p| (p as usize) < patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(built: &Built) -> (Vec<u32>, Layout) {
        let mut words = Vec::new();
        let mut ranges = Vec::new();
        for s in &built.sections {
            ranges.push(words.len()..words.len() + s.len());
            words.extend_from_slice(s);
        }
        let layout = Layout {
            root: ranges[0].clone(),
            first_edge: ranges[1].clone(),
            edge_bytes: ranges[2].clone(),
            edge_bytes_len: built.edge_bytes_len,
            edge_target: ranges[3].clone(),
            fail: ranges[4].clone(),
            first_output: ranges[5].clone(),
            outputs: ranges[6].clone(),
            dict_link: ranges[7].clone(),
        };
        (words, layout)
    }

    fn all(keys: &[&str], haystack: &str) -> Vec<(usize, usize)> {
        let k: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let (words, layout) = assemble(&build(&k).unwrap());
        let a = Automaton::view(&words, &layout).unwrap();
        assert!(a.is_consistent());
        let mut out = Vec::new();
        a.overlapping(haystack.as_bytes(), |end, p| {
            out.push((end - keys[p as usize].len(), p as usize));
            true
        });
        out.sort_unstable();
        out
    }

    fn naive(keys: &[&str], haystack: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (p, k) in keys.iter().enumerate() {
            if k.is_empty() {
                continue;
            }
            for start in 0..haystack.len() {
                if haystack.as_bytes()[start..].starts_with(k.as_bytes()) {
                    out.push((start, p));
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_every_overlapping_occurrence() {
        let keys = ["he", "she", "his", "hers", "e", "", "she"];
        for hay in ["ushers", "hishe", "", "xyz", "sheshe hers"] {
            assert_eq!(all(&keys, hay), naive(&keys, hay), "{hay:?}");
        }
    }

    #[test]
    fn property_same_as_naive_search() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as usize
        };
        for _ in 0..300 {
            let keys: Vec<String> = (0..1 + next(8))
                .map(|_| {
                    (0..next(5))
                        .map(|_| ["a", "b", "c", "ab"][next(4)])
                        .collect()
                })
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let k: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            let (words, layout) = assemble(&build(&k).unwrap());
            let a = Automaton::view(&words, &layout).unwrap();
            for _ in 0..20 {
                let hay: String = (0..next(20)).map(|_| ["a", "b", "c"][next(3)]).collect();
                assert_eq!(all(&keys, &hay), naive(&keys, &hay), "{keys:?} {hay:?}");
                for at in 0..hay.len() {
                    let want = keys
                        .iter()
                        .any(|k| !k.is_empty() && hay[at..].starts_with(k));
                    assert_eq!(
                        a.prefix_at(hay.as_bytes(), at),
                        want,
                        "{keys:?} {hay:?} {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_damaged_layout_is_refused() {
        let (mut words, layout) = assemble(&build(&[b"abc".as_slice()]).unwrap());
        let fail = layout.fail.start;
        words[fail + 2] = 2; // a state failing to itself
        assert!(!Automaton::view(&words, &layout).unwrap().is_consistent());
        assert!(Automaton::view(&words[..10], &layout).is_none());
    }
}

//! Micro-benchmark of the test-data matcher (src/guards/test_data/matcher.rs, included directly: it is pure
//! Rust). Reports, for dictionaries of 5,000 and 100,000 patterns plus the built-in kinds:
//! build time, the compiled image's size (what the server's backends share in one mapped
//! file), the time a backend takes to open (check) a mapped image, and search speed in
//! MB/s over realistic row values (names, e-mails, addresses, product names, notes),
//! ASCII and accented. Run with `cargo bench --bench matcher`.

#[path = "../src/guards/test_data/automaton.rs"]
#[allow(dead_code)]
mod automaton;
#[path = "../src/guards/test_data/fold.rs"]
#[allow(dead_code)]
mod fold;
#[path = "../src/guards/test_data/image.rs"]
#[allow(dead_code, unused_imports)]
mod image;
#[path = "../src/guards/test_data/matcher.rs"]
#[allow(dead_code)]
mod matcher;
#[path = "../src/guards/test_data/starts.rs"]
mod starts;

/// The matcher's interrupt check (PostgreSQL's CHECK_FOR_INTERRUPTS in the extension).
fn check_interrupts() {}

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use matcher::{Kind, Matcher, Pattern};

/// Counts live heap bytes and their peak, to measure what a build needs.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A small deterministic generator (xorshift), so every run sees the same data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Jonas", "Amira", "Lukas", "Sofía", "Chen", "Olu", "Maëlle", "Ivan",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Schmidt", "Haddad", "Novak", "García", "Wei", "Adeyemi", "Dubois",
    "Petrov",
];
const WORDS: &[&str] = &[
    "organic",
    "still",
    "water",
    "sparkling",
    "orange",
    "juice",
    "oat",
    "milk",
    "whole",
    "wheat",
    "bread",
    "smoked",
    "salmon",
    "cheddar",
    "mature",
    "free",
    "range",
    "eggs",
    "dark",
    "chocolate",
    "crème",
    "fraîche",
    "jalapeño",
    "rösti",
    "street",
    "road",
    "lane",
    "avenue",
    "north",
    "south",
];

fn row_values(rng: &mut Rng, accented: bool) -> Vec<String> {
    let first = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let product: Vec<&str> = (0..4).map(|_| rng.pick(WORDS)).collect();
    let notes: Vec<&str> = (0..12).map(|_| rng.pick(WORDS)).collect();
    let mut values = vec![
        format!("{first} {last}"),
        format!(
            "{}.{}@mail-{}.com",
            first.to_lowercase(),
            last.to_lowercase(),
            rng.next() % 1000
        ),
        format!("+44 20 {:04} {:04}", rng.next() % 10000, rng.next() % 10000),
        format!(
            "{} {} {}",
            rng.next() % 200,
            rng.pick(WORDS),
            rng.pick(&["Road", "Street", "Lane"])
        ),
        product.join(" "),
        format!("SKU-{:08}", rng.next() % 100_000_000),
        notes.join(" "),
        format!("{} {}", rng.pick(WORDS), rng.pick(WORDS)),
        format!(
            "ORD-{:06}-{:04}",
            rng.next() % 1_000_000,
            rng.next() % 10000
        ),
        "delivered".to_string(),
    ];
    if !accented {
        for v in &mut values {
            *v = v
                .chars()
                .map(|c| if c.is_ascii() { c } else { 'e' })
                .collect();
        }
    }
    values
}

fn dictionary(n: usize) -> Vec<Pattern> {
    let mut rng = Rng(7);
    let syllables = [
        "ka", "lo", "mi", "ne", "su", "ra", "to", "vi", "ze", "qu", "ba", "do",
    ];
    let mut patterns: Vec<Pattern> = (0..n)
        .map(|i| {
            let words: Vec<String> = (0..2 + i % 2)
                .map(|_| (0..3).map(|_| rng.pick(&syllables)).collect::<String>())
                .collect();
            Pattern {
                dictionary: "fixtures".into(),
                pattern: words.join(" "),
                kind: Kind::Word,
            }
        })
        .collect();
    for p in [
        "John Doe",
        "Jane Doe",
        "Test User",
        "example.com",
        ".test",
        "4242 4242 4242 4242",
        "555-0123",
        "lorem ipsum",
    ] {
        patterns.push(Pattern {
            dictionary: "builtin".into(),
            pattern: p.into(),
            kind: Kind::Word,
        });
    }
    patterns
}

fn main() {
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>14} {:>16}",
        "patterns", "build ms", "peak MB", "image MB", "open ms", "ASCII MB/s", "accented MB/s"
    );
    for n in [100, 5_000, 100_000, 200_000] {
        let patterns = dictionary(n);
        let count = patterns.len();
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let start = Instant::now();
        let built = Matcher::new(patterns).expect("the dictionaries compile");
        let build = start.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        // what a backend does with the shared file: check the image in place
        let words: Vec<u32> = built.image().words().to_vec();
        let image = words.len() * 4;
        drop(built);
        let start = Instant::now();
        let m = Matcher::open(Box::new(words)).expect("the image opens");
        let open = start.elapsed();
        let mut speeds = Vec::new();
        for accented in [false, true] {
            let mut rng = Rng(42);
            let rows: Vec<Vec<String>> = (0..50_000)
                .map(|_| row_values(&mut rng, accented))
                .collect();
            let bytes: usize = rows.iter().flatten().map(String::len).sum();
            let mut buffer = String::new();
            let mut hits = 0usize;
            let start = Instant::now();
            for _ in 0..5 {
                for row in &rows {
                    for value in row {
                        hits += m.first(value, &mut buffer).is_some() as usize;
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            speeds.push(5.0 * bytes as f64 / secs / 1e6);
            assert_eq!(hits, 0, "the generated rows carry no test data");
        }
        println!(
            "{:>8} {:>10.1} {:>10.1} {:>10.1} {:>10.2} {:>14.0} {:>16.0}",
            count,
            build.as_secs_f64() * 1000.0,
            peak as f64 / 1e6,
            image as f64 / 1e6,
            open.as_secs_f64() * 1000.0,
            speeds[0],
            speeds[1]
        );
    }
}

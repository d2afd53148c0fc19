//! The test-data guard's per-backend caches: the compiled matcher and the column plans.
//!
//! - The matcher of the enabled dictionaries is mapped from the file of their current
//!   generation (`shared.rs`), or built here when there is none, once per backend; it is
//!   forgotten after a relcache invalidation of `prodguard.dictionary` (sent at commit by
//!   a statement trigger on both dictionary tables, which also moves the generation on,
//!   so a committed change is in force in every session of the database from its next
//!   statement; dictionaries are per database, as sinval messages are).
//! - A table's column plan (which columns to read, and how) is made once per backend and
//!   forgotten when the table's relcache entry is invalidated (ALTER TABLE).
//!
//! A backend is one thread, so thread-local `RefCell`s are enough. The callback never
//! touches the catalogs: it only forgets, and an `EPOCH` counter tells a load that raced
//! with it to not store what it read. Bounded by the dictionaries of one database and the
//! tables this backend wrote.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::extension;
use crate::core::pg::{self, OidMap};

use super::matcher::{Kind, Matcher, Pattern};
use super::shared;
use super::values::{reader_for, Column};

#[derive(Default)]
struct Cache {
    matcher: Option<Rc<Matcher>>,
    /// The transaction the matcher was read in, when it was read through that
    /// transaction's snapshot (REPEATABLE READ, SERIALIZABLE): it serves that transaction
    /// only, since a change committed meanwhile sends no second invalidation.
    matcher_transaction: Option<u32>,
    dictionary_table: Option<pg_sys::Oid>,
    columns: OidMap<Rc<Vec<Column>>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    static EPOCH: Cell<u64> = const { Cell::new(0) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

fn register_callback() {
    pg::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => {
            if relid == pg_sys::InvalidOid {
                *c = Cache::default();
            } else if c.dictionary_table.is_none_or(|t| t == relid) {
                c.matcher = None;
                c.dictionary_table = None;
            } else {
                c.columns.remove(&relid);
            }
            EPOCH.set(EPOCH.get() + 1);
        }
        Err(_) => EPOCH.set(EPOCH.get() + 1),
    });
}

/// The matcher of the enabled dictionaries of this database: mapped from the shared file
/// of their generation when there is one (`shared.rs`), else built here (and written for
/// the others when the generation is committed).
pub fn matcher() -> Rc<Matcher> {
    register_callback();
    let transaction = snapshot_transaction();
    let cached = CACHE.with(|c| {
        let c = c.borrow();
        c.matcher
            .clone()
            .filter(|_| c.matcher_transaction.is_none_or(|t| Some(t) == transaction))
    });
    if let Some(m) = cached {
        return m;
    }
    let epoch = EPOCH.get();
    let table = extension::own_table(c"dictionary");
    let loaded = match table.map(|t| extension::as_owner_of(t, || load(t))) {
        None => Ok(Matcher::new(Vec::new())), // not installed here: no dictionaries
        Some(Some(Ok(m))) => Ok(m),
        Some(failed) => Err(match failed {
            Some(Err(e)) => e.to_string(),
            _ => "The owner of prodguard.dictionary could not be found.".into(),
        }),
    };
    let matcher = match loaded {
        Ok(m) => Rc::new(m.unwrap_or_else(|e| too_large(&e))),
        Err(why) => {
            crate::core::error::cannot_decide("its test-data dictionaries", why);
            // (not kept)
            return Rc::new(Matcher::new(Vec::new()).unwrap_or_else(|e| too_large(&e)));
        }
    };
    if EPOCH.get() == epoch {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.matcher = Some(matcher.clone());
            c.matcher_transaction = transaction;
            c.dictionary_table = table;
        });
    }
    matcher
}

/// The transaction whose snapshot a load reads through, when it is the transaction's own
/// (REPEATABLE READ or SERIALIZABLE); None under READ COMMITTED, where every load sees
/// what was committed when it ran.
fn snapshot_transaction() -> Option<u32> {
    // SAFETY: reads of backend globals; MyProc is set in every backend that runs SQL.
    unsafe {
        (pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 && !pg_sys::MyProc.is_null())
            .then(|| (*pg_sys::MyProc).lxid)
    }
}

/// The current generation's matcher: its shared file, or built from the dictionary tables.
fn load(dictionary: pg_sys::Oid) -> Result<Result<Matcher, String>, pgrx::spi::SpiError> {
    // SAFETY: reads the backend's database, set at connection.
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let key = |generation| shared::Key {
        database,
        installation: dictionary.to_u32(),
        generation,
    };
    // (0.1.0's objects, before ALTER EXTENSION UPDATE, have no generation: no sharing)
    let generations = extension::own_table(c"dictionary_generation").is_some();
    let current = Spi::connect(|client| {
        if !generations {
            return Ok(None);
        }
        let row = client.select(
            "SELECT generation, xmin::text FROM prodguard.dictionary_generation",
            Some(1),
            &[],
        )?;
        Ok::<_, pgrx::spi::SpiError>(row.into_iter().next().and_then(|r| shareable(&r)))
    })?;
    if let Some(m) = current.and_then(|g| shared::load(key(g))) {
        return Ok(Ok(m));
    }
    // one build per generation: wait for a backend that is building, then take its file
    let _building = current.and_then(|_| shared::build_lock(database));
    if let Some(m) = current.and_then(|g| shared::load(key(g))) {
        return Ok(Ok(m));
    }
    let (patterns, generation) = load_patterns(generations)?;
    let built = match Matcher::new(patterns) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    // (written for the others, then mapped like theirs: the built one's memory is freed)
    if let Some(g) = generation.filter(|_| !built.is_empty()) {
        if shared::store(key(g), &built) {
            if let Some(m) = shared::load(key(g)) {
                return Ok(Ok(m));
            }
        }
    }
    Ok(Ok(built))
}

/// A generation that may be written to a shared file: one another transaction committed
/// (visible here, and not written by this transaction, which may yet roll back).
fn shareable(row: &pgrx::spi::SpiHeapTupleData) -> Option<i64> {
    let generation = row.get::<i64>(1).ok().flatten()?;
    let xmin: u32 = row.get::<String>(2).ok().flatten()?.parse().ok()?;
    // SAFETY: asks whether an xid is this transaction's (or a subtransaction's).
    let own = unsafe { pg_sys::TransactionIdIsCurrentTransactionId(xmin.into()) };
    (!own).then_some(generation)
}

/// The enabled patterns and, read in the same snapshot, their generation if shareable.
fn load_patterns(generations: bool) -> Result<(Vec<Pattern>, Option<i64>), pgrx::spi::SpiError> {
    let query = if generations {
        "SELECT g.generation, g.xmin::text, e.dictionary, e.pattern, e.match
           FROM prodguard.dictionary_entry e
           JOIN prodguard.dictionary d ON d.name = e.dictionary
           LEFT JOIN prodguard.dictionary_generation g ON true
          WHERE d.enabled"
    } else {
        "SELECT NULL::bigint, NULL::text, e.dictionary, e.pattern, e.match
           FROM prodguard.dictionary_entry e
           JOIN prodguard.dictionary d ON d.name = e.dictionary
          WHERE d.enabled"
    };
    Spi::connect(|client| {
        let rows = client.select(query, None, &[])?;
        let mut generation = None;
        let mut patterns = Vec::with_capacity(rows.len());
        for (i, row) in rows.enumerate() {
            if i == 0 {
                generation = shareable(&row);
            }
            let (Some(dictionary), Some(pattern), Some(kind)) = (
                row.get::<String>(3).ok().flatten(),
                row.get::<String>(4).ok().flatten(),
                row.get::<String>(5)
                    .ok()
                    .flatten()
                    .and_then(|k| Kind::parse(&k)),
            ) else {
                continue;
            };
            patterns.push(Pattern {
                dictionary,
                pattern,
                kind,
            });
        }
        Ok((patterns, generation))
    })
}

/// The columns of a relation that the guard reads.
pub fn columns(relid: pg_sys::Oid, tupdesc: pg_sys::TupleDesc) -> Rc<Vec<Column>> {
    register_callback();
    if let Some(cols) = CACHE.with(|c| c.borrow().columns.get(&relid).cloned()) {
        return cols;
    }
    let epoch = EPOCH.get();
    let mut cols = Vec::new();
    // SAFETY: a valid tuple descriptor; lsyscache lookups of its column types.
    unsafe {
        for i in 0..(*tupdesc).natts as usize {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            if att.attisdropped {
                continue;
            }
            let base = pg_sys::getBaseType(att.atttypid);
            let element = pg_sys::get_element_type(base);
            let (reader, array) = if element != pg_sys::InvalidOid {
                let elem_base = pg_sys::getBaseType(element);
                let Some(reader) = reader_for(elem_base) else {
                    continue;
                };
                let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
                pg_sys::get_typlenbyvalalign(element, &mut len, &mut byval, &mut align);
                (reader, Some((len, byval, align, element)))
            } else {
                let Some(reader) = reader_for(base) else {
                    continue;
                };
                (reader, None)
            };
            cols.push(Column {
                attnum: i as i32 + 1,
                name: CStr::from_ptr(att.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                reader,
                array,
                typlen: att.attlen,
                typbyval: att.attbyval,
            });
        }
    }
    let cols = Rc::new(cols);
    if EPOCH.get() == epoch {
        CACHE.with(|c| c.borrow_mut().columns.insert(relid, cols.clone()));
    }
    cols
}

/// The enabled dictionaries cannot be compiled: a clean ERROR, so that a write is refused
/// rather than let through unchecked.
fn too_large(why: &str) -> ! {
    crate::core::error::raise(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        "could not build the test-data matcher".to_string(),
        format!("The enabled dictionaries are too large: {why}."),
        "Disable a large dictionary (prodguard.dictionary_enable(name, false)) or remove patterns from it (prodguard.dictionary_remove()).",
    )
}

//! The columns of an audit entry that repeat from row to row: who (`db_user`,
//! `session_user`), from where (`application_name`, `client_addr`), the table's schema and
//! name, the action and the environment. Each is made into a datum once and kept in
//! `TopMemoryContext`, so an audited row costs no lookups, allocations or copies for them
//! (issue 18: about 2,000 instructions per row).
//!
//! Kept until what they describe may have changed: table names until the table's relcache
//! entry is invalidated (a rename), role names for the session (as PostgreSQL's own
//! `session_user` does; at most `ROLES_KEPT`), the application name until the setting
//! changes. A datum handed out stays valid until the next entry starts
//! (`start_entry`): invalidations only queue old datums to be freed then, because a lookup
//! in the middle of an entry may process invalidations.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::pg::{self, OidMap};

/// How many role names are kept (a session switches among a few at most).
const ROLES_KEPT: usize = 8;
/// How many tables' names are kept.
const TABLES_KEPT: usize = 1000;
/// How many distinct actions and environment names are kept (the commands pg_prodguard
/// guards, and three environments).
const WORDS_KEPT: usize = 64;

type Datum = pg_sys::Datum;

thread_local! {
    static TABLES: RefCell<OidMap<(Option<Datum>, Option<Datum>)>> = RefCell::new(OidMap::default());
    static ROLES: RefCell<Vec<(pg_sys::Oid, Datum)>> = const { RefCell::new(Vec::new()) };
    static WORDS: RefCell<Vec<(String, Datum)>> = const { RefCell::new(Vec::new()) };
    /// The application name last seen, and its datum.
    static APPLICATION: RefCell<Option<(Vec<u8>, Datum)>> = const { RefCell::new(None) };
    /// This session's client address (NULL for a Unix socket), computed once.
    static CLIENT: Cell<Option<Option<Datum>>> = const { Cell::new(None) };
    /// Datums no longer kept, freed when the next entry starts.
    static GARBAGE: RefCell<Vec<Datum>> = const { RefCell::new(Vec::new()) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Relcache invalidation callback: forget a table's names (freed later), look nothing up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    TABLES.with(|t| {
        let Ok(mut t) = t.try_borrow_mut() else {
            return;
        };
        let gone: Vec<_> = if relid == pg_sys::InvalidOid {
            t.drain().map(|(_, v)| v).collect()
        } else {
            t.remove(&relid).into_iter().collect()
        };
        GARBAGE.with(|g| {
            if let Ok(mut g) = g.try_borrow_mut() {
                g.extend(gone.into_iter().flat_map(|(s, n)| s.into_iter().chain(n)));
            }
        });
    });
}

/// Frees what was let go of since the last entry. Called at the start of each entry, when
/// no datum of an earlier one is in use.
pub fn start_entry() {
    pg::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
    let garbage = GARBAGE.with(|g| std::mem::take(&mut *g.borrow_mut()));
    for datum in garbage {
        // SAFETY: every kept datum was palloc'd in TopMemoryContext by `keep` and is
        // handed out only during the entry that looked it up.
        unsafe { pg_sys::pfree(datum.cast_mut_ptr()) };
    }
}

fn let_go(datum: Datum) {
    GARBAGE.with(|g| g.borrow_mut().push(datum));
}

/// A text datum of `s`, in TopMemoryContext.
fn keep(s: &str) -> Datum {
    // SAFETY: TopMemoryContext lives as long as the backend; the previous context is
    // restored before anything can fail.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let datum = s.into_datum();
        pg_sys::MemoryContextSwitchTo(old);
        datum.expect("a text datum")
    }
}

/// The (schema, name) of a table as text datums, looked up once per relcache generation.
pub fn table_names(relid: pg_sys::Oid) -> (Option<Datum>, Option<Datum>) {
    if let Some(names) = TABLES.with_borrow(|t| t.get(&relid).copied()) {
        return names;
    }
    let (schema, name) = pg::relation_names(relid);
    let names = (schema.as_deref().map(keep), name.as_deref().map(keep));
    TABLES.with_borrow_mut(|t| {
        if t.len() >= TABLES_KEPT {
            for (_, (s, n)) in t.drain() {
                s.into_iter().chain(n).for_each(let_go);
            }
        }
        t.insert(relid, names);
    });
    names
}

/// A role's name as a text datum.
pub fn role(oid: pg_sys::Oid) -> Datum {
    if let Some(datum) = ROLES.with_borrow(|r| r.iter().find(|(o, _)| *o == oid).map(|(_, d)| *d)) {
        return datum;
    }
    let datum = keep(&pg::role_name(oid));
    ROLES.with_borrow_mut(|r| {
        if r.len() >= ROLES_KEPT {
            let_go(r.remove(0).1);
        }
        r.push((oid, datum));
    });
    datum
}

/// A short word (an action, an environment's name) as a text datum.
pub fn word(s: &str) -> Datum {
    if let Some(datum) = WORDS.with_borrow(|w| w.iter().find(|(k, _)| k == s).map(|(_, d)| *d)) {
        return datum;
    }
    let datum = keep(s);
    WORDS.with_borrow_mut(|w| {
        if w.len() >= WORDS_KEPT {
            let_go(w.remove(0).1);
        }
        w.push((s.to_string(), datum));
    });
    datum
}

/// The session's application_name as a text datum ('' when unset), remade when it changes.
pub fn application_name() -> Datum {
    // SAFETY: application_name is a GUC string owned by guc.c, NULL or NUL-terminated.
    let now = unsafe {
        let p = pg_sys::application_name;
        if p.is_null() {
            &b""[..]
        } else {
            CStr::from_ptr(p).to_bytes()
        }
    };
    if let Some(datum) = APPLICATION.with_borrow(|a| {
        a.as_ref()
            .filter(|(bytes, _)| bytes.as_slice() == now)
            .map(|(_, d)| *d)
    }) {
        return datum;
    }
    let datum = keep(&String::from_utf8_lossy(now));
    if let Some((_, old)) = APPLICATION.replace(Some((now.to_vec(), datum))) {
        let_go(old);
    }
    datum
}

/// This session's client address as an inet datum (NULL for a Unix socket), made once.
pub fn client_addr() -> Option<Datum> {
    if let Some(addr) = CLIENT.get() {
        return addr;
    }
    // SAFETY: inet_client_addr takes no arguments; it runs in TopMemoryContext so that its
    // result lives as long as the session.
    let addr = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let addr = pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[]);
        pg_sys::MemoryContextSwitchTo(old);
        addr
    };
    CLIENT.set(Some(addr));
    addr
}

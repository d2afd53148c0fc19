//! Per-backend passes: flags that let pg_prodguard's own work through its own guards, for
//! exactly as long as that work runs.
//!
//! - `OWN_DDL`: pg_prodguard creates or drops a protected table's triggers (`run_own_ddl`);
//!   the command guard lets that DDL through.
//! - `RESTORING`: a restore function is writing rows; the audit trigger records them as
//!   RESTORE.
//! - `PURGING`: `purge_audit()` deletes old entries; the append-only trigger lets that
//!   DELETE through.
//! - `OWN_WRITE`: pg_prodguard's functions write its own tables; the row guard lets those
//!   writes through (nobody else writes them in production).
//!
//! Every pass is set through a `FlagGuard`, which puts the previous value back when it is
//! dropped, also when an error unwinds through it, so no pass outlives its work even when
//! the caller catches the error (a PL/pgSQL EXCEPTION block).

use std::cell::Cell;
use std::thread::LocalKey;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::raise_internal;
use crate::core::extension;

thread_local! {
    /// Set while pg_prodguard itself creates or drops a protected table's triggers.
    pub static OWN_DDL: Cell<bool> = const { Cell::new(false) };
    /// Set while a restore function writes rows.
    pub static RESTORING: Cell<bool> = const { Cell::new(false) };
    /// The role that called the restore function being run (its RESTORE entries name it,
    /// not the table owner the rows are written as).
    pub static RESTORER: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::InvalidOid) };
    /// Set while purge_audit() deletes: the only DELETE the append-only trigger lets through.
    pub static PURGING: Cell<bool> = const { Cell::new(false) };
    /// Set while pg_prodguard's own functions write its own tables (protection rules,
    /// dictionaries, changes, backups, denial records): the only writes the row guard lets
    /// reach them in production.
    pub static OWN_WRITE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the OWN_WRITE pass.
pub fn own_write<R>(f: impl FnOnce() -> R) -> R {
    let _pass = FlagGuard::set(&OWN_WRITE, true);
    f()
}

/// Runs pg_prodguard's own DDL on a table (installing or removing the triggers that
/// `protect()` manages) as the table's owner, past the command guard; raises `could not
/// <what>` if it fails. The pass ends with the DDL, also when it fails and the caller
/// catches the error.
pub fn run_own_ddl(relid: pg_sys::Oid, sql: &str, what: &str) {
    crate::core::error::require_writable(what);
    let done = extension::as_owner_of(relid, || {
        let _own = FlagGuard::set(&OWN_DDL, true);
        Spi::run(sql)
    });
    if let Some(Err(e)) = done {
        raise_internal(what, e);
    }
}

/// Sets a per-backend flag for as long as the returned value lives, and puts the previous
/// value back when it is dropped: also when an error unwinds through (pgrx turns
/// PostgreSQL errors into Rust unwinding), so that no flag outlives the operation it was
/// set for, even when the caller catches the error (a PL/pgSQL EXCEPTION block).
pub struct FlagGuard {
    flag: &'static LocalKey<Cell<bool>>,
    previous: bool,
}

impl FlagGuard {
    pub fn set(flag: &'static LocalKey<Cell<bool>>, value: bool) -> FlagGuard {
        FlagGuard {
            flag,
            previous: flag.replace(value),
        }
    }
}

impl Drop for FlagGuard {
    fn drop(&mut self) {
        self.flag.set(self.previous);
    }
}

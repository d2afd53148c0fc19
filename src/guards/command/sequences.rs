//! `setval()` on the extension's own sequences (issue 15). `setval` is a function, not a
//! utility statement, and a built-in one: PostgreSQL calls it without any hook. What can be
//! seen is the executor preparing a call of it (the object-access hook's
//! OAT_FUNCTION_EXECUTE, once per expression and execution, for every path: plain
//! statements, PL/pgSQL, SQL functions), and the plan's constant relation arguments (in
//! `relationOids`). So:
//! - when a call of setval() is prepared in a database with pg_prodguard, the positions of
//!   its own sequences are read (once per transaction);
//! - when the statement names an own sequence as a constant (`setval('prodguard.
//!   audit_log_id_seq', 1)`), it is judged before it runs like DDL on the extension's
//!   objects: refused in production without an override, recorded with one;
//! - whatever names the sequence (`pg_get_serial_sequence(...)`, a column, a variable), an
//!   own sequence never goes backwards: at the end of each statement and before commit, a
//!   sequence found behind its position is put back, and the change, when it was not judged
//!   before it ran, is judged then. Going back would hand out ids the audit log already
//!   holds; going forward cannot be told apart from other sessions' inserts and only
//!   leaves a gap in the ids (README, Known limits).
//!
//! A restore into a fresh database (empty audit log) moves the sequences forward with the
//! dump's `SELECT pg_catalog.setval(...)`, and runs as before.

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;
use pgrx::PgXactCallbackEvent;

use crate::core::error::notice;
use crate::core::extension::{self, SCHEMA};
use crate::core::passes;
use crate::core::pg;
use crate::core::spi;
use crate::guards::policy;

use super::{local, Rule};

thread_local! {
    /// The own sequences' high-water marks (sequence, last_value, is_called): their
    /// positions before the first call of setval() prepared in this transaction, raised at
    /// each check; cleared at the transaction's end.
    static BEFORE: RefCell<Option<Vec<(pg_sys::Oid, i64, bool)>>> = const { RefCell::new(None) };
    /// Whether a call of setval() was prepared since the last executor start.
    static PREPARED: Cell<bool> = const { Cell::new(false) };
    /// Whether this transaction's setval() of an own sequence was judged before it ran.
    static JUDGED: Cell<bool> = const { Cell::new(false) };
    /// Set while this module reads or puts back the sequences (its own queries pass here
    /// too, and must not be checked again).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Whether `fn_oid` is one of the two `setval`s.
pub fn is_setval(fn_oid: pg_sys::Oid) -> bool {
    let oid = u32::from(fn_oid);
    oid == pg_sys::F_SETVAL_REGCLASS_INT8 || oid == pg_sys::F_SETVAL_REGCLASS_INT8_BOOL
}

/// The executor prepares a call of setval() (OAT_FUNCTION_EXECUTE).
pub fn call_prepared() {
    if BUSY.get() || passes::OWN_WRITE.get() || extension::in_own_script() {
        return;
    }
    let Some(ours) = extension::own_namespace() else {
        return;
    };
    if BEFORE.with_borrow(|b| b.is_none()) {
        BEFORE.set(Some(positions(ours)));
        JUDGED.set(false);
        // (an ERROR in the pre-commit check aborts the transaction, as a deferred trigger's)
        pgrx::register_xact_callback(PgXactCallbackEvent::PreCommit, compare);
        pgrx::register_xact_callback(PgXactCallbackEvent::Abort, || {
            BEFORE.set(None);
            PREPARED.set(false);
        });
        pgrx::register_xact_callback(PgXactCallbackEvent::Commit, || BEFORE.set(None));
    }
    // (set after the queries above, whose own executor starts must not take it)
    PREPARED.set(true);
}

/// Before an executor start: whatever prepared setval() before (a PL/pgSQL simple
/// expression, which runs without an executor start) is not this statement's.
pub fn statement_starting() {
    PREPARED.set(false);
}

/// After an executor start: a statement that calls setval() on an own sequence named as a
/// constant is judged before it runs.
///
/// # Safety
/// `pstmt` must be NULL or the valid PlannedStmt of the executor just started.
pub unsafe fn statement_started(pstmt: *mut pg_sys::PlannedStmt) {
    if BUSY.get() || !PREPARED.replace(false) || pstmt.is_null() {
        return;
    }
    let Some(ours) = extension::own_namespace() else {
        return;
    };
    // SAFETY: guaranteed by the caller; relationOids is an OID List.
    let relations = unsafe { PgList::<pg_sys::Oid>::from_pg((*pstmt).relationOids) };
    let named: Vec<pg_sys::Oid> = relations
        .iter_oid()
        // SAFETY: an lsyscache lookup; '\\0' when the relation is gone.
        .filter(|r| {
            is_own(*r, ours)
                && unsafe { pg_sys::get_rel_relkind(*r) } as u8 == pg_sys::RELKIND_SEQUENCE
        })
        .collect();
    if named.is_empty() || super::own_objects::restores_fresh_database() {
        return;
    }
    for seq in named {
        judge(seq);
    }
    JUDGED.set(true);
    // the judgement's own audit entry drew an id: the mark moves past it
    raise_mark(&positions(ours));
}

/// Raises the high-water mark of each own sequence to `now` where `now` is further.
fn raise_mark(now: &[(pg_sys::Oid, i64, bool)]) {
    BEFORE.with_borrow_mut(|before| {
        for (seq, last, called) in before.iter_mut().flatten() {
            if let Some((_, now_last, now_called)) = now.iter().find(|(s, _, _)| s == seq) {
                if next_value(*now_last, *now_called) > next_value(*last, *called) {
                    (*last, *called) = (*now_last, *now_called);
                }
            }
        }
    });
}

/// After a statement, and before commit: an own sequence behind its position is put back.
pub fn compare() {
    if BUSY.get() {
        return;
    }
    let Some(before) = BEFORE.with_borrow(|b| b.clone()) else {
        return;
    };
    let Some(ours) = extension::own_namespace() else {
        return;
    };
    // Queries need an active snapshot, which commit and a portal's clean-up (where a
    // SELECT's ExecutorFinish runs) no longer have: pushed for the check, and popped after
    // it (an ERROR aborts the transaction, which pops it too).
    // SAFETY: reads of backend state; a snapshot pushed and popped in pairs.
    let pushed = unsafe {
        let missing = !pg_sys::ActiveSnapshotSet();
        if missing {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        missing
    };
    check_positions(ours, &before);
    if pushed {
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
}

fn check_positions(ours: pg_sys::Oid, before: &[(pg_sys::Oid, i64, bool)]) {
    let after = positions(ours);
    for (seq, last, called) in before {
        let Some((_, now_last, now_called)) = after.iter().find(|(s, _, _)| s == seq) else {
            continue;
        };
        if next_value(*now_last, *now_called) >= next_value(*last, *called) {
            continue;
        }
        put_back(*seq, *last, *called);
        notice(format!(
            "setval() cannot move sequence \"{SCHEMA}.{}\" back: pg_prodguard put it back at {last}",
            sequence_name(*seq)
        ));
        if !JUDGED.get() {
            judge(*seq);
        }
    }
    // ids drawn since (this transaction's audited writes, other sessions') raise the mark
    // that the next check compares with
    raise_mark(&after);
}

fn next_value(last: i64, called: bool) -> i64 {
    if called {
        last.saturating_add(1)
    } else {
        last
    }
}

/// Judged like DDL on the extension's own objects: refused in production without an
/// override (an ERROR), recorded with one.
fn judge(seq: pg_sys::Oid) {
    let name = sequence_name(seq);
    if let Some(j) = local(
        Rule::Extension,
        "setval()",
        format!("sequence \"{SCHEMA}.{name}\""),
        Some(seq),
    ) {
        policy::enforce(
            j.env,
            &j.finding,
            j.scope,
            pg::current_statement().as_deref(),
        );
    }
}

fn sequence_name(seq: pg_sys::Oid) -> String {
    // SAFETY: an lsyscache lookup; NULL when the sequence is gone.
    unsafe { pg::cstr_or(pg_sys::get_rel_name(seq), "?") }
}

fn is_own(seq: pg_sys::Oid, ours: pg_sys::Oid) -> bool {
    // SAFETY: an lsyscache lookup; InvalidOid when nothing matches.
    seq != pg_sys::InvalidOid && unsafe { pg_sys::get_rel_namespace(seq) } == ours
}

/// Each own sequence with its last_value and is_called, read as its owner.
fn positions(ours: pg_sys::Oid) -> Vec<(pg_sys::Oid, i64, bool)> {
    let _busy = passes::FlagGuard::set(&BUSY, true);
    let sequences: Vec<pg_sys::Oid> = extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT oid FROM pg_catalog.pg_class WHERE relnamespace = $1 AND relkind = 'S' ORDER BY oid",
                    None,
                    &[ours.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    });
    sequences
        .into_iter()
        .filter_map(|seq| {
            let sql = format!(
                "SELECT last_value, is_called FROM {}",
                pg::qualified_identifier(seq)
            );
            let read = extension::as_owner_of(seq, || spi::two::<i64, bool>(&sql, &[]))?;
            match read {
                Ok((Some(last), Some(called))) => Some((seq, last, called)),
                _ => None,
            }
        })
        .collect()
}

fn put_back(seq: pg_sys::Oid, last: i64, called: bool) {
    let _busy = passes::FlagGuard::set(&BUSY, true);
    let _ = extension::as_owner_of(seq, || {
        spi::one::<i64>(
            "SELECT pg_catalog.setval($1, $2, $3)",
            &[seq.into(), last.into(), called.into()],
        )
    });
}

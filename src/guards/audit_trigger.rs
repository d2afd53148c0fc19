//! The row-audit trigger `zz_prodguard_audit` (SPEC §6): an AFTER INSERT/UPDATE/DELETE
//! row trigger on tables protected with `audit => true`, writing one `audit_log` entry per
//! changed row through `records::audit_log`: the row's key, its old and new values as
//! jsonb (the same jsonb as to_jsonb(row), written directly by `records::row_json`, so
//! numbers stay numbers, arrays arrays and nested json nested), and the columns an UPDATE
//! changed.
//!
//! The trigger is created `ENABLE ALWAYS`, so `session_replication_role = replica` does not
//! silence it without an override; the command guard refuses disabling, dropping or
//! renaming it in production. Per table, the encoders of its rows and keys are prepared
//! once per backend and forgotten when the table's relcache entry is invalidated.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::breakglass;
use crate::core::error::catch_bug;
use crate::core::finding::{Finding, Guard};
use crate::core::passes::RESTORING;
use crate::core::pg::{self, current_statement, OidMap};
use crate::core::settings;
use crate::records::audit_log::{self, Entry};
use crate::records::backup::{self, OverLimit};
use crate::records::denial::{self, Event};
use crate::records::row_json::{self, RowJson};
use crate::records::watch;

/// What the audit trigger keeps per table: encoders for its rows and for their keys
/// (primary key, else replica identity; `None` for a table with neither).
struct RelInfo {
    row: RowJson,
    key: Option<RowJson>,
}

thread_local! {
    /// Encoders per table.
    static RELS: RefCell<OidMap<Rc<RelInfo>>> = RefCell::new(OidMap::default());
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// (local transaction, table) pairs already noted as silenced.
    static SILENCED: RefCell<Vec<(u32, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    RELS.with(|k| {
        if let Ok(mut k) = k.try_borrow_mut() {
            if relid == pg_sys::InvalidOid {
                k.clear();
            } else {
                k.remove(&relid);
            }
        }
    });
}

/// The per-table encoders of the audit trigger, prepared once per backend.
///
/// # Safety
/// `rel` must be open.
unsafe fn rel_info(rel: pg_sys::Relation) -> Rc<RelInfo> {
    pg::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
    // SAFETY: guaranteed by the caller.
    let relid = unsafe { (*rel).rd_id };
    if let Some(info) = RELS.with(|r| r.borrow().get(&relid).cloned()) {
        return info;
    }
    // SAFETY: the relation and its descriptor are valid while it is open.
    let info = unsafe {
        let tupdesc = (*rel).rd_att;
        let keys = key_attnums(rel);
        Rc::new(RelInfo {
            row: RowJson::new(tupdesc, None),
            key: (!keys.is_empty()).then(|| RowJson::new(tupdesc, Some(&keys))),
        })
    };
    RELS.with(|r| r.borrow_mut().insert(relid, info.clone()));
    info
}

/// The attribute numbers of the primary key, else of the replica identity index.
///
/// # Safety
/// `rel` must be open.
unsafe fn key_attnums(rel: pg_sys::Relation) -> Vec<i32> {
    // SAFETY: guaranteed by the caller; the bitmaps hold attnums offset by
    // FirstLowInvalidHeapAttributeNumber.
    unsafe {
        let mut set = pg_sys::RelationGetIndexAttrBitmap(
            rel,
            pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_PRIMARY_KEY,
        );
        if set.is_null() {
            set = pg_sys::RelationGetIndexAttrBitmap(
                rel,
                pg_sys::IndexAttrBitmapKind::INDEX_ATTR_BITMAP_IDENTITY_KEY,
            );
        }
        let mut attnums = Vec::new();
        let mut m = -1;
        loop {
            m = pg_sys::bms_next_member(set, m);
            if m < 0 {
                break;
            }
            let attnum = m + pg_sys::FirstLowInvalidHeapAttributeNumber;
            if attnum > 0 {
                attnums.push(attnum);
            }
        }
        attnums
    }
}

// ---------------------------------------------------------------------------------------
// The row-audit trigger.

#[pg_trigger]
fn audit_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    catch_bug("the audit trigger", || audit_trigger_row(trigger))
}

fn audit_trigger_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let data = trigger.trigger_data();
    // the row-drop watch counts every row, audited or not
    let op = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    if op != pg_sys::TRIGGER_EVENT_UPDATE {
        // SAFETY: tg_relation of a row trigger is open, with its pg_class row.
        let (relid, partition) = unsafe {
            let rel = data.tg_relation;
            ((*rel).rd_id, (*(*rel).rd_rel).relispartition)
        };
        watch::note_row(relid, partition, op == pg_sys::TRIGGER_EVENT_DELETE);
    }
    if !settings::AUDIT.get() || silenced_by_replication_role() {
        // SAFETY: tg_relation of a row trigger is open.
        note_silenced(unsafe { (*data.tg_relation).rd_id });
        return Ok(None);
    }
    // SAFETY: a row-level AFTER trigger: tg_relation is open; tg_trigtuple is the new row
    // of an INSERT and the old row of an UPDATE or DELETE; tg_newtuple the new row of an
    // UPDATE.
    unsafe {
        let rel = data.tg_relation;
        let tupdesc = (*rel).rd_att;
        let (old, new) = match op {
            pg_sys::TRIGGER_EVENT_INSERT => (std::ptr::null_mut(), data.tg_trigtuple),
            pg_sys::TRIGGER_EVENT_UPDATE => (data.tg_trigtuple, data.tg_newtuple),
            _ => (data.tg_trigtuple, std::ptr::null_mut()),
        };
        let action = if RESTORING.get() {
            "RESTORE"
        } else {
            match op {
                pg_sys::TRIGGER_EVENT_INSERT => "INSERT",
                pg_sys::TRIGGER_EVENT_UPDATE => "UPDATE",
                _ => "DELETE",
            }
        };
        let info = rel_info(rel);
        // each version of the row is deformed once: for its jsonb, its key and, on UPDATE,
        // the comparison of the two
        let deformed = |tuple: pg_sys::HeapTuple| {
            let (mut values, mut nulls) = (Vec::new(), Vec::new());
            row_json::deform(tuple, tupdesc, &mut values, &mut nulls);
            (values, nulls)
        };
        let old_cols = (!old.is_null()).then(|| deformed(old));
        let new_cols = (!new.is_null()).then(|| deformed(new));
        let old_row = old_cols.as_ref().map(|(v, n)| info.row.encode(v, n));
        let new_row = new_cols.as_ref().map(|(v, n)| info.row.encode(v, n));
        // the key of the new row, else of the old one
        let key = info.key.as_ref().and_then(|k| {
            new_cols
                .as_ref()
                .or(old_cols.as_ref())
                .map(|(v, n)| k.encode(v, n))
        });
        let changed_columns = match (&old_cols, &new_cols) {
            (Some(o), Some(n)) => match changed(o, n, tupdesc) {
                Some(columns) => Some(columns),
                // an UPDATE that changed no column (`SET note = note`) changed nothing:
                // no entry (issue 19: 2 MiB of audit for a 1 MiB row that stayed the same)
                None => return Ok(None),
            },
            _ => None,
        };
        let test_data = audit_log::take_test_data((*rel).rd_id, new, tupdesc);
        audit_log::write_row(Entry {
            action,
            table: Some((*rel).rd_id),
            row_key: key,
            old_row,
            new_row,
            changed_columns,
            override_reason: breakglass::reason_in_force(),
            test_data,
            ..Entry::default()
        });
    }
    Ok(None)
}

/// `session_replication_role = replica` skips ordinary triggers; the audit trigger fires
/// ALWAYS, so the role silences it only together with a valid override (which the
/// statement's own audit row records).
fn silenced_by_replication_role() -> bool {
    // SAFETY: a plain read of a backend global.
    let replica = unsafe { pg_sys::SessionReplicationRole }
        == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32;
    replica && breakglass::reason_in_force().is_some()
}

/// Leaves one entry per transaction and table when the row audit is silenced, so that a
/// switched-off audit is itself on record, with the override that allowed it.
fn note_silenced(relid: pg_sys::Oid) {
    let txn = breakglass::local_transaction();
    let first = SILENCED.with(|s| {
        let mut s = s.borrow_mut();
        s.retain(|(t, _)| *t == txn);
        if s.contains(&(txn, relid)) {
            false
        } else {
            s.push((txn, relid));
            true
        }
    });
    if first {
        let why = if settings::AUDIT.get() {
            "session_replication_role = replica"
        } else {
            "prodguard.audit = off"
        };
        audit_log::write(Entry {
            action: "AUDIT OFF",
            table: Some(relid),
            object: Some(format!("{} ({why})", pg::describe_table(relid))),
            override_reason: breakglass::reason_in_force(),
            statement: current_statement(),
            ..Entry::default()
        });
    }
}

/// The names of the columns whose stored value differs between two versions of a row,
/// given deformed (values, nulls), as a text[] datum (in the current memory context);
/// `None` when none differs.
///
/// # Safety
/// Both must be tuples of a relation with descriptor `tupdesc`, deformed with it.
unsafe fn changed(
    old: &(Vec<pg_sys::Datum>, Vec<bool>),
    new: &(Vec<pg_sys::Datum>, Vec<bool>),
    tupdesc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    let mut names = Vec::new();
    // SAFETY: guaranteed by the caller; attname is a NUL-terminated NameData; the array
    // is built from text datums of the right type, length and alignment.
    unsafe {
        for i in 0..(*tupdesc).natts as usize {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            if att.attisdropped {
                continue;
            }
            let same = match (old.1[i], new.1[i]) {
                (true, true) => true,
                (false, false) => pg::same_image(old.0[i], new.0[i], att.attbyval, att.attlen),
                _ => false,
            };
            if !same {
                names.push(pg_sys::Datum::from(pg_sys::cstring_to_text(
                    att.attname.data.as_ptr(),
                )));
            }
        }
        if names.is_empty() {
            return None;
        }
        Some(pg::varlena_array(&mut names, pg_sys::TEXTOID))
    }
}

/// BEFORE TRUNCATE statement trigger of protected tables, `ENABLE ALWAYS`: a TRUNCATE that
/// logical replication applies is audited and backed up before it runs. The apply worker
/// runs no utility statement (it calls PostgreSQL's truncate directly), so the command
/// guard never sees it, and refusing it would stall the subscription: it is recorded
/// instead, with the replication origin, in the audit log, the backups and the server log.
/// A session's TRUNCATE is the command guard's; this trigger leaves it alone.
#[pg_trigger]
fn truncate_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    catch_bug("the truncate trigger", || {
        let Some(origin) = pg::replication_apply() else {
            return Ok(None);
        };
        // SAFETY: tg_relation of a trigger call is open.
        let relid = unsafe { (*trigger.trigger_data().tg_relation).rd_id };
        let object = pg::describe_table(relid);
        let finding = Finding::blocked(
            Guard::Command,
            "TRUNCATE",
            object.clone(),
            "",
            origin.clone(),
            "",
            Some(relid),
        );
        denial::log(Event::Replicated, &finding, None);
        let id = audit_log::write(Entry {
            action: "TRUNCATE",
            table: Some(relid),
            object: Some(object),
            statement: Some(origin),
            ..Entry::default()
        });
        if let Some(id) = id {
            // (the trigger fires for each table the TRUNCATE empties: this one alone)
            backup::backup_with(relid, id, "TRUNCATE", OverLimit::CopyFirst, true);
        }
        Ok(None)
    })
}

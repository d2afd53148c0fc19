//! Audit: rows in `prodguard.audit_log`, written inside the transaction they describe.
//!
//! Two kinds of entries, one writer:
//! - one row per guarded statement that ran (an override in production, a warning in
//!   staging): action = the command, the object, the statement, who, from where and why;
//! - one row per row changed in a table protected with `audit => true`, written by the
//!   AFTER row trigger `zz_prodguard_audit`: the row's key, its old and new values as
//!   jsonb (the same jsonb as to_jsonb(row), written directly by `row_json`, so numbers
//!   stay numbers, arrays arrays and nested json nested), and the columns an UPDATE
//!   changed.
//!
//! The writer forms the tuple and inserts it directly into the heap and indexes
//! (`CatalogTupleInsert`), without SPI or permission checks: the per-row path costs one
//! heap insert, and the audit works for users who may not write the table (nobody may).
//! A committed change always has its row; a rolled-back one never does. In a database
//! where the extension is not installed there is no table: the `prodguard:` log line is
//! the record there.
//!
//! The trigger is created `ENABLE ALWAYS`, so `session_replication_role = replica` does not
//! silence it; the command guard refuses disabling, dropping or renaming it in production.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::breakglass;
use crate::extension::{self, OidMap};
use crate::policy::Finding;
use crate::row_json::{self, RowJson};
use crate::settings::{self, Environment};

/// The name of the row-audit trigger `protect(audit => true)` installs.
pub const TRIGGER_NAME: &str = "zz_prodguard_audit";

thread_local! {
    /// When set, row changes are recorded as RESTORE (set by the restore functions, for the
    /// time of one restoring statement, through `extension::FlagGuard`).
    pub static RESTORING: Cell<bool> = const { Cell::new(false) };
}

/// One audit_log row. `None` is SQL NULL.
#[derive(Default)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub table: Option<pg_sys::Oid>,
    pub row_key: Option<pg_sys::Datum>,
    pub old_row: Option<pg_sys::Datum>,
    pub new_row: Option<pg_sys::Datum>,
    pub changed_columns: Option<Vec<String>>,
    pub override_reason: Option<String>,
    pub test_data: Option<pg_sys::Datum>,
    pub object: Option<String>,
    pub statement: Option<String>,
    pub environment: Option<Environment>,
}

/// Records one guarded statement that is about to run; returns the entry's id.
pub fn record_command(
    finding: &Finding,
    env: Environment,
    reason: Option<&str>,
    statement: Option<&str>,
) -> Option<i64> {
    write(Entry {
        action: &finding.command,
        table: finding.relation,
        override_reason: reason.map(str::to_string),
        object: Some(finding.object.clone()),
        statement: statement.map(str::to_string).or_else(current_statement),
        environment: Some(env),
        ..Entry::default()
    })
}

/// Records the test-data matches of a row written under `test_data_action = log`, for a
/// table whose row changes are not audited (otherwise the matches go into the row's entry).
pub fn record_test_data(
    relid: pg_sys::Oid,
    action: &str,
    env: Environment,
    matches: serde_json::Value,
) {
    let matches = jsonb_from_text(&matches.to_string());
    write(Entry {
        action,
        table: Some(relid),
        test_data: Some(matches),
        statement: current_statement(),
        environment: Some(env),
        ..Entry::default()
    });
}

// ---------------------------------------------------------------------------------------
// The writer.

/// What the writer needs of audit_log, looked up once per backend.
struct Target {
    table: pg_sys::Oid,
    sequence: pg_sys::Oid,
    owner: pg_sys::Oid,
}

/// What the audit trigger keeps per table: encoders for its rows and for their keys
/// (primary key, else replica identity; `None` for a table with neither).
struct RelInfo {
    row: RowJson,
    key: Option<RowJson>,
}

thread_local! {
    static TARGET: RefCell<Option<Rc<Target>>> = const { RefCell::new(None) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Names of the last roles seen, so the per-row path does not look them up each time.
    static ROLE_NAMES: RefCell<Vec<(pg_sys::Oid, String)>> = const { RefCell::new(Vec::new()) };
    /// Row-key columns per table.
    static RELS: RefCell<OidMap<Rc<RelInfo>>> = RefCell::new(OidMap::default());
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    TARGET.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || t.as_ref().is_some_and(|x| x.table == relid) {
                *t = None;
            }
        }
    });
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

fn target() -> Option<Rc<Target>> {
    extension::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
    if let Some(t) = TARGET.with(|t| t.borrow().clone()) {
        return Some(t);
    }
    let table = extension::own_table(c"audit_log")?;
    let sequence = extension::own_table(c"audit_log_id_seq")?;
    let owner = extension::with_pinned_search_path(|| {
        Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
            &[table.into()],
        )
    })
    .ok()
    .flatten()?;
    let t = Rc::new(Target {
        table,
        sequence,
        owner,
    });
    TARGET.with(|c| *c.borrow_mut() = Some(t.clone()));
    Some(t)
}

/// Writes one entry; returns its id, or `None` where the extension is not installed.
pub fn write(entry: Entry<'_>) -> Option<i64> {
    let target = target()?;
    // SAFETY: audit_log is opened with RowExclusiveLock (kept to the end of the
    // transaction) and a tuple matching its descriptor is formed column by column; every
    // pointer datum comes from palloc in the current memory context.
    unsafe {
        let user = pg_sys::GetUserId();
        let id = extension::as_role(target.owner, || {
            pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[target.sequence.into_datum()])
        })?;
        let rel = pg_sys::table_open(target.table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let tupdesc = (*rel).rd_att;
        let natts = (*tupdesc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        let (schema, table) = match entry.table {
            Some(t) => extension::relation_names(t),
            None => (None, None),
        };
        let env = entry.environment.unwrap_or_else(settings::environment);
        for i in 0..natts {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            let name = CStr::from_ptr(att.attname.data.as_ptr()).to_bytes();
            let value: Option<pg_sys::Datum> = match name {
                b"id" => id.into_datum(),
                b"logged_at" => Some(pg_sys::Datum::from(pg_sys::GetCurrentTimestamp())),
                b"txid" => Some(pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value)),
                b"action" => entry.action.into_datum(),
                b"table_oid" => entry.table.map(pg_sys::Datum::from),
                b"schema_name" => schema.as_deref().and_then(|s| s.into_datum()),
                b"table_name" => table.as_deref().and_then(|s| s.into_datum()),
                b"row_key" => entry.row_key,
                b"old_row" => entry.old_row,
                b"new_row" => entry.new_row,
                b"changed_columns" => entry.changed_columns.clone().and_then(|c| c.into_datum()),
                b"db_user" => role_name(user).into_datum(),
                b"session_user" => role_name(pg_sys::GetSessionUserId()).into_datum(),
                b"application_name" => {
                    extension::cstr_or(pg_sys::application_name, "").into_datum()
                }
                b"client_addr" => {
                    pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[])
                }
                b"backend_pid" => pg_sys::MyProcPid.into_datum(),
                b"environment" => env.name().into_datum(),
                b"override_reason" => entry
                    .override_reason
                    .as_deref()
                    .and_then(|s| s.into_datum()),
                b"test_data" => entry.test_data,
                b"object" => entry.object.as_deref().and_then(|s| s.into_datum()),
                b"statement" => entry.statement.as_deref().and_then(|s| s.into_datum()),
                _ => None,
            };
            if let Some(v) = value {
                values[i] = v;
                nulls[i] = false;
            }
        }
        let tuple = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::CatalogTupleInsert(rel, tuple);
        crate::shared::count(crate::shared::Counter::AuditRowsWritten);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        Some(id)
    }
}

fn role_name(role: pg_sys::Oid) -> String {
    if let Some(name) = ROLE_NAMES.with(|r| {
        r.borrow()
            .iter()
            .find(|(o, _)| *o == role)
            .map(|(_, n)| n.clone())
    }) {
        return name;
    }
    let name = breakglass::role_name(role);
    ROLE_NAMES.with(|r| {
        let mut r = r.borrow_mut();
        if r.len() >= 8 {
            r.remove(0);
        }
        r.push((role, name.clone()));
    });
    name
}

/// The text of the statement being run, when PostgreSQL knows it.
pub fn current_statement() -> Option<String> {
    // SAFETY: debug_query_string is NULL or the NUL-terminated text of the current query.
    let p = unsafe { pg_sys::debug_query_string };
    (!p.is_null()).then(|| unsafe { extension::cstr_or(p, "") })
}

// ---------------------------------------------------------------------------------------
// Rows as jsonb.

/// A jsonb datum parsed from JSON text.
pub fn jsonb_from_text(json: &str) -> pg_sys::Datum {
    let c = std::ffi::CString::new(json.replace('\0', "")).unwrap_or_default();
    // SAFETY: jsonb_in takes a NUL-terminated C string and returns a palloc'd jsonb.
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::jsonb_in,
            &[Some(pg_sys::Datum::from(c.as_ptr()))],
        )
        .expect("jsonb_in returns a value")
    }
}

/// The per-table encoders of the audit trigger, prepared once per backend.
///
/// # Safety
/// `rel` must be open.
unsafe fn rel_info(rel: pg_sys::Relation) -> Rc<RelInfo> {
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

extension_sql!(
    "COMMENT ON FUNCTION prodguard.audit_trigger() IS 'Internal: AFTER row trigger that prodguard.protect(audit => true) installs; one audit_log row per changed row.';",
    name = "audit_trigger_comment",
    requires = [audit_trigger]
);

#[pg_trigger]
fn audit_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let data = trigger.trigger_data();
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
        let op = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
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
            (Some(o), Some(n)) => Some(changed(o, n, tupdesc)),
            _ => None,
        };
        let test_data = crate::test_data::take_pending((*rel).rd_id, new, tupdesc);
        write(Entry {
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

thread_local! {
    /// (local transaction, table) pairs already noted as silenced.
    static SILENCED: RefCell<Vec<(u32, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
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
        write(Entry {
            action: "AUDIT OFF",
            table: Some(relid),
            object: Some(format!("{} ({why})", extension::describe_table(relid))),
            override_reason: breakglass::reason_in_force(),
            statement: current_statement(),
            ..Entry::default()
        });
    }
}

/// Names of the columns whose stored value differs between two versions of a row, given
/// deformed (values, nulls).
///
/// # Safety
/// Both must be tuples of a relation with descriptor `tupdesc`, deformed with it.
unsafe fn changed(
    old: &(Vec<pg_sys::Datum>, Vec<bool>),
    new: &(Vec<pg_sys::Datum>, Vec<bool>),
    tupdesc: pg_sys::TupleDesc,
) -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: guaranteed by the caller.
    unsafe {
        for i in 0..(*tupdesc).natts as usize {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            if att.attisdropped {
                continue;
            }
            let same = match (old.1[i], new.1[i]) {
                (true, true) => true,
                (false, false) => {
                    extension::same_image(old.0[i], new.0[i], att.attbyval, att.attlen)
                }
                _ => false,
            };
            if !same {
                names.push(
                    CStr::from_ptr(att.attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    names
}

/// Installs or removes the row-audit trigger of a table, as its owner. It is created
/// ENABLE ALWAYS, so that session_replication_role = replica does not skip it.
pub fn set_trigger(relid: pg_sys::Oid, on: bool) {
    let table = extension::qualified_identifier(relid);
    let sql = if on {
        format!(
            "CREATE OR REPLACE TRIGGER {TRIGGER_NAME} AFTER INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION prodguard.audit_trigger();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {TRIGGER_NAME}"
        )
    } else {
        format!("DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON {table}")
    };
    let verb = if on { "create" } else { "drop" };
    crate::command_guard::run_own_ddl(relid, &sql, &format!("{verb} the audit trigger"));
}

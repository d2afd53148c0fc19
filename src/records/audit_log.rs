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
//! (`CatalogTupleInsertWithInfo`), without SPI or permission checks: the per-row path costs
//! one heap insert and its index entries (the table and its indexes are opened once per
//! transaction), and the audit works for users who may not write the table (nobody may).
//! A committed change always has its row; a rolled-back one never does. In a database
//! where the extension is not installed there is no table: the `prodguard:` log line is
//! the record there.
//!
//! The row-audit trigger itself is a guard (`guards::audit_trigger`); this module only
//! writes entries.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::extension;
use crate::core::finding::Finding;
use crate::core::pg::{self, current_statement};
use crate::core::settings::{self, Environment};
use crate::records::audit_batch as batch;
use crate::records::audit_values as kept;
use crate::records::shmem::{self, Counter};

/// How many rows' test-data matches may wait for their audit entry (`note_test_data`).
const PENDING_KEPT: usize = 1000;

/// One audit_log row. `None` is SQL NULL.
#[derive(Default)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub table: Option<pg_sys::Oid>,
    pub row_key: Option<pg_sys::Datum>,
    pub old_row: Option<pg_sys::Datum>,
    pub new_row: Option<pg_sys::Datum>,
    /// A text[] datum.
    pub changed_columns: Option<pg_sys::Datum>,
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
    /// For each attribute of audit_log, its index in `LAYOUT` (`None`: dropped or unknown,
    /// left NULL), so that no row matches column names.
    columns: Vec<Option<usize>>,
}

/// audit_log and its indexes, open from a transaction's first entry to its end: a 100-row
/// statement opens them once, not 100 times. Opened under the transaction's top resource
/// owner, so a savepoint rolled back does not close them under us; closed before commit
/// (`xact_event`), forgotten at abort (which releases them).
#[derive(Clone, Copy)]
struct Open {
    rel: pg_sys::Relation,
    indexes: pg_sys::CatalogIndexState,
}

thread_local! {
    static TARGET: RefCell<Option<Rc<Target>>> = const { RefCell::new(None) };
    static OPEN: Cell<Option<Open>> = const { Cell::new(None) };
    /// Set when audit_log's relcache entry changed (an index added, say): the open indexes
    /// are reopened before the next entry.
    static STALE: Cell<bool> = const { Cell::new(false) };
    static XACT_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Test-data matches of rows whose audit entry is still to be written.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    TARGET.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            if relid == pg_sys::InvalidOid || t.as_ref().is_some_and(|x| x.table == relid) {
                *t = None;
                STALE.set(true);
            }
        }
    });
}

fn target() -> Option<Rc<Target>> {
    pg::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
    if let Some(t) = TARGET.with(|t| t.borrow().clone()) {
        return Some(t);
    }
    let table = extension::own_table(c"audit_log")?;
    let sequence = extension::own_table(c"audit_log_id_seq")?;
    let columns = check_layout(table);
    let t = Rc::new(Target {
        table,
        sequence,
        columns,
    });
    TARGET.with(|c| *c.borrow_mut() = Some(t.clone()));
    Some(t)
}

/// The type every column the writer fills must have: the writer forms the tuple column by
/// column, so a column of another type (an ALTER TABLE where that was allowed, a damaged
/// install) would make it write a value of the wrong type.
const LAYOUT: [(&[u8], pg_sys::Oid); 21] = [
    (b"id", pg_sys::INT8OID),
    (b"logged_at", pg_sys::TIMESTAMPTZOID),
    (b"txid", pg_sys::XID8OID),
    (b"action", pg_sys::TEXTOID),
    (b"table_oid", pg_sys::OIDOID),
    (b"schema_name", pg_sys::TEXTOID),
    (b"table_name", pg_sys::TEXTOID),
    (b"row_key", pg_sys::JSONBOID),
    (b"old_row", pg_sys::JSONBOID),
    (b"new_row", pg_sys::JSONBOID),
    (b"changed_columns", pg_sys::TEXTARRAYOID),
    (b"db_user", pg_sys::TEXTOID),
    (b"session_user", pg_sys::TEXTOID),
    (b"application_name", pg_sys::TEXTOID),
    (b"client_addr", pg_sys::INETOID),
    (b"backend_pid", pg_sys::INT4OID),
    (b"environment", pg_sys::TEXTOID),
    (b"override_reason", pg_sys::TEXTOID),
    (b"test_data", pg_sys::JSONBOID),
    (b"object", pg_sys::TEXTOID),
    (b"statement", pg_sys::TEXTOID),
];

/// Checks audit_log's columns against `LAYOUT` once per cache generation (its relcache
/// entry changes with any ALTER TABLE, which empties the cache): a mismatch is a clean
/// error naming the table and column, never a tuple of the wrong shape. Returns each
/// attribute's index in `LAYOUT`.
fn check_layout(table: pg_sys::Oid) -> Vec<Option<usize>> {
    // SAFETY: the relation is opened with AccessShareLock and closed; its descriptor is
    // read while open.
    let wrong = unsafe {
        let rel = pg_sys::table_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let tupdesc = (*rel).rd_att;
        let mut wrong = None;
        let mut columns = vec![None; (*tupdesc).natts as usize];
        for (i, column) in columns.iter_mut().enumerate() {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            if att.attisdropped {
                continue;
            }
            let name = CStr::from_ptr(att.attname.data.as_ptr()).to_bytes();
            if let Some(k) = LAYOUT.iter().position(|(n, _)| *n == name) {
                if att.atttypid != LAYOUT[k].1 {
                    wrong = Some(String::from_utf8_lossy(name).into_owned());
                    break;
                }
                *column = Some(k);
            }
        }
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        (wrong, columns)
    };
    let (wrong, columns) = wrong;
    if let Some(column) = wrong {
        crate::core::error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("prodguard.audit_log has an unexpected layout: column \"{column}\" has another type"),
            "pg_prodguard writes audit entries column by column and will not write one into a table it does not recognise.",
            "Restore the column's type (\\d prodguard.audit_log against a fresh install), or reinstall the extension's objects.",
        );
    }
    columns
}

// PostgreSQL's nextval without the permission check (sequence.c; not in pgrx's bindings):
// the writer draws ids from audit_log's own sequence whatever the session may do.
unsafe extern "C-unwind" {
    fn nextval_internal(relid: pg_sys::Oid, check_permissions: bool) -> i64;
}

/// Writes one entry now; returns its id, or `None` where the extension is not installed.
/// Held row entries of the current subtransaction are written first, in their order.
pub fn write(entry: Entry<'_>) -> Option<i64> {
    let target = target()?;
    let open = open_for_transaction(&target);
    // SAFETY: audit_log and its indexes are open (`open_for_transaction`).
    unsafe { write_held(open, false) };
    // SAFETY: as in `form`; the tuple is inserted and freed at once.
    unsafe {
        let (id, tuple) = form(&entry, &target, open, None);
        batch::write_one(open.rel, open.indexes, tuple);
        pg_sys::heap_freetuple(tuple);
        shmem::count(Counter::AuditRowsWritten);
        Some(id)
    }
}

/// Writes the entry of one audited row change: held, and written with the rest of its
/// statement's entries (`records::audit_batch`). Where the extension is not installed,
/// nothing.
pub fn write_row(entry: Entry<'_>) {
    let Some(target) = target() else { return };
    let open = open_for_transaction(&target);
    // SAFETY: as in `form`; the tuple is formed in the batch's context, which keeps it
    // until it is written or dropped.
    let full = unsafe {
        let (_, tuple) = form(&entry, &target, open, Some(batch::context()));
        batch::hold(tuple)
    };
    if full {
        // SAFETY: audit_log and its indexes are open.
        unsafe { write_held(open, false) };
    }
}

/// Writes the held row entries of the current subtransaction: after each statement (the
/// executor and utility hooks) and before audit_log is closed.
pub fn flush() {
    flush_held(false);
}

/// Writes held row entries (`all`: every one, at pre-commit), opening audit_log if needed.
fn flush_held(all: bool) {
    if batch::is_empty() {
        return;
    }
    let Some(target) = target() else { return };
    let open = open_for_transaction(&target);
    // SAFETY: audit_log and its indexes are open.
    unsafe { write_held(open, all) };
}

/// # Safety
/// `open` must be audit_log and its indexes, open.
unsafe fn write_held(open: Open, all: bool) {
    if batch::is_empty() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let n = unsafe { batch::write_held(open.rel, open.indexes, all) };
    shmem::add(Counter::AuditRowsWritten, n as u64);
}

/// Columns an entry is formed in without a heap allocation (audit_log has 21).
const STACK_COLUMNS: usize = 32;

/// Forms one entry's tuple, in `into` or else the current memory context (where anything
/// else it allocates goes), drawing its id.
///
/// # Safety
/// audit_log is open with RowExclusiveLock (`open`); every pointer datum of the entry comes
/// from palloc in a live memory context or is one of `audit_values`' datums, valid until
/// the next entry starts.
unsafe fn form(
    entry: &Entry<'_>,
    target: &Target,
    open: Open,
    into: Option<pg_sys::MemoryContext>,
) -> (i64, pg_sys::HeapTuple) {
    kept::start_entry();
    // SAFETY: guaranteed by the caller; a tuple matching audit_log's descriptor is formed
    // column by column.
    unsafe {
        let id = pg_sys::ffi::pg_guard_ffi_boundary(|| nextval_internal(target.sequence, false));
        let tupdesc = (*open.rel).rd_att;
        let natts = (*tupdesc).natts as usize;
        // on the stack for audit_log's own columns (a column a DBA added beyond them: heap)
        let mut stack = (
            [pg_sys::Datum::from(0); STACK_COLUMNS],
            [true; STACK_COLUMNS],
        );
        let mut heap;
        let (values, nulls): (&mut [pg_sys::Datum], &mut [bool]) = if natts <= STACK_COLUMNS {
            (&mut stack.0[..natts], &mut stack.1[..natts])
        } else {
            heap = (vec![pg_sys::Datum::from(0); natts], vec![true; natts]);
            (&mut heap.0, &mut heap.1)
        };
        let (schema, table) = match entry.table {
            Some(t) => kept::table_names(t),
            None => (None, None),
        };
        let env = entry.environment.unwrap_or_else(settings::environment);
        // a change applied by logical replication says so (its rows have no statement)
        let statement = entry.statement.clone().or_else(pg::replication_apply);
        for (i, column) in target.columns.iter().enumerate().take(natts) {
            let Some(k) = column else { continue };
            let value: Option<pg_sys::Datum> = match LAYOUT[*k].0 {
                b"id" => id.into_datum(),
                b"logged_at" => Some(pg_sys::Datum::from(pg_sys::GetCurrentTimestamp())),
                b"txid" => Some(pg_sys::Datum::from(pg_sys::GetTopFullTransactionId().value)),
                b"action" => Some(kept::word(entry.action)),
                b"table_oid" => entry.table.map(pg_sys::Datum::from),
                b"schema_name" => schema,
                b"table_name" => table,
                b"row_key" => entry.row_key,
                b"old_row" => entry.old_row,
                b"new_row" => entry.new_row,
                b"changed_columns" => entry.changed_columns,
                b"db_user" => Some(kept::role(if crate::core::passes::RESTORING.get() {
                    crate::core::passes::RESTORER.get()
                } else {
                    pg_sys::GetUserId()
                })),
                b"session_user" => Some(kept::role(pg_sys::GetSessionUserId())),
                b"application_name" => Some(kept::application_name()),
                b"client_addr" => kept::client_addr(),
                b"backend_pid" => pg_sys::MyProcPid.into_datum(),
                b"environment" => Some(kept::word(env.name())),
                b"override_reason" => entry
                    .override_reason
                    .as_deref()
                    .and_then(|s| s.into_datum()),
                b"test_data" => entry.test_data,
                b"object" => entry.object.as_deref().and_then(|s| s.into_datum()),
                b"statement" => statement.as_deref().and_then(|s| s.into_datum()),
                _ => None,
            };
            if let Some(v) = value {
                values[i] = v;
                nulls[i] = false;
            }
        }
        let old = into.map(|c| pg_sys::MemoryContextSwitchTo(c));
        let tuple = pg_sys::heap_form_tuple(tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        if let Some(old) = old {
            pg_sys::MemoryContextSwitchTo(old);
        }
        (id, tuple)
    }
}

/// audit_log and its indexes, opened at the transaction's first entry (or again after its
/// relcache entry changed).
fn open_for_transaction(target: &Target) -> Open {
    if let Some(open) = OPEN.get() {
        if !STALE.get() {
            return open;
        }
    }
    if !XACT_REGISTERED.get() {
        // SAFETY: registers a #[pg_guard] callback for the life of the backend.
        unsafe { pg_sys::RegisterXactCallback(Some(xact_event), std::ptr::null_mut()) };
        XACT_REGISTERED.set(true);
    }
    close();
    STALE.set(false);
    // SAFETY: opened under the top transaction's resource owner and memory context, both
    // valid until the transaction ends; the previous owner and context are restored, also
    // when opening fails (the guard runs while the error unwinds).
    let open = unsafe {
        let _owner = TopOwner::enter();
        let rel = pg_sys::table_open(target.table, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let indexes = pg_sys::CatalogOpenIndexes(rel);
        Open { rel, indexes }
    };
    OPEN.set(Some(open));
    open
}

/// Switches to the top transaction's resource owner and memory context until dropped.
struct TopOwner {
    owner: pg_sys::ResourceOwner,
    context: pg_sys::MemoryContext,
}

impl TopOwner {
    /// # Safety
    /// Inside a transaction.
    unsafe fn enter() -> TopOwner {
        // SAFETY: guaranteed by the caller: both top-level objects exist.
        unsafe {
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::CurrentResourceOwner = pg_sys::TopTransactionResourceOwner;
            let context = pg_sys::MemoryContextSwitchTo(pg_sys::TopTransactionContext);
            TopOwner { owner, context }
        }
    }
}

impl Drop for TopOwner {
    fn drop(&mut self) {
        // SAFETY: puts back what `enter` saved.
        unsafe {
            pg_sys::CurrentResourceOwner = self.owner;
            pg_sys::MemoryContextSwitchTo(self.context);
        }
    }
}

/// Closes audit_log if this transaction holds it open: before a utility statement and a
/// drop, which refuse to touch a table the session itself has open (`CheckTableNotInUse`:
/// DROP EXTENSION, ALTER TABLE, TRUNCATE of audit_log). The next entry opens it again.
pub fn release() {
    flush();
    close();
}

/// Closes what `open_for_transaction` opened (before commit or prepare).
fn close() {
    if let Some(open) = OPEN.take() {
        // SAFETY: closed under the resource owner that opened them; the lock is kept to
        // the end of the transaction, as every writer's.
        unsafe {
            let _owner = TopOwner::enter();
            pg_sys::CatalogCloseIndexes(open.indexes);
            pg_sys::table_close(open.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // what triggers fired outside the hooks left held (a replication apply worker's),
        // every subtransaction having ended
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE | XACT_EVENT_PARALLEL_PRE_COMMIT => {
            flush_held(true);
            close()
        }
        // (also at commit: an entry written by a later pre-commit callback reopens it)
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE => {
            batch::forget();
            close()
        }
        // the abort's resource-owner cleanup closes them
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            batch::forget();
            OPEN.set(None)
        }
        _ => {}
    }
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

// ---------------------------------------------------------------------------------------
// Test-data matches waiting for their row's audit entry.
//
// Under `test_data_action = log`, the row trigger of the test-data guard finds the matches,
// and the audit trigger, which fires after it (both are AFTER row triggers, in name
// order), writes the row's entry. The matches wait here in between, found again by table
// and by a fingerprint of the scanned columns' values (detoasted).

struct Pending {
    relid: pg_sys::Oid,
    attnums: Vec<i32>,
    print: u64,
    matches: serde_json::Value,
}

/// Keeps the matches of a row until its audit entry is written (`take_test_data`).
///
/// # Safety
/// `tuple` must be a tuple of `relid` with descriptor `tupdesc`; `attnums` its columns.
pub unsafe fn note_test_data(
    relid: pg_sys::Oid,
    attnums: Vec<i32>,
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    matches: serde_json::Value,
) {
    // SAFETY: guaranteed by the caller.
    let print = unsafe { fingerprint(tuple, tupdesc, &attnums) };
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= PENDING_KEPT {
            p.remove(0);
        }
        p.push(Pending {
            relid,
            attnums,
            print,
            matches,
        });
    });
}

/// The test-data matches noted for this row, as jsonb, if any. Called by the audit trigger
/// for every audited row: free when nothing is pending.
///
/// # Safety
/// `tuple` must be NULL or a tuple of `relid` with descriptor `tupdesc`.
pub unsafe fn take_test_data(
    relid: pg_sys::Oid,
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    if tuple.is_null() || PENDING.with(|p| p.borrow().is_empty()) {
        return None;
    }
    let matches = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|n| {
            // SAFETY: guaranteed by the caller.
            n.relid == relid && unsafe { fingerprint(tuple, tupdesc, &n.attnums) } == n.print
        })?;
        Some(p.remove(i).matches)
    })?;
    Some(jsonb_from_text(&matches.to_string()))
}

/// A hash of the values of some columns of a row, by their stored image (varlena values
/// detoasted and without their header, so a value hashes the same before and after
/// storage).
///
/// # Safety
/// `tuple` must be a tuple with descriptor `tupdesc`; `attnums` columns of it.
unsafe fn fingerprint(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnums: &[i32],
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for &attnum in attnums {
        attnum.hash(&mut h);
        let mut null = false;
        // SAFETY: guaranteed by the caller; each value is read with its column's storage
        // parameters.
        unsafe {
            let datum = pg_sys::heap_getattr(tuple, attnum, tupdesc, &mut null);
            if null {
                continue;
            }
            let att = &*(*tupdesc).attrs.as_ptr().add(attnum as usize - 1);
            if att.attbyval {
                datum.value().hash(&mut h);
            } else if att.attlen == -1 {
                let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                pgrx::varlena::varlena_to_byte_slice(v).hash(&mut h);
            } else if att.attlen > 0 {
                let p = datum.cast_mut_ptr::<u8>() as *const u8;
                std::slice::from_raw_parts(p, att.attlen as usize).hash(&mut h);
            } else {
                CStr::from_ptr(datum.cast_mut_ptr()).to_bytes().hash(&mut h);
            }
        }
    }
    h.finish()
}

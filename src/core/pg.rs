//! PostgreSQL helpers every layer uses: names of relations and roles as messages show
//! them, C strings, the current database, user and statement, a cheap hash map for oids,
//! relcache-callback registration, and comparing stored images of values.
//!
//! Nothing here knows about guards, records or the extension's own objects.

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::hash::{BuildHasherDefault, Hasher};

use pgrx::pg_sys;

/// Schema and name of a relation; `None`s for a relation that is gone.
pub fn relation_names(rel: pg_sys::Oid) -> (Option<String>, Option<String>) {
    // SAFETY: lsyscache lookups; both return NULL for a relation that is gone.
    unsafe {
        let name = pg_sys::get_rel_name(rel);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel));
        let read = |p: *mut c_char| (!p.is_null()).then(|| cstr_or(p, ""));
        (read(schema), read(name))
    }
}

/// `table "schema.name"`, the way messages name a table.
pub fn describe_table(rel: pg_sys::Oid) -> String {
    format!("table {}", quoted_name(rel))
}

/// `"schema.name"` of a relation.
pub fn quoted_name(rel: pg_sys::Oid) -> String {
    let (schema, name) = relation_names(rel);
    format!(
        "\"{}.{}\"",
        schema.unwrap_or_default(),
        name.unwrap_or_else(|| rel.to_u32().to_string())
    )
}

/// `"schema"."name"` of a relation, quoted for use in SQL text.
pub fn qualified_identifier(rel: pg_sys::Oid) -> String {
    let (schema, name) = relation_names(rel);
    pgrx::spi::quote_qualified_identifier(schema.unwrap_or_default(), name.unwrap_or_default())
}

/// Whether a relation is temporary (a session's own scratch space).
pub fn is_temp(rel: pg_sys::Oid) -> bool {
    // SAFETY: syscache lookup; returns 0 for a relation that is gone.
    unsafe { pg_sys::get_rel_persistence(rel) as u8 == pg_sys::RELPERSISTENCE_TEMP }
}

/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string.
pub unsafe fn cstr_or(ptr: *const c_char, default: &str) -> String {
    if ptr.is_null() {
        default.to_string()
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Oids are small, well-spread integers: a multiplication hashes them well enough, where
/// the default SipHash would cost more than the lookups the guards make per statement
/// and per row.
#[derive(Default)]
pub struct OidHasher(u64);

impl Hasher for OidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type OidMap<V> = HashMap<pg_sys::Oid, V, BuildHasherDefault<OidHasher>>;

/// Registers a relcache invalidation callback once per backend (`registered` remembers).
/// The callbacks of our caches only forget; they never look anything up.
pub fn register_relcache_callback(
    registered: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    callback: pg_sys::RelcacheCallbackFunction,
) {
    if !registered.get() {
        // SAFETY: registers a #[pg_guard] callback; PostgreSQL keeps it for the life of
        // the backend.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(callback, pg_sys::Datum::from(0)) };
        registered.set(true);
    }
}

/// Whether two values of a column have the same stored image (an UPDATE left the column
/// alone). A TOASTed value that was not changed keeps the same toast pointer, so this never
/// reads a large value.
///
/// # Safety
/// Both datums must be non-null values of a column with these storage parameters.
pub unsafe fn same_image(a: pg_sys::Datum, b: pg_sys::Datum, byval: bool, len: i16) -> bool {
    if byval {
        return a == b;
    }
    // SAFETY: guaranteed by the caller: fixed-length values have `len` bytes, varlena
    // values carry their size in their header.
    unsafe {
        let (pa, pb) = (
            a.cast_mut_ptr::<u8>() as *const u8,
            b.cast_mut_ptr::<u8>() as *const u8,
        );
        let (la, lb) = match len {
            n if n > 0 => (n as usize, n as usize),
            -1 => (
                pgrx::varlena::varsize_any(pa as *const pg_sys::varlena),
                pgrx::varlena::varsize_any(pb as *const pg_sys::varlena),
            ),
            _ => return false,
        };
        la == lb && std::slice::from_raw_parts(pa, la) == std::slice::from_raw_parts(pb, lb)
    }
}

/// The name of the current database.
pub fn current_database() -> String {
    // SAFETY: MyDatabaseId is set in a connected backend; the name is palloc'd or NULL.
    unsafe { cstr_or(pg_sys::get_database_name(pg_sys::MyDatabaseId), "") }
}

/// The name of a role, or its oid as text when it is gone.
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: GetUserNameFromId with noerr=true returns NULL for an unknown role.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, true);
        if name.is_null() {
            format!("{}", role.to_u32())
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// The name of the current user.
pub fn current_user() -> String {
    // SAFETY: GetUserId reads a backend global.
    role_name(unsafe { pg_sys::GetUserId() })
}

/// The text of the statement being run, when PostgreSQL knows it: only that statement
/// of a multi-statement query string, with its secrets masked (`statement`).
pub fn current_statement() -> Option<String> {
    crate::core::statement::current()
}

/// When this process is a logical replication apply worker: what it applies, as the audit
/// records it (`applied by logical replication (origin pg_16389)`). `None` elsewhere.
pub fn replication_apply() -> Option<String> {
    // A process is an apply worker, or not, for its whole life: asked once (the audit asks
    // for every row).
    static APPLY_WORKER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: IsLogicalWorker reads a process global.
    if !*APPLY_WORKER.get_or_init(|| unsafe { pg_sys::IsLogicalWorker() }) {
        return None;
    }
    // SAFETY: replorigin_by_oid with missing_ok returns false when the origin is unknown,
    // leaving `name` NULL.
    unsafe {
        let mut name: *mut c_char = std::ptr::null_mut();
        let origin = pg_sys::replorigin_session_origin;
        if origin != 0 {
            pg_sys::replorigin_by_oid(origin, true, &mut name);
        }
        Some(format!(
            "applied by logical replication (origin {})",
            cstr_or(name, "unknown")
        ))
    }
}

/// A parse-tree string, `None` for NULL.
pub fn opt_cstr(p: *const c_char) -> Option<String> {
    // SAFETY: parse-tree strings are NULL or NUL-terminated.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Whether a table, with its partitions and inheritance children, was created in this
/// transaction or holds no row that any transaction could see now: the statement about to
/// empty, drop or rewrite it destroys nothing. Takes `lockmode` on each of them first (the
/// lock the statement takes), so nothing can be added before the statement runs; the rows
/// are read directly from storage with a fresh snapshot, so row-level security and
/// permissions cannot hide any.
pub fn holds_no_rows(relid: pg_sys::Oid, lockmode: pg_sys::LOCKMODE) -> bool {
    holds_no_rows_in(relid, lockmode, true)
}

/// The same for the table's own rows only (what a COPY into it appends to).
pub fn holds_no_rows_of_its_own(relid: pg_sys::Oid, lockmode: pg_sys::LOCKMODE) -> bool {
    holds_no_rows_in(relid, lockmode, false)
}

/// A relation and its partitions and inheritance children, at every level.
fn with_inheritors(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    crate::core::extension::with_pinned_search_path(|| {
        pgrx::spi::Spi::connect(|client| {
            client
                .select(
                    "WITH RECURSIVE family(oid) AS (
                         SELECT $1::oid
                         UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                                 JOIN family f ON i.inhparent = f.oid)
                     SELECT oid FROM family",
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    })
}

fn holds_no_rows_in(relid: pg_sys::Oid, lockmode: pg_sys::LOCKMODE, with_family: bool) -> bool {
    // A hot standby cannot take the statement's lock, and the statement cannot run there.
    // SAFETY: reads shared recovery state.
    if lockmode > pg_sys::RowExclusiveLock as pg_sys::LOCKMODE
        && unsafe { pg_sys::RecoveryInProgress() }
    {
        return false;
    }
    let family = if with_family {
        with_inheritors(relid)
    } else {
        vec![relid]
    };
    // SAFETY: each relation is locked before it is opened; relations that vanished meanwhile
    // are skipped (try_table_open); the scan uses a registered snapshot and a slot of the
    // relation's own type, all released before returning.
    unsafe {
        for oid in &family {
            pg_sys::LockRelationOid(*oid, lockmode);
        }
        let rel = pg_sys::try_table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        if rel.is_null() {
            return false;
        }
        let new = (*rel).rd_createSubid != 0; // InvalidSubTransactionId
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        if new {
            return true;
        }
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetLatestSnapshot());
        let mut empty = true;
        for oid in family {
            let rel = pg_sys::try_table_open(oid, pg_sys::NoLock as pg_sys::LOCKMODE);
            if rel.is_null() {
                continue;
            }
            let kind = (*(*rel).rd_rel).relkind as u8;
            if matches!(kind, pg_sys::RELKIND_RELATION | pg_sys::RELKIND_MATVIEW) {
                let slot = pg_sys::table_slot_create(rel, std::ptr::null_mut());
                let scan = pg_sys::table_beginscan(rel, snapshot, 0, std::ptr::null_mut());
                if pg_sys::table_scan_getnextslot(
                    scan,
                    pg_sys::ScanDirection::ForwardScanDirection,
                    slot,
                ) {
                    empty = false;
                }
                pg_sys::table_endscan(scan);
                pg_sys::ExecDropSingleTupleTableSlot(slot);
            }
            pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            if !empty {
                break;
            }
        }
        pg_sys::UnregisterSnapshot(snapshot);
        empty
    }
}

/// The relation a RangeVar names, looked up without a lock; InvalidOid when there is none
/// (or `rv` is NULL). Errors of the lookup itself (a bad schema) are PostgreSQL's.
///
/// # Safety
/// `rv` must be NULL or a valid RangeVar.
pub unsafe fn relid_of(rv: *mut pg_sys::RangeVar) -> pg_sys::Oid {
    if rv.is_null() {
        return pg_sys::InvalidOid;
    }
    // SAFETY: guaranteed by the caller; missing_ok, no lock.
    unsafe {
        pg_sys::RangeVarGetRelidExtended(
            rv,
            pg_sys::NoLock as i32,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    }
}

/// A field of a relation's pg_class row, from the syscache; `None` when it is gone.
fn class_field<T>(
    relid: pg_sys::Oid,
    field: impl FnOnce(&pg_sys::FormData_pg_class) -> T,
) -> Option<T> {
    // SAFETY: a syscache lookup; the tuple is read while pinned and released.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let value = field(&*(pg_sys::GETSTRUCT(tuple) as *const pg_sys::FormData_pg_class));
        pg_sys::ReleaseSysCache(tuple);
        Some(value)
    }
}

/// The owner of a relation; `None` when it is gone.
pub fn relation_owner(relid: pg_sys::Oid) -> Option<pg_sys::Oid> {
    class_field(relid, |c| c.relowner)
}

/// Whether a relation has rules (CREATE RULE): a statement on it may be rewritten.
pub fn has_rules(relid: pg_sys::Oid) -> bool {
    class_field(relid, |c| c.relhasrules).unwrap_or(false)
}

/// Whether a relation has row security enabled (its policies may hide or keep rows).
pub fn has_row_security(relid: pg_sys::Oid) -> bool {
    class_field(relid, |c| c.relrowsecurity).unwrap_or(false)
}

/// A timestamptz (microseconds since 2000) as PostgreSQL prints it under the session's
/// DateStyle and TimeZone. Looks nothing up: callable after commit.
pub fn timestamp_text(ts: i64) -> String {
    // SAFETY: timestamptz_to_str formats into a static buffer it returns; copied at once.
    unsafe { opt_cstr(pg_sys::timestamptz_to_str(ts)).unwrap_or_default() }
}

/// A memory context under the current one, for values made and freed a batch at a time
/// (the caller resets it per batch; it goes with its parent).
pub fn batch_context(name: &'static CStr) -> pg_sys::MemoryContext {
    // SAFETY: a child of the current context, with a static name.
    unsafe {
        pg_sys::AllocSetContextCreateInternal(
            pg_sys::CurrentMemoryContext,
            name.as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        )
    }
}

/// A one-dimensional array of `element` values (a variable-length type aligned like text
/// and jsonb), built in the current memory context.
///
/// # Safety
/// Every datum must be a valid non-null value of `element`.
pub unsafe fn varlena_array(datums: &mut [pg_sys::Datum], element: pg_sys::Oid) -> pg_sys::Datum {
    // SAFETY: guaranteed by the caller; construct_array copies the values.
    unsafe {
        pg_sys::Datum::from(pg_sys::construct_array(
            datums.as_mut_ptr(),
            datums.len() as i32,
            element,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        ))
    }
}

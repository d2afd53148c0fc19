//! The extension's own objects in the current database: whether pg_prodguard is installed
//! here, the oids of its tables, running a piece of work as their owner (or as another
//! role) with a pinned search_path, and whether its own install script is running.
//!
//! The guards act in every database once the library is loaded; the objects exist only
//! where `CREATE EXTENSION pg_prodguard` ran. Everything that writes to them goes through
//! `as_owner_of`, so it works for users who cannot write the tables themselves (nobody
//! but the owner can).

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;

pub const NAME: &str = "pg_prodguard";
pub const SCHEMA: &str = "prodguard";

/// The tables that keep pg_prodguard's history, in the order they are re-attached:
/// append-only for everyone (their own trigger refuses UPDATE, DELETE and TRUNCATE),
/// written only by the extension, and kept when the extension is dropped
/// (`records::history`).
pub const HISTORY_TABLES: [&str; 5] = [
    "audit_log",
    "backup_table",
    "backup_row",
    "denial_log",
    "alerts",
];

/// What `records::history` keeps across DROP EXTENSION: the history tables and the
/// approved changes (a restore in place runs under one, across its own DROP EXTENSION).
pub const KEPT_TABLES: [&str; 6] = [
    "audit_log",
    "backup_table",
    "backup_row",
    "denial_log",
    "alerts",
    "change_request",
];

/// Where the history waits between DROP EXTENSION and the next CREATE EXTENSION.
pub const KEPT_SCHEMA: &str = "prodguard_history";

/// Whether the library was loaded at server or session start (set by `_PG_init`).
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub fn set_preloaded(preloaded: bool) {
    PRELOADED.store(preloaded, Ordering::Relaxed);
}

/// Whether the library was loaded by shared_preload_libraries or session_preload_libraries,
/// rather than on demand, which would guard one session only.
pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

thread_local! {
    /// The schema's oid as last looked up (`Some(InvalidOid)`: not installed), forgotten
    /// whenever pg_namespace changes. The row guard asks for every write.
    static NAMESPACE: std::cell::Cell<Option<pg_sys::Oid>> = const { std::cell::Cell::new(None) };
    static NAMESPACE_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Syscache invalidation callback of pg_namespace: forget, never look anything up.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_namespace(
    _arg: pg_sys::Datum,
    _cache: std::ffi::c_int,
    _hash: u32,
) {
    NAMESPACE.set(None);
}

/// The oid of the extension's schema in this database, `None` where it is not installed.
pub fn own_namespace() -> Option<pg_sys::Oid> {
    if !NAMESPACE_CALLBACK.get() {
        // SAFETY: registers a #[pg_guard] callback for the life of the backend.
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::NAMESPACEOID as std::ffi::c_int,
                Some(forget_namespace),
                pg_sys::Datum::from(0),
            )
        };
        NAMESPACE_CALLBACK.set(true);
    }
    let nsp = match NAMESPACE.get() {
        Some(nsp) => nsp,
        None => {
            // SAFETY: a syscache lookup; InvalidOid when nothing matches.
            let nsp = unsafe { pg_sys::get_namespace_oid(c"prodguard".as_ptr(), true) };
            NAMESPACE.set(Some(nsp));
            nsp
        }
    };
    (nsp != pg_sys::InvalidOid).then_some(nsp)
}

/// The oid of one of the extension's tables, or `None` when it is not installed here.
pub fn own_table(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: syscache lookups by name; both return InvalidOid when nothing matches.
    let rel = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"prodguard".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), nsp)
    };
    (rel != pg_sys::InvalidOid).then_some(rel)
}

/// Runs `f` as the owner of `rel` (one of the extension's tables) with a pinned
/// search_path, as SECURITY DEFINER functions with `SET search_path` do. `None` when the
/// owner cannot be found.
pub fn as_owner_of<R>(rel: pg_sys::Oid, f: impl FnOnce() -> R) -> Option<R> {
    let owner = crate::core::pg::relation_owner(rel)?;
    Some(with_pinned_search_path(|| as_role(owner, f)))
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, so that objects in the caller's
/// schemas cannot stand in for the functions and operators of our queries. Every query
/// pg_prodguard runs through SPI goes through here.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: the same sequence fmgr uses for a function's SET clause: a new GUC nest
    // level, a SAVE-action setting, and the nest level popped afterwards. An ERROR in `f`
    // aborts the (sub)transaction, which pops the level too.
    unsafe {
        let nest = pinned_search_path();
        let result = f();
        pg_sys::AtEOXact_GUC(true, nest);
        result
    }
}

/// Opens a GUC nest level with `search_path = pg_catalog, pg_temp` (SAVE action, as a
/// function's SET clause does); returns the level, for `AtEOXact_GUC`.
///
/// # Safety
/// Inside a transaction; the caller pops the level (an ERROR pops it too).
unsafe fn pinned_search_path() -> std::ffi::c_int {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        nest
    }
}

/// Runs `f` as the owner of `rel` the way REFRESH MATERIALIZED VIEW runs a view's query:
/// under SECURITY_RESTRICTED_OPERATION (no temporary objects, no SET ROLE, nothing that
/// outlives the operation), with search_path pinned, and every setting the owner's code
/// (a trigger) changes put back afterwards. For writing rows of a user's table on behalf
/// of someone else (restores): the table owner's triggers cannot act as the caller, nor
/// leave anything behind for the caller's next statement. `None` when `rel` is gone.
pub fn as_owner_restricted<R>(rel: pg_sys::Oid, f: impl FnOnce() -> R) -> Option<R> {
    let owner = crate::core::pg::relation_owner(rel)?;
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    // SAFETY: the sequence ExecRefreshMatView uses: a new GUC nest level, the owner as the
    // current user in a restricted context, then the user and every setting put back
    // (AtEOXact_GUC with isCommit = false reverts even plain SETs made inside). An ERROR
    // in `f` aborts the (sub)transaction, which restores the user and pops the level.
    unsafe {
        let nest = pinned_search_path();
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        let result = f();
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
        pg_sys::AtEOXact_GUC(false, nest);
        Some(result)
    }
}

/// Runs `f` with `role` as the current user. An ERROR inside `f` aborts the
/// (sub)transaction, and PostgreSQL restores the user then.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    // SAFETY: saving and setting the current user id is what fmgr_security_definer does;
    // SECURITY_LOCAL_USERID_CHANGE keeps SET ROLE from being affected.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = f();
    // SAFETY: puts back exactly what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Whether we are running pg_prodguard's own CREATE/ALTER EXTENSION script.
pub fn in_own_script() -> bool {
    // SAFETY: reads of backend globals; get_extension_name returns NULL for unknown oids.
    unsafe {
        pg_sys::creating_extension
            && crate::core::pg::cstr_or(
                pg_sys::get_extension_name(pg_sys::CurrentExtensionObject),
                "",
            ) == NAME
    }
}

//! The extension's own objects in the current database, and a few catalog look-ups every
//! guard needs: whether pg_prodguard is installed here, the oids of its tables, running a
//! piece of work as their owner, and the names of a relation.
//!
//! The guards act in every database once the library is loaded; the objects exist only
//! where `CREATE EXTENSION pg_prodguard` ran. Everything that writes to them goes through
//! `as_owner_of`, so it works for users who cannot write the tables themselves (nobody
//! but the owner can).

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::hash::{BuildHasherDefault, Hasher};

use pgrx::pg_sys;
use pgrx::prelude::*;

pub const NAME: &str = "pg_prodguard";
pub const SCHEMA: &str = "prodguard";

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
    with_pinned_search_path(|| {
        let owner = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
            &[rel.into()],
        )
        .ok()
        .flatten()?;
        Some(as_role(owner, f))
    })
}

/// Runs `f` with `search_path = pg_catalog, pg_temp`, so that objects in the caller's
/// schemas cannot stand in for the functions and operators of our queries. Every query
/// pg_prodguard runs through SPI goes through here.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: the same sequence fmgr uses for a function's SET clause: a new GUC nest
    // level, a SAVE-action setting, and the nest level popped afterwards. An ERROR in `f`
    // aborts the (sub)transaction, which pops the level too.
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
        let result = f();
        pg_sys::AtEOXact_GUC(true, nest);
        result
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
            && cstr_or(
                pg_sys::get_extension_name(pg_sys::CurrentExtensionObject),
                "",
            ) == NAME
    }
}

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

/// Sets a per-backend flag for as long as the returned value lives, and puts the previous
/// value back when it is dropped: also when an error unwinds through (pgrx turns
/// PostgreSQL errors into Rust unwinding), so that no flag outlives the operation it was
/// set for, even when the caller catches the error (a PL/pgSQL EXCEPTION block).
pub struct FlagGuard {
    flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
    previous: bool,
}

impl FlagGuard {
    pub fn set(
        flag: &'static std::thread::LocalKey<std::cell::Cell<bool>>,
        value: bool,
    ) -> FlagGuard {
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

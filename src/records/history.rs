//! The history outlives the extension (issue 15): when one of the kept tables
//! (`extension::KEPT_TABLES`: the audit log, its backups, the denial log and the approved
//! changes) is about
//! to be dropped, whatever drops it (`DROP EXTENSION`, `DROP SCHEMA prodguard CASCADE`,
//! `DROP OWNED`, an overridden `DROP TABLE`), its rows are first copied into the table of
//! the same name in the schema `prodguard_history`, in the dropping transaction. The next
//! `CREATE EXTENSION pg_prodguard` puts them back, ids included, and drops the copies
//! (`sql/finalize.sql`). A drop that was let through by an override is recorded in the
//! audit log before the copy is made, so its record is kept with the rest.
//!
//! If the copy cannot be made, the drop fails: losing the history silently is the one
//! outcome this module exists to prevent.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::raise;
use crate::core::extension::{self, KEPT_SCHEMA, KEPT_TABLES, SCHEMA};
use crate::core::pg;

/// Called by the object-access hook for every relation about to be dropped: copies the
/// rows of a history table of this database's pg_prodguard into `prodguard_history`.
pub fn keep_before_drop(relid: pg_sys::Oid) {
    let Some(ours) = extension::own_namespace() else {
        return;
    };
    // SAFETY: lsyscache lookups of a relation that still exists (the hook runs before the
    // relation is deleted); both return 0 or NULL when nothing matches.
    let (namespace, name) = unsafe {
        (
            pg_sys::get_rel_namespace(relid),
            pg::opt_cstr(pg_sys::get_rel_name(relid)),
        )
    };
    let Some(name) = name.filter(|n| namespace == ours && KEPT_TABLES.contains(&n.as_str())) else {
        return;
    };
    // SAFETY: syscache lookups by name; InvalidOid when nothing matches.
    let (schema_exists, table_exists) = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"prodguard_history".as_ptr(), true);
        let c_name = std::ffi::CString::new(name.as_str()).unwrap_or_default();
        (
            nsp != pg_sys::InvalidOid,
            nsp != pg_sys::InvalidOid
                && pg_sys::get_relname_relid(c_name.as_ptr(), nsp) != pg_sys::InvalidOid,
        )
    };
    // What is kept there must be only the extension owner's: a schema or table someone
    // else made beforehand (with a rule or trigger that drops or edits the copied rows)
    // would make the history vanish with the drop.
    let trusted = extension::as_owner_of(relid, || {
        crate::core::spi::one::<bool>(
            "SELECT coalesce((SELECT n.nspowner = $2 FROM pg_catalog.pg_namespace n WHERE n.nspname = $1), true)
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = $1
                                   AND (c.relowner <> $2 OR c.relhasrules OR c.relhastriggers OR c.relrowsecurity))
                AND NOT EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                                 WHERE n.nspname = $1)",
            &[
                KEPT_SCHEMA.into(),
                pg::relation_owner(relid)
                    .unwrap_or(pg_sys::InvalidOid)
                    .into(),
            ],
        )
    });
    if !matches!(trusted, Some(Ok(Some(true)))) {
        refuse(
            &name,
            &format!("schema \"{KEPT_SCHEMA}\" exists and holds objects that are not the extension owner's own tables (another owner, rules, triggers, policies or functions)."),
        );
    }
    let mut sql = String::new();
    if !schema_exists {
        sql.push_str(&format!(
            "CREATE SCHEMA {KEPT_SCHEMA};
             REVOKE ALL ON SCHEMA {KEPT_SCHEMA} FROM PUBLIC;
             COMMENT ON SCHEMA {KEPT_SCHEMA} IS 'pg_prodguard: the audit and denial history kept when the extension was dropped; CREATE EXTENSION pg_prodguard puts it back.';"
        ));
    }
    if !table_exists {
        sql.push_str(&format!(
            "CREATE TABLE {KEPT_SCHEMA}.{name} (LIKE {SCHEMA}.{name});
             REVOKE ALL ON {KEPT_SCHEMA}.{name} FROM PUBLIC;"
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO {KEPT_SCHEMA}.{name} SELECT * FROM {SCHEMA}.{name};"
    ));
    let kept = extension::as_owner_of(relid, || Spi::run(&sql));
    match kept {
        Some(Ok(())) => {}
        Some(Err(e)) => refuse(&name, &e.to_string()),
        None => refuse(&name, "The owner of the table could not be found."),
    }
}

fn refuse(table: &str, why: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
        format!("could not keep the history of table \"{SCHEMA}.{table}\" before dropping it"),
        format!("pg_prodguard copies its history into schema \"{KEPT_SCHEMA}\" before the table is dropped, and the copy failed: {why}"),
        &format!("Make \"{KEPT_SCHEMA}.{table}\" match the table (or move it aside), then drop again."),
    )
}

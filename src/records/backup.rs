//! Backups (SPEC §6): before an overridden (or staging-warned) TRUNCATE, DROP TABLE or
//! DROP SCHEMA reaches a protected table, its definition goes to `prodguard.backup_table`
//! and its rows to `prodguard.backup_row`, up to `prodguard.backup_max_rows` (above that
//! the statement is refused even with an override). `api::restore::restore_backup()`
//! brings them back.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::pg;
use crate::core::settings;

/// Copies a protected table that `command` is about to destroy into the backup tables,
/// under the audit entry `audit_id`. Refuses the command when the table has more rows than
/// prodguard.backup_max_rows.
/// What a backup does with a table larger than `prodguard.backup_max_rows`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OverLimit {
    /// Refuse the statement (a session's overridden TRUNCATE or DROP).
    Refuse,
    /// Copy the first rows up to the limit (a replicated TRUNCATE, which must not stall
    /// replication); the backup's row_count says how many the table had.
    CopyFirst,
}

// pg_inherits.c (not in pgrx's bindings): locks a relation and every inheritor.
unsafe extern "C-unwind" {
    fn find_all_inheritors(
        parent: pg_sys::Oid,
        lockmode: pg_sys::LOCKMODE,
        numparents: *mut *mut pg_sys::List,
    ) -> *mut pg_sys::List;
}

pub fn backup(relid: pg_sys::Oid, audit_id: i64, command: &str) {
    backup_with(relid, audit_id, command, OverLimit::Refuse);
}

pub fn backup_with(relid: pg_sys::Oid, audit_id: i64, command: &str, over_limit: OverLimit) {
    // dates, intervals and floats written under fixed settings (row_json::StableFormats)
    let _formats = crate::records::row_json::StableFormats::set();
    let Some(log) = extension::own_table(c"backup_row") else {
        return;
    };
    // The command's own lock (TRUNCATE and DROP take ACCESS EXCLUSIVE on the table and its
    // partitions), taken before the copy rather than after it: no row can commit between
    // the backup and the command, to be in neither.
    // SAFETY: locks the relation and its inheritors for the rest of the transaction; the
    // list is palloc'd in the current context.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            find_all_inheritors(
                relid,
                pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
                std::ptr::null_mut(),
            )
        });
    }
    let table = pg::qualified_identifier(relid);
    let limit = i64::from(settings::BACKUP_MAX_ROWS.get());
    let done = extension::as_owner_of(log, || -> Result<(), String> {
        let _own = crate::core::passes::FlagGuard::set(&crate::core::passes::OWN_WRITE, true);
        let rows = crate::core::spi::one::<i64>(&format!("SELECT count(*) FROM {table}"), &[])
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        crate::records::watch::note_removed(relid, rows);
        if rows > limit && over_limit == OverLimit::Refuse {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "{command} of {} is blocked: its {rows} rows are more than pg_prodguard backs up",
                    pg::describe_table(relid)
                ),
                format!(
                    "The table is protected, so its rows are copied to prodguard.backup_row first, and prodguard.backup_max_rows is {limit}."
                ),
                "Delete the rows in batches first (each audited), or raise prodguard.backup_max_rows with an override.",
            );
        }
        Spi::run_with_args(
            "INSERT INTO prodguard.backup_table
                 (audit_id, table_oid, schema_name, table_name, columns, primary_key, row_count,
                  table_owner)
             SELECT $1, c.oid, n.nspname, c.relname,
                    (SELECT jsonb_agg(jsonb_build_object('name', a.attname,
                                'type', format_type(a.atttypid, a.atttypmod),
                                'not_null', a.attnotnull) ORDER BY a.attnum)
                       FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                    (SELECT array_agg(a.attname ORDER BY k.ord)
                       FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a
                      WHERE i.indrelid = c.oid AND i.indisprimary
                        AND a.attrelid = c.oid AND a.attnum = k.attnum),
                    $3, pg_get_userbyid(c.relowner)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $2",
            &[audit_id.into(), relid.into(), rows.into()],
        )
        .map_err(|e| e.to_string())?;
        Spi::run_with_args(
            &format!(
                "INSERT INTO prodguard.backup_row (audit_id, ordinal, row_data)
                 SELECT $1, row_number() OVER (), to_jsonb(t) FROM {table} t LIMIT $2"
            ),
            &[audit_id.into(), limit.into()],
        )
        .map_err(|e| e.to_string())
    });
    if let Some(Err(e)) = done {
        raise_internal(&format!("back up {table}"), e);
    }
}

//! Backups (SPEC §6): before an overridden (or staging-warned) TRUNCATE, DROP TABLE or
//! DROP SCHEMA reaches a protected table, its definition goes to `prodguard.backup_table`
//! and its rows to `prodguard.backup_row`, up to `prodguard.backup_max_rows` (above that
//! the statement is refused even with an override). `api::restore::restore_backup()`
//! brings them back.
//!
//! Rows are encoded as the row audit encodes them (`row_json`): every value PostgreSQL
//! accepted is backed up (json that jsonb cannot hold, `-0`, arrays with other lower
//! bounds, names of objects), where `to_jsonb(t)` failed on some and lost others.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::pg;
use crate::core::settings;
use crate::records::row_json::{self, RowJson};
use pgrx::datum::DatumWithOid;

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

/// `only`: the command empties the table alone (TRUNCATE ONLY), not its inheritance
/// children, whose rows are then not copied.
pub fn backup(relid: pg_sys::Oid, audit_id: i64, command: &str, only: bool) {
    backup_with(relid, audit_id, command, OverLimit::Refuse, only);
}

pub fn backup_with(
    relid: pg_sys::Oid,
    audit_id: i64,
    command: &str,
    over_limit: OverLimit,
    only: bool,
) {
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
    // (a partitioned table has no rows of its own: its partitions' are its rows)
    // SAFETY: a syscache lookup of a locked relation.
    let partitioned = unsafe { pg_sys::get_rel_relkind(relid) }
        == pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char;
    let table = if only && !partitioned {
        format!("ONLY {}", pg::qualified_identifier(relid))
    } else {
        pg::qualified_identifier(relid)
    };
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
        copy_rows(relid, &table, audit_id, limit).map_err(|e| e.to_string())
    });
    if let Some(Err(e)) = done {
        raise_internal(&format!("back up {table}"), e);
    }
}

/// Rows of a backup encoded and written per statement.
const COPY_BATCH: usize = 1000;

/// Copies the rows of `table` (its inheritors' too, as the parent's columns, as a scan of
/// the parent reads them) into backup_row, at most `limit`, `COPY_BATCH` per INSERT.
fn copy_rows(
    relid: pg_sys::Oid,
    table: &str,
    audit_id: i64,
    limit: i64,
) -> Result<(), pgrx::spi::SpiError> {
    let alias = row_alias(relid);
    Spi::connect(|client| {
        let mut cursor = client.open_cursor(
            &format!("SELECT {alias} FROM {table} AS {alias} LIMIT $1"),
            &[limit.into()],
        );
        let mut encoder: Option<(RowJson, pg_sys::TupleDesc)> = None;
        let (mut values, mut nulls) = (Vec::new(), Vec::new());
        let mut ordinal = 0i64;
        // (each batch's encoded rows are freed once written)
        let batch_context = pg::batch_context(c"prodguard backup batch");
        let result = loop {
            let mut batch = match cursor.fetch(COPY_BATCH as i64) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            if batch.is_empty() {
                break Ok(());
            }
            let mut rows: Vec<pg_sys::Datum> = Vec::with_capacity(COPY_BATCH);
            // SAFETY: switched back below, before anything else is allocated.
            let previous = unsafe { pg_sys::MemoryContextSwitchTo(batch_context) };
            while batch.next().is_some() {
                let Ok(Some(datum)) = batch.get_datum_by_ordinal(1) else {
                    continue;
                };
                // SAFETY: a whole-row value of the table's row type, valid until the next
                // fetch; stored in the result row it may have a short header, so it is
                // detoasted (DatumGetHeapTupleHeader); its descriptor is looked up once and
                // released below.
                unsafe {
                    let header = pg_sys::pg_detoast_datum(datum.cast_mut_ptr())
                        .cast::<pg_sys::HeapTupleHeaderData>();
                    let (enc, desc) = encoder.get_or_insert_with(|| {
                        let t = (*header).t_choice.t_datum;
                        let desc = pg_sys::lookup_rowtype_tupdesc(t.datum_typeid, t.datum_typmod);
                        (RowJson::new(desc, None), desc)
                    });
                    let mut tuple = pg_sys::HeapTupleData {
                        t_len: pgrx::varsize_any(header.cast()) as u32,
                        t_data: header,
                        ..Default::default()
                    };
                    row_json::deform(&mut tuple, *desc, &mut values, &mut nulls);
                    rows.push(enc.encode(&values, &nulls));
                }
            }
            // SAFETY: an array of the jsonb datums just built, in the batch's context.
            let array = unsafe { pg::varlena_array(&mut rows, pg_sys::JSONBOID) };
            // SAFETY: the context current before the switch above.
            unsafe { pg_sys::MemoryContextSwitchTo(previous) };
            // SAFETY: the datum is a jsonb[] built above, alive for the statement.
            let rows_arg = unsafe { DatumWithOid::new(array, pg_sys::JSONBARRAYOID) };
            if let Err(e) = Spi::run_with_args(
                "INSERT INTO prodguard.backup_row (audit_id, ordinal, row_data)
                 SELECT $1, $2 + u.n, u.r FROM unnest($3::jsonb[]) WITH ORDINALITY AS u(r, n)",
                &[audit_id.into(), ordinal.into(), rows_arg],
            ) {
                break Err(e);
            }
            ordinal += rows.len() as i64;
            // SAFETY: nothing refers to the batch's rows once they are written.
            unsafe { pg_sys::MemoryContextReset(batch_context) };
        };
        if let Some((_, desc)) = encoder {
            // SAFETY: releases the reference lookup_rowtype_tupdesc took.
            unsafe { pg_sys::DecrTupleDescRefCount(desc) };
        }
        result
    })
}

/// A table alias that no column of the table is named: a bare name in a select list is a
/// column before it is a whole row (`SELECT t FROM tbl t` reads column `t` if there is one).
fn row_alias(relid: pg_sys::Oid) -> String {
    (0..)
        .map(|i| format!("prodguard_row_{i}"))
        .find(|name| {
            let c = std::ffi::CString::new(name.as_str()).unwrap_or_default();
            // SAFETY: a syscache lookup by name; InvalidAttrNumber when there is none.
            unsafe { pg_sys::get_attnum(relid, c.as_ptr()) == pg_sys::InvalidAttrNumber as i16 }
        })
        .unwrap_or_default()
}

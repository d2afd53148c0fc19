//! Restore (SPEC §6): one call puts back what the audit log recorded.
//!
//! - `restore_row`, `undo_transaction`, `restore_table`: undo audited row changes, newest
//!   first, by key (primary key, else replica identity). Without `force`, a change is not
//!   undone when the same row changed again later outside the set being undone.
//! - `restore_backup`: re-inserts a TRUNCATE's rows (`records::backup`), recreating a
//!   dropped table first.
//! - `purge_audit`: the only way rows leave the audit log (`guards::append_only` refuses
//!   every other UPDATE, DELETE and TRUNCATE of the extension's audit tables, superusers
//!   included); in production it needs an override.
//!
//! Restores are for members of prodguard_operator; they run as the table's owner with a
//! pinned search_path, and every restored row of an audited table is audited as RESTORE.

use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datetime::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::JsonB;

use crate::api::json_members;
use crate::core::table_arg::{Accepts, TableArg};

use crate::core::breakglass;
use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::finding::{Finding, Guard};
use crate::core::passes::{FlagGuard, PURGING, RESTORER, RESTORING};
use crate::core::pg;
use crate::core::settings;
use crate::guards::policy;
use crate::records::row_json::StableFormats;

/// Removes audit entries (and their backups) older than `older_than`; returns how many
/// audit entries were removed. Members of prodguard_operator; an override in production.
#[pg_extern(volatile)]
fn purge_audit(older_than: Interval) -> i64 {
    require_operator("purge the audit log");
    let older = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<String>("SELECT $1::text", &[older_than.into()])
    })
    .ok()
    .flatten()
    .unwrap_or_default();
    policy::enforce_here(&Finding::here(
        Guard::Audit,
        "prodguard.purge_audit()",
        format!("audit entries older than {older}"),
        "Purging removes the record of who changed what.",
        None,
    ));
    let Some(log) = extension::own_table(c"audit_log") else {
        return 0;
    };
    let result = extension::as_owner_of(log, || {
        let _own = FlagGuard::set(&crate::core::passes::OWN_WRITE, true);
        let _purging = FlagGuard::set(&PURGING, true);
        Spi::get_one_with_args::<i64>(
            "WITH old AS (SELECT id FROM prodguard.audit_log WHERE logged_at < now() - $1),
                  r AS (DELETE FROM prodguard.backup_row WHERE audit_id IN (SELECT id FROM old)),
                  t AS (DELETE FROM prodguard.backup_table WHERE audit_id IN (SELECT id FROM old)),
                  d AS (DELETE FROM prodguard.denial_log WHERE at < now() - $1),
                  al AS (DELETE FROM prodguard.alerts WHERE at < now() - $1),
                  a AS (DELETE FROM prodguard.audit_log WHERE id IN (SELECT id FROM old) RETURNING 1)
             SELECT count(*) FROM a",
            &[older_than.into()],
        )
    });
    match result {
        Some(Ok(n)) => n.unwrap_or(0),
        Some(Err(e)) => raise_internal("purge the audit log", e),
        None => 0,
    }
}

/// One audited row change. Its key and rows stay jsonb text, passed back to SQL as they
/// are: a round trip through serde_json would turn numeric 3.20 into 3.2 and lose the
/// digits of big numbers.
pub(crate) struct Change {
    pub(crate) id: i64,
    pub(crate) table: pg_sys::Oid,
    pub(crate) key: Option<String>,
    pub(crate) old_row: Option<String>,
    pub(crate) new_row: Option<String>,
}

const CHANGE_COLUMNS: &str = "id, table_oid, row_key::text, old_row::text, new_row::text";
/// Row-level entries: they carry a row, and no command object.
pub(crate) const ROW_ENTRIES: &str =
    "object IS NULL AND table_oid IS NOT NULL AND (old_row IS NOT NULL OR new_row IS NOT NULL)";

fn changes(filter: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) -> Vec<Change> {
    let Some(log) = extension::own_table(c"audit_log") else {
        return Vec::new();
    };
    let sql = format!(
        "SELECT {CHANGE_COLUMNS} FROM prodguard.audit_log WHERE {ROW_ENTRIES} AND {filter} ORDER BY id DESC"
    );
    extension::as_owner_of(log, || {
        Spi::connect(|client| {
            client.select(&sql, None, &args).map(|rows| {
                rows.filter_map(|r| {
                    Some(Change {
                        id: r.get::<i64>(1).ok()??,
                        table: r.get::<pg_sys::Oid>(2).ok()??,
                        key: r.get::<String>(3).ok()?,
                        old_row: r.get::<String>(4).ok()?,
                        new_row: r.get::<String>(5).ok()?,
                    })
                })
                .collect()
            })
        })
    })
    .and_then(Result::ok)
    .unwrap_or_default()
}

/// Whether `undo` first checks that the row did not change again later.
#[derive(Clone, Copy)]
pub(crate) enum Later<'a> {
    /// No check (force, or changes undone newest first as a set of their own).
    Unchecked,
    /// One lookup in the log (restore_row).
    LookUp,
    /// Looked up for a whole set beforehand (undo_transaction, `later_changes`): the first
    /// later change of each change, by id.
    Known(&'a HashMap<i64, i64>),
}

/// Undoes one row change (an INSERT, UPDATE, DELETE or RESTORE), first checking for a
/// later change of the row as `later` says.
fn undo(change: &Change, later: Later<'_>, tolerate_missing: bool) -> bool {
    let _formats = StableFormats::set();
    // SAFETY: syscache lookup.
    if unsafe { pg_sys::get_rel_name(change.table) }.is_null() {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("cannot restore audit entry {}: its table no longer exists", change.id),
            "The table was dropped after the change.",
            "If it was dropped with an override, prodguard.restore_backup(<audit id of the DROP TABLE>) brings it back.",
        );
    }
    // the caller's rights first: no message below (a row's key, a later change, a column)
    // tells a caller anything of a table it may not change
    let op = match (&change.old_row, &change.new_row) {
        (None, _) => "DELETE",
        (Some(_), None) => "INSERT",
        (Some(_), Some(_)) => "UPDATE",
    };
    require_rights(change.table, op);
    let key = change.key.as_ref().unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("cannot restore audit entry {}: its table has no key", change.id),
            format!(
                "{} has no primary key or replica identity index, so its rows cannot be found again.",
                pg::describe_table(change.table)
            ),
            "Add a primary key (or ALTER TABLE ... REPLICA IDENTITY USING INDEX) for future changes; this one can be read from old_row and put back by hand.",
        )
    });
    let later = match later {
        Later::Unchecked => None,
        Later::LookUp => later_change(change, key),
        Later::Known(known) => known.get(&change.id).copied(),
    };
    if let Some(later) = later {
        raise(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            format!(
                "cannot restore audit entry {}: the row changed again later (audit entry {later})",
                change.id
            ),
            format!("Row {} of {} was changed after the change being undone.", compact(key), pg::describe_table(change.table)),
            "Undo the later change first, or call the restore again with force => true to put the older values back anyway.",
        );
    }
    let table = pg::qualified_identifier(change.table);
    // identity columns GENERATED ALWAYS can only be set to DEFAULT by an UPDATE (their
    // value is the row's, unchanged: restore leaves them alone there)
    let columns = columns_of(change.table);
    // Values are stored by column name: after a column was renamed or dropped, a value of
    // it has nowhere to go, and the restore refuses rather than leave it NULL. Columns
    // added since take no part (an INSERT gives them their defaults, an UPDATE leaves them).
    let old_values = change
        .old_row
        .as_deref()
        .map(json_members::members)
        .unwrap_or_default();
    let new_values = change
        .new_row
        .as_deref()
        .map(json_members::members)
        .unwrap_or_default();
    let key_names: Vec<String> = json_members::members(key)
        .into_iter()
        .map(|m| m.0)
        .collect();
    let needed: Vec<&String> = match (&change.old_row, &change.new_row) {
        (Some(_), None) => old_values.iter().map(|m| &m.0).collect(),
        (Some(_), Some(_)) => old_values
            .iter()
            .filter(|(k, v)| !new_values.iter().any(|(nk, nv)| nk == k && nv == v))
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(gone) = key_names
        .iter()
        .chain(needed)
        .find(|k| !columns.existing.contains(*k))
    {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "cannot restore audit entry {}: column \"{gone}\" of {} no longer exists",
                change.id,
                pg::describe_table(change.table)
            ),
            "The audit log keeps values by column name, and the column was renamed or dropped after the change.",
            "Rename the column back for the restore, or put the value back by hand from the entry's old_row.",
        );
    }
    let present = |name: &str| old_values.iter().any(|m| m.0 == name);
    let cols = quoted_where(&columns.write, present);
    let update_cols = quoted_where(&columns.update, present);
    // only the key's column names are read here; its values go back to SQL as jsonb
    let keys: Vec<String> = key_names.iter().map(pgrx::spi::quote_identifier).collect();
    let key_match = format!(
        "({}) = (SELECT {} FROM jsonb_populate_record(NULL::{table}, $1::jsonb) r)",
        qualified("t", &keys),
        qualified("r", &keys),
    );
    let col_list = cols.join(", ");
    let r_cols = qualified("r", &cols);
    let (sql, arg) = match (&change.old_row, &change.new_row) {
        (None, Some(_)) => (format!("DELETE FROM ONLY {table} t WHERE {key_match}"), key.clone()),
        (Some(old), None) => (
            format!(
                "INSERT INTO {table} ({col_list}) OVERRIDING SYSTEM VALUE
                 SELECT {r_cols} FROM jsonb_populate_record(NULL::{table}, $2::jsonb) r"
            ),
            old.clone(),
        ),
        (Some(old), Some(_)) => (
            format!(
                "UPDATE ONLY {table} t SET ({}) = (SELECT {} FROM jsonb_populate_record(NULL::{table}, $2::jsonb) r)
                  WHERE {key_match}",
                update_cols.join(", "),
                qualified("r", &update_cols)
            ),
            old.clone(),
        ),
        (None, None) => return false,
    };
    let _restoring = Restoring::start();
    let changed = extension::as_owner_restricted(change.table, || {
        Spi::connect_mut(|client| {
            client
                .update(&sql, None, &[key.as_str().into(), arg.as_str().into()])
                .map(|t| t.len())
        })
    });
    match changed {
        Some(Ok(1)) => true,
        Some(Ok(_)) if tolerate_missing => false,
        Some(Ok(_)) => raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!(
                "cannot restore audit entry {}: the row is not where the audit log left it",
                change.id
            ),
            format!(
                "Row {} of {} is not there (or its key changed outside the audit).",
                compact(key),
                pg::describe_table(change.table)
            ),
            "Call the restore again with force => true to skip rows that cannot be found.",
        ),
        Some(Err(e)) => raise_internal(&format!("restore audit entry {}", change.id), e),
        None => false,
    }
}

/// Excludes the restores this transaction has just made (undoing a set, or before).
const NOT_OWN_RESTORES: &str =
    "NOT (action = 'RESTORE' AND txid = pg_catalog.pg_current_xact_id_if_assigned())";

/// A later audit entry for the same row.
fn later_change(change: &Change, key: &str) -> Option<i64> {
    let log = extension::own_table(c"audit_log")?;
    extension::as_owner_of(log, || {
        crate::core::spi::one::<i64>(
            &format!(
                "SELECT min(id) FROM prodguard.audit_log
                  WHERE {ROW_ENTRIES} AND table_oid = $1 AND row_key = $2::jsonb AND id > $3
                    AND {NOT_OWN_RESTORES}"
            ),
            &[change.table.into(), key.into(), change.id.into()],
        )
    })
    .and_then(|r| r.ok())
    .flatten()
}

/// For the changes of one transaction, undone together: the first later change of each
/// row outside that transaction, by change id. One pass over the log from the set's first
/// entry on, joined with the set's keys (a lookup per row would read the row-key index
/// once per change: issue 18).
fn later_changes(found: &[Change], txid: &str) -> HashMap<i64, i64> {
    let keyed: Vec<&Change> = found.iter().filter(|c| c.key.is_some()).collect();
    let Some(first) = keyed.iter().map(|c| c.id).min() else {
        return HashMap::new();
    };
    let Some(log) = extension::own_table(c"audit_log") else {
        return HashMap::new();
    };
    let tables: Vec<pg_sys::Oid> = keyed.iter().map(|c| c.table).collect();
    let keys: Vec<String> = keyed.iter().filter_map(|c| c.key.clone()).collect();
    let ids: Vec<i64> = keyed.iter().map(|c| c.id).collect();
    let sql = format!(
        "SELECT s.change_id, min(a.id)
           FROM unnest($1::oid[], $2::text[], $3::bigint[]) AS s(change_table, change_key, change_id)
           JOIN (SELECT id, table_oid, row_key FROM prodguard.audit_log
                  WHERE {ROW_ENTRIES} AND id > $4 AND txid <> $5::xid8 AND {NOT_OWN_RESTORES}) a
             ON a.table_oid = s.change_table AND a.row_key = s.change_key::jsonb
                AND a.id > s.change_id
          GROUP BY s.change_id"
    );
    extension::as_owner_of(log, || {
        Spi::connect(|client| {
            client
                .select(
                    &sql,
                    None,
                    &[
                        tables.into(),
                        keys.into(),
                        ids.into(),
                        first.into(),
                        txid.into(),
                    ],
                )
                .map(|rows| {
                    rows.filter_map(|r| Some((r.get::<i64>(1).ok()??, r.get::<i64>(2).ok()??)))
                        .collect()
                })
        })
    })
    .and_then(Result::ok)
    .unwrap_or_default()
}

/// A row key as messages show it (compact JSON).
fn compact(key: &str) -> String {
    serde_json::from_str::<serde_json::Value>(key)
        .map_or_else(|_| key.to_string(), |v| v.to_string())
}

/// `alias.col1, alias.col2, ...` of quoted column names.
pub(crate) fn qualified(alias: &str, columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table's columns as restores use them: (name, quoted name) of those a restore writes
/// and those a restoring UPDATE writes, and the names of every column there is.
pub(crate) struct Columns {
    pub(crate) write: Vec<(String, String)>,
    pub(crate) update: Vec<(String, String)>,
    pub(crate) existing: std::collections::HashSet<String>,
}

thread_local! {
    /// The columns of the last table restored, within one restore call (no DDL can run in
    /// the middle of one): a 100,000-row restore_table() looks them up once, not 200,000
    /// times.
    static COLUMNS: std::cell::RefCell<Option<(pg_sys::Oid, Rc<Columns>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The quoted names of the columns (name, quoted name) whose name passes `keep`.
pub(crate) fn quoted_where(
    columns: &[(String, String)],
    keep: impl Fn(&str) -> bool,
) -> Vec<String> {
    columns
        .iter()
        .filter(|c| keep(&c.0))
        .map(|c| c.1.clone())
        .collect()
}

/// The columns of a table, looked up once per table and restore call.
pub(crate) fn columns_of(relid: pg_sys::Oid) -> Rc<Columns> {
    if let Some((r, c)) = COLUMNS.with_borrow(|c| c.clone()) {
        if r == relid {
            return c;
        }
    }
    let c = Rc::new(Columns {
        write: writable_columns(relid),
        // identity columns GENERATED ALWAYS can only be set to DEFAULT by an UPDATE (their
        // value is the row's, unchanged: restore leaves them alone there)
        update: columns_where(relid, "attgenerated = '' AND attidentity <> 'a'"),
        existing: columns_where(relid, "true")
            .into_iter()
            .map(|c| c.0)
            .collect(),
    });
    COLUMNS.with_borrow_mut(|m| *m = Some((relid, c.clone())));
    c
}

/// Starts a restore call: columns are looked up afresh.
fn forget_columns() {
    COLUMNS.with_borrow_mut(|m| *m = None);
}

/// The columns a restore writes: not dropped, not generated.
fn writable_columns(relid: pg_sys::Oid) -> Vec<(String, String)> {
    columns_where(relid, "attgenerated = ''")
}

/// (name, quoted name) of the columns that meet `condition`, in order.
fn columns_where(relid: pg_sys::Oid, condition: &str) -> Vec<(String, String)> {
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT attname::text, quote_ident(attname) FROM pg_attribute
                          WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND {condition}
                          ORDER BY attnum"
                    ),
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some((r.get::<String>(1).ok()??, r.get::<String>(2).ok()??))
                    })
                    .collect()
                })
                .unwrap_or_default()
        })
    })
}

/// Undoes one audited row change. Without `force`, refuses when the row changed again
/// after it.
#[pg_extern(volatile)]
fn restore_row(audit_id: i64, force: default!(bool, false)) {
    require_operator("restore rows");
    forget_columns();
    let found = changes("id = $1", vec![audit_id.into()]);
    let Some(change) = found.first() else {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("audit entry {audit_id} is not a row change"),
            "restore_row() undoes INSERT, UPDATE, DELETE and RESTORE entries of audited tables.",
            "For an overridden TRUNCATE or DROP TABLE use prodguard.restore_backup().",
        )
    };
    undo(
        change,
        if force {
            Later::Unchecked
        } else {
            Later::LookUp
        },
        force,
    );
}

/// Undoes every audited row change of one transaction, newest first; returns how many.
/// (SQL: prodguard.undo_transaction(txid xid8, force boolean DEFAULT false).)
#[pg_extern(name = "_undo_transaction", volatile)]
fn undo_transaction(txid: &str, force: bool) -> i64 {
    require_operator("undo transactions");
    if txid.trim().parse::<u64>().is_err() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!("invalid transaction id \"{txid}\""),
            "A transaction id is an xid8: a whole number, as audit_log.txid shows it.",
            "Call prodguard.undo_transaction() with a txid from prodguard.audit_log.",
        );
    }
    forget_columns();
    let found = changes("txid = $1::xid8", vec![txid.into()]);
    limit_rows(
        "prodguard.undo_transaction()",
        format!("{} row changes of one transaction", found.len()),
        found.len(),
        None,
    );
    let known = if force {
        HashMap::new()
    } else {
        later_changes(&found, txid)
    };
    let later = if force {
        Later::Unchecked
    } else {
        Later::Known(&known)
    };
    let mut n = 0;
    for change in &found {
        if undo(change, later, force) {
            n += 1;
        }
    }
    n
}

/// Puts a table (and its partitions) back as it was at `as_of`, as far as the audit log
/// reaches: every later audited change is undone, newest first. Returns how many.
#[pg_extern(volatile)]
fn restore_table(tbl: TableArg, as_of: TimestampWithTimeZone, force: default!(bool, false)) -> i64 {
    require_operator("restore tables");
    let relid = tbl.check("prodguard.restore_table()", Accepts::Tables);
    forget_columns();
    let filter =
        "table_oid IN (SELECT $1 UNION SELECT relid FROM pg_partition_tree($1)) AND logged_at > $2";
    let survey = crate::api::restore_set::survey(filter, relid, as_of);
    limit_rows(
        "prodguard.restore_table()",
        format!(
            "{} row changes of {}",
            survey.count,
            pg::describe_table(relid)
        ),
        survey.count as usize,
        Some(relid),
    );
    // as set operations where that is exact, else change by change
    if survey.keyed {
        if let Some(n) = crate::api::restore_set::undo_since(filter, relid, as_of, &survey, force) {
            return n;
        }
    }
    let found = changes(filter, vec![relid.into(), as_of.into()]);
    let mut n = 0;
    for change in &found {
        // Every later change of the table is in the set being undone: nothing outside it
        // to conflict with. `force` skips rows that cannot be found.
        if undo(change, Later::Unchecked, force) {
            n += 1;
        }
    }
    n
}

/// Brings back the rows an overridden TRUNCATE or DROP TABLE (audit entry `audit_id`)
/// removed, recreating the table first if it is gone. Returns how many rows.
#[pg_extern(volatile)]
fn restore_backup(audit_id: i64) -> i64 {
    require_operator("restore backups");
    let _formats = StableFormats::set();
    let Some(log) = extension::own_table(c"backup_table") else {
        return 0;
    };
    let found = extension::as_owner_of(log, || {
        crate::core::spi::three::<String, String, JsonB>(
            "SELECT schema_name, table_name, jsonb_build_object('columns', columns,
                    'primary_key', to_jsonb(primary_key), 'owner', table_owner,
                    'table_oid', table_oid::bigint)
               FROM prodguard.backup_table WHERE audit_id = $1",
            &[audit_id.into()],
        )
    })
    .and_then(|r| r.ok());
    let Some((Some(schema), Some(name), Some(def))) = found else {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!("audit entry {audit_id} has no backup"),
            "Backups are taken when an overridden TRUNCATE, DROP TABLE or DROP SCHEMA reaches a protected table.",
            "SELECT * FROM prodguard.recent_destructive lists the candidates.",
        )
    };
    let table = pgrx::spi::quote_qualified_identifier(&schema, &name);
    let exists = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<pg_sys::Oid>("SELECT to_regclass($1)::oid", &[table.clone().into()])
    })
    .ok()
    .flatten();
    let relid = match exists {
        Some(oid) => {
            // only into the table that was backed up (a TRUNCATE keeps its oid), never into
            // one made since under the same name, which would hand its maker the rows
            if def.0["table_oid"].as_u64() != Some(u64::from(oid.to_u32())) {
                raise(
                    PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
                    format!(
                        "cannot restore the backup of audit entry {audit_id}: {} is not the table that was backed up",
                        pg::describe_table(oid)
                    ),
                    "A table of that name was created after the backup; restore_backup() writes only into the table that was truncated, or recreates a dropped one.",
                    "Rename or drop the table of that name, then call prodguard.restore_backup() again.",
                );
            }
            // a table that is there is written with the caller's rights
            require_rights(oid, "INSERT");
            oid
        }
        None => extension::as_owner_of(log, || recreate(&schema, &table, &def.0))
            .unwrap_or(pg_sys::InvalidOid),
    };
    // every backed-up column must still be there (a renamed one would come back NULL)
    let existing: Vec<String> = columns_where(relid, "true")
        .into_iter()
        .map(|c| c.0)
        .collect();
    if let Some(gone) = def.0["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| {
            c["name"]
                .as_str()
                .filter(|n| !existing.iter().any(|e| e == n))
                .map(str::to_string)
        })
    {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "cannot restore the backup of audit entry {audit_id}: column \"{gone}\" of {} no longer exists",
                pg::describe_table(relid)
            ),
            "The backup keeps values by column name, and the column was renamed or dropped after the backup.",
            "Rename the column back for the restore, or put the values back by hand from prodguard.backup_row.",
        );
    }
    let cols: Vec<String> = writable_columns(relid).into_iter().map(|c| c.1).collect();
    let col_list = cols.join(", ");
    let r_cols = qualified("r", &cols);
    let insert = format!(
        "INSERT INTO {table} ({col_list}) OVERRIDING SYSTEM VALUE
         SELECT {r_cols} FROM unnest($1::jsonb[]) WITH ORDINALITY AS e(v, n),
                jsonb_populate_record(NULL::{table}, e.v) r
          ORDER BY e.n"
    );
    // The backed-up rows are read as the extension's owner (the table's owner may not read
    // them) and written in batches as the table's owner, restricted (its triggers run as
    // it, not as the extension's owner, and leave nothing behind). A batch is at most
    // BACKUP_BATCH rows and BACKUP_BATCH_BYTES of jsonb, passed as jsonb[] (no text).
    let _restoring = Restoring::start();
    let inserted = extension::as_owner_of(log, || {
        Spi::connect(|client| -> Result<i64, pgrx::spi::SpiError> {
            let mut cursor = client.open_cursor(
                "SELECT row_data FROM prodguard.backup_row WHERE audit_id = $1 ORDER BY ordinal",
                &[audit_id.into()],
            );
            let mut n = 0i64;
            let mut pending: Vec<pg_sys::Datum> = Vec::new();
            let mut bytes = 0usize;
            // (detoasted rows live in this context until their batch is written)
            let copies = pg::batch_context(c"prodguard restore batch");
            let mut flush = |rows: &mut Vec<pg_sys::Datum>| -> Result<(), pgrx::spi::SpiError> {
                if rows.is_empty() {
                    return Ok(());
                }
                // SAFETY: jsonb datums of the current fetch (or their copies in `copies`),
                // gathered into one jsonb[] in `copies`, reset once the batch is written.
                let array = unsafe {
                    let previous = pg_sys::MemoryContextSwitchTo(copies);
                    let array = pg::varlena_array(rows, pg_sys::JSONBOID);
                    pg_sys::MemoryContextSwitchTo(previous);
                    pgrx::datum::DatumWithOid::new(array, pg_sys::JSONBARRAYOID)
                };
                let written = extension::as_owner_restricted(relid, || {
                    Spi::connect_mut(|c| c.update(&insert, None, &[array]).map(|t| t.len()))
                })
                .transpose()?
                .unwrap_or(0);
                n += written as i64;
                rows.clear();
                // SAFETY: the rows are written; nothing refers to their copies any more.
                unsafe { pg_sys::MemoryContextReset(copies) };
                Ok(())
            };
            loop {
                let mut batch = cursor.fetch(BACKUP_BATCH)?;
                if batch.is_empty() {
                    return Ok(n);
                }
                while batch.next().is_some() {
                    let Ok(Some(datum)) = batch.get_datum_by_ordinal(1) else {
                        continue;
                    };
                    // SAFETY: a jsonb value of this fetch, detoasted (into `copies` when it
                    // was toasted); written before the fetch's memory and `copies` go.
                    let (row, size) = unsafe {
                        let previous = pg_sys::MemoryContextSwitchTo(copies);
                        let row = pg_sys::pg_detoast_datum(datum.cast_mut_ptr());
                        pg_sys::MemoryContextSwitchTo(previous);
                        (row, pgrx::varsize_any(row.cast()))
                    };
                    if !pending.is_empty() && bytes + size > BACKUP_BATCH_BYTES {
                        flush(&mut pending)?;
                        bytes = 0;
                    }
                    pending.push(pg_sys::Datum::from(row));
                    bytes += size;
                }
                // (a fetch's rows are written before the next fetch frees them)
                flush(&mut pending)?;
                bytes = 0;
            }
        })
    });
    match inserted {
        Some(Ok(n)) => n,
        Some(Err(e)) => raise_internal(&format!("restore the backup of {table}"), e),
        None => 0,
    }
}

/// Rows of a backup written per statement by restore_backup(), at most, and their jsonb
/// bytes at most (a statement's array stays far below PostgreSQL's 1 GB limit).
const BACKUP_BATCH: i64 = 1000;
const BACKUP_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Recreates a dropped table from its backed-up definition (columns, types, NOT NULL,
/// primary key), owned by its original owner (or the caller, for a backup taken before
/// 0.2.0 kept the owner); returns its oid. Runs as the extension's owner, so that an
/// operator without CREATE on the database can restore.
fn recreate(schema: &str, table: &str, def: &serde_json::Value) -> pg_sys::Oid {
    let mut parts: Vec<String> = def["columns"]
        .as_array()
        .map(|cols| {
            cols.iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        pgrx::spi::quote_identifier(c["name"].as_str().unwrap_or("")),
                        c["type"].as_str().unwrap_or("text"),
                        if c["not_null"].as_bool() == Some(true) {
                            " NOT NULL"
                        } else {
                            ""
                        }
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(pk) = def["primary_key"].as_array().filter(|k| !k.is_empty()) {
        let names: Vec<String> = pk
            .iter()
            .filter_map(|k| k.as_str())
            .map(pgrx::spi::quote_identifier)
            .collect();
        parts.push(format!("PRIMARY KEY ({})", names.join(", ")));
    }
    let owner = def["owner"]
        .as_str()
        .map(pgrx::spi::quote_identifier)
        .unwrap_or_else(|| "SESSION_USER".into());
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {table} ({}); ALTER TABLE {table} OWNER TO {owner}",
        pgrx::spi::quote_identifier(schema),
        parts.join(", ")
    );
    extension::with_pinned_search_path(|| Spi::run(&sql)).unwrap_or_else(|e| {
        raise_internal(&format!("recreate {table}"), e.to_string());
    });
    extension::with_pinned_search_path(|| {
        crate::core::spi::one::<pg_sys::Oid>("SELECT to_regclass($1)::oid", &[table.into()])
    })
    .ok()
    .flatten()
    .unwrap_or(pg_sys::InvalidOid)
}

/// A restore that would change more rows than `prodguard.max_rows_changed` is judged like
/// any statement that does (SPEC §4): in production it needs an override, checked before a
/// row is touched.
fn limit_rows(command: &str, object: String, rows: usize, relation: Option<pg_sys::Oid>) {
    let limit = settings::MAX_ROWS_CHANGED.get();
    if limit <= 0 || rows <= limit as usize {
        return;
    }
    policy::enforce_here(
        &Finding::here(
            Guard::Row,
            command,
            object,
            format!(
                "The restore would change {rows} rows; prodguard.max_rows_changed is {limit}."
            ),
            relation,
        )
        .prefer(&format!(
            "Otherwise restore in parts of at most {limit} rows (prodguard.restore_row, or restore_table to a later time first)."
        )),
    );
}

/// The RESTORING pass, with the calling role noted for the RESTORE entries.
pub(crate) struct Restoring {
    _flag: FlagGuard,
    previous: pg_sys::Oid,
}

impl Restoring {
    pub(crate) fn start() -> Restoring {
        // SAFETY: reads the current user id (the caller: rows are written as the table's
        // owner only inside).
        let caller = unsafe { pg_sys::GetUserId() };
        Restoring {
            _flag: FlagGuard::set(&RESTORING, true),
            previous: RESTORER.replace(caller),
        }
    }
}

impl Drop for Restoring {
    fn drop(&mut self) {
        RESTORER.set(self.previous);
    }
}

/// A restore acts with the caller's rights: it writes a table only where the caller could
/// make the same change (`op` and SELECT, which finding the row needs), and not in a table
/// with row-level security unless the caller bypasses it (its policies cannot be checked
/// for rows put back by key). Superusers pass.
pub(crate) fn require_rights(relid: pg_sys::Oid, op: &str) {
    let mode = match op {
        "DELETE" => pg_sys::ACL_DELETE,
        "INSERT" => pg_sys::ACL_INSERT,
        _ => pg_sys::ACL_UPDATE,
    } as pg_sys::AclMode;
    // SAFETY: privilege checks and syscache lookups inside a transaction.
    let (allowed, rls_blocks) = unsafe {
        let user = pg_sys::GetUserId();
        let allowed =
            pg_sys::pg_class_aclcheck(relid, user, mode | pg_sys::ACL_SELECT as pg_sys::AclMode)
                == pg_sys::AclResult::ACLCHECK_OK;
        let rls = pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32;
        (allowed, rls)
    };
    let name = pg::describe_table(relid);
    if !allowed {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to restore {name}"),
            format!(
                "A restore acts with the rights of the role that calls it, and role \"{}\" may not SELECT and {op} rows of {name}.",
                pg::current_user()
            ),
            "Grant the role those privileges on the table, or have its owner or a superuser run the restore.",
        );
    }
    if rls_blocks {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to restore {name}: it has row-level security"),
            format!(
                "Row-level security applies to role \"{}\" on {name}, and a restore puts rows back by key, past its policies.",
                pg::current_user()
            ),
            "Have the table's owner, a superuser or a role with BYPASSRLS run the restore.",
        );
    }
}

/// Every function here writes: operators only, and not on a standby.
fn require_operator(what: &str) {
    breakglass::require_operator(
        format!("permission denied to {what}"),
        format!("Only members of {} may {what}.", breakglass::OPERATOR_ROLE),
    );
    crate::core::error::require_writable(&format!("a restore ({what})"));
}

//! `restore_table()` as set operations (issue 18: a restore must not take longer than the
//! incident). Putting a table back as it was at a time needs, per row, only the earliest
//! change after that time: an INSERT means the row was not there (delete it), anything
//! else carries the row as it was (`old_row`: update it back, or insert it again). So
//! each table of the set takes three statements (DELETE, UPDATE, INSERT over jsonb
//! arrays of at most `BATCH` rows), not one statement per change.
//!
//! The set path is taken only where it is exact: every change has a key, no UPDATE in the
//! set changed a row's key (a key change links two keys that only the sequence of changes
//! tells apart), and the rows' columns are the same throughout and still exist. Otherwise
//! `restore_table()` undoes the changes one by one, newest first, which explains what it
//! cannot do. Only keys and ids of the changes are read to find each row's earliest
//! change, then only those changes' images, so 100,000 changes of 10,000 rows move
//! 10,000 row images through SPI, not 200,000.

use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::api::json_members::members;
use crate::api::restore::{
    columns_of, qualified, quoted_where, require_rights, Restoring, ROW_ENTRIES,
};
use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::pg;
use crate::records::row_json::StableFormats;

/// Rows per statement.
const BATCH: usize = 10_000;

/// (table, row key, audit id, whether no UPDATE changed the key) of one change.
type ChangeKey = (pg_sys::Oid, Option<String>, i64, bool);

/// What putting one table back needs: the keys of rows to delete and the rows to put back.
#[derive(Default)]
struct Plan {
    deletes: Vec<String>,
    puts: Vec<String>,
    /// The column names of the rows put back (the same for all of them).
    columns: Option<Vec<String>>,
    key_names: Vec<String>,
}

/// The changes `filter` selects (with `$1` = the table, `$2` = the time), surveyed in one
/// pass: how many, whether all have a key that no UPDATE among them changed (the set
/// path needs that), and the id of each row's earliest change.
pub struct Survey {
    pub count: i64,
    pub keyed: bool,
    earliest: Vec<i64>,
}

pub fn survey(filter: &str, relid: pg_sys::Oid, as_of: TimestampWithTimeZone) -> Survey {
    let empty = Survey {
        count: 0,
        keyed: false,
        earliest: Vec::new(),
    };
    let Some(log) = extension::own_table(c"audit_log") else {
        return empty;
    };
    // Keys and ids only (no row images), in no order: the earliest change of each row is
    // found here by id, which costs less than PostgreSQL sorting jsonb keys.
    let sql = format!(
        "SELECT table_oid, row_key::text, id,
                row_key IS NOT NULL AND (old_row IS NULL OR new_row IS NULL OR row_key <@ old_row)
           FROM prodguard.audit_log WHERE {ROW_ENTRIES} AND {filter}"
    );
    let rows: Option<Vec<ChangeKey>> = extension::as_owner_of(log, || {
        Spi::connect(|client| {
            client
                .select(&sql, None, &[relid.into(), as_of.into()])
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some((
                            r.get::<pg_sys::Oid>(1).ok()??,
                            r.get::<String>(2).ok()?,
                            r.get::<i64>(3).ok()??,
                            r.get::<bool>(4).ok()?.unwrap_or(false),
                        ))
                    })
                    .collect()
                })
        })
    })
    .and_then(|r| r.ok());
    let Some(mut rows) = rows else {
        return empty;
    };
    rows.sort_unstable_by_key(|r| r.2);
    let mut survey = Survey {
        count: rows.len() as i64,
        keyed: rows.iter().all(|r| r.3),
        earliest: Vec::new(),
    };
    let mut seen: std::collections::HashSet<(pg_sys::Oid, String)> =
        std::collections::HashSet::with_capacity(rows.len());
    for (table, key, id, _) in rows {
        if let Some(key) = key {
            if seen.insert((table, key)) {
                survey.earliest.push(id);
            }
        }
    }
    survey
}

/// Undoes the surveyed changes as set operations, reading only the earliest change of each
/// row; `None` (nothing written) when the rows' columns differ between changes or are
/// gone.
pub fn undo_since(
    filter: &str,
    relid: pg_sys::Oid,
    as_of: TimestampWithTimeZone,
    survey: &Survey,
    force: bool,
) -> Option<i64> {
    let log = extension::own_table(c"audit_log")?;
    let sql = format!(
        "SELECT table_oid, row_key::text, old_row::text
           FROM prodguard.audit_log JOIN pg_catalog.unnest($3::bigint[]) AS e(id) USING (id)
          WHERE {ROW_ENTRIES} AND {filter}"
    );
    let earliest: Vec<(pg_sys::Oid, String, Option<String>)> = extension::as_owner_of(log, || {
        Spi::connect(|client| {
            client
                .select(
                    &sql,
                    None,
                    &[relid.into(), as_of.into(), survey.earliest.clone().into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| {
                        Some((
                            r.get::<pg_sys::Oid>(1).ok()??,
                            r.get::<String>(2).ok()??,
                            r.get::<String>(3).ok()?,
                        ))
                    })
                    .collect()
                })
        })
    })?
    .ok()?;
    let mut plans: HashMap<pg_sys::Oid, Plan> = HashMap::new();
    for (table, key, old) in earliest {
        let plan = plans.entry(table).or_default();
        if plan.key_names.is_empty() {
            plan.key_names = members(&key).into_iter().map(|m| m.0).collect();
        }
        match old {
            None => plan.deletes.push(key),
            Some(old) => {
                let names: Vec<String> = members(&old).into_iter().map(|m| m.0).collect();
                match &plan.columns {
                    None => plan.columns = Some(names),
                    Some(c) if *c == names => {}
                    Some(_) => return None,
                }
                plan.puts.push(old);
            }
        }
    }
    // every column and key still there
    for (table, plan) in &plans {
        let columns = columns_of(*table);
        let needed = plan.columns.iter().flatten().chain(&plan.key_names);
        if needed.into_iter().any(|c| !columns.existing.contains(c)) {
            return None;
        }
    }
    for (table, plan) in &plans {
        apply(*table, plan, force, relid);
    }
    Some(survey.count)
}

/// Whether only pg_prodguard's own triggers (and PostgreSQL's internal ones: foreign keys)
/// fire on a table and it has no row security (rules: the caller asks `pg::has_rules`):
/// then nothing but the restoring statements decides what they write.
fn plain(relid: pg_sys::Oid) -> bool {
    if pg::has_row_security(relid) {
        return false;
    }
    Spi::get_one_with_args::<bool>(
        "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
                             WHERE t.tgrelid = $1 AND NOT t.tgisinternal
                               AND NOT (p.pronamespace = 'prodguard'::pg_catalog.regnamespace
                                        AND pg_catalog.left(t.tgname::text, 13) = 'zz_prodguard_'))",
        &[relid.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Puts one table back: deletes, then updates, then inserts (`ONLY` the table: an
/// inheritance child is another table, with its own audit). Each batch's rows must all be
/// back, updated or inserted, unless `force` (a trigger may skip a row, a row security
/// policy hide it); the changes of a table with rules cannot be counted. The caller's
/// rights are those on `named`, the table the call names (a partitioned table: the rows
/// go back as if written through it, as the changes may have been).
fn apply(relid: pg_sys::Oid, plan: &Plan, force: bool, named: pg_sys::Oid) {
    let _formats = StableFormats::set();
    if !plan.deletes.is_empty() {
        require_rights(named, "DELETE");
    }
    if !plan.puts.is_empty() {
        require_rights(named, "UPDATE");
        require_rights(named, "INSERT");
    }
    let table = pg::qualified_identifier(relid);
    let columns = columns_of(relid);
    let put_names = plan.columns.clone().unwrap_or_default();
    let present = |name: &str| put_names.iter().any(|p| p == name);
    let cols = quoted_where(&columns.write, present);
    let update_cols = quoted_where(&columns.update, present);
    let keys: Vec<String> = plan
        .key_names
        .iter()
        .map(pgrx::spi::quote_identifier)
        .collect();
    let rows = format!(
        "(SELECT r.* FROM jsonb_array_elements($1::jsonb) e,
                          jsonb_populate_record(NULL::{table}, e.value) r)"
    );
    let key_match = format!("({}) = ({})", qualified("t", &keys), qualified("r", &keys));
    let delete = format!("DELETE FROM ONLY {table} t USING {rows} r WHERE {key_match}");
    // The UPDATE says how many of the batch's keys it found still in place (keys are
    // distinct within a plan; a row a trigger skipped, or gave another key, does not
    // count). On a plain table a batch whose every key was found needs no INSERT, whose
    // NOT EXISTS would turn every row down (a restore after UPDATEs spent a tenth of its
    // time there); elsewhere a trigger may still remove a row after it was found, and the
    // INSERT always runs. A table with rules is updated without RETURNING (a DO INSTEAD
    // rule without one refuses it).
    let set = format!(
        "UPDATE ONLY {table} t SET ({}) = ROW({}) FROM {rows} r WHERE {key_match}",
        update_cols.join(", "),
        qualified("r", &update_cols)
    );
    let counts = !pg::has_rules(relid);
    let skips = counts && plain(relid);
    let update = (!update_cols.is_empty()).then(|| {
        if counts {
            format!(
                "WITH u AS ({set} RETURNING CASE WHEN {key_match} THEN ROW({}) END AS k)
                 SELECT count(DISTINCT k) FROM u",
                qualified("r", &keys)
            )
        } else {
            set
        }
    });
    let insert = format!(
        "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE
         SELECT {} FROM {rows} r
          WHERE NOT EXISTS (SELECT FROM ONLY {table} t WHERE {key_match})",
        cols.join(", "),
        qualified("r", &cols)
    );
    let _restoring = Restoring::start();
    // Runs `sql` over `chunk`: with `counts`, what its one row says (the UPDATE's keys
    // found), else how many rows it changed.
    let run = |sql: &str, chunk: &[String], counts: bool| -> i64 {
        let batch = format!("[{}]", chunk.join(","));
        let done = extension::as_owner_restricted(relid, || {
            Spi::connect_mut(|c| {
                let result = c.update(sql, None, &[batch.as_str().into()])?;
                Ok::<_, pgrx::spi::Error>(if counts {
                    result.first().get_one::<i64>()?.unwrap_or(0)
                } else {
                    result.len() as i64
                })
            })
        });
        match done {
            Some(Err(e)) => raise_internal(&format!("restore {}", pg::describe_table(relid)), e),
            Some(Ok(n)) => n,
            None => 0,
        }
    };
    for chunk in plan.deletes.chunks(BATCH) {
        run(&delete, chunk, false);
    }
    // every UPDATE before any INSERT (a row put back may take a unique value that a row
    // updated back gives up)
    let mut found = vec![0; plan.puts.chunks(BATCH).len()];
    if let Some(update) = &update {
        for (chunk, n) in plan.puts.chunks(BATCH).zip(found.iter_mut()) {
            *n = run(update, chunk, counts);
        }
    }
    let mut missing = 0;
    for (chunk, found) in plan.puts.chunks(BATCH).zip(found) {
        let all = found >= chunk.len() as i64;
        let inserted = if all && skips {
            0
        } else {
            run(&insert, chunk, false)
        };
        if counts && update.is_some() {
            missing += (chunk.len() as i64 - found - inserted).max(0);
        }
    }
    if missing > 0 && !force {
        raise(
            PgSqlErrorCode::ERRCODE_NO_DATA_FOUND,
            format!(
                "cannot restore {}: {missing} {} not where the audit log left {}",
                pg::describe_table(relid),
                if missing == 1 { "row is" } else { "rows are" },
                if missing == 1 { "it" } else { "them" }
            ),
            "A trigger or row security policy of the table kept the restoring UPDATE from writing such rows; they still exist, so they were not inserted again.",
            "Restore the rows one by one with prodguard.restore_row() to see which and why, or call restore_table() with force => true to restore the others.",
        );
    }
}

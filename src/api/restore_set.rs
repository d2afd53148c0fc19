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
//! cannot do.

use std::collections::HashMap;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::api::json_members::members;
use crate::api::restore::{columns_of, qualified, require_rights, Change, Restoring};
use crate::core::error::raise_internal;
use crate::core::extension;
use crate::core::pg;
use crate::records::row_json::StableFormats;

/// Rows per statement.
const BATCH: usize = 10_000;

/// What putting one table back needs: the keys of rows to delete and the rows to put back.
#[derive(Default)]
struct Plan {
    deletes: Vec<String>,
    puts: Vec<String>,
    /// The column names of the rows put back (the same for all of them).
    columns: Option<Vec<String>>,
    key_names: Vec<String>,
}

/// Undoes `found` (every audited change of some tables after a time, newest first) as
/// set operations; returns how many changes were undone, or `None` when the set path is
/// not exact for them (nothing was written then).
pub fn undo_set(found: &[Change]) -> Option<i64> {
    let mut plans: HashMap<pg_sys::Oid, Plan> = HashMap::new();
    let mut seen: HashMap<(pg_sys::Oid, &str), ()> = HashMap::new();
    // oldest first: the first change met per key is the earliest after the time
    for change in found.iter().rev() {
        let key = change.key.as_deref()?;
        let key_members = members(key);
        if let (Some(old), Some(_)) = (&change.old_row, &change.new_row) {
            // an UPDATE that changed the key: the sequential path follows the row
            let old_members = members(old);
            let same_key = key_members
                .iter()
                .all(|(k, v)| old_members.iter().any(|(ok, ov)| ok == k && ov == v));
            if !same_key {
                return None;
            }
        }
        if seen.insert((change.table, key), ()).is_some() {
            continue;
        }
        let plan = plans.entry(change.table).or_default();
        if plan.key_names.is_empty() {
            plan.key_names = key_members.iter().map(|m| m.0.clone()).collect();
        }
        match &change.old_row {
            None => plan.deletes.push(key.to_string()),
            Some(old) => {
                let names: Vec<String> = members(old).into_iter().map(|m| m.0).collect();
                match &plan.columns {
                    None => plan.columns = Some(names),
                    Some(c) if *c == names => {}
                    Some(_) => return None,
                }
                plan.puts.push(old.clone());
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
        apply(*table, plan);
    }
    Some(found.len() as i64)
}

/// Puts one table back: deletes, then updates, then inserts.
fn apply(relid: pg_sys::Oid, plan: &Plan) {
    let _formats = StableFormats::set();
    if !plan.deletes.is_empty() {
        require_rights(relid, "DELETE");
    }
    if !plan.puts.is_empty() {
        require_rights(relid, "UPDATE");
        require_rights(relid, "INSERT");
    }
    let table = pg::qualified_identifier(relid);
    let columns = columns_of(relid);
    let put_names = plan.columns.clone().unwrap_or_default();
    let present = |c: &&(String, String)| put_names.contains(&c.0);
    let cols: Vec<String> = columns
        .write
        .iter()
        .filter(present)
        .map(|c| c.1.clone())
        .collect();
    let update_cols: Vec<String> = columns
        .update
        .iter()
        .filter(present)
        .map(|c| c.1.clone())
        .collect();
    let keys: Vec<String> = plan
        .key_names
        .iter()
        .map(|k| pgrx::spi::quote_identifier(k))
        .collect();
    let rows = format!(
        "(SELECT r.* FROM jsonb_array_elements($1::jsonb) e,
                          jsonb_populate_record(NULL::{table}, e.value) r)"
    );
    let key_match = format!("({}) = ({})", qualified("t", &keys), qualified("r", &keys));
    let delete = format!("DELETE FROM {table} t USING {rows} r WHERE {key_match}");
    let update = (!update_cols.is_empty()).then(|| {
        format!(
            "UPDATE {table} t SET ({}) = ROW({}) FROM {rows} r WHERE {key_match}",
            update_cols.join(", "),
            qualified("r", &update_cols)
        )
    });
    let insert = format!(
        "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE
         SELECT {} FROM {rows} r
          WHERE NOT EXISTS (SELECT FROM {table} t WHERE {key_match})",
        cols.join(", "),
        qualified("r", &cols)
    );
    let _restoring = Restoring::start();
    let run = |sql: &str, items: &[String]| {
        for chunk in items.chunks(BATCH) {
            let batch = format!("[{}]", chunk.join(","));
            let done = extension::as_owner_restricted(relid, || {
                Spi::connect_mut(|c| c.update(sql, None, &[batch.as_str().into()]).map(|_| ()))
            });
            if let Some(Err(e)) = done {
                raise_internal(&format!("restore {}", pg::describe_table(relid)), e);
            }
        }
    };
    run(&delete, &plan.deletes);
    if let Some(update) = &update {
        run(update, &plan.puts);
    }
    run(&insert, &plan.puts);
}

//! Test-data guard (SPEC §5): the AFTER INSERT/UPDATE row trigger of protected tables, which
//! judges each row as it is stored (after every BEFORE trigger, with generated columns
//! computed: issue 16); a refusal is an ERROR, which rolls the statement back.
//!
//! The per-row path is: look up the backend's compiled `Matcher` and the table's column
//! plan (both cached, `cache`), read the text values of the new row (on UPDATE only the
//! columns whose value changed, `values`), search, return. Catalog work happens only on a
//! cache miss (see `cache`).
//!
//! Scanned: every column whose type (or domain base type, or array element type) is in
//! the string category (text, varchar, char, name, citext, ...), enums, the text form of
//! composites, xml and hstore, and the string values inside json and jsonb (not the keys).
//!
//! The dictionaries, `scan()` and `scan_table()` are SQL functions (`api::dictionary`,
//! `api::scan`) built on this module's matcher and readers.

mod automaton;
pub mod cache;
pub mod ddl;
mod fold;
mod image;
mod json_text;
pub mod matcher;
mod shared;
mod starts;
pub mod table_scan;
pub mod values;

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::core::breakglass;
use crate::core::error::catch_bug;
use crate::core::finding::{Finding, Guard};
use crate::core::pg;
use crate::core::protection;
use crate::core::settings::{self, Environment, TestDataAction};
use crate::guards::policy;
use crate::records::alerts::{self, Kind};
use crate::records::audit_log;
use crate::records::denial::{self, Event};

use self::cache::{columns, matcher};
use self::matcher::{Hit, Pattern};
use self::values::strings;

/// The longest pattern a dictionary accepts, in characters.
pub const MAX_PATTERN_CHARS: usize = 1000;

/// Serves query cancel and statement_timeout in the middle of a long match (the matcher
/// is pure Rust and calls this through `super`, so that its benchmark builds without
/// PostgreSQL).
pub fn check_interrupts() {
    // (the matcher's plain Rust unit tests link without PostgreSQL)
    #[cfg(not(test))]
    pgrx::check_for_interrupts!();
}

/// Whether a pattern is nothing once folded as the matcher folds values (spaces only,
/// zero-width or ignorable characters): such a pattern would match every value.
pub fn folds_to_nothing(pattern: &str) -> bool {
    let mut key = String::new();
    fold::fold_into(pattern, &mut key);
    key.trim().is_empty()
}
/// Matched text longer than this is cut in messages.
const SHOWN_MATCH_CHARS: usize = 100;

thread_local! {
    /// Reused for folding non-ASCII values, so the per-row path does not allocate.
    static FOLD_BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    static ROW: std::cell::Cell<Deformed> = std::cell::Cell::new(Deformed::default());
}

// ---------------------------------------------------------------------------------------
// The trigger.

/// A match found in a row.
struct Found {
    column: String,
    hit: Hit,
    pattern: Pattern,
}

#[pg_trigger]
fn test_data_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    catch_bug("the test-data trigger", || test_data_trigger_row(trigger))
}

fn test_data_trigger_row<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let new = trigger.new();
    let env = settings::environment();
    let mut action = settings::TEST_DATA_ACTION.get();
    if env == Environment::Development || action == TestDataAction::Off {
        return Ok(new);
    }
    // The trigger fires ALWAYS: session_replication_role = replica does not silence it.
    // Logical replication's apply worker, which runs in that role, is the exception that
    // the replication decision makes for every guard (README: Replication): a refusal would
    // stall the subscription, and the publisher's guards judged the row already. The
    // matches are recorded instead, as the `log` action records them.
    if action != TestDataAction::Log && pg::replication_apply().is_some() {
        action = TestDataAction::Log;
    }
    let data = trigger.trigger_data();
    // SAFETY: a row-level AFTER INSERT/UPDATE trigger: tg_relation is open, tg_trigtuple
    // is the stored row on INSERT and the old row on UPDATE, where tg_newtuple is the new one.
    let rel = data.tg_relation;
    let is_update = (data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK) == pg_sys::TRIGGER_EVENT_UPDATE;
    let (new_tuple, old_tuple) = if is_update {
        (data.tg_newtuple, data.tg_trigtuple)
    } else {
        (data.tg_trigtuple, std::ptr::null_mut())
    };
    // SAFETY: as above.
    let found = unsafe { find_in_row(rel, new_tuple, old_tuple) };
    if let Some(found) = found {
        // SAFETY: tg_relation is open.
        let (relid, tupdesc) = unsafe { ((*rel).rd_id, (*rel).rd_att) };
        let row = Row {
            tuple: new_tuple,
            tupdesc,
        };
        act(env, action, relid, trigger_op(data.tg_event), &found, row);
    }
    Ok(new)
}

fn trigger_op(event: pg_sys::TriggerEvent) -> &'static str {
    if (event & pg_sys::TRIGGER_EVENT_OPMASK) == pg_sys::TRIGGER_EVENT_UPDATE {
        "UPDATE"
    } else {
        "INSERT"
    }
}

/// The first test-data match in a row; on UPDATE only in columns whose value changed.
///
/// # Safety
/// `rel` must be open, `new` a tuple of it, `old` NULL or the row it replaces.
unsafe fn find_in_row(
    rel: pg_sys::Relation,
    new: pg_sys::HeapTuple,
    old: pg_sys::HeapTuple,
) -> Option<Found> {
    let matcher = matcher();
    if matcher.is_empty() {
        return None;
    }
    // SAFETY: guaranteed by the caller; the rows are deformed once each (reading columns
    // one by one after a variable-length one would walk the row from its start each time).
    unsafe {
        let tupdesc = (*rel).rd_att;
        let cols = columns((*rel).rd_id, tupdesc);
        if cols.is_empty() {
            return None;
        }
        let mut row = ROW.take();
        deform(new, tupdesc, &mut row.new_values, &mut row.new_nulls);
        if !old.is_null() {
            deform(old, tupdesc, &mut row.old_values, &mut row.old_nulls);
        }
        let found = scan_columns(&matcher, &cols, &row, !old.is_null());
        ROW.set(row);
        found
    }
}

/// The deformed new (and old) row of the trigger call, kept between calls so that its
/// buffers are allocated once per backend.
#[derive(Default)]
struct Deformed {
    new_values: Vec<pg_sys::Datum>,
    new_nulls: Vec<bool>,
    old_values: Vec<pg_sys::Datum>,
    old_nulls: Vec<bool>,
}

/// # Safety
/// `tuple` must be a tuple with descriptor `tupdesc`.
unsafe fn deform(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    values: &mut Vec<pg_sys::Datum>,
    nulls: &mut Vec<bool>,
) {
    // SAFETY: guaranteed by the caller; both vectors get natts elements.
    unsafe {
        let natts = (*tupdesc).natts as usize;
        values.resize(natts, pg_sys::Datum::from(0));
        nulls.resize(natts, true);
        pg_sys::heap_deform_tuple(tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
    }
}

/// The first match in the scanned columns of a deformed row; on UPDATE (`compare`) only
/// in columns whose value changed.
///
/// # Safety
/// `row` must hold the deformed row(s) of the relation `cols` was made for.
unsafe fn scan_columns(
    matcher: &matcher::Matcher,
    cols: &[values::Column],
    row: &Deformed,
    compare: bool,
) -> Option<Found> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        for col in cols.iter() {
            let i = col.attnum as usize - 1;
            if row.new_nulls[i] {
                continue;
            }
            let datum = row.new_values[i];
            if compare && !row.old_nulls[i] {
                let before = row.old_values[i];
                if pg::same_image(datum, before, col.typbyval, col.typlen) {
                    continue;
                }
            }
            let mut found = None;
            FOLD_BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                strings(datum, col, &mut |s| {
                    found = matcher.first(s, &mut buffer);
                    found.is_some()
                });
            });
            if let Some(hit) = found {
                let pattern = matcher.pattern(hit.pattern).to_owned();
                return Some(Found {
                    column: col.name.clone(),
                    hit,
                    pattern,
                });
            }
        }
    }
    None
}

/// The new row, for the `log` action to find it again in the audit trigger.
struct Row {
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
}

/// What a match does, by prodguard.test_data_action and the environment.
fn act(
    env: Environment,
    action: TestDataAction,
    relid: pg_sys::Oid,
    op: &str,
    found: &Found,
    row: Row,
) {
    // SAFETY: lsyscache lookup of an open relation.
    let rel_name = unsafe { pg::cstr_or(pg_sys::get_rel_name(relid), "") };
    let message = format!("new row for relation \"{rel_name}\" contains test data");
    let detail = format!(
        "Column \"{}\" contains \"{}\", which matches pattern \"{}\" of dictionary \"{}\".",
        found.column,
        shorten(&found.hit.text),
        found.pattern.pattern,
        found.pattern.dictionary
    );
    let finding = Finding::here(
        Guard::TestData,
        op,
        format!("{} (column \"{}\")", pg::describe_table(relid), found.column),
        detail.clone(),
        Some(relid),
    )
    .prefer("Otherwise correct the value, or remove the pattern with prodguard.dictionary_remove() if it is real data.")
    .with_message(message.clone())
    .with_sqlstate(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION);
    match action {
        TestDataAction::Reject => {
            let _ = policy::enforce(env, &finding, breakglass::Scope::Transaction, None);
        }
        TestDataAction::Warn => {
            denial::log(Event::Warned, &finding, None);
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
                message,
                function_name!(),
            )
            .set_detail(detail.clone())
            .report(PgLogLevel::WARNING);
        }
        TestDataAction::Log => {
            let matches = serde_json::json!([{
                "column": found.column,
                "text": found.hit.text,
                "pattern": found.pattern.pattern,
                "dictionary": found.pattern.dictionary,
            }]);
            if protection::flags(relid).audit {
                // The row's own audit entry (written by the AFTER trigger) carries them.
                let attnums = columns(relid, row.tupdesc)
                    .iter()
                    .map(|c| c.attnum)
                    .collect();
                // SAFETY: the new row of this trigger call, with its relation's descriptor.
                unsafe {
                    audit_log::note_test_data(relid, attnums, row.tuple, row.tupdesc, matches)
                };
            } else {
                audit_log::record_test_data(relid, op, env, matches);
            }
        }
        TestDataAction::Off => return,
    }
    // whatever let the row in (log, warn, a staging warning, an override): tell someone
    let how = match action {
        TestDataAction::Log => "prodguard.test_data_action = log",
        TestDataAction::Warn => "prodguard.test_data_action = warn",
        _ if env == Environment::Staging => "staging warns only",
        _ => "on an override",
    };
    alerts::raise(
        Kind::TestDataLogged,
        &pg::describe_table(relid),
        &format!("{op} stored a row carrying test data ({how}). {detail}"),
    );
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHOWN_MATCH_CHARS {
        text.to_string()
    } else {
        let cut: String = text.chars().take(SHOWN_MATCH_CHARS).collect();
        format!("{cut}...")
    }
}

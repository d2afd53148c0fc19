//! Test-data guard (SPEC §5): dictionaries, the BEFORE INSERT/UPDATE row trigger of
//! protected tables, and `scan()` / `scan_table()`.
//!
//! The per-row path is: look up the backend's compiled `Matcher` and the table's column
//! plan (both cached), read the text values of the new row (on UPDATE only the columns
//! whose value changed), search, return. Catalog work happens only on a cache miss:
//! - the matcher is built from the enabled dictionaries once per backend, and rebuilt
//!   after a relcache invalidation of `prodguard.dictionary` (sent at commit by a
//!   statement trigger on both dictionary tables, so a committed change is in force in
//!   every session of the database from its next statement; dictionaries are per
//!   database, as sinval messages are);
//! - a table's column plan (which columns to read, and how) once per backend, forgotten
//!   when the table's relcache entry is invalidated (ALTER TABLE).
//!
//! Scanned: every column whose type (or domain base type, or array element type) is in
//! the string category (text, varchar, char, name, citext, ...), enums, and the string
//! values inside json and jsonb (not the keys).

use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::policy::{raise, raise_internal};
use pgrx::{JsonB, PgRelation};

use crate::breakglass;
use crate::denial_log::{self, Event};
use crate::extension::{self, OidMap};
use crate::matcher::{Hit, Kind, Matcher, Pattern};
use crate::policy::{self, Finding, Guard};
use crate::settings::{self, Environment, TestDataAction};

const MAX_PATTERN_CHARS: usize = 1000;

/// The name of the trigger `protect(test_data => true)` installs. BEFORE triggers fire in
/// name order: this one comes after the table's own, so it sees the row as it is written.
pub const TRIGGER_NAME: &str = "zz_prodguard_test_data";

extension_sql_file!(
    "../sql/test_data.sql",
    name = "test_data",
    requires = [
        dictionaries_changed,
        dictionary_add,
        dictionary_remove,
        dictionary_enable,
        test_data_trigger,
        scan,
        scan_table
    ]
);

/// Installs or removes the test-data trigger of a table, as its owner.
pub fn set_trigger(relid: pg_sys::Oid, on: bool) {
    let table = extension::qualified_identifier(relid);
    let sql = if on {
        format!(
            "CREATE OR REPLACE TRIGGER {TRIGGER_NAME} BEFORE INSERT OR UPDATE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION prodguard.test_data_trigger()"
        )
    } else {
        format!("DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON {table}")
    };
    let verb = if on { "create" } else { "drop" };
    crate::command_guard::run_own_ddl(relid, &sql, &format!("{verb} the test-data trigger"));
}

// ---------------------------------------------------------------------------------------
// The compiled matcher and the column plans, per backend.

/// How to read one column's strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// A varlena string type (text, varchar, char, citext, ...): read its bytes.
    Varlena,
    /// Any other string-like type (name, enums, ...): its output function.
    Output(pg_sys::Oid),
    Json,
    Jsonb,
}

#[derive(Clone, Debug)]
struct Column {
    attnum: i32,
    name: String,
    reader: Reader,
    /// For arrays: the element type's length, by-value flag and alignment.
    array: Option<(i16, bool, std::ffi::c_char, pg_sys::Oid)>,
    typlen: i16,
    typbyval: bool,
}

#[derive(Default)]
struct Cache {
    matcher: Option<Rc<Matcher>>,
    dictionary_table: Option<pg_sys::Oid>,
    columns: OidMap<Rc<Vec<Column>>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    static EPOCH: Cell<u64> = const { Cell::new(0) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Reused for folding non-ASCII values, so the per-row path does not allocate.
    static FOLD_BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

fn register_callback() {
    extension::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => {
            if relid == pg_sys::InvalidOid {
                *c = Cache::default();
            } else if c.dictionary_table.is_none_or(|t| t == relid) {
                c.matcher = None;
                c.dictionary_table = None;
            } else {
                c.columns.remove(&relid);
            }
            EPOCH.set(EPOCH.get() + 1);
        }
        Err(_) => EPOCH.set(EPOCH.get() + 1),
    });
}

/// The matcher built from the enabled dictionaries of this database.
fn matcher() -> Rc<Matcher> {
    register_callback();
    if let Some(m) = CACHE.with(|c| c.borrow().matcher.clone()) {
        return m;
    }
    let epoch = EPOCH.get();
    let table = extension::own_table(c"dictionary");
    let patterns = table
        .and_then(|t| extension::as_owner_of(t, load_patterns))
        .unwrap_or_default();
    let matcher = Rc::new(Matcher::new(patterns));
    if EPOCH.get() == epoch {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.matcher = Some(matcher.clone());
            c.dictionary_table = table;
        });
    }
    matcher
}

fn load_patterns() -> Vec<Pattern> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT e.dictionary, e.pattern, e.match
                   FROM prodguard.dictionary_entry e
                   JOIN prodguard.dictionary d ON d.name = e.dictionary
                  WHERE d.enabled",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|row| {
                    let dictionary = row.get::<String>(1).ok().flatten()?;
                    let pattern = row.get::<String>(2).ok().flatten()?;
                    let kind = Kind::parse(&row.get::<String>(3).ok().flatten()?)?;
                    Some(Pattern {
                        dictionary,
                        pattern,
                        kind,
                    })
                })
                .collect()
            })
            .unwrap_or_default()
    })
}

/// The columns of a relation that the guard reads.
fn columns(relid: pg_sys::Oid, tupdesc: pg_sys::TupleDesc) -> Rc<Vec<Column>> {
    register_callback();
    if let Some(cols) = CACHE.with(|c| c.borrow().columns.get(&relid).cloned()) {
        return cols;
    }
    let epoch = EPOCH.get();
    let mut cols = Vec::new();
    // SAFETY: a valid tuple descriptor; lsyscache lookups of its column types.
    unsafe {
        for i in 0..(*tupdesc).natts as usize {
            let att = &*(*tupdesc).attrs.as_ptr().add(i);
            if att.attisdropped {
                continue;
            }
            let base = pg_sys::getBaseType(att.atttypid);
            let element = pg_sys::get_element_type(base);
            let (reader, array) = if element != pg_sys::InvalidOid {
                let elem_base = pg_sys::getBaseType(element);
                let Some(reader) = reader_for(elem_base) else {
                    continue;
                };
                let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
                pg_sys::get_typlenbyvalalign(element, &mut len, &mut byval, &mut align);
                (reader, Some((len, byval, align, element)))
            } else {
                let Some(reader) = reader_for(base) else {
                    continue;
                };
                (reader, None)
            };
            cols.push(Column {
                attnum: i as i32 + 1,
                name: CStr::from_ptr(att.attname.data.as_ptr())
                    .to_string_lossy()
                    .into_owned(),
                reader,
                array,
                typlen: att.attlen,
                typbyval: att.attbyval,
            });
        }
    }
    let cols = Rc::new(cols);
    if EPOCH.get() == epoch {
        CACHE.with(|c| c.borrow_mut().columns.insert(relid, cols.clone()));
    }
    cols
}

/// How to read a (base) type, or `None` if it holds no text the guard scans.
fn reader_for(typid: pg_sys::Oid) -> Option<Reader> {
    if typid == pg_sys::JSONOID {
        return Some(Reader::Json);
    }
    if typid == pg_sys::JSONBOID {
        return Some(Reader::Jsonb);
    }
    // SAFETY: lsyscache lookups of an existing type.
    unsafe {
        let mut category: std::ffi::c_char = 0;
        let mut preferred = false;
        pg_sys::get_type_category_preferred(typid, &mut category, &mut preferred);
        let is_enum = pg_sys::type_is_enum(typid);
        if category as u8 != b'S' && !is_enum {
            return None;
        }
        let mut output = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
        if varlena && !is_enum && typid != pg_sys::NAMEOID {
            Some(Reader::Varlena)
        } else {
            Some(Reader::Output(output))
        }
    }
}

/// Calls `visit` with each string a column value holds, until it returns true.
///
/// # Safety
/// `datum` must be a non-null value of the column's type.
unsafe fn strings(datum: pg_sys::Datum, col: &Column, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    // SAFETY: guaranteed by the caller; arrays are deconstructed with their element's
    // storage parameters.
    unsafe {
        match col.array {
            None => one(datum, col.reader, visit),
            Some((len, byval, align, element)) => {
                let array =
                    pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
                let mut values: *mut pg_sys::Datum = std::ptr::null_mut();
                let mut nulls: *mut bool = std::ptr::null_mut();
                let mut n = 0;
                pg_sys::deconstruct_array(
                    array,
                    element,
                    len as i32,
                    byval,
                    align,
                    &mut values,
                    &mut nulls,
                    &mut n,
                );
                for i in 0..n as usize {
                    if !*nulls.add(i) && one(*values.add(i), col.reader, visit) {
                        return true;
                    }
                }
                false
            }
        }
    }
}

/// # Safety
/// `datum` must be a non-null value of a type `reader` reads.
unsafe fn one(datum: pg_sys::Datum, reader: Reader, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        match reader {
            Reader::Varlena => {
                let v = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
                let bytes = pgrx::varlena::varlena_to_byte_slice(v);
                // Server text is valid in its encoding; the plain check is the fast path.
                match std::str::from_utf8(bytes) {
                    Ok(s) => visit(s),
                    Err(_) => visit(&String::from_utf8_lossy(bytes)),
                }
            }
            Reader::Output(f) => {
                let s = pg_sys::OidOutputFunctionCall(f, datum);
                visit(&CStr::from_ptr(s).to_string_lossy())
            }
            Reader::Json => match pgrx::Json::from_datum(datum, false) {
                Some(json) => json_strings(&json.0, visit),
                None => false,
            },
            Reader::Jsonb => match JsonB::from_datum(datum, false) {
                Some(json) => json_strings(&json.0, visit),
                None => false,
            },
        }
    }
}

fn json_strings(value: &serde_json::Value, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => visit(s),
        Value::Array(items) => items.iter().any(|v| json_strings(v, visit)),
        Value::Object(map) => map.values().any(|v| json_strings(v, visit)),
        _ => false,
    }
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
    let new = trigger.new();
    let env = settings::environment();
    let action = settings::TEST_DATA_ACTION.get();
    if env == Environment::Development || action == TestDataAction::Off {
        return Ok(new);
    }
    let data = trigger.trigger_data();
    // SAFETY: a row-level BEFORE INSERT/UPDATE trigger: tg_relation is open, tg_trigtuple
    // is the new row on INSERT and the old row on UPDATE, where tg_newtuple is the new one.
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
    // SAFETY: guaranteed by the caller.
    unsafe {
        let tupdesc = (*rel).rd_att;
        let cols = columns((*rel).rd_id, tupdesc);
        for col in cols.iter() {
            let mut null = false;
            let datum = pg_sys::heap_getattr(new, col.attnum, tupdesc, &mut null);
            if null {
                continue;
            }
            if !old.is_null() {
                let mut old_null = false;
                let before = pg_sys::heap_getattr(old, col.attnum, tupdesc, &mut old_null);
                if !old_null && extension::same_image(datum, before, col.typbyval, col.typlen) {
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
                let pattern = matcher.patterns()[hit.pattern].clone();
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

/// What a match does, by prodguard.test_data_action and the environment.
/// The new row, for the `log` action to find it again in the audit trigger.
struct Row {
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
}

fn act(
    env: Environment,
    action: TestDataAction,
    relid: pg_sys::Oid,
    op: &str,
    found: &Found,
    row: Row,
) {
    // SAFETY: lsyscache lookup of an open relation.
    let rel_name = unsafe { extension::cstr_or(pg_sys::get_rel_name(relid), "") };
    let message = format!("new row for relation \"{rel_name}\" contains test data");
    let detail = format!(
        "Column \"{}\" contains \"{}\", which matches pattern \"{}\" of dictionary \"{}\".",
        found.column,
        shorten(&found.hit.text),
        found.pattern.pattern,
        found.pattern.dictionary
    );
    let db = crate::environment::current_database();
    let mut finding = Finding::blocked(
        Guard::TestData,
        op,
        format!("{} (column \"{}\")", extension::describe_table(relid), found.column),
        "",
        detail.clone(),
        format!(
            "Otherwise correct the value, or remove the pattern with prodguard.dictionary_remove() if it is real data. {}",
            policy::tag_hint(&db)
        ),
        Some(relid),
    );
    finding.message = Some(message.clone());
    finding.sqlstate = PgSqlErrorCode::ERRCODE_CHECK_VIOLATION;
    match action {
        TestDataAction::Reject => {
            let _ = policy::enforce(env, &finding, breakglass::Scope::Transaction, None);
        }
        TestDataAction::Warn => {
            denial_log::log(Event::Warned, &finding, None);
            ErrorReport::new(
                PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
                message,
                function_name!(),
            )
            .set_detail(detail)
            .report(PgLogLevel::WARNING);
        }
        TestDataAction::Log => {
            let matches = serde_json::json!([{
                "column": found.column,
                "text": found.hit.text,
                "pattern": found.pattern.pattern,
                "dictionary": found.pattern.dictionary,
            }]);
            if crate::protection::flags(relid).audit {
                // The row's own audit entry (written by the AFTER trigger) carries them.
                // SAFETY: the new row of this trigger call, with its relation's descriptor.
                let print = unsafe { fingerprint(relid, row.tuple, row.tupdesc) };
                PENDING.with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() >= 1000 {
                        p.remove(0);
                    }
                    p.push((relid, print, matches));
                });
            } else {
                crate::audit::record_test_data(relid, op, env, matches);
            }
        }
        TestDataAction::Off => {}
    }
}

thread_local! {
    /// Matches of rows written under `log` whose audit entry is still to be written by the
    /// AFTER row trigger: (table, fingerprint of the row's scanned values, matches).
    static PENDING: RefCell<Vec<(pg_sys::Oid, u64, serde_json::Value)>> =
        const { RefCell::new(Vec::new()) };
}

/// The test-data matches recorded for this row by the BEFORE trigger, as jsonb, if any.
/// Called by the audit trigger for every audited row: free when nothing is pending.
///
/// # Safety
/// `tuple` must be NULL or a tuple of `relid` with descriptor `tupdesc`.
pub unsafe fn take_pending(
    relid: pg_sys::Oid,
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
) -> Option<pg_sys::Datum> {
    if tuple.is_null() || PENDING.with(|p| p.borrow().is_empty()) {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let print = unsafe { fingerprint(relid, tuple, tupdesc) };
    let matches = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let i = p.iter().position(|(r, f, _)| *r == relid && *f == print)?;
        Some(p.remove(i).2)
    })?;
    Some(crate::audit::jsonb_from_text(&matches.to_string()))
}

/// A hash of the values the guard scans in a row (detoasted, so the stored row and the row
/// before storage agree).
///
/// # Safety
/// `tuple` must be a tuple of `relid` with descriptor `tupdesc`.
unsafe fn fingerprint(
    relid: pg_sys::Oid,
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for col in columns(relid, tupdesc).iter() {
        let mut null = false;
        // SAFETY: guaranteed by the caller.
        let datum = unsafe { pg_sys::heap_getattr(tuple, col.attnum, tupdesc, &mut null) };
        col.attnum.hash(&mut h);
        if !null {
            // SAFETY: a non-null value of the column's own type.
            unsafe {
                strings(datum, col, &mut |s| {
                    s.hash(&mut h);
                    false
                })
            };
        }
    }
    h.finish()
}

/// Long matched text is cut for messages.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 100 {
        text.to_string()
    } else {
        let cut: String = text.chars().take(100).collect();
        format!("{cut}...")
    }
}

// ---------------------------------------------------------------------------------------
// Inspection: scan() and scan_table().

/// What the guard would find in a value: every match, with character positions (1-based,
/// first and last character, as position() and substr() count).
#[pg_extern(stable, parallel_safe)]
fn scan(
    value: &str,
) -> TableIterator<
    'static,
    (
        name!(dictionary, String),
        name!(pattern, String),
        name!(match_start, i32),
        name!(match_end, i32),
    ),
> {
    let matcher = matcher();
    let rows: Vec<_> = matcher
        .all(value)
        .into_iter()
        .map(|hit| {
            let p = &matcher.patterns()[hit.pattern];
            (
                p.dictionary.clone(),
                p.pattern.clone(),
                hit.start as i32 + 1,
                hit.end as i32,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Existing rows of a table that carry test data, read in batches through a cursor, so
/// memory stays bounded by the batch and the matches, whatever the table's size.
#[pg_extern(volatile)]
fn scan_table(
    tbl: PgRelation,
    max_rows: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(ctid, pg_sys::ItemPointerData),
        name!(column_name, String),
        name!(dictionary, String),
        name!(pattern, String),
    ),
> {
    let matcher = matcher();
    let cols = columns(tbl.oid(), tbl.tuple_desc().as_ptr());
    let mut rows = Vec::new();
    if cols.is_empty() || matcher.is_empty() {
        return TableIterator::new(rows);
    }
    let select: Vec<String> = cols
        .iter()
        .map(|c| pgrx::spi::quote_identifier(&c.name))
        .collect();
    let query = format!(
        "SELECT ctid, {} FROM {} {}",
        select.join(", "),
        extension::qualified_identifier(tbl.oid()),
        max_rows
            .map(|n| format!("LIMIT {}", n.max(0)))
            .unwrap_or_default()
    );
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            let mut cursor = client.open_cursor(query.as_str(), &[]);
            loop {
                let mut batch = cursor.fetch(1000).unwrap_or_else(|e| {
                    raise_internal("read the table being scanned", e);
                    unreachable!()
                });
                if batch.is_empty() {
                    break;
                }
                while batch.next().is_some() {
                    let Ok(Some(ctid)) = batch.get::<pg_sys::ItemPointerData>(1) else {
                        continue;
                    };
                    for (i, col) in cols.iter().enumerate() {
                        let Ok(Some(datum)) = batch.get_datum_by_ordinal(i + 2) else {
                            continue;
                        };
                        let mut hits = Vec::new();
                        // SAFETY: a non-null value of the column's own type.
                        unsafe {
                            strings(datum, col, &mut |s| {
                                hits.extend(matcher.all(s));
                                false
                            })
                        };
                        for hit in hits {
                            let p = &matcher.patterns()[hit.pattern];
                            rows.push((
                                ctid,
                                col.name.clone(),
                                p.dictionary.clone(),
                                p.pattern.clone(),
                            ));
                        }
                    }
                }
            }
        })
    });
    TableIterator::new(rows)
}

// ---------------------------------------------------------------------------------------
// Dictionaries.

/// Adds patterns to a dictionary, creating it if needed. Returns how many were new.
/// (SQL: prodguard.dictionary_add(dictionary, patterns, "match" DEFAULT 'word').)
#[pg_extern(name = "_dictionary_add", volatile)]
fn dictionary_add(dictionary: &str, patterns: Vec<Option<String>>, match_kind: &str) -> i32 {
    require_operator("add patterns to", dictionary);
    let patterns = valid_patterns(dictionary, patterns);
    if Kind::parse(match_kind).is_none() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown match kind \"{match_kind}\""),
            "A pattern matches as a whole word (word) or anywhere (substring).",
            "Use 'word' or 'substring'.",
        );
    }
    write(
        "WITH d AS (INSERT INTO prodguard.dictionary (name, builtin) VALUES ($1, false)
                    ON CONFLICT (name) DO NOTHING),
              e AS (INSERT INTO prodguard.dictionary_entry (dictionary, pattern, match)
                    SELECT $1, p, $3 FROM unnest($2::text[]) AS p
                    ON CONFLICT (dictionary, pattern) DO UPDATE SET match = excluded.match
                    RETURNING xmax = 0 AS inserted)
         SELECT count(*) FILTER (WHERE inserted)::int FROM e",
        vec![dictionary.into(), patterns.into(), match_kind.into()],
    )
}

/// Removes patterns from a dictionary; returns how many were removed. Removing lowers the
/// guard, so in production it needs an override.
#[pg_extern(volatile)]
fn dictionary_remove(dictionary: &str, patterns: Vec<Option<String>>) -> i32 {
    require_operator("remove patterns from", dictionary);
    let patterns = valid_patterns(dictionary, patterns);
    lower_guard(
        "prodguard.dictionary_remove()",
        dictionary,
        "Removing patterns lets rows that carry them through.",
    );
    write(
        "WITH e AS (DELETE FROM prodguard.dictionary_entry
                     WHERE dictionary = $1 AND pattern = ANY ($2::text[]) RETURNING 1)
         SELECT count(*)::int FROM e",
        vec![dictionary.into(), patterns.into()],
    )
}

/// Enables or disables a whole dictionary (built-in ones included). Disabling lowers the
/// guard, so in production it needs an override.
#[pg_extern(volatile)]
fn dictionary_enable(dictionary: &str, enabled: bool) -> bool {
    require_operator("enable or disable", dictionary);
    if !enabled {
        lower_guard(
            "prodguard.dictionary_enable()",
            dictionary,
            "Disabling a dictionary lets rows that carry its patterns through.",
        );
    }
    let changed = write(
        "WITH u AS (UPDATE prodguard.dictionary SET enabled = $2 WHERE name = $1 RETURNING 1)
         SELECT count(*)::int FROM u",
        vec![dictionary.into(), enabled.into()],
    );
    if changed == 0 {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("dictionary \"{dictionary}\" does not exist"),
            "",
            "SELECT name FROM prodguard.dictionary lists them.",
        );
    }
    enabled
}

/// Statement trigger on the dictionary tables: tells every backend of this database, at
/// commit, to rebuild its matcher.
#[pg_trigger]
fn dictionaries_changed<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    if let Some(table) = extension::own_table(c"dictionary") {
        // SAFETY: queues a relcache invalidation of our own table, sent at commit.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table) };
    }
    Ok(None)
}

fn valid_patterns(dictionary: &str, patterns: Vec<Option<String>>) -> Vec<String> {
    if dictionary.trim().is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "dictionary name must not be empty".into(),
            "",
            "Name the dictionary, e.g. 'fixtures'.",
        );
    }
    patterns
        .into_iter()
        .map(|p| {
            let Some(p) = p else {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "patterns must not contain NULL".into(),
                    format!("Dictionary \"{dictionary}\"."),
                    "Remove the NULL elements from the array.",
                );
                unreachable!()
            };
            if p.trim().is_empty() {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "a pattern must not be empty".into(),
                    "An empty pattern would match every value.",
                    "Remove the empty elements from the array.",
                );
            }
            if p.chars().count() > MAX_PATTERN_CHARS {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("pattern is longer than {MAX_PATTERN_CHARS} characters"),
                    format!("The pattern has {} characters.", p.chars().count()),
                    "Use a shorter, characteristic part of it.",
                );
            }
            p
        })
        .collect()
}

fn require_operator(what: &str, dictionary: &str) {
    // SAFETY: GetUserId reads a backend global.
    if !breakglass::is_operator(unsafe { pg_sys::GetUserId() }) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what} dictionary \"{dictionary}\""),
            format!(
                "Only members of {} may change dictionaries.",
                breakglass::OPERATOR_ROLE
            ),
            "",
        );
    }
}

fn lower_guard(command: &str, dictionary: &str, why: &str) {
    let db = crate::environment::current_database();
    let env = settings::environment();
    let finding = Finding::blocked(
        Guard::TestData,
        command,
        format!("dictionary \"{dictionary}\""),
        format!(" in {} database \"{db}\"", env.name()),
        why,
        policy::tag_hint(&db),
        None,
    );
    policy::enforce(env, &finding, breakglass::Scope::Transaction, None);
}

/// Runs a statement on the dictionary tables as their owner; returns its single int.
fn write(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) -> i32 {
    let Some(table) = extension::own_table(c"dictionary") else {
        return 0;
    };
    match extension::as_owner_of(table, || Spi::get_one_with_args::<i32>(sql, &args)) {
        Some(Ok(n)) => n.unwrap_or(0),
        Some(Err(e)) => {
            raise_internal("change the dictionary", e);
            0
        }
        None => 0,
    }
}

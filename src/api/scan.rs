//! Inspection (SPEC §5): `prodguard.scan()`, what the test-data guard would find in a
//! value, and `prodguard.scan_table()`, the existing rows of a table that carry test data.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

use crate::guards::test_data::cache::matcher;
use crate::guards::test_data::table_scan;

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
    let relid = tbl.oid();
    drop(tbl);
    let rows: Vec<_> = table_scan::scan(relid, None, max_rows, usize::MAX)
        .into_iter()
        .map(|h| (h.ctid, h.column, h.dictionary, h.pattern))
        .collect();
    TableIterator::new(rows)
}

//! Inspection (SPEC §5): `prodguard.scan()`, what the test-data guard would find in a
//! value, and `prodguard.scan_table()`, the existing rows of a table that carry test data.

use crate::core::error::notice;
use crate::core::table_arg::{required, Accepts, TableArg};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guards::test_data::cache::matcher;
use crate::guards::test_data::table_scan;

/// The most rows one scan() returns (overlapping patterns can match a short value
/// hundreds of thousands of times).
const MAX_SCAN_ROWS: usize = 1000;

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
    let hits = matcher.all(value);
    if hits.len() > MAX_SCAN_ROWS {
        notice(format!(
            "prodguard.scan() found {} matches and returns the first {MAX_SCAN_ROWS}",
            hits.len()
        ));
    }
    let rows: Vec<_> = hits
        .into_iter()
        .take(MAX_SCAN_ROWS)
        .map(|hit| {
            let p = matcher.pattern(hit.pattern);
            (
                p.dictionary.to_string(),
                p.pattern.to_string(),
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
    tbl: Option<TableArg>,
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
    let relid = required(tbl, "prodguard.scan_table()", "tbl")
        .check("prodguard.scan_table()", Accepts::Tables);
    let rows: Vec<_> = table_scan::scan(relid, None, max_rows, usize::MAX)
        .into_iter()
        .map(|h| (h.ctid, h.column, h.dictionary, h.pattern))
        .collect();
    TableIterator::new(rows)
}

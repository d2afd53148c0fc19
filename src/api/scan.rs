//! Inspection (SPEC §5): `prodguard.scan()`, what the test-data guard would find in a
//! value, and `prodguard.scan_table()`, the existing rows of a table that carry test data.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

use crate::core::error::raise_internal;
use crate::core::extension;
use crate::core::pg;
use crate::guards::test_data::cache::{columns, matcher};
use crate::guards::test_data::values::strings;

/// Rows scan_table() reads from its cursor at a time: memory stays bounded by one batch.
const SCAN_BATCH: i64 = 1000;

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
        pg::qualified_identifier(tbl.oid()),
        max_rows
            .map(|n| format!("LIMIT {}", n.max(0)))
            .unwrap_or_default()
    );
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            let mut cursor = client.open_cursor(query.as_str(), &[]);
            loop {
                let mut batch = cursor
                    .fetch(SCAN_BATCH)
                    .unwrap_or_else(|e| raise_internal("read the table being scanned", e));
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

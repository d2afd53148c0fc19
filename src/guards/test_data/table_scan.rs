//! Reading a table's existing rows for test data: `scan_table()` (`api::scan`) and the
//! DDL checks of this guard (`ddl`). Rows are read in batches through a cursor, so memory
//! stays bounded by one batch and the hits kept, whatever the table's size.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::raise_internal;
use crate::core::extension;
use crate::core::pg;

use super::cache::{columns, matcher};
use super::values::strings;

/// Rows read from the cursor at a time.
const SCAN_BATCH: i64 = 1000;

/// One value of a row that carries test data.
pub struct RowHit {
    pub ctid: pg_sys::ItemPointerData,
    pub column: String,
    pub dictionary: String,
    pub pattern: String,
    pub text: String,
}

/// The test data in a table's rows: in the columns `only` (attribute numbers; all the
/// guard reads when `None`), in at most `max_rows` rows, stopping after `max_hits` hits.
pub fn scan(
    relid: pg_sys::Oid,
    only: Option<&[i32]>,
    max_rows: Option<i64>,
    max_hits: usize,
) -> Vec<RowHit> {
    let matcher = matcher();
    // SAFETY: the relation is opened and closed here, with the lock of a reader.
    let tupdesc = unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let desc = pg_sys::CreateTupleDescCopy((*rel).rd_att);
        pg_sys::relation_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        desc
    };
    let all = columns(relid, tupdesc);
    let cols: Vec<_> = all
        .iter()
        .filter(|c| only.is_none_or(|o| o.contains(&c.attnum)))
        .cloned()
        .collect();
    let mut hits = Vec::new();
    if cols.is_empty() || matcher.is_empty() || max_hits == 0 {
        return hits;
    }
    let select: Vec<String> = cols
        .iter()
        .map(|c| pgrx::spi::quote_identifier(&c.name))
        .collect();
    let query = format!(
        "SELECT ctid, {} FROM {} {}",
        select.join(", "),
        pg::qualified_identifier(relid),
        max_rows
            .map(|n| format!("LIMIT {}", n.max(0)))
            .unwrap_or_default()
    );
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            let mut cursor = client.open_cursor(query.as_str(), &[]);
            'rows: loop {
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
                        let mut found = Vec::new();
                        // SAFETY: a non-null value of the column's own type.
                        unsafe {
                            strings(datum, col, &mut |s| {
                                found.extend(matcher.all(s));
                                false
                            })
                        };
                        for hit in found {
                            let p = matcher.pattern(hit.pattern);
                            hits.push(RowHit {
                                ctid,
                                column: col.name.clone(),
                                dictionary: p.dictionary.to_string(),
                                pattern: p.pattern.to_string(),
                                text: hit.text,
                            });
                            if hits.len() >= max_hits {
                                break 'rows;
                            }
                        }
                    }
                }
            }
        })
    });
    hits
}

//! Status: `prodguard.status()`, what this session's guards would do, one setting a row;
//! and `prodguard.metrics`, the shared counters since server start.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::breakglass::{self, Override, Scope};
use crate::shared;

// The denial log's table and view, and the metrics view (the worker writing the table
// lives in denial_worker, the counters in shared).
extension_sql_file!(
    "../sql/denial_log.sql",
    name = "denial_log",
    requires = ["audit", metrics]
);
use crate::settings::{self, Token};

fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.to_string()
}

/// One row per fact a DBA checks first: the environment, whether the library was
/// preloaded, each command-guard token, the protected databases, the override in force.
#[pg_extern(stable, parallel_safe)]
fn status() -> TableIterator<'static, (name!(setting, String), name!(value, String))> {
    let mut rows = vec![
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (
            "environment".to_string(),
            settings::environment().name().to_string(),
        ),
        ("preloaded".to_string(), on_off(crate::preloaded())),
    ];
    for token in Token::ALL {
        rows.push((
            format!("command_guard.{}", token.name()),
            on_off(settings::is_blocked(token)),
        ));
    }
    rows.push(("command_guard.drop_extension".into(), "always".into()));
    rows.push((
        "row_guard.require_where".into(),
        on_off(settings::REQUIRE_WHERE.get()),
    ));
    let limit = settings::MAX_ROWS_CHANGED.get();
    rows.push((
        "row_guard.max_rows_changed".into(),
        if limit == 0 {
            "off".to_string()
        } else {
            limit.to_string()
        },
    ));
    let protected = crate::extension::with_pinned_search_path(|| {
        Spi::get_one::<i64>("SELECT count(*) FROM prodguard.protected_tables")
    })
    .ok()
    .flatten()
    .unwrap_or(0);
    rows.push(("protected_tables".into(), protected.to_string()));
    rows.push((
        "test_data.action".into(),
        format!("{:?}", settings::TEST_DATA_ACTION.get()).to_lowercase(),
    ));
    let dictionary_table = crate::extension::own_table(c"dictionary").unwrap_or(pg_sys::InvalidOid);
    let (dictionaries, patterns) = crate::extension::as_owner_of(dictionary_table, || {
        Spi::get_two::<i64, i64>(
            "SELECT (SELECT count(*) FROM prodguard.dictionary WHERE enabled),
                    (SELECT count(*) FROM prodguard.dictionary_entry e
                       JOIN prodguard.dictionary d ON d.name = e.dictionary WHERE d.enabled)",
        )
    })
    .and_then(Result::ok)
    .unwrap_or((None, None));
    rows.push((
        "test_data.dictionaries".into(),
        dictionaries.unwrap_or(0).to_string(),
    ));
    rows.push((
        "test_data.patterns".into(),
        patterns.unwrap_or(0).to_string(),
    ));
    rows.push((
        "protected_databases".into(),
        settings::string_setting(&settings::PROTECTED_DATABASES),
    ));
    let ovr = match breakglass::current(Scope::Transaction) {
        Override::None => "none".to_string(),
        Override::Valid { reason } => format!("in force: {reason}"),
        Override::Ignored { why, .. } => format!("ignored: {why}"),
    };
    rows.push(("override".into(), ovr));
    rows.push(("audit".into(), on_off(settings::AUDIT.get())));
    rows.push((
        "backup_max_rows".into(),
        settings::BACKUP_MAX_ROWS.get().to_string(),
    ));
    rows.push((
        "denial_log".into(),
        if shared::available() {
            format!(
                "queue of {} records, {} waiting",
                shared::capacity(),
                shared::depth().unwrap_or(0)
            )
        } else {
            "server log only (not in shared_preload_libraries)".into()
        },
    ));
    TableIterator::new(rows)
}

/// The counters behind `prodguard.metrics`; values are NULL when the library is not in
/// shared_preload_libraries (no shared memory).
#[pg_extern(name = "_metrics", volatile, parallel_safe)]
pub fn metrics() -> TableIterator<
    'static,
    (
        name!(metric, String),
        name!(value, Option<i64>),
        name!(description, String),
    ),
> {
    let values = shared::counters();
    let mut rows: Vec<(String, Option<i64>, String)> = shared::COUNTERS
        .iter()
        .enumerate()
        .map(|(i, (name, what))| {
            (
                name.to_string(),
                values.map(|v| v[i] as i64),
                what.to_string(),
            )
        })
        .collect();
    rows.push((
        "denial_queue_depth".into(),
        shared::depth().map(|d| d as i64),
        "denial records waiting in the queue now".into(),
    ));
    rows.push((
        "denial_queue_size".into(),
        shared::available().then(|| shared::capacity() as i64),
        "capacity of the queue (prodguard.denial_queue_size)".into(),
    ));
    TableIterator::new(rows)
}

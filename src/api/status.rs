//! Status: `prodguard.status()`, what this session's guards would do, one setting a row;
//! `prodguard.metrics`, the shared counters since server start; and the preload check
//! that CREATE EXTENSION runs last.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::core::breakglass::{self, Override, Scope};
use crate::core::extension::{self, preloaded};
use crate::core::settings::{self, Token};
use crate::records::shmem;

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
        ("preloaded".to_string(), on_off(preloaded())),
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
    let protected = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<i64>("SELECT count(*) FROM prodguard.protected_tables", &[])
    })
    .ok()
    .flatten()
    .unwrap_or(0);
    rows.push(("protected_tables".into(), protected.to_string()));
    rows.push((
        "test_data.action".into(),
        format!("{:?}", settings::TEST_DATA_ACTION.get()).to_lowercase(),
    ));
    let dictionary_table = extension::own_table(c"dictionary").unwrap_or(pg_sys::InvalidOid);
    let (dictionaries, patterns) = extension::as_owner_of(dictionary_table, || {
        crate::core::spi::two::<i64, i64>(
            "SELECT (SELECT count(*) FROM prodguard.dictionary WHERE enabled),
                    (SELECT count(*) FROM prodguard.dictionary_entry e
                       JOIN prodguard.dictionary d ON d.name = e.dictionary WHERE d.enabled)",
            &[],
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
        "row_drop_alert_percent".into(),
        settings::ROW_DROP_ALERT_PERCENT.get().to_string(),
    ));
    rows.push((
        "row_drop_window".into(),
        format!("{} s", settings::ROW_DROP_WINDOW.get()),
    ));
    rows.push((
        "denial_burst_threshold".into(),
        settings::DENIAL_BURST_THRESHOLD.get().to_string(),
    ));
    rows.push((
        "denial_log".into(),
        if shmem::available() {
            format!(
                "queue of {} records, {} waiting",
                shmem::capacity(),
                shmem::depth().unwrap_or(0)
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
    let values = shmem::counters();
    let mut rows: Vec<(String, Option<i64>, String)> = shmem::COUNTERS
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
        shmem::depth().map(|d| d as i64),
        "denial records waiting in the queue now".into(),
    ));
    rows.push((
        "denial_queue_size".into(),
        shmem::available().then(|| shmem::capacity() as i64),
        "capacity of the queue (prodguard.denial_queue_size)".into(),
    ));
    TableIterator::new(rows)
}

/// Called by the install script: refuses CREATE EXTENSION when the library was not
/// preloaded, because the guards would then protect only the session that created it.
#[pg_extern(name = "_require_preload")]
fn require_preload() {
    if !preloaded() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_prodguard must be loaded via shared_preload_libraries",
            function_name!(),
        )
        .set_detail("The library was loaded on demand, so its guards would protect this session only.")
        .set_hint("Add this line to postgresql.conf and restart the server: shared_preload_libraries = 'pg_prodguard'")
        .report(PgLogLevel::ERROR);
    }
}

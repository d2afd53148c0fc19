//! pg_prodguard: a PostgreSQL extension that stops production data loss from inside the
//! database. See README.md for what it does and SPEC.md (shared) for the contract.
//!
//! Modules, in the order of SPEC:
//! - `settings`: the `prodguard.*` GUCs and the rule that production settings need an override;
//! - `environment`: which environment other databases of the cluster are in;
//! - `breakglass`: when `prodguard.override` is honoured;
//! - `policy`: what a guard's finding becomes in development, staging and production;
//! - `hooks`: the hooks, installed and chained in one place;
//! - `command_guard`: TRUNCATE / DROP / ... refused in production;
//! - `audit`: rows in `prodguard.audit_log`;
//! - `denial_log`: the `prodguard:` server-log line for every refusal and override, and
//!   the record of each refusal put into the shared queue;
//! - `shared`: shared memory: the denial queue and the metrics counters;
//! - `denial_worker`: background workers writing queued refusals to `prodguard.denial_log`;
//! - `row_json`: rows as jsonb for the audit, written directly in jsonb's format;
//! - `status`: `prodguard.status()` and `prodguard.metrics`.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

mod audit;
mod breakglass;
mod command_guard;
mod denial_log;
mod denial_worker;
mod environment;
mod extension;
mod hooks;
mod matcher;
mod policy;
mod protection;
mod restore;
mod row_guard;
mod row_json;
mod settings;
mod shared;
mod status;
mod test_data;

pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

static PRELOADED: AtomicBool = AtomicBool::new(false);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    PRELOADED.store(loaded_at_start(), Ordering::Relaxed);
    settings::init();
    hooks::install();
    // SAFETY: a read of a backend global during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shared::install(settings::DENIAL_QUEUE_SIZE.get() as usize);
        denial_worker::register();
    }
}

/// Whether the library is being loaded by shared_preload_libraries or
/// session_preload_libraries, rather than on demand by a function call or LOAD, which
/// would guard this one session only.
fn loaded_at_start() -> bool {
    // SAFETY: reads of backend globals during _PG_init.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            return true;
        }
        // session_preload_libraries is loaded while the backend is still initialising; a
        // load on demand (a function call, LOAD) happens once it processes statements.
        pg_sys::Mode == pg_sys::ProcessingMode::InitProcessing
            && listed_in(c"session_preload_libraries")
    }
}

fn listed_in(guc: &std::ffi::CStr) -> bool {
    // SAFETY: GetConfigOption returns NULL or the current value of a known setting.
    let value =
        unsafe { extension::cstr_or(pg_sys::GetConfigOption(guc.as_ptr(), true, false), "") };
    value.split(',').any(|item| {
        let item = item.trim().trim_matches('"');
        let base = item.rsplit('/').next().unwrap_or(item);
        base.strip_suffix(".so").unwrap_or(base) == "pg_prodguard"
    })
}

pub(crate) fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
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

extension_sql!(
    "SELECT prodguard._require_preload();\n\
     COMMENT ON FUNCTION prodguard._require_preload() IS 'Internal: makes CREATE EXTENSION fail unless pg_prodguard is in shared_preload_libraries.';\n\
     COMMENT ON FUNCTION prodguard.status() IS 'What this session''s guards would do: environment, preload, each guard on or off, the override in force.';",
    name = "require_preload",
    requires = [require_preload, status],
    finalize
);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pg_prodguard'",
            "prodguard.environment = 'development'",
        ]
    }
}

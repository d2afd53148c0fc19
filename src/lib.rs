//! pg_prodguard: a PostgreSQL extension that stops production data loss from inside the
//! database. See README.md for what it does and SPEC.md (shared) for the contract.
//!
//! # Layers
//!
//! The folders are the architecture. Each layer may use the layers below it, never one
//! above it (`bin/check-layers` fails the build's tests when an import points up):
//!
//! | layer | what it owns | may use |
//! |---|---|---|
//! | `core/` | PostgreSQL helpers, settings values and parsers, environments, break glass, findings, errors, passes, the protection cache | nothing above |
//! | `records/` | the audit writer, backups, rows as jsonb, the denial record and its shared-memory queue | `core` |
//! | `guards/` | the command, row, settings and test-data guards, the audit trigger, the append-only trigger, and the policy they share | `core`, `records`; a guard never uses another guard, only `guards::policy` |
//! | `api/` | the SQL functions DBAs call: protect, dictionaries, scan, restore, status | everything below |
//!
//! On top: `hooks` (every PostgreSQL hook, installed and chained in one place; each hook
//! only routes to the guard that decides), `workers` (the denial-log background workers),
//! `sql` (every SQL file of the install script) and this file (`_PG_init`).

use pgrx::pg_sys;
use pgrx::prelude::*;

mod api;
mod core;
mod guards;
mod hooks;
mod records;
mod sql;
mod workers;

pgrx::pg_module_magic!();

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    crate::core::error::install_quiet_panic_hook();
    crate::core::extension::set_preloaded(loaded_at_start());
    guards::settings::register();
    hooks::install();
    // SAFETY: a read of a backend global during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        records::shmem::configure(crate::core::settings::DENIAL_QUEUE_SIZE.get() as usize);
        hooks::install_shmem();
        workers::register();
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
        unsafe { crate::core::pg::cstr_or(pg_sys::GetConfigOption(guc.as_ptr(), true, false), "") };
    value.split(',').any(|item| {
        let item = item.trim().trim_matches('"');
        let base = item.rsplit('/').next().unwrap_or(item);
        base.strip_suffix(".so").unwrap_or(base) == "pg_prodguard"
    })
}

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

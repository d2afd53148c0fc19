//! A refused pg_restore session (issue 14): once the command guard has refused a statement
//! of `pg_restore` in a production database that holds data, nothing more of that session
//! runs, so that a half-refused restore cannot leave the database with fewer constraints
//! and twice the rows. The command guard sets the mark (`guards::command::restore`); it and
//! the row guard refuse every later write of the session with `refuse_rest()`.

use std::cell::Cell;

use pgrx::prelude::*;

use crate::core::error::raise;

/// The HINT of every refusal of a pg_restore: the ways to refresh a production database.
pub const WAY_FORWARD: &str = "Restore into a new database and switch over (createdb app_new; pg_restore -d app_new ...), or, as the documented operator path, run the same pg_restore under an approved change: PGOPTIONS='-c prodguard.override=change:<id>' pg_restore --clean ... (README: Refreshing a production database).";

thread_local! {
    static REFUSED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this session is pg_restore's (its application_name, which pg_restore sets).
pub fn is_pg_restore() -> bool {
    // SAFETY: application_name is NULL or the session's NUL-terminated setting; compared
    // in place (this runs for every utility statement).
    unsafe {
        let name = pgrx::pg_sys::application_name;
        !name.is_null() && std::ffi::CStr::from_ptr(name).to_bytes() == b"pg_restore"
    }
}

/// Marks (or unmarks) this session as a refused pg_restore.
pub fn mark_refused(refused: bool) {
    REFUSED.set(refused);
}

pub fn refused() -> bool {
    REFUSED.get()
}

/// Refuses a statement of a pg_restore session that was refused before.
pub fn refuse_rest(command: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{command} of a refused pg_restore is blocked"),
        "An earlier statement of this pg_restore session was refused (its error says why); the rest of the restore does not run, so the database stays as it was.",
        WAY_FORWARD,
    )
}

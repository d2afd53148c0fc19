//! Errors and notices in PostgreSQL's style: a lowercase primary message naming the
//! command and object, a DETAIL with the why, a HINT with the way forward.
//!
//! `raise` and `raise_internal` never return: pgrx turns the ERROR into an unwind that
//! PostgreSQL's error handling receives at the boundary of the hook or function.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

/// Raises an ERROR; an empty detail or hint is left out.
pub fn raise(code: PgSqlErrorCode, message: String, detail: impl Into<String>, hint: &str) -> ! {
    let detail = detail.into();
    let mut report = ErrorReport::new(code, message, function_name!());
    if !detail.is_empty() {
        report = report.set_detail(detail);
    }
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

/// Raises `could not <what>` (XX000) with the underlying error as its DETAIL: for SPI
/// statements of the extension's own that failed.
pub fn raise_internal(what: &str, error: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("could not {what}"),
        error.to_string(),
        "",
    )
}

/// Sends a NOTICE.
pub fn notice(message: String) {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message,
        function_name!(),
    )
    .report(PgLogLevel::NOTICE);
}

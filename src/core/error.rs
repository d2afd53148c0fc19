//! Errors and notices in PostgreSQL's style: a lowercase primary message naming the
//! command and object, a DETAIL with the why, a HINT with the way forward.
//!
//! `raise` and `raise_internal` never return: pgrx turns the ERROR into an unwind that
//! PostgreSQL's error handling receives at the boundary of the hook or function.

use pgrx::pg_sys;
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

thread_local! {
    /// Where the last Rust panic of this backend happened (`file:line`), kept by the panic
    /// hook for `catch_bug`'s message.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces pgrx's panic hook, which captures a backtrace on every panic (including every
/// ERROR that crosses pgrx's boundary) and appends it to the client's DETAIL whenever the
/// server's environment has `RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` set. Ours keeps only
/// the panic's location, and never a backtrace, whatever the environment says. Threads other
/// than the backend's own keep the previous hook. Called once, from `_PG_init`.
pub fn install_quiet_panic_hook() {
    let previous = std::panic::take_hook();
    let backend = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != backend {
            return previous(info);
        }
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let _ = PANIC_AT.try_with(|p| p.try_borrow_mut().map(|mut p| *p = at));
    }));
}

/// Runs `f`; a Rust panic inside it (a bug in pg_prodguard, never a PostgreSQL ERROR or a
/// refusal, which pass through untouched) becomes one clean ERROR, SQLSTATE XX000, that
/// names pg_prodguard and what it was doing. For the code that runs on other users'
/// statements: hooks, triggers, setting checks.
pub fn catch_bug<R>(what: &str, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = match payload.downcast_ref::<&str>() {
                Some(s) => Some(s.to_string()),
                None => payload.downcast_ref::<String>().cloned(),
            };
            let Some(message) = message else {
                // a PostgreSQL ERROR or one of ours: not a bug, pass it on unchanged
                std::panic::resume_unwind(payload)
            };
            let at = PANIC_AT
                .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.take()))
                .ok()
                .flatten();
            raise(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!("pg_prodguard internal error in {what}: {message}"),
                match at {
                    Some(at) => format!("The error was raised at {at}."),
                    None => String::new(),
                },
                "This is a bug in pg_prodguard; the statement was not completed. Please report it with this message.",
            )
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;

    #[pgrx::pg_test(error = "pg_prodguard internal error in a test: index out of bounds")]
    fn a_panic_becomes_one_clean_internal_error_naming_pg_prodguard() {
        catch_bug("a test", || std::panic::panic_any("index out of bounds"));
    }

    #[pgrx::pg_test(error = "a refusal passes through")]
    fn errors_that_are_not_bugs_pass_through_unchanged() {
        catch_bug("a test", || {
            raise(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                "a refusal passes through".into(),
                "",
                "",
            )
        });
    }

    #[pgrx::pg_test]
    fn a_value_passes_through() {
        assert_eq!(catch_bug("a test", || 42), 42);
    }
}

/// Raises PostgreSQL's own read-only error (25006) before pg_prodguard writes anything in a
/// read-only transaction or on a hot standby, where the write would otherwise fail later
/// and less clearly.
pub fn require_writable(what: &str) {
    // SAFETY: reads of backend state.
    let read_only = unsafe { pg_sys::RecoveryInProgress() || pg_sys::XactReadOnly };
    if read_only {
        raise(
            PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            format!("cannot execute {what} in a read-only transaction"),
            "",
            "",
        );
    }
}

/// Fail closed: when pg_prodguard cannot read what it needs to decide (its protection
/// rules, another database's environment, its dictionaries), production refuses the
/// statement with a clear error (which the server log has too) instead of guessing that
/// nothing is protected. Elsewhere the guards are not refusing anyway: a WARNING says what
/// could not be read, and the caller goes on with what it has.
pub fn cannot_decide(what: &str, why: impl std::fmt::Display) {
    let production =
        crate::core::settings::environment() == crate::core::settings::Environment::Production;
    let message = format!("pg_prodguard could not read {what}");
    if production {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            message,
            format!("{why} In production it refuses what it cannot judge."),
            "Check the extension's objects (\\dx+ pg_prodguard) and the server log; ALTER EXTENSION pg_prodguard UPDATE restores missing objects of an older install.",
        );
    }
    ErrorReport::new(PgSqlErrorCode::ERRCODE_WARNING, message, function_name!())
        .set_detail(why.to_string())
        .report(PgLogLevel::WARNING);
}

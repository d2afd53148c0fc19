//! Settings guard: registers every `prodguard.*` GUC, validates list values, and decides
//! whether a session may change a setting.
//!
//! `register()` runs once, from `_PG_init`. List values are validated in their check
//! hooks, so a bad value is refused when it is set (SQLSTATE 22023), never later by a
//! guard. Every check hook then asks `guard_change`: a change that comes from a session
//! (SET, SET LOCAL, set_config(), a function's SET clause, PGOPTIONS) needs an override in
//! production. Values that come from postgresql.conf, ALTER SYSTEM and ALTER
//! DATABASE/ROLE ... SET are not re-checked here: the statements that write them are
//! guarded by the command guard (token `guard_settings`), and postgresql.conf belongs to
//! whoever owns the server's files.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry};

use crate::core::breakglass::{self, Scope};
use crate::core::error::catch_bug;
use crate::core::finding::{Finding, Guard};
use crate::core::settings::*;
use crate::guards::policy;
use crate::records::audit_log;

/// Registers the GUCs and reserves the `prodguard.` prefix, so a misspelt setting is an
/// error rather than a silently ignored placeholder.
pub fn register() {
    // SAFETY: the hooks are `#[pg_guard]` functions with the exact signatures PostgreSQL
    // expects, and the settings are statics that live as long as the library.
    unsafe {
        GucRegistry::define_enum_guc_with_hooks(
            c"prodguard.environment",
            c"What this database is: development, staging or production.",
            c"Untagged databases are production. Tag a database with ALTER DATABASE ... SET prodguard.environment; a development cluster sets it in postgresql.conf.",
            &ENVIRONMENT,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_environment),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"prodguard.override",
            c"Break-glass reason that lets a guarded statement run in this transaction.",
            c"Use SET LOCAL. Honoured only when an operator's own statement set it, not blank, in the transaction that runs the guarded statement; or change:<id>, an approved change, for its role and database. Recorded.",
            &OVERRIDE,
            GucContext::Userset,
            GucFlags::default(),
            Some(breakglass::check_override),
            Some(breakglass::assign_override),
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"prodguard.blocked_commands",
            c"Destructive commands the command guard refuses in production.",
            c"Comma-separated tokens: truncate, drop_table, drop_schema, drop_database, drop_column, drop_owned, guard_settings, alter_column_type, set_unlogged, alter_type, drop_constraint, drop_sequence, drop_large_object.",
            &BLOCKED_COMMANDS,
            GucContext::Suset,
            GucFlags::from_bits_retain(pg_sys::GUC_LIST_INPUT as i32),
            Some(check_blocked_commands),
            None,
            None,
        );
        GucRegistry::define_string_guc_with_hooks(
            c"prodguard.protected_databases",
            c"Databases that may not be dropped or renamed, whatever their own tag says.",
            c"Comma-separated database names; double-quote names with capitals, commas or spaces.",
            &PROTECTED_DATABASES,
            GucContext::Sighup,
            GucFlags::default(),
            Some(check_protected_databases),
            None,
            None,
        );
        GucRegistry::define_bool_guc(
            c"prodguard.require_approval",
            c"In production, honour approved changes only (prodguard.override = 'change:<id>'), not plain reasons.",
            c"Set in postgresql.conf. A change is requested by one operator (prodguard.request_change) and approved by another (prodguard.approve_change).",
            &REQUIRE_APPROVAL,
            GucContext::Sighup,
            GucFlags::default(),
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"prodguard.require_where",
            c"Refuse DELETE and UPDATE statements without a WHERE clause in production.",
            c"Any WHERE clause counts, even WHERE true, as with pg-safeupdate. Data-modifying CTEs are checked too.",
            &REQUIRE_WHERE,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_require_where),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.max_rows_changed",
            c"Refuse one DELETE, UPDATE or MERGE that changes more rows than this in production (0: no limit).",
            c"Rows are counted as the statement changes them, not estimated; the statement is rolled back.",
            &MAX_ROWS_CHANGED,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_max_rows_changed),
            None,
            None,
        );
        GucRegistry::define_enum_guc_with_hooks(
            c"prodguard.test_data_action",
            c"What a row carrying known test data does in production: reject, warn, log or off.",
            c"reject refuses the row (SQLSTATE 23514); warn writes it with a WARNING; log writes it and records the matches in prodguard.audit_log; off does nothing. Staging turns reject into warn.",
            &TEST_DATA_ACTION,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_test_data_action),
            None,
            None,
        );
        GucRegistry::define_bool_guc_with_hooks(
            c"prodguard.audit",
            c"Write prodguard.audit_log rows for the row changes of protected tables.",
            c"In production, switching it off from a session needs an override.",
            &AUDIT,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_audit),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.backup_max_rows",
            c"The most rows one overridden TRUNCATE or DROP TABLE copies into prodguard.backup_row.",
            c"A protected table with more rows is not truncated or dropped, even with an override.",
            &BACKUP_MAX_ROWS,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_backup_max_rows),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.row_drop_alert_percent",
            c"Raise a row_drop alert when a protected table loses more than this share of its rows within prodguard.row_drop_window (0: off).",
            c"Rows are counted as they are deleted, truncated or dropped, net of rows added in the same window; the table's size is counted once per window.",
            &ROW_DROP_ALERT_PERCENT,
            0,
            100,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_row_drop_alert_percent),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.row_drop_window",
            c"The window within which the rows a protected table loses are added up for prodguard.row_drop_alert_percent.",
            c"An interval such as '1h' or '15min'.",
            &ROW_DROP_WINDOW,
            1,
            i32::MAX,
            GucContext::Suset,
            GucFlags::UNIT_S,
            Some(check_row_drop_window),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.denial_burst_threshold",
            c"Raise a denial_burst alert when one client is refused more than this many times within a minute (0: off).",
            c"A client is its IP address, or for a Unix-socket connection its login role.",
            &DENIAL_BURST_THRESHOLD,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_denial_burst_threshold),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.denial_log_rate",
            c"Store at most this many refusals of one client per minute in full in the denial log (0: no limit).",
            c"The refusals beyond it are still refused, logged and counted, and summed up in one record of the denial log when the client's minute is over, so that one flooding client cannot crowd out the records of others.",
            &DENIAL_LOG_RATE,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::default(),
            Some(check_denial_log_rate),
            None,
            None,
        );
        GucRegistry::define_int_guc_with_hooks(
            c"prodguard.denial_log_retention",
            c"How long prodguard.denial_log and prodguard.alerts keep their rows (0: for ever).",
            c"An interval such as '90d'; the denial writer removes older rows when it first stores refusals, then at most once an hour.",
            &DENIAL_LOG_RETENTION,
            0,
            i32::MAX,
            GucContext::Suset,
            GucFlags::UNIT_S,
            Some(check_denial_log_retention),
            None,
            None,
        );
        // a postmaster setting can only be defined while the server starts
        if pg_sys::process_shared_preload_libraries_in_progress {
            define_denial_queue_size();
        }
        pg_sys::MarkGUCPrefixReserved(c"prodguard".as_ptr());
    }
}

fn define_denial_queue_size() {
    GucRegistry::define_int_guc(
            c"prodguard.denial_queue_size",
            c"How many refused attempts the shared queue holds until the denial writer stores them.",
            c"Set at server start. When the queue is full a refusal is still refused and logged, but not stored in prodguard.denial_log (counted as denials_dropped).",
            &DENIAL_QUEUE_SIZE,
            16,
            1_000_000,
            GucContext::Postmaster,
            GucFlags::default(),
        );
}

/// The check hook of a scalar setting (bool, int or enum): a change of its value is judged
/// by `guard_change`. PostgreSQL does not tell a check hook which setting it checks, so
/// each setting gets its own function, all made by this one definition.
macro_rules! scalar_check_hook {
    ($hook:ident, $c_type:ty, $name:expr, $current:expr) => {
        #[pg_guard]
        unsafe extern "C-unwind" fn $hook(
            newval: *mut $c_type,
            _extra: *mut *mut c_void,
            source: pg_sys::GucSource::Type,
        ) -> bool {
            // SAFETY: PostgreSQL passes a valid pointer to the proposed value.
            let changed = unsafe { *newval } != $current;
            guard_change($name, changed, source)
        }
    };
}

scalar_check_hook!(
    check_environment,
    c_int,
    ENVIRONMENT_NAME,
    ENVIRONMENT.get() as c_int
);
scalar_check_hook!(
    check_require_where,
    bool,
    "prodguard.require_where",
    REQUIRE_WHERE.get()
);
scalar_check_hook!(
    check_max_rows_changed,
    c_int,
    "prodguard.max_rows_changed",
    MAX_ROWS_CHANGED.get()
);
scalar_check_hook!(check_audit, bool, "prodguard.audit", AUDIT.get());
scalar_check_hook!(
    check_backup_max_rows,
    c_int,
    "prodguard.backup_max_rows",
    BACKUP_MAX_ROWS.get()
);
scalar_check_hook!(
    check_row_drop_alert_percent,
    c_int,
    "prodguard.row_drop_alert_percent",
    ROW_DROP_ALERT_PERCENT.get()
);
scalar_check_hook!(
    check_row_drop_window,
    c_int,
    "prodguard.row_drop_window",
    ROW_DROP_WINDOW.get()
);
scalar_check_hook!(
    check_denial_burst_threshold,
    c_int,
    "prodguard.denial_burst_threshold",
    DENIAL_BURST_THRESHOLD.get()
);
scalar_check_hook!(
    check_denial_log_rate,
    c_int,
    "prodguard.denial_log_rate",
    DENIAL_LOG_RATE.get()
);
scalar_check_hook!(
    check_denial_log_retention,
    c_int,
    "prodguard.denial_log_retention",
    DENIAL_LOG_RETENTION.get()
);
scalar_check_hook!(
    check_test_data_action,
    c_int,
    "prodguard.test_data_action",
    TEST_DATA_ACTION.get() as c_int
);

#[pg_guard]
unsafe extern "C-unwind" fn check_blocked_commands(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL passes a valid pointer to a NUL-terminated proposed value.
    let proposed = unsafe { cstr_arg(newval) };
    let new_mask = match parse_blocked_commands(&proposed) {
        Ok(mask) => mask,
        Err(bad) => {
            let valid: Vec<_> = Token::ALL.iter().map(|t| t.name()).collect();
            set_check_error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as c_int,
                &format!("unknown command token \"{bad}\" in prodguard.blocked_commands"),
                &format!("Valid tokens are: {}.", valid.join(", ")),
                "Give a comma-separated list of those tokens, or '' to block none.",
            );
            return false;
        }
    };
    let old_mask = parse_blocked_commands(&string_setting(&BLOCKED_COMMANDS)).ok();
    guard_change(
        "prodguard.blocked_commands",
        old_mask != Some(new_mask),
        source,
    )
}

#[pg_guard]
unsafe extern "C-unwind" fn check_protected_databases(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL passes a valid pointer to a NUL-terminated proposed value.
    let proposed = unsafe { cstr_arg(newval) };
    match parse_name_list(&proposed) {
        Ok(_) => true,
        Err(why) => {
            set_check_error(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as c_int,
                &format!("invalid list in prodguard.protected_databases: {why}"),
                "The value is a comma-separated list of database names.",
                "Double-quote names that contain capitals, commas or spaces.",
            );
            false
        }
    }
}

/// Decides whether a session may change a `prodguard.*` setting. Returns false (with the
/// error prepared for PostgreSQL to raise) when production refuses the change.
fn guard_change(name: &str, changed: bool, source: pg_sys::GucSource::Type) -> bool {
    catch_bug("the settings guard", || judge_change(name, changed, source))
}

fn judge_change(name: &str, changed: bool, source: pg_sys::GucSource::Type) -> bool {
    use pg_sys::GucSource::*;
    // Only changes made by a session are guarded here; see the module comment.
    if !matches!(source, PGC_S_CLIENT | PGC_S_SESSION | PGC_S_INTERACTIVE) || !changed {
        return true;
    }
    // SAFETY: plain reads of backend-global flags.
    if unsafe { pg_sys::InitializingParallelWorker } {
        return true; // a parallel worker copies its leader's already-checked settings
    }
    let finding = Finding::here(
        Guard::Settings,
        "SET",
        format!("setting \"{name}\""),
        format!("Changing {name} from a session would lower or alter this database's protection."),
        None,
    );
    // A startup option (PGOPTIONS) arrives before any transaction of the session's own.
    let scope = if source == PGC_S_CLIENT {
        Scope::Never
    } else {
        Scope::Transaction
    };
    match policy::decide(environment(), &finding, scope) {
        policy::Decision::Silent | policy::Decision::Warned => true,
        policy::Decision::Overridden(reason) => {
            // SAFETY: plain read of a backend-global flag.
            if unsafe { pg_sys::IsTransactionState() } {
                audit_log::record_command(&finding, environment(), Some(&reason), None);
            }
            true
        }
        policy::Decision::Refuse(report) => {
            set_check_error(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as c_int,
                &report.message,
                &report.detail,
                &report.hint,
            );
            false
        }
    }
}

/// Hands PostgreSQL the error a check hook wants raised. PostgreSQL reads these strings
/// right after the hook returns false.
fn set_check_error(sqlstate: c_int, message: &str, detail: &str, hint: &str) {
    // SAFETY: the strings are copied into ErrorContext, which outlives the report, exactly
    // as the GUC_check_errmsg() family of macros does in C.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::ErrorContext);
        pg_sys::GUC_check_errcode(sqlstate);
        pg_sys::GUC_check_errmsg_string = pstrdup(message);
        pg_sys::GUC_check_errdetail_string = pstrdup(detail);
        pg_sys::GUC_check_errhint_string = pstrdup(hint);
        pg_sys::MemoryContextSwitchTo(old);
    }
}

fn pstrdup(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: `c` is a valid NUL-terminated string; pstrdup copies it into palloc'd memory.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Reads the proposed value of a string GUC in a check hook.
///
/// # Safety
/// `newval` must be the pointer PostgreSQL passed to the check hook.
unsafe fn cstr_arg(newval: *mut *mut c_char) -> String {
    // SAFETY: guaranteed by the caller; a NULL value reads as empty.
    unsafe {
        if newval.is_null() || (*newval).is_null() {
            String::new()
        } else {
            CStr::from_ptr(*newval).to_string_lossy().into_owned()
        }
    }
}

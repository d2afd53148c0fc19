//! Audit: rows in `prodguard.audit_log`, written inside the transaction they describe.
//!
//! This module owns the writing side of the audit log. For now that is one row per guarded
//! command that ran because of an override (production) or with a warning (staging):
//! action = the command, the object, the statement, who, from where and why. Rows are
//! written as the table's owner, so the audit works for users who cannot write the table
//! themselves (nobody but the owner can). A committed command always has its row; a
//! command that fails takes its row with it. In a database where the extension is not
//! installed there is no table to write to: the `prodguard:` log line is the record.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::breakglass;
use crate::extension;
use crate::policy::Finding;
use crate::settings::Environment;

/// Records one guarded command that is about to run.
pub fn record_command(
    finding: &Finding,
    env: Environment,
    reason: Option<&str>,
    statement: Option<&str>,
) {
    let Some(log_table) = extension::own_table(c"audit_log") else {
        return;
    };
    // SAFETY: GetUserId reads a backend global; we are inside a transaction.
    let db_user = breakglass::role_name(unsafe { pg_sys::GetUserId() });
    let (schema, table) = match finding.relation {
        Some(rel) => extension::relation_names(rel),
        None => (None, None),
    };
    let statement = statement.map(str::to_string).or_else(current_statement);
    let written = extension::as_owner_of(log_table, || {
        Spi::run_with_args(
            "INSERT INTO prodguard.audit_log
                 (action, table_oid, schema_name, table_name, object, statement, db_user,
                  application_name, client_addr, environment, override_reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7,
                     current_setting('application_name'), inet_client_addr(), $8, $9)",
            &[
                finding.command.clone().into(),
                finding.relation.into(),
                schema.into(),
                table.into(),
                finding.object.clone().into(),
                statement.into(),
                db_user.into(),
                env.name().into(),
                reason.map(str::to_string).into(),
            ],
        )
    });
    if let Some(Err(e)) = written {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!(
                "could not write the audit row for {} of {}",
                finding.command, finding.object
            ),
            function_name!(),
        )
        .set_detail(e.to_string())
        .report(PgLogLevel::ERROR)
    }
}

/// The text of the statement being run, when PostgreSQL knows it.
fn current_statement() -> Option<String> {
    // SAFETY: debug_query_string is NULL or the NUL-terminated text of the current query.
    let p = unsafe { pg_sys::debug_query_string };
    (!p.is_null()).then(|| {
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    })
}

/// Records the test-data matches of a row written under `prodguard.test_data_action = log`.
/// (The row's own audit entry, with its old and new values, belongs to the row audit;
/// until a table is audited this row carries the matches alone.)
pub fn record_test_data(
    relid: pg_sys::Oid,
    action: &str,
    env: Environment,
    matches: serde_json::Value,
) {
    let Some(log_table) = extension::own_table(c"audit_log") else {
        return;
    };
    // SAFETY: GetUserId reads a backend global; we are inside a transaction.
    let db_user = breakglass::role_name(unsafe { pg_sys::GetUserId() });
    let (schema, table) = extension::relation_names(relid);
    let written = extension::as_owner_of(log_table, || {
        Spi::run_with_args(
            "INSERT INTO prodguard.audit_log
                 (action, table_oid, schema_name, table_name, db_user, application_name,
                  client_addr, environment, test_data, statement)
             VALUES ($1, $2, $3, $4, $5, current_setting('application_name'),
                     inet_client_addr(), $6, $7, $8)",
            &[
                action.into(),
                relid.into(),
                schema.into(),
                table.into(),
                db_user.into(),
                env.name().into(),
                pgrx::JsonB(matches).into(),
                current_statement().into(),
            ],
        )
    });
    if let Some(Err(e)) = written {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "could not write the audit row for test data",
            function_name!(),
        )
        .set_detail(e.to_string())
        .report(PgLogLevel::ERROR)
    }
}

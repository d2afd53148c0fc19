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
use crate::policy::Finding;
use crate::settings::Environment;

/// Records one guarded command that is about to run.
pub fn record_command(
    finding: &Finding,
    env: Environment,
    reason: Option<&str>,
    statement: Option<&str>,
) {
    let Some(owner) = audit_table_owner() else {
        return;
    };
    // SAFETY: GetUserId reads a backend global; we are inside a transaction.
    let db_user = breakglass::role_name(unsafe { pg_sys::GetUserId() });
    let (schema, table) = match finding.relation {
        Some(rel) => relation_names(rel),
        None => (None, None),
    };
    let statement = statement.map(str::to_string).or_else(current_statement);
    as_role(owner, || {
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
    })
    .unwrap_or_else(|e| {
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
    });
}

/// The owner of prodguard.audit_log, or `None` when the extension is not installed here.
fn audit_table_owner() -> Option<pg_sys::Oid> {
    // SAFETY: syscache lookups inside a transaction.
    let rel = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"prodguard".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(c"audit_log".as_ptr(), nsp)
    };
    if rel == pg_sys::InvalidOid {
        return None;
    }
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1",
        &[rel.into()],
    )
    .ok()
    .flatten()
}

/// Runs `f` with `role` as the current user, as SECURITY DEFINER functions do. An ERROR
/// inside `f` aborts the (sub)transaction, and PostgreSQL restores the user then.
fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    // SAFETY: saving and setting the current user id is what fmgr_security_definer does;
    // SECURITY_LOCAL_USERID_CHANGE keeps SET ROLE from being affected.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let result = f();
    // SAFETY: puts back exactly what was saved above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

fn relation_names(rel: pg_sys::Oid) -> (Option<String>, Option<String>) {
    // SAFETY: lsyscache lookups; both return NULL for a relation that is gone.
    unsafe {
        let name = pg_sys::get_rel_name(rel);
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel));
        let read = |p: *mut std::ffi::c_char| {
            (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        (read(schema), read(name))
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

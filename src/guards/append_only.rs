//! The append-only guard (SPEC §6): `prodguard.append_only()`, the trigger on the audit
//! log, its backups and the denial log that refuses UPDATE, DELETE and TRUNCATE for every
//! role, in every environment. The one exception is `purge_audit()`'s DELETE, which runs
//! under the `PURGING` pass.

use pgrx::prelude::*;

use crate::core::error::raise;
use crate::core::finding::{Finding, Guard};
use crate::core::passes::PURGING;
use crate::records::denial::{self, Event};

/// Trigger on the audit tables: UPDATE, DELETE and TRUNCATE are refused for everyone,
/// except the DELETE of purge_audit().
#[pg_trigger]
fn append_only<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    if PURGING.get() {
        return Ok(trigger.old());
    }
    let table = trigger.table_name().unwrap_or_default();
    let op = match trigger.op() {
        Ok(PgTriggerOperation::Update) => "UPDATE",
        Ok(PgTriggerOperation::Truncate) => "TRUNCATE",
        _ => "DELETE",
    };
    let finding = Finding::blocked(
        Guard::Audit,
        op,
        format!("table \"prodguard.{table}\""),
        "",
        "The audit log, its backups and the denial log are append-only, for every role and in every environment.",
        "",
        None,
    );
    denial::log(Event::Refused, &finding, None);
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("{op} of table \"prodguard.{table}\" is not allowed: it is append-only"),
        "The audit log, its backups and the denial log are append-only, for every role and in every environment.",
        "Old entries are removed with prodguard.purge_audit(older_than), which needs an override in production.",
    )
}

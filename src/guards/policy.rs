//! Policy: what a guard's finding becomes in each environment (SPEC §2).
//!
//! A guard only says what it found, as a `Finding`; this module applies the one rule all
//! guards share. Development is silent. Staging warns with the guard's message and lets
//! the statement run. Production refuses, unless a valid override is in force, in which
//! case the statement runs. A statement that runs on an override or with a staging
//! warning gets its audit row (`enforce`). Every refusal, warning and override also writes
//! one `prodguard:` line to the server log (see `records::denial`).
//!
//! This is the one module of the guards layer that every guard may use.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::core::breakglass::{self, Override, Scope};
use crate::core::error::raise;
use crate::core::finding::Finding;
use crate::core::protection;
use crate::core::settings::{self, Environment};
use crate::records::alerts::{self, Kind};
use crate::records::audit_log;
use crate::records::denial::{self, Event, Session};
use crate::records::watch;

/// The text of a refusal.
#[derive(Debug)]
pub struct Report {
    pub message: String,
    pub detail: String,
    pub hint: String,
}

pub enum Decision {
    /// Development: nothing to say.
    Silent,
    /// Staging: warned; the statement runs.
    Warned,
    /// Production with a valid override: the statement runs; the reason must be recorded.
    Overridden(String),
    /// Production without a valid override.
    Refuse(Report),
}

/// Applies the environment rule to a finding. Logs, and warns in staging, but never raises:
/// check hooks must hand their errors back to PostgreSQL instead.
pub fn decide(env: Environment, finding: &Finding, scope: Scope) -> Decision {
    match env {
        Environment::Development => Decision::Silent,
        Environment::Staging => {
            denial::log(Event::Warned, finding, None);
            alert_migration_history(finding, None);
            let message = finding.message.clone().unwrap_or_else(|| {
                format!(
                    "{} of {} would be blocked in production",
                    finding.command, finding.object
                )
            });
            ErrorReport::new(finding.sqlstate, message, function_name!())
                .set_detail(format!(
                    "{} In staging, prodguard warns and lets the statement run.",
                    finding.why
                ))
                .report(PgLogLevel::WARNING);
            Decision::Warned
        }
        Environment::Production => match breakglass::current(scope) {
            Override::Valid { reason } => {
                denial::log(Event::Overridden, finding, Some(&reason));
                alert_override(finding, &reason);
                Decision::Overridden(reason)
            }
            other => {
                let tried = match &other {
                    Override::Ignored { reason, .. } => Some(reason.as_str()),
                    _ => None,
                };
                let report = refusal(finding, &other, scope);
                let who = denial::log_refusal(finding, tried, &report.detail);
                alert_burst(&who);
                Decision::Refuse(report)
            }
        },
    }
}

/// Like `decide`, but raises the refusal as an ERROR with the finding's SQLSTATE, and
/// records the audit row of a statement that runs anyway (overridden, or warned in
/// staging). `statement`: the text to record, when the caller knows it better than
/// `debug_query_string` does.
///
/// Returns the id of the audit row when one was written.
pub fn enforce(
    env: Environment,
    finding: &Finding,
    scope: Scope,
    statement: Option<&str>,
) -> Option<i64> {
    let reason = match decide(env, finding, scope) {
        Decision::Silent => return None,
        Decision::Warned => None,
        Decision::Overridden(reason) => Some(reason),
        Decision::Refuse(report) => raise(
            finding.sqlstate,
            report.message,
            report.detail,
            &report.hint,
        ),
    };
    audit_log::record_command(finding, env, reason.as_deref(), statement)
}

/// `enforce` for a finding about this database, judged by its environment, with an
/// override that counts in this transaction.
pub fn enforce_here(finding: &Finding) -> Option<i64> {
    enforce(settings::environment(), finding, Scope::Transaction, None)
}

/// The alert of a statement that ran on an override: `change_used` for an approved change
/// (once per session and change), `override_used` for an operator's reason (once per
/// transaction and object); and `migration_history_changed` when it removes migration
/// history.
fn alert_override(finding: &Finding, reason: &str) {
    let raw = settings::string_setting(&settings::OVERRIDE);
    match crate::core::changes::parse_reference(raw.trim()) {
        Some(Ok(id)) => alerts::raise(
            Kind::ChangeUsed,
            &format!("change {id}"),
            &format!(
                "{} of {} ran under {reason}.",
                finding.command, finding.object
            ),
        ),
        _ => alerts::raise(
            Kind::OverrideUsed,
            &finding
                .relation
                .map_or_else(|| finding.object.clone(), crate::core::pg::describe_table),
            &format!(
                "{} of {} ran on an override: {reason}",
                finding.command, finding.object
            ),
        ),
    }
    alert_migration_history(finding, Some(reason));
}

/// `migration_history_changed`: a DELETE, TRUNCATE or DROP of a migration-history table
/// that runs (on an override, or warned in staging).
fn alert_migration_history(finding: &Finding, reason: Option<&str>) {
    let Some(relid) = finding.relation else {
        return;
    };
    if !protection::flags(relid).migration_history {
        return;
    }
    let how = match reason {
        Some(reason) => format!("on an override: {reason}"),
        None => "with a staging warning".to_string(),
    };
    alerts::raise(
        Kind::MigrationHistoryChanged,
        &finding.object,
        &format!(
            "{} of migration-history {} ran {how}. The record of which migrations ran is changing.",
            finding.command, finding.object
        ),
    );
}

/// `denial_burst`: this refusal takes its client past prodguard.denial_burst_threshold
/// within a minute.
fn alert_burst(who: &Session) {
    if let Some(count) = watch::note_refusal(who) {
        let client = watch::client_name(who);
        alerts::raise(
            Kind::DenialBurst,
            &client,
            &format!(
                "{count} statements of {client} were refused within a minute (prodguard.denial_burst_threshold is {}); the last by role \"{}\" from application \"{}\".",
                settings::DENIAL_BURST_THRESHOLD.get(),
                who.user,
                who.application
            ),
        );
    }
}

fn refusal(finding: &Finding, ovr: &Override, scope: Scope) -> Report {
    let mut detail = finding.why.clone();
    if let Override::Ignored { why, .. } = ovr {
        detail.push_str(" The override was ignored: ");
        detail.push_str(why);
    }
    let how = match scope {
        _ if settings::REQUIRE_APPROVAL.get() => {
            "request a change: one member of prodguard_operator runs SELECT prodguard.request_change('<reason>', '<role>'), another approves it with prodguard.approve_change(<id>), and the role's session sets prodguard.override = 'change:<id>'"
        }
        Scope::Transaction => {
            "a member of prodguard_operator can run SET LOCAL prodguard.override = '<reason>' in the same transaction"
        }
        Scope::NextStatement => {
            "a member of prodguard_operator can run SET prodguard.override = '<reason>' and then this statement as the very next one"
        }
        Scope::Never => {
            "a member of prodguard_operator can connect without this startup option and use SET LOCAL prodguard.override = '<reason>' in a transaction"
        }
    };
    Report {
        message: finding.message.clone().unwrap_or_else(|| {
            format!(
                "{} of {} is blocked{}",
                finding.command, finding.object, finding.place
            )
        }),
        detail,
        hint: format!(
            "If this is intended, {how}; the reason is recorded. {}",
            finding.alternative
        ),
    }
}

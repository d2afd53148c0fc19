//! Policy: what a guard's finding becomes in each environment (SPEC §2).
//!
//! A guard only says what it found, as a `Finding`; this module applies the one rule all
//! guards share. Development is silent. Staging warns with the guard's message and lets
//! the statement run. Production refuses, unless a valid override is in force, in which
//! case the statement runs. A statement that runs on an override or with a staging
//! warning gets its audit row (`enforce`). Every refusal, warning and override also writes
//! one `prodguard:` line to the server log (see `denial_log`).

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::breakglass::{self, Override, Scope};
use crate::denial_log::{self, Event};
use crate::settings::Environment;

/// Which guard found something; part of the log line and of later denial records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Command,
    Settings,
    Row,
    TestData,
    Audit,
}

impl Guard {
    pub fn name(self) -> &'static str {
        match self {
            Guard::Command => "command",
            Guard::Settings => "settings",
            Guard::Row => "row",
            Guard::TestData => "test_data",
            Guard::Audit => "audit",
        }
    }
}

/// What a guard found in one statement, in words a DBA reads.
#[derive(Clone, Debug)]
pub struct Finding {
    pub guard: Guard,
    /// The command, as PostgreSQL names it: `TRUNCATE`, `DROP TABLE`, `ALTER SYSTEM`.
    pub command: String,
    /// What it acts on: `table "public.profiles"`, `setting "prodguard.environment"`.
    pub object: String,
    /// Where the protection comes from, appended to the message:
    /// ` in production database "app"`; empty when `object` already says it.
    pub place: String,
    /// First sentence of the DETAIL: why this is guarded.
    pub why: String,
    /// Last sentence of the HINT: the way forward other than an override.
    pub alternative: String,
    /// The table acted on, for the audit row.
    pub relation: Option<pg_sys::Oid>,
    /// SQLSTATE of the refusal.
    pub sqlstate: PgSqlErrorCode,
    /// A fixed primary message, used as is in production and staging (the row guard keeps
    /// pg-safeupdate's wording). `None`: "<command> of <object> is blocked<place>".
    pub message: Option<String>,
}

impl Finding {
    /// The usual finding: refused with 42501 and the standard message.
    pub fn blocked(
        guard: Guard,
        command: impl Into<String>,
        object: impl Into<String>,
        place: impl Into<String>,
        why: impl Into<String>,
        alternative: impl Into<String>,
        relation: Option<pg_sys::Oid>,
    ) -> Finding {
        Finding {
            guard,
            command: command.into(),
            object: object.into(),
            place: place.into(),
            why: why.into(),
            alternative: alternative.into(),
            relation,
            sqlstate: PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message: None,
        }
    }
}

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
            denial_log::log(Event::Warned, finding, None);
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
                denial_log::log(Event::Overridden, finding, Some(&reason));
                Decision::Overridden(reason)
            }
            other => {
                let tried = match &other {
                    Override::Ignored { reason, .. } => Some(reason.as_str()),
                    _ => None,
                };
                let report = refusal(finding, &other, scope);
                denial_log::log_refusal(finding, tried, &report.detail);
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
        Decision::Refuse(report) => {
            ErrorReport::new(finding.sqlstate, report.message, function_name!())
                .set_detail(report.detail)
                .set_hint(report.hint)
                .report(PgLogLevel::ERROR);
            unreachable!("an ERROR does not return")
        }
    };
    crate::audit::record_command(finding, env, reason.as_deref(), statement)
}

fn refusal(finding: &Finding, ovr: &Override, scope: Scope) -> Report {
    let mut detail = finding.why.clone();
    if let Override::Ignored { why, .. } = ovr {
        detail.push_str(" The override was ignored: ");
        detail.push_str(why);
    }
    let how = match scope {
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

/// The usual way forward besides an override: tag the database if it is not production.
pub fn tag_hint(database: &str) -> String {
    format!(
        "If the database is not production, tag it: ALTER DATABASE {} SET prodguard.environment = 'development'.",
        pgrx::spi::quote_identifier(database)
    )
}

/// Raises an ERROR in PostgreSQL's style; an empty detail or hint is left out.
pub fn raise(code: PgSqlErrorCode, message: String, detail: impl Into<String>, hint: &str) {
    let detail = detail.into();
    let mut report = ErrorReport::new(code, message, function_name!());
    if !detail.is_empty() {
        report = report.set_detail(detail);
    }
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
}

/// Raises `could not <what>` (XX000) with the underlying error as its DETAIL: for SPI
/// statements of the extension's own that failed.
pub fn raise_internal(what: &str, error: impl std::fmt::Display) {
    raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("could not {what}"),
        error.to_string(),
        "",
    );
}

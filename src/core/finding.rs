//! Findings: what a guard found in one statement, in words a DBA reads. A guard only
//! describes; the policy (`guards::policy`) decides what the finding becomes in each
//! environment, and the records layer logs and audits it.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::pg::current_database;
use crate::core::settings;

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

    /// A finding about an object of this database, judged by this database's environment:
    /// the place is ` in <environment> database "<name>"` and the way forward is tagging
    /// the database.
    pub fn here(
        guard: Guard,
        command: impl Into<String>,
        object: impl Into<String>,
        why: impl Into<String>,
        relation: Option<pg_sys::Oid>,
    ) -> Finding {
        let db = current_database();
        Finding::blocked(
            guard,
            command,
            object,
            format!(" in {} database \"{db}\"", settings::environment().name()),
            why,
            tag_hint(&db),
            relation,
        )
    }

    /// Puts another way forward before the usual one in the HINT.
    pub fn prefer(mut self, alternative: &str) -> Finding {
        self.alternative = format!("{alternative} {}", self.alternative);
        self
    }

    /// A fixed primary message, used as is in production and staging.
    pub fn with_message(mut self, message: String) -> Finding {
        self.message = Some(message);
        self
    }

    pub fn with_sqlstate(mut self, sqlstate: PgSqlErrorCode) -> Finding {
        self.sqlstate = sqlstate;
        self
    }
}

/// The usual way forward besides an override: tag the database if it is not production.
pub fn tag_hint(database: &str) -> String {
    format!(
        "If the database is not production, tag it: ALTER DATABASE {} SET prodguard.environment = 'development'.",
        pgrx::spi::quote_identifier(database)
    )
}

//! Alerts (SPEC §11): events a DBA must be told about, not only find in a view.
//!
//! Every alert goes four ways at once: one server-log line that starts with
//! `prodguard: alert` (the same `key="value"` format as the denial lines), its counter in
//! `prodguard.metrics` (`alerts_<kind>`), and a record in the shared queue that the
//! database's background writer (`workers`) inserts into `prodguard.alerts` and announces
//! with `NOTIFY prodguard_alert` (a JSON payload) in its own transaction, so an alert
//! outlives the rollback of the transaction that raised it.
//!
//! Kinds and who raises them:
//! - `row_drop`: `records::watch`;
//! - `override_used`, `change_used`, `migration_history_changed`: `guards::policy`, when a
//!   guarded statement runs on an override (or, for the migration history, with a staging
//!   warning);
//! - `test_data_logged`: the test-data guard, when it lets a matching row in;
//! - `denial_burst`: `guards::policy`, from the refusals `records::watch` counts.
//!
//! Development raises none; staging raises them like production. One alert per kind and
//! object is raised per transaction (`change_used`: per session and change), however
//! many statements or rows caused it.

use std::cell::RefCell;

use crate::core::breakglass;
use crate::core::settings::{self, Environment};
use crate::records::denial::{self, Session};
use crate::records::shmem::{self, Counter, Record, KIND_ALERT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    RowDrop,
    OverrideUsed,
    ChangeUsed,
    MigrationHistoryChanged,
    TestDataLogged,
    DenialBurst,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RowDrop => "row_drop",
            Kind::OverrideUsed => "override_used",
            Kind::ChangeUsed => "change_used",
            Kind::MigrationHistoryChanged => "migration_history_changed",
            Kind::TestDataLogged => "test_data_logged",
            Kind::DenialBurst => "denial_burst",
        }
    }

    fn counter(self) -> Counter {
        match self {
            Kind::RowDrop => Counter::AlertRowDrop,
            Kind::OverrideUsed => Counter::AlertOverrideUsed,
            Kind::ChangeUsed => Counter::AlertChangeUsed,
            Kind::MigrationHistoryChanged => Counter::AlertMigrationHistoryChanged,
            Kind::TestDataLogged => Counter::AlertTestDataLogged,
            Kind::DenialBurst => Counter::AlertDenialBurst,
        }
    }

    /// Whether one alert per session (rather than per transaction) is enough.
    fn per_session(self) -> bool {
        self == Kind::ChangeUsed
    }
}

thread_local! {
    /// (kind, object, local transaction or 0 for the session) of the alerts raised.
    static RAISED: RefCell<Vec<(Kind, String, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Raises an alert from a session, once per transaction (or session) and object; nothing
/// in development.
pub fn raise(kind: Kind, object: &str, detail: &str) {
    if settings::environment() == Environment::Development {
        return;
    }
    let scope = if kind.per_session() {
        0
    } else {
        breakglass::local_transaction()
    };
    let first = RAISED.with_borrow_mut(|raised| {
        raised.retain(|(_, _, s)| *s == 0 || *s == scope);
        if raised
            .iter()
            .any(|(k, o, s)| *k == kind && o == object && *s == scope)
        {
            return false;
        }
        // (a session that used many changes keeps at most the last 100 of them)
        if raised.len() >= 100 {
            raised.remove(0);
        }
        raised.push((kind, object.to_string(), scope));
        true
    });
    if first {
        emit(&Session::current(), kind, object, detail);
    }
}

/// Writes an alert's log line, counts it and queues it for `prodguard.alerts`. Looks
/// nothing up, raises no error: callable after commit.
pub fn emit(who: &Session, kind: Kind, object: &str, detail: &str) {
    shmem::count(kind.counter());
    denial::log_line(
        "alert",
        &[("kind", kind.name()), ("object", object)],
        who,
        &[("detail", detail)],
    );
    // SAFETY: a read of a backend global.
    let dboid = unsafe { pgrx::pg_sys::MyDatabaseId };
    if !shmem::available() || dboid == pgrx::pg_sys::InvalidOid {
        return;
    }
    let mut r = Record::empty();
    r.kind = KIND_ALERT;
    // SAFETY: GetCurrentTimestamp has no preconditions.
    r.at = unsafe { pgrx::pg_sys::GetCurrentTimestamp() };
    r.dboid = dboid.to_u32();
    who.fill(&mut r);
    r.command.set(kind.name());
    r.object.set(object);
    r.detail.set(detail);
    shmem::enqueue(&r);
}

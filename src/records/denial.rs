//! Denial log: the record of what the guards refused, warned about or let through on an
//! override.
//!
//! A refused statement aborts its transaction, so nothing it writes to a table survives.
//! What always survives is the server log: every event writes exactly one LOG line (no
//! STATEMENT or CONTEXT lines after it) that
//! starts with `prodguard:` and carries `key="value"` pairs (values escaped with `\"` and
//! `\\`), stable so that log shippers can parse it:
//!
//! ```text
//! prodguard: refused guard="command" command="TRUNCATE" object="table \"public.profiles\""
//!   database="app" user="bob" session_user="bob" application="psql" client="[local]"
//!   pid="4242" reason=""
//! ```
//! (one line in the log; wrapped here). The event word is `refused`, `warned` or
//! `overridden`.
//!
//! A refusal is also put into the shared denial queue (`records::shmem`) before the error is
//! raised; a background worker (`workers`) writes it to `prodguard.denial_log` of
//! this database in its own transaction, so it survives the rollback. Every event also
//! bumps its counter in `prodguard.metrics`.

use std::ffi::CStr;

use pgrx::pg_sys;

use crate::core::finding::{Finding, Guard};
use crate::core::pg::{self, cstr_or};
use crate::records::shmem::{self, Counter, Record};
use crate::records::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Refused,
    Warned,
    Overridden,
    /// A destructive change that logical replication applied (recorded, not refused).
    Replicated,
}

impl Event {
    fn word(self) -> &'static str {
        match self {
            Event::Refused => "refused",
            Event::Warned => "warned",
            Event::Overridden => "overridden",
            Event::Replicated => "replicated",
        }
    }
}

/// Writes the `prodguard:` line for one event. `reason` is the override's reason: the one
/// that let the statement run, or, for a refusal, the one that was ignored.
pub fn log(event: Event, finding: &Finding, reason: Option<&str>) {
    log_with_detail(event, finding, reason, &finding.why);
}

/// Logs a refusal whose error DETAIL is `detail`, which its denial record keeps; returns
/// who was refused.
pub fn log_refusal(finding: &Finding, reason: Option<&str>, detail: &str) -> Session {
    log_with_detail(Event::Refused, finding, reason, detail)
}

fn log_with_detail(event: Event, finding: &Finding, reason: Option<&str>, detail: &str) -> Session {
    let who = Session::current();
    match event {
        Event::Refused => {
            shmem::count(match finding.guard {
                Guard::Command => Counter::RefusedCommand,
                Guard::Settings => Counter::RefusedSettings,
                Guard::Row => Counter::RefusedRow,
                Guard::TestData => Counter::RefusedTestData,
                Guard::Audit => Counter::RefusedAudit,
            });
            queue(finding, detail, &who);
        }
        Event::Warned => shmem::count(Counter::Warned),
        Event::Overridden => shmem::count(Counter::OverridesUsed),
        Event::Replicated => {}
    }
    log_line(
        event.word(),
        &[
            ("guard", finding.guard.name()),
            ("command", &finding.command),
            ("object", &finding.object),
        ],
        &who,
        &[("reason", reason.unwrap_or(""))],
    );
    who
}

/// Writes one `prodguard: <word>` line: the `lead` fields, who ran the statement, then the
/// `tail` fields, each as `key="value"`.
pub fn log_line(word: &str, lead: &[(&str, &str)], who: &Session, tail: &[(&str, &str)]) {
    let pid = who.pid.to_string();
    let client = who.client.as_deref().unwrap_or("local");
    let session = [
        ("database", who.database.as_str()),
        ("user", who.user.as_str()),
        ("session_user", who.session_user.as_str()),
        ("application", who.application.as_str()),
        ("client", client),
        ("pid", pid.as_str()),
    ];
    let mut line = format!("prodguard: {word}");
    for (key, value) in lead.iter().chain(session.iter()).chain(tail.iter()) {
        line.push(' ');
        line.push_str(key);
        line.push_str("=\"");
        line.push_str(&escape(value));
        line.push('"');
    }
    log_one_line(&line);
}

// PostgreSQL's ereport() entry points (pgrx keeps them out of its bindings).
unsafe extern "C-unwind" {
    fn errstart(elevel: std::ffi::c_int, domain: *const std::ffi::c_char) -> bool;
    fn errfinish(
        filename: *const std::ffi::c_char,
        lineno: std::ffi::c_int,
        funcname: *const std::ffi::c_char,
    );
    fn errmsg_internal(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
}

/// Writes `line` to the server log at level LOG as exactly one line: without the
/// STATEMENT and CONTEXT lines PostgreSQL would otherwise append (the statement is in the
/// denial record; log shippers get one line per event).
fn log_one_line(line: &str) {
    let Ok(message) = std::ffi::CString::new(line.replace('\0', "")) else {
        return;
    };
    // SAFETY: ereport at level LOG: errstart/errfinish return normally (only ERROR and
    // above jump); the format is "%s" with a NUL-terminated string that outlives the call.
    unsafe {
        if errstart(pg_sys::LOG as std::ffi::c_int, std::ptr::null()) {
            errmsg_internal(c"%s".as_ptr(), message.as_ptr());
            pg_sys::errhidestmt(true);
            pg_sys::errhidecontext(true);
            errfinish(
                c"denial.rs".as_ptr(),
                line!() as std::ffi::c_int,
                c"log".as_ptr(),
            );
        }
    }
}

/// Puts the record of a refusal into the shared queue (when there is one: the library
/// was preloaded, and this is a backend connected to a database).
fn queue(finding: &Finding, detail: &str, who: &Session) {
    // SAFETY: reads of backend globals.
    let dboid = unsafe { pg_sys::MyDatabaseId };
    if !shmem::available() || dboid == pg_sys::InvalidOid {
        return;
    }
    // compared as written; redacted only if stored (a flood's refusals past the rate cost
    // no redaction)
    let written = crate::core::statement::current_unredacted().unwrap_or_default();
    let (admit, left) = watch::admit_record(who, finding.guard.name(), &written);
    if let Some(l) = left {
        sum_up(&l);
    }
    let repeated = match admit {
        watch::Admit::Count => {
            shmem::count(Counter::DenialsSuppressed);
            return;
        }
        watch::Admit::Store { repeated } => repeated,
    };
    let mut r = Record::empty();
    // SAFETY: GetCurrentTimestamp has no preconditions.
    r.at = unsafe { pg_sys::GetCurrentTimestamp() };
    r.dboid = dboid.to_u32();
    who.fill(&mut r);
    r.guard.set(finding.guard.name());
    r.command.set(&finding.command);
    r.object.set(&finding.object);
    r.detail.set(detail);
    // a client repeating one statement has its text stored once per minute
    if repeated {
        r.statement
            .set("(the same statement as this client's previous refusal)");
    } else {
        r.statement.set(&crate::core::statement::redact(&written));
    }
    shmem::enqueue(&r);
}

/// Queues the record that sums up a client's minute of refusals counted, not stored
/// (from the backend that next uses the client's entry, or from the denial launcher once
/// the minute is over).
pub fn sum_up(l: &watch::Leftover) {
    if l.who.dboid == 0 {
        return;
    }
    let mut r = Record::empty();
    // SAFETY: GetCurrentTimestamp has no preconditions.
    r.at = unsafe { pg_sys::GetCurrentTimestamp() };
    l.who.fill(&mut r);
    let client = watch::client_name(&l.who.session());
    r.command.set("(refusals not stored)");
    r.object.set(&client);
    r.detail.set(&format!(
        "{} more refusals of {client} within the minute from {} were counted, not stored (prodguard.denial_log_rate is {}).",
        l.count,
        pg::timestamp_text(l.since),
        l.who.rate
    ));
    shmem::enqueue(&r);
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Who is running the statement, as far as the backend knows without catalog writes.
#[derive(Clone, Debug)]
pub struct Session {
    pub database: String,
    pub user: String,
    pub session_user: String,
    pub application: String,
    /// The client's IP address; `None` for a Unix-socket connection or a background
    /// process.
    pub client: Option<String>,
    pub pid: i32,
}

impl Session {
    /// Copies who into a queued record.
    pub fn fill(&self, r: &mut Record) {
        r.pid = self.pid;
        r.database.set(&self.database);
        r.db_user.set(&self.user);
        r.session_user.set(&self.session_user);
        r.application.set(&self.application);
        r.client.set(self.client.as_deref().unwrap_or(""));
    }

    /// Who, as a queued record has it.
    pub fn of_record(r: &Record) -> Session {
        Session {
            database: r.database.get().to_string(),
            user: r.db_user.get().to_string(),
            session_user: r.session_user.get().to_string(),
            application: r.application.get().to_string(),
            client: Some(r.client.get().to_string()).filter(|c| !c.is_empty()),
            pid: r.pid,
        }
    }

    pub fn current() -> Session {
        // SAFETY: backend globals, valid in any backend once it is connected; every pointer
        // is checked for NULL before use.
        unsafe {
            Session {
                database: pg::current_database(),
                user: pg::role_name(pg_sys::GetUserId()),
                session_user: pg::role_name(pg_sys::GetSessionUserId()),
                application: cstr_or(pg_sys::application_name, ""),
                client: client_address(),
                pid: pg_sys::MyProcPid,
            }
        }
    }
}

/// The client's IP address; `None` for a Unix-socket connection or a background process.
fn client_address() -> Option<String> {
    // SAFETY: inet_client_addr takes no arguments and returns NULL when there is no IP
    // client; inet_out turns an inet datum into a palloc'd C string.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[])
            .and_then(|inet| pgrx::direct_function_call::<&CStr>(pg_sys::inet_out, &[Some(inet)]))
            .map(|s| s.to_string_lossy().into_owned())
    }
}

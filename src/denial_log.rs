//! Denial log: the record of what the guards refused, warned about or let through on an
//! override.
//!
//! A refused statement aborts its transaction, so nothing it writes to a table survives.
//! What always survives is the server log: every event writes exactly one LOG line that
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

use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::breakglass;
use crate::extension::cstr_or;
use crate::policy::Finding;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Refused,
    Warned,
    Overridden,
}

impl Event {
    fn word(self) -> &'static str {
        match self {
            Event::Refused => "refused",
            Event::Warned => "warned",
            Event::Overridden => "overridden",
        }
    }
}

/// Writes the `prodguard:` line for one event. `reason` is the override's reason: the one
/// that let the statement run, or, for a refusal, the one that was ignored.
pub fn log(event: Event, finding: &Finding, reason: Option<&str>) {
    let who = Session::current();
    let fields = [
        ("guard", finding.guard.name().to_string()),
        ("command", finding.command.clone()),
        ("object", finding.object.clone()),
        ("database", who.database),
        ("user", who.user),
        ("session_user", who.session_user),
        ("application", who.application),
        ("client", who.client),
        ("pid", who.pid.to_string()),
        ("reason", reason.unwrap_or("").to_string()),
    ];
    let mut line = format!("prodguard: {}", event.word());
    for (key, value) in fields {
        line.push(' ');
        line.push_str(key);
        line.push_str("=\"");
        line.push_str(&escape(&value));
        line.push('"');
    }
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        line,
        function_name!(),
    )
    .report(PgLogLevel::LOG);
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Who is running the statement, as far as the backend knows without catalog writes.
pub struct Session {
    pub database: String,
    pub user: String,
    pub session_user: String,
    pub application: String,
    pub client: String,
    pub pid: i32,
}

impl Session {
    pub fn current() -> Session {
        // SAFETY: backend globals, valid in any backend once it is connected; every pointer
        // is checked for NULL before use.
        unsafe {
            Session {
                database: crate::environment::current_database(),
                user: breakglass::role_name(pg_sys::GetUserId()),
                session_user: breakglass::role_name(pg_sys::GetSessionUserId()),
                application: cstr_or(pg_sys::application_name, ""),
                client: client_address(),
                pid: pg_sys::MyProcPid,
            }
        }
    }
}

/// The client's IP address, or `local` for a Unix-socket connection or a background process.
fn client_address() -> String {
    // SAFETY: inet_client_addr takes no arguments and returns NULL when there is no IP
    // client; inet_out turns an inet datum into a palloc'd C string.
    unsafe {
        pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[])
            .and_then(|inet| pgrx::direct_function_call::<&CStr>(pg_sys::inet_out, &[Some(inet)]))
            .map_or_else(|| "local".to_string(), |s| s.to_string_lossy().into_owned())
    }
}

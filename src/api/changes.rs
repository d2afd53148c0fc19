//! Approved changes (SPEC §9): `request_change()`, `approve_change()`, `revoke_change()`.
//! One operator asks, another approves; the change is for this database and one role,
//! until a time. `core::changes` decides whether `prodguard.override = 'change:<id>'` is in
//! force; `sql/changes.sql` has the table and the `changes` view.
//!
//! Every function writes the table as its owner (nobody else can) after checking that
//! the caller is an operator (`core::breakglass::is_operator`: superusers, and members of
//! prodguard_operator through superuser-granted memberships), with the session's role
//! standing for the person (not the owner of a SECURITY DEFINER function in between).

use pgrx::datetime::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::breakglass::{self, OPERATOR_ROLE};
use crate::core::changes;
use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::pg::{current_database, role_name};

/// The longest a change may be valid for.
const MAX_VALIDITY: &str = "7 days";

/// The person asking: the session's role, which must be an operator, as the current user
/// must.
fn operator_in_person(what: &str) -> String {
    // SAFETY: reads of backend globals.
    let (user, outer) = unsafe { (pg_sys::GetUserId(), pg_sys::GetOuterUserId()) };
    let person = role_name(outer);
    if !breakglass::is_operator(user) || !breakglass::is_operator(outer) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}"),
            format!(
                "Role \"{person}\" is not a member of {OPERATOR_ROLE} (memberships count when a superuser granted them)."
            ),
            "Ask a member of prodguard_operator.",
        );
    }
    person
}

/// Runs a statement on prodguard.change_request as its owner; its first column.
fn write<T: IntoDatum + FromDatum>(
    sql: &str,
    args: Vec<pgrx::datum::DatumWithOid<'_>>,
) -> Option<T> {
    let Some(table) = extension::own_table(c"change_request") else {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_prodguard is not installed in this database".into(),
            "",
            "CREATE EXTENSION pg_prodguard;",
        )
    };
    crate::core::error::require_writable("a change of prodguard.change_request");
    changes::forget();
    match extension::as_owner_of(table, || {
        crate::core::passes::own_write(|| Spi::get_one_with_args::<T>(sql, &args))
    }) {
        Some(Ok(value)) => value,
        Some(Err(e)) => raise_internal("write prodguard.change_request", e),
        None => None,
    }
}

/// Requests a change; returns its id. (SQL: prodguard.request_change(reason, db_role
/// DEFAULT current_user, valid_for DEFAULT '1 hour').)
#[pg_extern(name = "_request_change", volatile)]
fn request_change(reason: Option<&str>, db_role: Option<&str>, valid_for: Option<Interval>) -> i64 {
    let person = operator_in_person("request a change");
    let reason = reason.map(str::trim).unwrap_or("");
    if reason.is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a change needs a reason".into(),
            "The reason is what the audit records for every statement run under the change.",
            "Say what is changed and why, e.g. 'CHG-42: drop the legacy status column'.",
        );
    }
    let Some(db_role) = db_role.filter(|r| !r.trim().is_empty()) else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a change needs a role".into(),
            "",
            "Name the role the deploy connects as.",
        )
    };
    let role_exists = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<bool>(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[db_role.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if !role_exists {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("role \"{db_role}\" does not exist"),
            "",
            "Name the role the deploy connects as.",
        );
    }
    let Some(valid_for) = valid_for else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "a change needs a validity".into(),
            "",
            "Give an interval such as '1 hour'.",
        )
    };
    let sane = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<bool>(
            &format!("SELECT $1 > interval '0' AND $1 <= interval '{MAX_VALIDITY}'"),
            &[valid_for.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if !sane {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "invalid validity for a change".into(),
            format!("A change is valid for more than nothing and at most {MAX_VALIDITY}."),
            "Request a new change when this one runs out.",
        );
    }
    write::<i64>(
        "INSERT INTO prodguard.change_request (database, db_role, reason, requested_by, valid_until)
         VALUES ($1, $2, $3, $4, now() + $5) RETURNING id",
        vec![
            current_database().into(),
            db_role.into(),
            reason.into(),
            person.into(),
            valid_for.into(),
        ],
    )
    .unwrap_or(0)
}

/// The state of a change as approve/revoke need it.
struct State {
    requested_by: String,
    approved: bool,
    revoked: bool,
    expired: bool,
}

fn state(id: i64) -> State {
    let found = write::<pgrx::JsonB>(
        "SELECT (SELECT jsonb_build_object('requested_by', requested_by,
                        'approved', approved_by IS NOT NULL, 'revoked', revoked_by IS NOT NULL,
                        'expired', valid_until <= now())
                   FROM prodguard.change_request WHERE id = $1 AND database = $2)",
        vec![id.into(), current_database().into()],
    );
    let Some(pgrx::JsonB(v)) = found else {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "change {id} does not exist in database \"{}\"",
                current_database()
            ),
            "",
            "SELECT * FROM prodguard.changes lists them.",
        )
    };
    State {
        requested_by: v["requested_by"].as_str().unwrap_or("").to_string(),
        approved: v["approved"].as_bool().unwrap_or(false),
        revoked: v["revoked"].as_bool().unwrap_or(false),
        expired: v["expired"].as_bool().unwrap_or(true),
    }
}

/// Approves a change another operator requested.
#[pg_extern(volatile)]
fn approve_change(change_id: i64) {
    let person = operator_in_person("approve a change");
    let s = state(change_id);
    let refuse = |code, message: String, hint: &str| -> ! { raise(code, message, "", hint) };
    if s.requested_by == person {
        refuse(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("change {change_id} cannot be approved by its requester"),
            "Another member of prodguard_operator must approve it: that is the point of four eyes.",
        );
    }
    if s.revoked {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("change {change_id} was revoked"),
            "Request a new change.",
        );
    }
    if s.approved {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("change {change_id} is already approved"),
            "",
        );
    }
    if s.expired {
        refuse(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("change {change_id} has expired"),
            "Request a new change.",
        );
    }
    write::<i64>(
        "UPDATE prodguard.change_request SET approved_by = $2, approved_at = now()
          WHERE id = $1 AND approved_by IS NULL RETURNING id",
        vec![change_id.into(), person.into()],
    );
}

/// Ends a change early: its requester or any operator.
#[pg_extern(volatile)]
fn revoke_change(change_id: i64) {
    let person = operator_in_person("revoke a change");
    let s = state(change_id);
    if s.revoked {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("change {change_id} is already revoked"),
            "",
            "",
        );
    }
    write::<i64>(
        "UPDATE prodguard.change_request SET revoked_by = $2, revoked_at = now()
          WHERE id = $1 RETURNING id",
        vec![change_id.into(), person.into()],
    );
}

//! Break-glass overrides: when `prodguard.override` lets a guarded statement run in
//! production.
//!
//! Two kinds of values:
//! - a plain reason, `SET LOCAL prodguard.override = '<reason>'`, honoured only when all
//!   of these hold:
//!   1. its reason is not blank, and `prodguard.require_approval` is off;
//!   2. it was set in the transaction that runs the guarded statement (for DROP DATABASE
//!      and ALTER SYSTEM, which cannot run in one: by the statement just before);
//!   3. it was set by an operator's own statement: `SET`, `SET LOCAL`, `set_config()` or
//!      a function's `SET` clause, run while both the current user and the session's
//!      role (the one behind SECURITY DEFINER functions) are operators;
//! - `change:<id>`, an approved change (`core::changes`), honoured across transactions and
//!   from any source (startup options included) for the role and database it was approved
//!   for, while it is approved, unexpired and not revoked.
//!
//! How (3) is known: the check hook of `prodguard.override` sees where a new value comes
//! from (`GucSource`) and who is setting it; it leaves a stamp for the assign hook, which
//! takes it only for that very value. Every other assignment (the value put back when a
//! function, savepoint or transaction ends; ALTER ROLE/DATABASE SET applied at login;
//! startup options; configuration files) reaches the assign hook without a matching stamp
//! and so never counts.
//!
//! An operator is a superuser, or a role that is a member of `prodguard_operator` through
//! memberships each granted by a superuser: a role with CREATEROLE can grant itself the
//! membership in PostgreSQL 15, and that must not make it an operator.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::changes;
use crate::core::error::raise;
use crate::core::extension::with_pinned_search_path;
use crate::core::pg::role_name;
use crate::core::settings;

/// Which transactions an override may act in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The one in which it was set (SET LOCAL, or SET inside a transaction block).
    Transaction,
    /// That one, or the transaction right after it. Only for statements that cannot run
    /// inside a transaction block (DROP DATABASE, ALTER SYSTEM), so an override can only
    /// come from the statement before them.
    NextStatement,
    /// No plain reason can act: connection startup options, which no transaction of the
    /// session's own has set and nothing could record. (An approved change can.)
    Never,
}

/// The override as a guard sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Override {
    None,
    /// Honoured; `reason` is what the audit and the log record (for an approved change:
    /// its id, reason, requester and approver).
    Valid {
        reason: String,
    },
    Ignored {
        reason: String,
        why: String,
    },
}

/// Who set the current value of prodguard.override, and in which transaction.
#[derive(Clone, Copy)]
struct Stamp {
    lxid: pg_sys::LocalTransactionId,
    /// The current user when it was set.
    role: pg_sys::Oid,
    /// The session's role (behind SECURITY DEFINER functions) when it was set.
    outer: pg_sys::Oid,
    /// Whether both were operators then.
    operator: bool,
}

const UNSTAMPED: Stamp = Stamp {
    lxid: 0,
    role: pg_sys::InvalidOid,
    outer: pg_sys::InvalidOid,
    operator: false,
};

thread_local! {
    static STAMP: Cell<Stamp> = const { Cell::new(UNSTAMPED) };
    /// The stamp the check hook prepared for the value it accepted.
    static PENDING: RefCell<Option<(String, Stamp)>> = const { RefCell::new(None) };
}

pub const OPERATOR_ROLE: &str = "prodguard_operator";

/// Check hook of `prodguard.override`: refuses a malformed `change:` reference (22023), and
/// stamps a value an operator's own statement sets.
#[pg_guard]
pub unsafe extern "C-unwind" fn check_override(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: PostgreSQL passes a valid pointer to a NUL-terminated proposed value (or NULL).
    let value = unsafe {
        if newval.is_null() || (*newval).is_null() {
            String::new()
        } else {
            CStr::from_ptr(*newval).to_string_lossy().into_owned()
        }
    };
    if let Some(Err(why)) = changes::parse_reference(&value) {
        // SAFETY: as the GUC_check_errmsg() macros do: strings copied into ErrorContext.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(pg_sys::ErrorContext);
            pg_sys::GUC_check_errcode(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as c_int);
            pg_sys::GUC_check_errmsg_string = palloc_str(&format!(
                "invalid value for prodguard.override: \"{}\"",
                value.trim()
            ));
            pg_sys::GUC_check_errdetail_string = palloc_str(&why);
            pg_sys::GUC_check_errhint_string =
                palloc_str("An approved change is named change:<id>, its id in prodguard.changes.");
            pg_sys::MemoryContextSwitchTo(old);
        }
        return false;
    }
    let stamp = if source == pg_sys::GucSource::PGC_S_SESSION {
        stamp_now()
    } else {
        UNSTAMPED
    };
    PENDING.with(|p| *p.borrow_mut() = Some((value, stamp)));
    true
}

fn palloc_str(s: &str) -> *mut c_char {
    let c = std::ffi::CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: pstrdup copies a valid NUL-terminated string into the current memory context.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Assign hook of `prodguard.override`: takes the check hook's stamp for this very value;
/// any other assignment (a value put back, applied at login, from startup options or
/// files) is unstamped.
#[pg_guard]
pub unsafe extern "C-unwind" fn assign_override(newval: *const c_char, _extra: *mut c_void) {
    // SAFETY: NULL or the NUL-terminated value being assigned.
    let value = unsafe {
        if newval.is_null() {
            String::new()
        } else {
            CStr::from_ptr(newval).to_string_lossy().into_owned()
        }
    };
    let stamp = PENDING.with(|p| match p.borrow_mut().take() {
        Some((checked, stamp)) if checked == value => stamp,
        _ => UNSTAMPED,
    });
    STAMP.with(|s| s.set(stamp));
}

/// The stamp of a value set now by a statement of this session.
fn stamp_now() -> Stamp {
    // SAFETY: reads of backend globals; catalog lookups only inside a transaction, outside
    // parallel-worker start-up (which copies its leader's settings).
    unsafe {
        if pg_sys::MyProc.is_null()
            || !pg_sys::IsTransactionState()
            || pg_sys::InitializingParallelWorker
        {
            return UNSTAMPED;
        }
        let role = pg_sys::GetUserId();
        let outer = pg_sys::GetOuterUserId();
        Stamp {
            lxid: (*pg_sys::MyProc).lxid,
            role,
            outer,
            operator: is_operator(role) && (outer == role || is_operator(outer)),
        }
    }
}

/// This backend's local transaction id (0 outside a transaction).
pub fn local_transaction() -> u32 {
    // SAFETY: MyProc is either NULL (postmaster, early start-up) or this backend's PGPROC.
    unsafe {
        if pg_sys::MyProc.is_null() || !pg_sys::IsTransactionState() {
            0
        } else {
            (*pg_sys::MyProc).lxid
        }
    }
}

/// The override in force for a statement running now.
pub fn current(scope: Scope) -> Override {
    let raw = settings::string_setting(&settings::OVERRIDE);
    if raw.is_empty() {
        return Override::None;
    }
    let reason = raw.trim().to_string();
    if let Some(Ok(id)) = changes::parse_reference(&reason) {
        return match changes::in_force(id) {
            Ok(record) => Override::Valid { reason: record },
            Err(why) => Override::Ignored { reason, why },
        };
    }
    if reason.is_empty() {
        return Override::Ignored {
            reason,
            why: "its reason is blank.".into(),
        };
    }
    if settings::REQUIRE_APPROVAL.get() {
        return Override::Ignored {
            reason,
            why: "prodguard.require_approval is on, so only approved changes are honoured.".into(),
        };
    }
    let set = STAMP.with(|s| s.get());
    let now = local_transaction();
    let same_txn = now != 0 && set.lxid == now;
    let previous_txn = now != 0 && set.lxid != 0 && set.lxid.wrapping_add(1) == now;
    let in_scope = match scope {
        Scope::Transaction => same_txn,
        Scope::NextStatement => same_txn || previous_txn,
        Scope::Never => false,
    };
    if !in_scope {
        let why = match scope {
            Scope::Never => "overrides are not honoured in connection startup options.",
            Scope::Transaction if set.lxid == 0 => "it was not set by a statement of this transaction (values from ALTER ROLE/DATABASE ... SET, startup options, configuration files and values put back when a function or savepoint ends never count). Use SET LOCAL inside the transaction that runs the statement.",
            Scope::Transaction => "it was not set in this transaction. An override counts only in the transaction in which it was set: use SET LOCAL inside the transaction that runs the statement.",
            Scope::NextStatement => "it was not set by the statement just before this one. This statement cannot run in a transaction block, so run SET prodguard.override = '<reason>' and then this statement as the very next one.",
        };
        return Override::Ignored {
            reason,
            why: why.into(),
        };
    }
    if !set.operator {
        let why = if set.outer != set.role && is_operator(set.role) {
            format!(
                "it was set inside a function of role \"{}\" called by role \"{}\", which is not a member of {OPERATOR_ROLE}.",
                role_name(set.role),
                role_name(set.outer)
            )
        } else {
            format!(
                "role \"{}\", which set it, is not a member of {OPERATOR_ROLE}.",
                role_name(set.role)
            )
        };
        return Override::Ignored { reason, why };
    }
    Override::Valid { reason }
}

/// The reason of the override in force in this transaction, if any. Cheap when there is
/// none (the per-row audit path asks for every row).
pub fn reason_in_force() -> Option<String> {
    // SAFETY: the GUC's storage is NULL or a NUL-terminated string owned by the GUC system.
    let empty = unsafe {
        let p = *settings::OVERRIDE.as_ptr();
        p.is_null() || *p == 0
    };
    if empty {
        return None;
    }
    match current(Scope::Transaction) {
        Override::Valid { reason } => Some(reason),
        _ => None,
    }
}

/// Whether a role may break glass and restore: a superuser, or a member of
/// prodguard_operator through memberships that superusers granted.
pub fn is_operator(role: pg_sys::Oid) -> bool {
    if role == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: catalog lookup inside a transaction.
    if unsafe { pg_sys::superuser_arg(role) } {
        return true;
    }
    with_pinned_search_path(|| {
        crate::core::spi::one::<bool>(
            "WITH RECURSIVE granted(roleid) AS (
                 SELECT m.roleid FROM pg_catalog.pg_auth_members m
                   JOIN pg_catalog.pg_roles g ON g.oid = m.grantor AND g.rolsuper
                  WHERE m.member = $1
                 UNION
                 SELECT m.roleid FROM pg_catalog.pg_auth_members m
                   JOIN granted ON m.member = granted.roleid
                   JOIN pg_catalog.pg_roles g ON g.oid = m.grantor AND g.rolsuper)
             SELECT EXISTS (SELECT FROM granted
                             WHERE roleid = (SELECT oid FROM pg_catalog.pg_roles
                                              WHERE rolname = 'prodguard_operator'))",
            &[role.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// Raises `message` (42501) unless the current user is an operator; `detail` says who may.
pub fn require_operator(message: String, detail: String) {
    // SAFETY: GetUserId reads a backend global.
    if !is_operator(unsafe { pg_sys::GetUserId() }) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            message,
            detail,
            "",
        );
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    // #[pg_test] functions run inside one transaction, as the bootstrap superuser.

    #[pg_test]
    fn no_reason_is_no_override() {
        Spi::run("SET LOCAL prodguard.override = ''").unwrap();
        assert_eq!(current(Scope::Transaction), Override::None);
    }

    #[pg_test]
    fn a_reason_set_in_this_transaction_counts() {
        Spi::run("SET LOCAL prodguard.override = '  INC-1: reason  '").unwrap();
        assert_eq!(
            current(Scope::Transaction),
            Override::Valid {
                reason: "INC-1: reason".into()
            }
        );
        assert!(matches!(current(Scope::Never), Override::Ignored { .. }));
    }

    #[pg_test]
    fn a_blank_reason_is_ignored() {
        Spi::run("SET LOCAL prodguard.override = '   '").unwrap();
        assert!(matches!(
            current(Scope::Transaction),
            Override::Ignored { .. }
        ));
    }

    #[pg_test]
    fn a_non_operator_cannot_break_glass() {
        Spi::run("CREATE ROLE breakglass_test_nobody").unwrap();
        Spi::run("SET LOCAL ROLE breakglass_test_nobody").unwrap();
        Spi::run("SET LOCAL prodguard.override = 'trying'").unwrap();
        match current(Scope::Transaction) {
            Override::Ignored { why, .. } => {
                assert!(why.contains("breakglass_test_nobody"), "{why}")
            }
            other => panic!("expected Ignored, got {other:?}"),
        }
    }

    #[pg_test]
    fn superusers_and_members_are_operators() {
        // SAFETY: plain read of the bootstrap superuser's oid constant.
        assert!(is_operator(pg_sys::Oid::from(
            pg_sys::BOOTSTRAP_SUPERUSERID
        )));
        assert!(!is_operator(pg_sys::InvalidOid));
    }
}

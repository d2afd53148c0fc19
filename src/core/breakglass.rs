//! Break-glass overrides: when `SET LOCAL prodguard.override = '<reason>'` lets a guarded
//! statement run in production.
//!
//! An override is honoured only when all three hold:
//! 1. its reason is not blank;
//! 2. it was set in the transaction that runs the guarded statement;
//! 3. the role that set it is a member of `prodguard_operator` (superusers count).
//!
//! The assign hook stamps every new value with (2) and (3) as they are at SET time: this
//! backend's local transaction id and the current role. Values that arrive outside a
//! transaction (postgresql.conf, ALTER ROLE/DATABASE SET applied at login, the value put
//! back when a transaction or savepoint ends) are stamped with no transaction and so
//! never count. Checking (3) against the role that *set* the reason means a
//! non-operator cannot borrow an operator's SECURITY DEFINER function to break glass.

use std::cell::Cell;
use std::ffi::{c_char, c_void};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::raise;
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
    /// No override can act: connection startup options, which no transaction of the
    /// session's own has set and nothing could record.
    Never,
}

/// The override as a guard sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Override {
    None,
    Valid { reason: String },
    Ignored { reason: String, why: String },
}

/// Who set the current value of prodguard.override, and in which transaction.
#[derive(Clone, Copy)]
struct Stamp {
    lxid: pg_sys::LocalTransactionId,
    role: pg_sys::Oid,
}

thread_local! {
    static STAMP: Cell<Stamp> = const {
        Cell::new(Stamp { lxid: 0, role: pg_sys::InvalidOid })
    };
}

pub const OPERATOR_ROLE: &str = "prodguard_operator";

/// Assign hook of `prodguard.override`.
#[pg_guard]
pub unsafe extern "C-unwind" fn assign_override(_newval: *const c_char, _extra: *mut c_void) {
    STAMP.with(|s| s.set(current_stamp()));
}

fn current_stamp() -> Stamp {
    // SAFETY: MyProc is either NULL (postmaster, early start-up) or this backend's PGPROC,
    // which lives as long as the backend. GetUserId only reads a backend global; it is
    // called only once a transaction (and so a user) exists.
    unsafe {
        if pg_sys::MyProc.is_null() || !pg_sys::IsTransactionState() {
            return Stamp {
                lxid: 0,
                role: pg_sys::InvalidOid,
            };
        }
        Stamp {
            lxid: (*pg_sys::MyProc).lxid,
            role: pg_sys::GetUserId(),
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
    if reason.is_empty() {
        return Override::Ignored {
            reason,
            why: "its reason is blank.".into(),
        };
    }
    let set = STAMP.with(|s| s.get());
    let now = current_stamp();
    let same_txn = now.lxid != 0 && set.lxid == now.lxid;
    let previous_txn = now.lxid != 0 && set.lxid != 0 && set.lxid.wrapping_add(1) == now.lxid;
    let in_scope = match scope {
        Scope::Transaction => same_txn,
        Scope::NextStatement => same_txn || previous_txn,
        Scope::Never => false,
    };
    if !in_scope {
        let why = match scope {
            Scope::Never => "overrides are not honoured in connection startup options.",
            Scope::Transaction => "it was not set in this transaction. An override counts only in the transaction in which it was set: use SET LOCAL inside the transaction that runs the statement.",
            Scope::NextStatement => "it was not set by the statement just before this one. This statement cannot run in a transaction block, so run SET prodguard.override = '<reason>' and then this statement as the very next one.",
        };
        return Override::Ignored {
            reason,
            why: why.into(),
        };
    }
    if !is_operator(set.role) {
        let who = role_name(set.role);
        return Override::Ignored {
            reason,
            why: format!("role \"{who}\", which set it, is not a member of {OPERATOR_ROLE}."),
        };
    }
    Override::Valid { reason }
}

/// This backend's local transaction id (0 outside a transaction).
pub fn local_transaction() -> u32 {
    current_stamp().lxid
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

/// Whether a role may break glass: a superuser or a member of prodguard_operator.
pub fn is_operator(role: pg_sys::Oid) -> bool {
    if role == pg_sys::InvalidOid {
        return false;
    }
    // SAFETY: catalog lookups; `current` is only reached inside a transaction.
    unsafe {
        if pg_sys::superuser_arg(role) {
            return true;
        }
        let operator = pg_sys::get_role_oid(c"prodguard_operator".as_ptr(), true);
        operator != pg_sys::InvalidOid && pg_sys::is_member_of_role(role, operator)
    }
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

//! Approved changes (SPEC §9) as break glass reads them: `prodguard.override =
//! 'change:<id>'` names a row of `prodguard.change_request` that one operator requested and
//! another approved, for one database and one role, until a time. (`api::changes` writes
//! them.)
//!
//! A change is looked up once per transaction (the per-row audit asks for the override of
//! every audited row), as the table's owner with a pinned search_path.

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::extension;
use crate::core::pg::{current_database, role_name};

/// What `prodguard.override` names when it starts with this.
pub const PREFIX: &str = "change:";

thread_local! {
    /// (local transaction, change id) and what was found, for the rest of the transaction.
    static CACHE: RefCell<Option<(u32, i64, Result<String, String>)>> = const { RefCell::new(None) };
}

/// `Some(Ok(id))` for `change:<id>`, `Some(Err(why))` for a malformed reference, `None`
/// for a plain reason.
pub fn parse_reference(value: &str) -> Option<Result<i64, String>> {
    let rest = value.trim().strip_prefix(PREFIX)?;
    Some(match rest.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "\"{}\" is not the id of an approved change (a positive integer).",
            rest.trim()
        )),
    })
}

/// The change `id` if it may be used now, in this database, by this session's role: the
/// text the audit records (`change:<id> <reason> (requested by ..., approved by ...)`);
/// otherwise why not.
pub fn in_force(id: i64) -> Result<String, String> {
    let lxid = crate::core::breakglass::local_transaction();
    if let Some(found) = CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(t, i, _)| lxid != 0 && *t == lxid && *i == id)
            .map(|(_, _, r)| r.clone())
    }) {
        return found;
    }
    let found = look_up(id);
    CACHE.with(|c| *c.borrow_mut() = Some((lxid, id, found.clone())));
    found
}

/// One row of prodguard.change_request.
struct Change {
    database: String,
    db_role: String,
    reason: String,
    requested_by: String,
    approved_by: Option<String>,
    revoked_by: Option<String>,
    expired: bool,
}

fn look_up(id: i64) -> Result<String, String> {
    let db = current_database();
    let Some(table) = extension::own_table(c"change_request") else {
        return Err(format!(
            "approved change {id} cannot be checked: pg_prodguard is not installed in database \"{db}\"."
        ));
    };
    let row = extension::as_owner_of(table, || {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT database::text, db_role::text, reason, requested_by::text,
                        approved_by::text, revoked_by::text, valid_until <= now()
                   FROM prodguard.change_request WHERE id = $1",
                None,
                &[id.into()],
            )?;
            let mut found = None;
            for r in rows {
                found = Some(Change {
                    database: r.get::<String>(1)?.unwrap_or_default(),
                    db_role: r.get::<String>(2)?.unwrap_or_default(),
                    reason: r.get::<String>(3)?.unwrap_or_default(),
                    requested_by: r.get::<String>(4)?.unwrap_or_default(),
                    approved_by: r.get::<String>(5)?,
                    revoked_by: r.get::<String>(6)?,
                    expired: r.get::<bool>(7)?.unwrap_or(true),
                });
            }
            Ok::<_, pgrx::spi::SpiError>(found)
        })
    });
    let change = match row {
        Some(Ok(Some(change))) => change,
        Some(Ok(None)) => {
            return Err(format!(
                "approved change {id} does not exist in database \"{db}\"."
            ))
        }
        _ => return Err(format!("approved change {id} could not be read.")),
    };
    // SAFETY: reads a backend global.
    let session_role = role_name(unsafe { pg_sys::GetOuterUserId() });
    if change.database != db {
        return Err(format!(
            "change {id} is for database \"{}\", not \"{db}\".",
            change.database
        ));
    }
    if let Some(by) = &change.revoked_by {
        return Err(format!("change {id} was revoked by {by}."));
    }
    let Some(approver) = &change.approved_by else {
        return Err(format!(
            "change {id} has not been approved: another member of prodguard_operator must run SELECT prodguard.approve_change({id})."
        ));
    };
    if change.expired {
        return Err(format!(
            "change {id} has expired (see valid_until in prodguard.changes)."
        ));
    }
    if change.db_role != session_role {
        return Err(format!(
            "change {id} is for role \"{}\", and this session's role is \"{session_role}\".",
            change.db_role
        ));
    }
    Ok(format!(
        "{PREFIX}{id} {} (requested by {}, approved by {approver})",
        change.reason, change.requested_by
    ))
}

/// Forgets what this transaction read (after approve/revoke in the same transaction).
pub fn forget() {
    CACHE.with(|c| *c.borrow_mut() = None);
}

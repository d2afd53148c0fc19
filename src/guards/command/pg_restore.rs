//! pg_restore into a populated production database (issue 14).
//!
//! `pg_restore --clean` (with or without `--if-exists`) first drops what it is about to
//! create, in reverse dependency order: foreign keys, triggers, indexes, keys, defaults,
//! then tables; without `--single-transaction` it goes on after an error. So refusing only
//! the DROP TABLEs leaves a database whose constraints and indexes are gone and whose
//! tables then get the dump's rows appended to their own. Without `--clean`, pg_restore
//! appends the rows the same way.
//!
//! In a pg_restore session (application_name `pg_restore`, which pg_restore sets) of a
//! database that is not development, the first statement that would remove an object while
//! the database holds data, or load rows into a table that holds some, is judged before
//! anything else of it runs: refused in production (unless an override or approved change
//! is in force), with the way forward in the HINT; and once refused, every later write of
//! that session is refused too (`core::restore_session`), so the database stays exactly as
//! it was. pg_restore into an empty or development database runs as usual.

#![allow(non_upper_case_globals)] // PostgreSQL's AT_* and T_* constants in patterns

use pgrx::pg_sys;
use pgrx::PgList;

use crate::core::breakglass::Scope;
use crate::core::extension::{self, KEPT_SCHEMA, SCHEMA};
use crate::core::finding::{Finding, Guard};
use crate::core::pg::{self, cstr_or, current_database};
use crate::core::restore_session::{self, WAY_FORWARD};
use crate::core::settings::{self, Environment};
use crate::guards::policy;

/// Judges one utility statement of a pg_restore session.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
pub unsafe fn check(stmt: *mut pg_sys::Node, statement: Option<&str>) {
    let env = settings::environment();
    if env == Environment::Development {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let tag = unsafe { (*stmt).type_ };
    if restore_session::refused() {
        if !harmless(tag) {
            restore_session::refuse_rest("a statement");
        }
        return;
    }
    // SAFETY: guaranteed by the caller.
    let Some((what, table)) = (unsafe { destructive(stmt) }) else {
        return;
    };
    let populated = match table {
        Some(t) => {
            // (a COPY appends to the table's own rows: an inheritance child restored
            // first is not data the restore would change)
            (!pg::holds_no_rows_of_its_own(t, pg_sys::AccessShareLock as pg_sys::LOCKMODE))
                .then_some(t)
        }
        None => first_populated_table(),
    };
    let Some(populated) = populated else {
        return;
    };
    let db = current_database();
    let mut finding = Finding::blocked(
        Guard::Command,
        "pg_restore",
        format!("database \"{db}\""),
        "",
        format!(
            "Database \"{db}\" is {} and holds data ({} has rows). This restore's first {what} would start changing it: pg_restore --clean drops the constraints and indexes first and then appends the dump's rows to the rows already there, and a restore without --clean appends them too.",
            env.name(),
            pg::describe_table(populated)
        ),
        WAY_FORWARD,
        None,
    );
    finding.message = Some(format!(
        "pg_restore into {} database \"{db}\", which holds data, is blocked",
        env.name()
    ));
    // Marked before judging: a refusal leaves the mark, so the rest of the session is
    // refused too; a warning (staging) or an override takes it back.
    restore_session::mark_refused(true);
    policy::enforce(env, &finding, Scope::Transaction, statement);
    restore_session::mark_refused(false);
}

/// Statements that change nothing, which a refused session may still run (pg_restore
/// sets its session up with SET, and may run in a transaction).
fn harmless(tag: pg_sys::NodeTag) -> bool {
    use pg_sys::NodeTag::*;
    matches!(
        tag,
        T_VariableSetStmt | T_VariableShowStmt | T_TransactionStmt | T_DiscardStmt
    )
}

/// What a statement would start destroying: a removal (any DROP, ALTER TABLE ... DROP
/// CONSTRAINT/COLUMN/DEFAULT, DROP OWNED) with no particular table, or a load of rows
/// (COPY FROM) into one table.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
unsafe fn destructive(stmt: *mut pg_sys::Node) -> Option<(&'static str, Option<pg_sys::Oid>)> {
    use pg_sys::AlterTableType::*;
    use pg_sys::NodeTag::*;
    // SAFETY: each arm casts to the struct its node tag names.
    unsafe {
        match (*stmt).type_ {
            T_DropStmt | T_DropOwnedStmt => Some(("DROP", None)),
            T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds)
                    .iter_ptr()
                    .any(|c| {
                        matches!((*c).subtype, AT_DropConstraint | AT_DropColumn)
                            || ((*c).subtype == AT_ColumnDefault && (*c).def.is_null())
                    })
                    .then_some(("ALTER TABLE ... DROP", None))
            }
            T_CopyStmt => {
                let s = &*(stmt as *mut pg_sys::CopyStmt);
                if !s.is_from || s.relation.is_null() {
                    return None;
                }
                let rel = pg::relid_of(s.relation);
                // the extension's own tables (its dictionaries, audit history) are loaded by
                // a restore into a fresh database: pg_extension_config_dump's rows
                let ours = cstr_or(
                    pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel)),
                    "",
                ) == SCHEMA;
                (rel != pg_sys::InvalidOid && !pg::is_temp(rel) && !ours)
                    .then_some(("COPY", Some(rel)))
            }
            _ => None,
        }
    }
}

/// The first permanent table outside the system and pg_prodguard's schemas (its own, and
/// `prodguard_history` where a restore's DROP EXTENSION keeps its history) that holds a
/// row, if any.
fn first_populated_table() -> Option<pg_sys::Oid> {
    let tables: Vec<pg_sys::Oid> = extension::with_pinned_search_path(|| {
        pgrx::spi::Spi::connect(|client| {
            client
                .select(
                    "SELECT c.oid FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE c.relkind = 'r' AND c.relpersistence = 'p'
                        AND n.nspname NOT IN ('pg_catalog', 'information_schema', $1, $2)
                        AND n.nspname NOT LIKE 'pg\\_toast%'
                      ORDER BY c.oid",
                    None,
                    &[SCHEMA.into(), KEPT_SCHEMA.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    });
    tables
        .into_iter()
        // (every table is looked at: its own rows are enough)
        .find(|t| !pg::holds_no_rows_of_its_own(*t, pg_sys::AccessShareLock as pg_sys::LOCKMODE))
}

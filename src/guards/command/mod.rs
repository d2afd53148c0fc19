//! Command guard: the destructive utility statements of SPEC §3, refused in production.
//!
//! The ProcessUtility hook hands every utility statement to `check()`, whatever its
//! source: top level, PL/pgSQL, DO blocks, SECURITY DEFINER functions. `classify()` looks
//! at the node tag only, so ordinary statements (SET, BEGIN, CREATE ...) cost one match.
//! For a guarded statement it resolves the objects and produces one `Finding` per object,
//! paired with the environment that judges it:
//! - statements acting inside this database (`tables`): this database's environment;
//! - DROP DATABASE / ALTER DATABASE RENAME (`cluster`): the target's (production or listed
//!   in prodguard.protected_databases), from whichever database they are issued;
//! - ALTER DATABASE/ROLE/SYSTEM ... SET prodguard.* (`cluster`): the strictest of this
//!   database and every database the change reaches.
//!
//! What is not guarded, on purpose: temporary tables (private to a session and gone with
//! it), objects that do not exist (`IF EXISTS` on nothing destroys nothing; PostgreSQL
//! reports the rest), and the extension's own install and upgrade scripts.

mod cluster;
mod own_objects;
mod pg_restore;
mod rewrites;
mod sequences;
mod tables;

pub use self::own_objects::keep_own_history;
pub use self::sequences::is_setval;

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_sys;

use crate::core::breakglass::Scope;
use crate::core::extension::{self, NAME as EXTENSION};
use crate::core::finding::{Finding, Guard};
use crate::core::passes::OWN_DDL;
use crate::core::pg::{self, cstr_or, current_database, opt_cstr};
use crate::core::protection::{self, Flags};
use crate::core::restore_session;
use crate::core::settings::{self, Environment, Token};
use crate::guards::policy;
use crate::records::backup;

use self::cluster::{database_removal, settings_change};
use self::tables::{
    drop_objects, drop_owned, migration_table_rename, trigger_change, trigger_switches, truncate,
};

/// One finding, the environment that judges it, and how an override may reach it.
pub struct Judged {
    finding: Finding,
    env: Environment,
    scope: Scope,
    /// Whether the statement empties or drops the table it names (TRUNCATE, DROP TABLE,
    /// DROP SCHEMA): a protected table is then backed up first.
    destroys_rows: bool,
    /// Whether it empties the table alone, not its inheritance children (TRUNCATE ONLY).
    only: bool,
}

impl Judged {
    /// A finding judged by `env`, with an override that counts in this transaction.
    fn new(finding: Finding, env: Environment) -> Judged {
        Judged {
            finding,
            env,
            scope: Scope::Transaction,
            destroys_rows: false,
            only: false,
        }
    }

    fn destroying_rows(self) -> Judged {
        Judged {
            destroys_rows: true,
            ..self
        }
    }

    /// The same, for the table alone (TRUNCATE ONLY).
    fn destroying_rows_of(self, only: bool) -> Judged {
        Judged {
            destroys_rows: true,
            only,
            ..self
        }
    }
}

/// Whether the utility statement running now is one whose drops this guard judges itself
/// (TRUNCATE, DROP TABLE/SCHEMA/..., DROP OWNED, ALTER TABLE). A backend is one thread; an
/// atomic so that the hook can put it back on its error path without touching anything
/// that could fail.
static JUDGED: AtomicBool = AtomicBool::new(false);

/// Marks, for the time a utility statement runs, whether this guard judged its drops.
/// Returns the enclosing statement's mark, which the hook puts back with `leave_statement`
/// when the statement ends, also with an ERROR.
///
/// # Safety
/// `pstmt` must be the PlannedStmt PostgreSQL passed to the ProcessUtility hook.
pub unsafe fn enter_statement(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    use pg_sys::NodeTag::*;
    // SAFETY: guaranteed by the caller; each arm reads the node its tag names.
    let judged = unsafe {
        let stmt = (*pstmt).utilityStmt;
        !stmt.is_null()
            && match (*stmt).type_ {
                T_TruncateStmt | T_AlterTableStmt | T_DropOwnedStmt => true,
                T_DropStmt => matches!(
                    (*(stmt as *mut pg_sys::DropStmt)).removeType,
                    pg_sys::ObjectType::OBJECT_TABLE
                        | pg_sys::ObjectType::OBJECT_SCHEMA
                        | pg_sys::ObjectType::OBJECT_MATVIEW
                        | pg_sys::ObjectType::OBJECT_FOREIGN_TABLE
                ),
                _ => false,
            }
    };
    JUDGED.swap(judged, Ordering::Relaxed)
}

/// Puts back the enclosing statement's mark (see `enter_statement`). Cannot fail.
pub fn leave_statement(previous: bool) {
    JUDGED.store(previous, Ordering::Relaxed);
}

/// The object-access hook's safety net: a protected table, or a column of one, is being
/// dropped by a statement this guard does not judge (`DROP TYPE/DOMAIN/FUNCTION/EXTENSION
/// ... CASCADE` removing a column that depends on it). In production that needs an
/// override like the direct routes; staging warns; development is silent.
pub fn cascaded_drop(relid: pg_sys::Oid, attnum: std::ffi::c_int) {
    if JUDGED.load(Ordering::Relaxed) || OWN_DDL.get() || extension::in_own_script() {
        return;
    }
    // SAFETY: lsyscache lookups of a relation that still exists (the hook runs before the
    // object is deleted).
    let (temp, column) = unsafe {
        let temp = pg_sys::get_rel_persistence(relid) as u8 == pg_sys::RELPERSISTENCE_TEMP;
        let column =
            (attnum > 0).then(|| cstr_or(pg_sys::get_attname(relid, attnum as i16, true), "?"));
        (temp, column)
    };
    if temp || !protection::flags(relid).any() {
        return;
    }
    let table = pg::describe_table(relid);
    let object = match &column {
        Some(c) => format!("column \"{c}\" of {table}"),
        None => table.clone(),
    };
    let finding = Finding::here(
        Guard::Command,
        "DROP ... CASCADE",
        object.clone(),
        format!("The statement drops {object} through a dependency (CASCADE), and the table is protected."),
        Some(relid),
    )
    .prefer("Otherwise change the column's type or the dependency first.")
    .with_message(format!(
        "dropping {object} through a dependency is blocked in {} database \"{}\"",
        settings::environment().name(),
        current_database()
    ));
    policy::enforce_here(&finding);
}

/// The object-access hook's view of a large object being removed: `lo_unlink()` (a
/// function, not a utility statement), or any statement that removes one.
pub fn large_object_drop(loid: pg_sys::Oid) {
    if JUDGED.load(Ordering::Relaxed) || OWN_DDL.get() || extension::in_own_script() {
        return;
    }
    if let Some(j) = rewrites::large_object_removal(loid) {
        policy::enforce(j.env, &j.finding, j.scope, None);
    }
}

/// The object-access hook's OAT_FUNCTION_EXECUTE: the executor prepares a call of
/// `fn_oid`; only setval() matters (the extension's own sequences).
pub fn function_prepared(fn_oid: pg_sys::Oid) {
    if sequences::is_setval(fn_oid) {
        sequences::call_prepared();
    }
}

/// Before an executor start (cannot fail).
pub fn executor_starting() {
    sequences::statement_starting();
}

/// After an executor start: a setval() of an own sequence named as a constant is judged.
///
/// # Safety
/// `pstmt` must be NULL or the valid PlannedStmt of the executor just started.
pub unsafe fn executor_started(pstmt: *mut pg_sys::PlannedStmt) {
    // SAFETY: guaranteed by the caller.
    unsafe { sequences::statement_started(pstmt) }
}

/// After a statement: an own sequence moved back by setval() is put back.
pub fn statement_finished() {
    sequences::compare();
}

/// Checks one utility statement; raises an ERROR when production refuses it, and writes
/// the audit row when an override or a staging warning lets it run.
///
/// # Safety
/// `pstmt` must be the PlannedStmt PostgreSQL passed to the ProcessUtility hook, and
/// `query` NULL or its NUL-terminated source text.
pub unsafe fn check(pstmt: *mut pg_sys::PlannedStmt, query: *const c_char) {
    // SAFETY: guaranteed by the caller.
    let stmt = unsafe { (*pstmt).utilityStmt };
    if stmt.is_null() || OWN_DDL.get() {
        return;
    }
    if extension::in_own_script() {
        return;
    }
    if restore_session::is_pg_restore() {
        // SAFETY: guaranteed by the caller; `stmt` is a valid parse node.
        unsafe { pg_restore::check(stmt, statement_text(pstmt, query).as_deref()) };
    }
    // SAFETY: `stmt` is a valid parse node.
    let mut judged = unsafe { classify(stmt) };
    if judged.is_empty() {
        // any other change to the extension's own objects
        // SAFETY: `stmt` is a valid parse node.
        judged = unsafe { own_objects::check(stmt) };
    }
    if judged.is_empty() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let statement = unsafe { statement_text(pstmt, query) };
    for j in judged {
        let audit_id = policy::enforce(j.env, &j.finding, j.scope, statement.as_deref());
        // A protected table about to be truncated or dropped is copied first.
        if let (Some(id), Some(rel), true) = (audit_id, j.finding.relation, j.destroys_rows) {
            if protection::flags(rel).any() {
                backup::backup(rel, id, &j.finding.command, j.only);
            }
        }
    }
}

/// The guarded parts of a statement.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
unsafe fn classify(stmt: *mut pg_sys::Node) -> Vec<Judged> {
    use pg_sys::NodeTag::*;
    // SAFETY: each arm casts to the struct its node tag names.
    unsafe {
        match (*stmt).type_ {
            T_TruncateStmt => truncate(&*(stmt as *mut pg_sys::TruncateStmt)),
            T_DropStmt => drop_objects(&*(stmt as *mut pg_sys::DropStmt)),
            T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                let mut judged = rewrites::alter_table(s);
                judged.extend(trigger_switches(s));
                judged
            }
            T_AlterEnumStmt => rewrites::enum_rename(&*(stmt as *mut pg_sys::AlterEnumStmt)),
            T_CreatePublicationStmt => {
                let s = &*(stmt as *mut pg_sys::CreatePublicationStmt);
                cluster::publication(
                    "CREATE PUBLICATION",
                    s.pubname,
                    s.for_all_tables,
                    s.pubobjects,
                )
            }
            T_AlterPublicationStmt => {
                let s = &*(stmt as *mut pg_sys::AlterPublicationStmt);
                if s.action == pg_sys::AlterPublicationAction::AP_DropObjects {
                    Vec::new()
                } else {
                    cluster::publication(
                        "ALTER PUBLICATION",
                        s.pubname,
                        s.for_all_tables,
                        s.pubobjects,
                    )
                }
            }
            T_AlterExtensionContentsStmt => {
                let s = &*(stmt as *mut pg_sys::AlterExtensionContentsStmt);
                if opt_cstr(s.extname).as_deref() == Some(EXTENSION) {
                    let verb = if s.action > 0 { "ADD" } else { "DROP" };
                    local(
                        Rule::Extension,
                        &format!("ALTER EXTENSION {verb}"),
                        format!("extension \"{EXTENSION}\""),
                        None,
                    )
                    .into_iter()
                    .collect()
                } else {
                    Vec::new()
                }
            }
            T_DropOwnedStmt => drop_owned(&*(stmt as *mut pg_sys::DropOwnedStmt)),
            T_DropdbStmt => {
                let s = &*(stmt as *mut pg_sys::DropdbStmt);
                database_removal("DROP DATABASE", s.dbname, Scope::NextStatement)
            }
            T_RenameStmt => {
                let s = &*(stmt as *mut pg_sys::RenameStmt);
                match s.renameType {
                    pg_sys::ObjectType::OBJECT_DATABASE => {
                        database_removal("ALTER DATABASE RENAME", s.subname, Scope::Transaction)
                    }
                    pg_sys::ObjectType::OBJECT_TABLE => migration_table_rename(s),
                    pg_sys::ObjectType::OBJECT_TRIGGER => {
                        trigger_change("ALTER TRIGGER RENAME", s.relation, opt_cstr(s.subname))
                    }
                    _ => Vec::new(),
                }
            }
            T_AlterSystemStmt => {
                let s = &*(stmt as *mut pg_sys::AlterSystemStmt);
                settings_change("ALTER SYSTEM", s.setstmt, None, true, Scope::NextStatement)
            }
            T_AlterDatabaseSetStmt => {
                let s = &*(stmt as *mut pg_sys::AlterDatabaseSetStmt);
                settings_change(
                    "ALTER DATABASE",
                    s.setstmt,
                    opt_cstr(s.dbname),
                    false,
                    Scope::Transaction,
                )
            }
            T_AlterRoleSetStmt => {
                let s = &*(stmt as *mut pg_sys::AlterRoleSetStmt);
                let db = opt_cstr(s.database);
                let cluster_wide = db.is_none();
                settings_change(
                    "ALTER ROLE",
                    s.setstmt,
                    db,
                    cluster_wide,
                    Scope::Transaction,
                )
            }
            _ => Vec::new(),
        }
    }
}

/// Why a statement is guarded.
pub enum Rule {
    /// Its token is in prodguard.blocked_commands.
    Token(Token),
    /// It destroys pg_prodguard itself or its objects.
    Extension,
    /// It destroys a table protected with forbid_delete.
    ForbidDelete { table: String, flags: Flags },
    /// It renames a migration-history table, whose protection goes by its name.
    MigrationRename { table: String },
    /// It switches off, drops or renames a trigger a protected table relies on.
    ProtectedTrigger { table: String },
}

/// A finding about an object of this database, judged by this database's environment;
/// `None` when its token is not in prodguard.blocked_commands.
pub fn local(
    rule: Rule,
    command: &str,
    object: String,
    relation: Option<pg_sys::Oid>,
) -> Option<Judged> {
    if let Rule::Token(t) = rule {
        if !settings::is_blocked(t) {
            return None;
        }
    }
    let env = settings::environment();
    let why = match rule {
        Rule::Token(t) => format!(
            "Database \"{}\" is {} (prodguard.environment), and prodguard.blocked_commands contains \"{}\".",
            current_database(),
            env.name(),
            t.name()
        ),
        Rule::Extension => {
            format!("The {EXTENSION} extension and its own objects are always guarded in production.")
        }
        Rule::ForbidDelete { table, flags } => flags.why_forbidden(&table),
        Rule::ProtectedTrigger { table } => format!(
            "Table {table} is protected (prodguard.protected_tables): its audit and test-data triggers are part of that protection."
        ),
        Rule::MigrationRename { table } => format!(
            "Table {table} is a migration-history table, protected by its name: renamed, it would lose that protection."
        ),
    };
    Some(Judged::new(
        Finding::here(Guard::Command, command, object, why, relation),
        env,
    ))
}

/// # Safety
/// `node` must be a String node.
pub unsafe fn string_node(node: *mut pg_sys::Node) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { cstr_or((*(node as *mut pg_sys::String)).sval, "") }
}

/// The text of this one statement within a possibly multi-statement query string, its
/// secrets masked (`core::statement`).
///
/// # Safety
/// As for `check`.
unsafe fn statement_text(pstmt: *mut pg_sys::PlannedStmt, query: *const c_char) -> Option<String> {
    if query.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let (bytes, loc, len) = unsafe {
        (
            CStr::from_ptr(query).to_bytes(),
            (*pstmt).stmt_location,
            (*pstmt).stmt_len,
        )
    };
    let statement = crate::core::statement::slice(bytes, loc, len);
    Some(crate::core::statement::redact(&statement))
}

//! Command guard: the destructive utility statements of SPEC §3, refused in production.
//!
//! The ProcessUtility hook hands every utility statement to `check()`, whatever its
//! source: top level, PL/pgSQL, DO blocks, SECURITY DEFINER functions. `classify()` looks
//! at the node tag only, so ordinary statements (SET, BEGIN, CREATE ...) cost one match.
//! For a guarded statement it resolves the objects and produces one `Finding` per object,
//! paired with the environment that judges it:
//! - statements acting inside this database: this database's environment;
//! - DROP DATABASE / ALTER DATABASE RENAME: the target's (production or listed in
//!   prodguard.protected_databases), from whichever database they are issued;
//! - ALTER DATABASE/ROLE/SYSTEM ... SET prodguard.*: the strictest of this database and
//!   every database the change reaches.
//!
//! What is not guarded, on purpose: temporary tables (private to a session and gone with
//! it), objects that do not exist (`IF EXISTS` on nothing destroys nothing; PostgreSQL
//! reports the rest), and the extension's own install and upgrade scripts.

use std::ffi::{c_char, c_void, CStr};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::breakglass::Scope;
use crate::environment::{self, Database};
use crate::extension::cstr_or;
use crate::policy::{self, Finding, Guard};
use crate::protection;
use crate::settings::{self, Environment, Token};

use crate::extension::{self, NAME as EXTENSION, SCHEMA};

/// One finding, the environment that judges it, and how an override may reach it.
struct Judged {
    finding: Finding,
    env: Environment,
    scope: Scope,
}

thread_local! {
    /// Set while pg_prodguard itself creates or drops a protected table's triggers.
    pub static OWN_DDL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether the utility statement running now is one whose drops this guard judges
    /// itself (TRUNCATE, DROP TABLE/SCHEMA/..., DROP OWNED, ALTER TABLE).
    static JUDGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks, for the time a utility statement runs, whether this guard judged its drops;
/// the enclosing statement's mark comes back when it is dropped (also on error).
pub struct JudgedStatement(#[allow(dead_code)] extension::FlagGuard);

impl JudgedStatement {
    /// # Safety
    /// `pstmt` must be the PlannedStmt PostgreSQL passed to the ProcessUtility hook.
    pub unsafe fn enter(pstmt: *mut pg_sys::PlannedStmt) -> JudgedStatement {
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
        JudgedStatement(extension::FlagGuard::set(&JUDGED, judged))
    }
}

/// Runs pg_prodguard's own DDL on a table (installing or removing the triggers that
/// `protect()` manages) as the table's owner, past this guard; raises `could not <what>`
/// if it fails. The pass ends with the DDL, also when it fails and the caller catches
/// the error.
pub fn run_own_ddl(relid: pg_sys::Oid, sql: &str, what: &str) {
    let done = extension::as_owner_of(relid, || {
        let _own = extension::FlagGuard::set(&OWN_DDL, true);
        Spi::run(sql)
    });
    if let Some(Err(e)) = done {
        policy::raise_internal(what, e);
    }
}

/// The object-access hook's safety net: a protected table, or a column of one, is being
/// dropped by a statement this guard does not judge (`DROP TYPE/DOMAIN/FUNCTION/EXTENSION
/// ... CASCADE` removing a column that depends on it). In production that needs an
/// override like the direct routes; staging warns; development is silent.
pub fn cascaded_drop(relid: pg_sys::Oid, attnum: std::ffi::c_int) {
    if JUDGED.get() || OWN_DDL.get() || extension::in_own_script() {
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
    let table = extension::describe_table(relid);
    let object = match &column {
        Some(c) => format!("column \"{c}\" of {table}"),
        None => table.clone(),
    };
    let env = settings::environment();
    let db = crate::environment::current_database();
    let mut finding = Finding::blocked(
        Guard::Command,
        "DROP ... CASCADE",
        object.clone(),
        format!(" in {} database \"{db}\"", env.name()),
        format!("The statement drops {object} through a dependency (CASCADE), and the table is protected."),
        format!(
            "Otherwise change the column's type or the dependency first. {}",
            policy::tag_hint(&db)
        ),
        Some(relid),
    );
    finding.message = Some(format!(
        "dropping {object} through a dependency is blocked in {} database \"{db}\"",
        env.name()
    ));
    policy::enforce(env, &finding, Scope::Transaction, None);
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
    // SAFETY: `stmt` is a valid parse node.
    let judged = unsafe { classify(stmt) };
    if judged.is_empty() || extension::in_own_script() {
        return;
    }
    // SAFETY: guaranteed by the caller.
    let statement = unsafe { statement_text(pstmt, query) };
    for j in judged {
        let audit_id = policy::enforce(j.env, &j.finding, j.scope, statement.as_deref());
        // A protected table about to be truncated or dropped is copied first.
        if let (Some(id), Some(rel)) = (audit_id, j.finding.relation) {
            let destroys = matches!(
                j.finding.command.as_str(),
                "TRUNCATE" | "DROP TABLE" | "DROP SCHEMA"
            );
            if destroys && protection::flags(rel).any() {
                crate::restore::backup(rel, id, &j.finding.command);
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
                let mut judged = drop_column(s);
                judged.extend(trigger_switches(s));
                judged
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

/// A table of this database, resolved from the statement.
struct Table {
    oid: pg_sys::Oid,
    schema: String,
    name: String,
    temp: bool,
    kind: u8,
}

impl Table {
    /// # Safety
    /// `rv` must be a valid RangeVar.
    unsafe fn resolve(rv: *mut pg_sys::RangeVar) -> Option<Table> {
        // SAFETY: name lookup without a lock; the statement itself locks the table later.
        unsafe {
            let oid = pg_sys::RangeVarGetRelidExtended(
                rv,
                pg_sys::NoLock as i32,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            );
            if oid == pg_sys::InvalidOid {
                return None;
            }
            Some(Table {
                oid,
                schema: cstr_or(
                    pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid)),
                    "",
                ),
                name: cstr_or(pg_sys::get_rel_name(oid), ""),
                temp: pg_sys::get_rel_persistence(oid) as u8 == pg_sys::RELPERSISTENCE_TEMP,
                kind: pg_sys::get_rel_relkind(oid) as u8,
            })
        }
    }

    fn display(&self) -> String {
        format!("\"{}.{}\"", self.schema, self.name)
    }

    /// Why a destructive command on this table is guarded. The extension's own tables and
    /// tables protected with forbid_delete are guarded whatever the token list says.
    fn rule_for(&self, token: Token) -> Rule {
        if self.schema == SCHEMA {
            return Rule::Extension;
        }
        let flags = protection::flags(self.oid);
        if flags.forbid_delete {
            Rule::ForbidDelete {
                table: self.display(),
                migration_history: flags.migration_history,
            }
        } else {
            Rule::Token(token)
        }
    }
}

/// Why a statement is guarded.
enum Rule {
    /// Its token is in prodguard.blocked_commands.
    Token(Token),
    /// It destroys pg_prodguard itself or its objects.
    Extension,
    /// It destroys a table protected with forbid_delete.
    ForbidDelete {
        table: String,
        migration_history: bool,
    },
    /// It renames a migration-history table, whose protection goes by its name.
    MigrationRename { table: String },
    /// It switches off, drops or renames a trigger a protected table relies on.
    ProtectedTrigger { table: String },
}

fn truncate(s: &pg_sys::TruncateStmt) -> Vec<Judged> {
    // SAFETY: `relations` is a List of RangeVar.
    let tables = unsafe { PgList::<pg_sys::RangeVar>::from_pg(s.relations) };
    let named: Vec<Table> = tables
        .iter_ptr()
        // SAFETY: each element is a valid RangeVar.
        .filter_map(|rv| unsafe { Table::resolve(rv) })
        .filter(|t| !t.temp)
        .collect();
    let mut judged: Vec<Judged> = named
        .iter()
        .filter_map(|t| {
            local(
                t.rule_for(Token::Truncate),
                "TRUNCATE",
                format!("table {}", t.display()),
                Some(t.oid),
            )
        })
        .collect();
    // CASCADE also empties every table that references these through a foreign key, and
    // the ones referencing those: forbid_delete holds for them too.
    if s.behavior == pg_sys::DropBehavior::DROP_CASCADE {
        let named_oids: Vec<pg_sys::Oid> = named.iter().map(|t| t.oid).collect();
        for oid in referencing_closure(&named_oids) {
            judged.extend(forbid_delete_reached(
                "TRUNCATE",
                oid,
                "reached through CASCADE",
            ));
        }
    }
    judged
}

/// Tables that reference `start` through foreign keys, directly or through each other
/// (what TRUNCATE ... CASCADE empties besides `start`).
fn referencing_closure(start: &[pg_sys::Oid]) -> Vec<pg_sys::Oid> {
    let mut seen: Vec<pg_sys::Oid> = start.to_vec();
    let mut frontier: Vec<pg_sys::Oid> = start.to_vec();
    let mut reached = Vec::new();
    while !frontier.is_empty() {
        // SAFETY: builds an oid List in the current memory context and asks the catalog
        // which relations reference them (the function ExecuteTruncate itself uses).
        let found = unsafe {
            let mut list: *mut pg_sys::List = std::ptr::null_mut();
            for oid in &frontier {
                list = pg_sys::lappend_oid(list, *oid);
            }
            PgList::<c_void>::from_pg(pg_sys::heap_truncate_find_FKs(list))
                .iter_oid()
                .collect::<Vec<_>>()
        };
        frontier = found.into_iter().filter(|o| !seen.contains(o)).collect();
        frontier.sort_unstable_by_key(|o| o.to_u32());
        frontier.dedup();
        seen.extend(&frontier);
        reached.extend(&frontier);
    }
    reached
}

/// A forbid_delete table that a statement reaches without naming it.
fn forbid_delete_reached(command: &str, oid: pg_sys::Oid, how: &str) -> Option<Judged> {
    let flags = protection::flags(oid);
    if !flags.forbid_delete || extension::is_temp(oid) {
        return None;
    }
    let table = extension::quoted_name(oid);
    local(
        Rule::ForbidDelete {
            table: table.clone(),
            migration_history: flags.migration_history,
        },
        command,
        format!("table {table} ({how})"),
        Some(oid),
    )
}

/// The tables of a schema, for DROP SCHEMA ... CASCADE.
fn tables_in_schema(schema: &str) -> Vec<pg_sys::Oid> {
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT c.oid FROM pg_catalog.pg_class c
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                    None,
                    &[schema.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    })
}

fn drop_objects(s: &pg_sys::DropStmt) -> Vec<Judged> {
    use pg_sys::ObjectType::*;
    // SAFETY: DROP TABLE/MATERIALIZED VIEW objects are name lists; DROP SCHEMA/EXTENSION
    // objects are String nodes.
    let objects = unsafe { PgList::<pg_sys::Node>::from_pg(s.objects) };
    match s.removeType {
        OBJECT_TABLE | OBJECT_MATVIEW => {
            let (command, noun) = if s.removeType == OBJECT_TABLE {
                ("DROP TABLE", "table")
            } else {
                ("DROP MATERIALIZED VIEW", "materialized view")
            };
            objects
                .iter_ptr()
                // SAFETY: each element is a List of String naming a relation.
                .filter_map(|names| unsafe {
                    Table::resolve(pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
                })
                .filter(|t| {
                    !t.temp
                        && matches!(
                            t.kind,
                            pg_sys::RELKIND_RELATION
                                | pg_sys::RELKIND_PARTITIONED_TABLE
                                | pg_sys::RELKIND_MATVIEW
                        )
                })
                .filter_map(|t| {
                    local(
                        t.rule_for(Token::DropTable),
                        command,
                        format!("{noun} {}", t.display()),
                        Some(t.oid),
                    )
                })
                .collect()
        }
        OBJECT_SCHEMA => {
            let names: Vec<String> = objects
                .iter_ptr()
                // SAFETY: each element is a String node.
                .map(|n| unsafe { string_node(n) })
                .filter(|name| schema_exists_and_not_temp(name))
                .collect();
            let mut judged: Vec<Judged> = names
                .iter()
                .filter_map(|name| {
                    let rule = if name == SCHEMA {
                        Rule::Extension
                    } else {
                        Rule::Token(Token::DropSchema)
                    };
                    local(rule, "DROP SCHEMA", format!("schema \"{name}\""), None)
                })
                .collect();
            // CASCADE drops the schema's tables: forbid_delete holds for them too.
            if s.behavior == pg_sys::DropBehavior::DROP_CASCADE {
                for name in names.iter().filter(|n| n.as_str() != SCHEMA) {
                    for oid in tables_in_schema(name) {
                        let how = format!("in schema \"{name}\", dropped by CASCADE");
                        judged.extend(forbid_delete_reached("DROP SCHEMA", oid, &how));
                    }
                }
            }
            judged
        }
        OBJECT_TRIGGER => objects
            .iter_ptr()
            .flat_map(|names| {
                // SAFETY: DROP TRIGGER names are lists of String: [schema,] table, trigger.
                let mut names: Vec<String> = unsafe {
                    PgList::<pg_sys::Node>::from_pg(names as *mut pg_sys::List)
                        .iter_ptr()
                        .map(|n| string_node(n))
                        .collect()
                };
                let trigger = names.pop();
                let rv = {
                    let mut list: *mut pg_sys::List = std::ptr::null_mut();
                    for n in &names {
                        let c = std::ffi::CString::new(n.as_str()).unwrap_or_default();
                        // SAFETY: builds a List of String nodes naming the table.
                        unsafe {
                            list = pg_sys::lappend(
                                list,
                                pg_sys::makeString(pg_sys::pstrdup(c.as_ptr())) as *mut c_void,
                            );
                        }
                    }
                    // SAFETY: a List of String nodes.
                    unsafe { pg_sys::makeRangeVarFromNameList(list) }
                };
                trigger_change("DROP TRIGGER", rv, trigger)
            })
            .collect(),
        OBJECT_EXTENSION => objects
            .iter_ptr()
            // SAFETY: each element is a String node.
            .map(|n| unsafe { string_node(n) })
            .filter(|name| name == EXTENSION)
            .filter_map(|name| {
                local(
                    Rule::Extension,
                    "DROP EXTENSION",
                    format!("extension \"{name}\""),
                    None,
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn drop_column(s: &pg_sys::AlterTableStmt) -> Vec<Judged> {
    // SAFETY: `cmds` is a List of AlterTableCmd; `relation` a RangeVar.
    let cmds = unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds) };
    let columns: Vec<String> = cmds
        .iter_ptr()
        .filter_map(|c| {
            // SAFETY: each element is a valid AlterTableCmd; `name` is NULL or a C string.
            unsafe {
                ((*c).subtype == pg_sys::AlterTableType::AT_DropColumn)
                    .then(|| cstr_or((*c).name, ""))
            }
        })
        .collect();
    if columns.is_empty() || s.objtype != pg_sys::ObjectType::OBJECT_TABLE {
        return Vec::new();
    }
    // SAFETY: `relation` is a valid RangeVar for ALTER TABLE.
    let Some(table) = (unsafe { Table::resolve(s.relation) }) else {
        return Vec::new();
    };
    if table.temp {
        return Vec::new();
    }
    columns
        .into_iter()
        .filter_map(|col| {
            local(
                if table.schema == SCHEMA {
                    Rule::Extension
                } else {
                    Rule::Token(Token::DropColumn)
                },
                "ALTER TABLE DROP COLUMN",
                format!("column \"{col}\" of table {}", table.display()),
                Some(table.oid),
            )
        })
        .collect()
}

/// ALTER TABLE ... ENABLE/DISABLE TRIGGER that would switch off (or out of ALWAYS mode)
/// the triggers a protection relies on.
#[allow(non_upper_case_globals)]
fn trigger_switches(s: &pg_sys::AlterTableStmt) -> Vec<Judged> {
    use pg_sys::AlterTableType::*;
    // SAFETY: `cmds` is a List of AlterTableCmd.
    let cmds = unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds) };
    let mut judged = Vec::new();
    for c in cmds.iter_ptr() {
        // SAFETY: each element is a valid AlterTableCmd.
        let (subtype, name) = unsafe { ((*c).subtype, opt_cstr((*c).name)) };
        let (command, trigger) = match subtype {
            AT_DisableTrig | AT_EnableTrig | AT_EnableReplicaTrig => ("ALTER TABLE TRIGGER", name),
            AT_DisableTrigAll | AT_DisableTrigUser | AT_EnableTrigAll | AT_EnableTrigUser => {
                ("ALTER TABLE TRIGGER", None)
            }
            _ => continue,
        };
        judged.extend(trigger_change(command, s.relation, trigger));
    }
    judged
}

/// A change to a trigger of `relation` (`trigger` None: all of them) that a protection
/// relies on: the audit and test-data triggers of protected tables, and every trigger of
/// the extension's own tables.
fn trigger_change(
    command: &str,
    relation: *mut pg_sys::RangeVar,
    trigger: Option<String>,
) -> Vec<Judged> {
    if relation.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid RangeVar from the parse tree.
    let Some(table) = (unsafe { Table::resolve(relation) }) else {
        return Vec::new();
    };
    let ours = [crate::audit::TRIGGER_NAME, crate::test_data::TRIGGER_NAME];
    let rule = if table.schema == SCHEMA {
        Rule::Extension
    } else {
        let flags = protection::flags(table.oid);
        let relies = flags.audit || flags.test_data;
        let touches_ours = trigger.as_deref().is_none_or(|t| ours.contains(&t));
        if !(relies && touches_ours) {
            return Vec::new();
        }
        Rule::ProtectedTrigger {
            table: table.display(),
        }
    };
    let object = match &trigger {
        Some(t) => format!("trigger \"{t}\" of table {}", table.display()),
        None => format!("all triggers of table {}", table.display()),
    };
    local(rule, command, object, Some(table.oid))
        .into_iter()
        .collect()
}

fn drop_owned(s: &pg_sys::DropOwnedStmt) -> Vec<Judged> {
    // SAFETY: `roles` is a List of RoleSpec.
    let roles = unsafe { PgList::<pg_sys::RoleSpec>::from_pg(s.roles) };
    let names: Vec<String> = roles
        .iter_ptr()
        // SAFETY: get_rolespec_name resolves a valid RoleSpec (or raises for unknown roles,
        // which the statement itself would raise too).
        .map(|r| {
            format!("\"{}\"", unsafe {
                cstr_or(pg_sys::get_rolespec_name(r), "")
            })
        })
        .collect();
    let noun = if names.len() == 1 { "role" } else { "roles" };
    local(
        Rule::Token(Token::DropOwned),
        "DROP OWNED",
        format!("objects owned by {noun} {}", names.join(", ")),
        None,
    )
    .into_iter()
    .collect()
}

/// ALTER TABLE ... RENAME TO of a migration-history table: its protection is by name, so
/// renaming it away would unprotect it.
fn migration_table_rename(s: &pg_sys::RenameStmt) -> Vec<Judged> {
    // SAFETY: ALTER TABLE ... RENAME TO has a RangeVar and a new name.
    let Some(table) = (unsafe { Table::resolve(s.relation) }) else {
        return Vec::new();
    };
    let stays = opt_cstr(s.newname)
        .is_some_and(|n| protection::MIGRATION_HISTORY_TABLES.contains(&n.as_str()));
    if stays || !protection::flags(table.oid).migration_history {
        return Vec::new();
    }
    local(
        Rule::MigrationRename {
            table: table.display(),
        },
        "ALTER TABLE RENAME",
        format!("table {}", table.display()),
        Some(table.oid),
    )
    .into_iter()
    .collect()
}

/// DROP DATABASE and ALTER DATABASE RENAME: judged by the target database.
fn database_removal(command: &str, dbname: *const c_char, scope: Scope) -> Vec<Judged> {
    if !settings::is_blocked(Token::DropDatabase) {
        return Vec::new();
    }
    // SAFETY: the parser gives a NUL-terminated name.
    let Some(db) = opt_cstr(dbname).and_then(|n| Database::by_name(&n)) else {
        return Vec::new();
    };
    let kind = if db.listed && db.environment != Environment::Production {
        "protected"
    } else {
        db.protection().name()
    };
    let why = if db.listed {
        db.describe()
    } else {
        format!(
            "{} The token \"drop_database\" is in prodguard.blocked_commands.",
            db.describe()
        )
    };
    let alternative = if db.listed {
        "To drop or rename it anyway, first remove it from prodguard.protected_databases in postgresql.conf.".to_string()
    } else {
        policy::tag_hint(&db.name)
    };
    vec![Judged {
        finding: Finding::blocked(
            Guard::Command,
            command,
            format!("{kind} database \"{}\"", db.name),
            "",
            why,
            alternative,
            None,
        ),
        env: db.protection(),
        scope,
    }]
}

/// ALTER SYSTEM / ALTER DATABASE / ALTER ROLE ... SET or RESET of a prodguard setting.
fn settings_change(
    command: &str,
    setstmt: *mut pg_sys::VariableSetStmt,
    target_db: Option<String>,
    cluster_wide: bool,
    scope: Scope,
) -> Vec<Judged> {
    // SAFETY: the parser always fills `setstmt` for these statements.
    let Some(setting) = (unsafe { guarded_setting(setstmt) }) else {
        return Vec::new();
    };
    if !settings::is_blocked(Token::GuardSettings) {
        return Vec::new();
    }
    // The environment that judges the change: the strictest of this database and every
    // database the change reaches.
    let mut env = settings::environment();
    let mut decided_by = environment::current_database();
    if let Some(target) = target_db.as_deref().and_then(Database::by_name) {
        if target.protection() > env {
            env = target.protection();
            decided_by = target.name;
        }
    }
    let strictest = if cluster_wide {
        environment::strictest_in_cluster()
    } else {
        env
    };
    let (place, why) = if strictest > env {
        env = strictest;
        (
            format!(" in a cluster with {} databases", env.name()),
            format!(
                "Changing {setting} for every database of the cluster would lower or alter their protection, and some are {}.",
                env.name()
            ),
        )
    } else {
        (
            format!(" in {} database \"{decided_by}\"", env.name()),
            format!(
                "Changing {setting} would lower or alter the protection of database \"{decided_by}\"."
            ),
        )
    };
    vec![Judged {
        finding: Finding::blocked(
            Guard::Command,
            command,
            setting,
            place,
            why,
            policy::tag_hint(&decided_by),
            None,
        ),
        env,
        scope,
    }]
}

/// The prodguard setting a SET/RESET names, if it is one that weakens or alters a guard.
/// `prodguard.override` is not: it only ever counts in the transaction that sets it.
///
/// # Safety
/// `setstmt` must be NULL or a valid VariableSetStmt.
unsafe fn guarded_setting(setstmt: *mut pg_sys::VariableSetStmt) -> Option<String> {
    if setstmt.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let (kind, name) = unsafe { ((*setstmt).kind, opt_cstr((*setstmt).name)) };
    if kind == pg_sys::VariableSetKind::VAR_RESET_ALL {
        return Some("all settings (RESET ALL)".into());
    }
    let name = name?.to_ascii_lowercase();
    (name.starts_with("prodguard.") && name != settings::OVERRIDE_NAME)
        .then(|| format!("setting \"{name}\""))
}

/// A finding about an object of this database, judged by this database's environment.
/// `token` None means always guarded (the extension's own objects).
fn local(
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
    let db = environment::current_database();
    let env = settings::environment();
    let why = match rule {
        Rule::Token(t) => format!(
            "Database \"{db}\" is {} (prodguard.environment), and prodguard.blocked_commands contains \"{}\".",
            env.name(),
            t.name()
        ),
        Rule::Extension => {
            format!("The {EXTENSION} extension and its own objects are always guarded in production.")
        }
        Rule::ForbidDelete { table, migration_history: true } => format!(
            "Table {table} is a migration-history table: pg_prodguard protects it against DELETE, TRUNCATE and DROP."
        ),
        Rule::ForbidDelete { table, migration_history: false } => format!(
            "Table {table} is protected with forbid_delete (prodguard.protected_tables)."
        ),
        Rule::ProtectedTrigger { table } => format!(
            "Table {table} is protected (prodguard.protected_tables): its audit and test-data triggers are part of that protection."
        ),
        Rule::MigrationRename { table } => format!(
            "Table {table} is a migration-history table, protected by its name: renamed, it would lose that protection."
        ),
    };
    Some(Judged {
        finding: Finding::blocked(
            Guard::Command,
            command,
            object,
            format!(" in {} database \"{db}\"", env.name()),
            why,
            policy::tag_hint(&db),
            relation,
        ),
        env,
        scope: Scope::Transaction,
    })
}

fn schema_exists_and_not_temp(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: catalog lookups by name inside a transaction.
    unsafe {
        let oid = pg_sys::get_namespace_oid(cname.as_ptr(), true);
        oid != pg_sys::InvalidOid && !pg_sys::isAnyTempNamespace(oid)
    }
}

/// # Safety
/// `node` must be a String node.
unsafe fn string_node(node: *mut pg_sys::Node) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { cstr_or((*(node as *mut pg_sys::String)).sval, "") }
}

fn opt_cstr(p: *const c_char) -> Option<String> {
    // SAFETY: parse-tree strings are NULL or NUL-terminated.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// The text of this one statement within a possibly multi-statement query string.
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
    let start = usize::try_from(loc).unwrap_or(0).min(bytes.len());
    let end = match usize::try_from(len) {
        Ok(n) if n > 0 => (start + n).min(bytes.len()),
        _ => bytes.len(),
    };
    Some(
        String::from_utf8_lossy(&bytes[start..end])
            .trim()
            .to_string(),
    )
}

//! The command guard's statements on objects of this database: TRUNCATE, DROP TABLE /
//! MATERIALIZED VIEW / SCHEMA / EXTENSION / TRIGGER, ALTER TABLE DROP COLUMN and trigger
//! switches, DROP OWNED, and renaming a migration-history table away. Each is judged by
//! this database's environment (`local`).

use std::ffi::c_void;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::core::extension::{self, NAME as EXTENSION, SCHEMA};
use crate::core::pg::{self, cstr_or, opt_cstr};
use crate::core::protection::{
    self, AUDIT_TRIGGER, MIGRATION_HISTORY_TABLES, TEST_DATA_TRIGGER, TEST_DATA_TRIGGER_0_1,
    TRUNCATE_TRIGGER,
};
use crate::core::settings::{self, Environment, Token};

use super::{local, string_node, Judged, Rule};

/// A table of this database, resolved from the statement.
pub struct Table {
    pub oid: pg_sys::Oid,
    pub schema: String,
    pub name: String,
    pub temp: bool,
    pub kind: u8,
}

impl Table {
    /// # Safety
    /// `rv` must be a valid RangeVar.
    pub unsafe fn resolve(rv: *mut pg_sys::RangeVar) -> Option<Table> {
        // SAFETY: name lookup without a lock; the statement itself locks the table later.
        unsafe { Table::from_oid(pg::relid_of(rv)) }
    }

    /// The relation `oid`, `None` when there is none.
    pub fn from_oid(oid: pg_sys::Oid) -> Option<Table> {
        if oid == pg_sys::InvalidOid {
            return None;
        }
        // SAFETY: lsyscache lookups; NULL/0 for a relation that is gone.
        unsafe {
            let name = pg_sys::get_rel_name(oid);
            if name.is_null() {
                return None;
            }
            Some(Table {
                oid,
                schema: cstr_or(
                    pg_sys::get_namespace_name(pg_sys::get_rel_namespace(oid)),
                    "",
                ),
                name: cstr_or(name, ""),
                temp: pg_sys::get_rel_persistence(oid) as u8 == pg_sys::RELPERSISTENCE_TEMP,
                kind: pg_sys::get_rel_relkind(oid) as u8,
            })
        }
    }

    pub fn display(&self) -> String {
        format!("\"{}.{}\"", self.schema, self.name)
    }

    /// Why a statement that removes rows (TRUNCATE, DROP) is guarded here; `None` when it
    /// destroys nothing. The extension's own tables and tables protected with forbid_delete
    /// are guarded whatever the token list says and whatever they hold.
    pub fn rule_for(&self, token: Token) -> Option<Rule> {
        if self.schema == SCHEMA {
            return Some(Rule::Extension);
        }
        let flags = protection::flags(self.oid);
        if flags.forbid_delete {
            return Some(Rule::ForbidDelete {
                table: self.display(),
                flags,
            });
        }
        self.token_rule(token, flags)
    }

    /// Why a statement that rewrites or discards the table's data (DROP COLUMN, ...) is
    /// guarded here; `None` when it destroys nothing.
    pub fn column_rule_for(&self, token: Token) -> Option<Rule> {
        if self.schema == SCHEMA {
            return Some(Rule::Extension);
        }
        self.token_rule(token, protection::flags(self.oid))
    }

    /// `token`'s rule, unless the statement destroys nothing: the table holds no rows (read
    /// under the statement's lock) or was created in this transaction (SPEC §3). Asked only
    /// where the guard would otherwise speak, and only for a caller PostgreSQL will let run
    /// the statement, so that nobody can lock another role's table through the guard.
    /// Migration-history tables stay guarded whatever they hold.
    fn token_rule(&self, token: Token, flags: protection::Flags) -> Option<Rule> {
        let judged =
            settings::is_blocked(token) && settings::environment() != Environment::Development;
        if judged && !flags.migration_history && self.may_run(token) {
            let lock = pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE;
            if pg::holds_no_rows(self.oid, lock) {
                return None;
            }
        }
        Some(Rule::Token(token))
    }

    /// Whether the current user may run a statement of this token on the table (its owner;
    /// for TRUNCATE, also a role with the TRUNCATE privilege).
    fn may_run(&self, token: Token) -> bool {
        // SAFETY: catalog lookups inside a transaction.
        unsafe {
            let user = pg_sys::GetUserId();
            pg_sys::pg_class_ownercheck(self.oid, user)
                || (token == Token::Truncate
                    && pg_sys::pg_class_aclcheck(
                        self.oid,
                        user,
                        pg_sys::ACL_TRUNCATE as pg_sys::AclMode,
                    ) == pg_sys::AclResult::ACLCHECK_OK)
        }
    }
}

pub fn truncate(s: &pg_sys::TruncateStmt) -> Vec<Judged> {
    // SAFETY: `relations` is a List of RangeVar.
    let tables = unsafe { PgList::<pg_sys::RangeVar>::from_pg(s.relations) };
    // (with whether the table is named ONLY: its inheritance children keep their rows)
    let named: Vec<(Table, bool)> = tables
        .iter_ptr()
        // SAFETY: each element is a valid RangeVar.
        .filter_map(|rv| unsafe { Table::resolve(rv).map(|t| (t, !(*rv).inh)) })
        .filter(|(t, _)| !t.temp)
        .collect();
    let mut judged: Vec<Judged> = named
        .iter()
        .filter_map(|(t, only)| {
            local(
                t.rule_for(Token::Truncate)?,
                "TRUNCATE",
                format!("table {}", t.display()),
                Some(t.oid),
            )
            .map(|j| j.destroying_rows_of(*only))
        })
        .collect();
    // CASCADE also empties every table that references these through a foreign key, and
    // the ones referencing those: forbid_delete holds for them too.
    if s.behavior == pg_sys::DropBehavior::DROP_CASCADE {
        let named_oids: Vec<pg_sys::Oid> = named.iter().map(|(t, _)| t.oid).collect();
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
    if !flags.forbid_delete || pg::is_temp(oid) {
        return None;
    }
    let table = pg::quoted_name(oid);
    local(
        Rule::ForbidDelete {
            table: table.clone(),
            flags,
        },
        command,
        format!("table {table} ({how})"),
        Some(oid),
    )
    .map(Judged::destroying_rows)
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

pub fn drop_objects(s: &pg_sys::DropStmt) -> Vec<Judged> {
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
                    let judged = local(
                        t.rule_for(Token::DropTable)?,
                        command,
                        format!("{noun} {}", t.display()),
                        Some(t.oid),
                    );
                    // a materialized view can be refreshed: its rows are not backed up
                    if t.kind == pg_sys::RELKIND_MATVIEW {
                        judged
                    } else {
                        judged.map(Judged::destroying_rows)
                    }
                })
                .collect()
        }
        OBJECT_SCHEMA => {
            let names: Vec<String> = objects
                .iter_ptr()
                // SAFETY: each element is a String node.
                .map(|n| unsafe { string_node(n) })
                .filter(|name| schema_exists_and_not_temp(name))
                // (pg_restore --clean drops the schema pg_prodguard left empty when its own
                // DROP EXTENSION ran: nothing is destroyed, and the override that dropped
                // the extension, an approved change, is unreadable until it is back)
                .filter(|name| name != SCHEMA || !left_empty_by_extension())
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
        OBJECT_INDEX => super::rewrites::drop_indexes(&objects),
        OBJECT_SEQUENCE => super::rewrites::drop_sequences(&objects),
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
            // (DROP EXTENSION IF EXISTS of an extension not installed here destroys nothing)
            .filter(|name| {
                name == EXTENSION
                    // SAFETY: a catalog lookup by name, missing_ok.
                    && unsafe { pg_sys::get_extension_oid(c"pg_prodguard".as_ptr(), true) }
                        != pg_sys::InvalidOid
            })
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

/// ALTER TABLE ... ENABLE/DISABLE TRIGGER that would switch off (or out of ALWAYS mode)
/// the triggers a protection relies on.
#[allow(non_upper_case_globals)]
pub fn trigger_switches(s: &pg_sys::AlterTableStmt) -> Vec<Judged> {
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
pub fn trigger_change(
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
    let ours = [
        AUDIT_TRIGGER,
        TEST_DATA_TRIGGER,
        TEST_DATA_TRIGGER_0_1,
        TRUNCATE_TRIGGER,
    ];
    let rule = if table.schema == SCHEMA {
        Rule::Extension
    } else {
        let flags = protection::flags(table.oid);
        let relies = flags.any();
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

pub fn drop_owned(s: &pg_sys::DropOwnedStmt) -> Vec<Judged> {
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
pub fn migration_table_rename(s: &pg_sys::RenameStmt) -> Vec<Judged> {
    // SAFETY: ALTER TABLE ... RENAME TO has a RangeVar and a new name.
    let Some(table) = (unsafe { Table::resolve(s.relation) }) else {
        return Vec::new();
    };
    let stays = opt_cstr(s.newname).is_some_and(|n| MIGRATION_HISTORY_TABLES.contains(&n.as_str()));
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

/// Whether the `prodguard` schema is what DROP EXTENSION pg_prodguard left: the extension
/// is not installed and the schema holds no relation.
fn left_empty_by_extension() -> bool {
    // SAFETY: a catalog lookup by name, missing_ok.
    let installed =
        unsafe { pg_sys::get_extension_oid(c"pg_prodguard".as_ptr(), true) } != pg_sys::InvalidOid;
    !installed
        && matches!(
            crate::core::spi::one::<bool>(
                "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1)",
                &[SCHEMA.into()],
            ),
            Ok(Some(true))
        )
}

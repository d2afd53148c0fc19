//! The command guard's cluster-wide statements: DROP DATABASE and ALTER DATABASE RENAME,
//! judged by the target database; ALTER SYSTEM / ALTER DATABASE / ALTER ROLE ... SET or
//! RESET of a prodguard setting, judged by the strictest database the change reaches.

use std::ffi::c_char;

use pgrx::pg_sys;

use crate::core::breakglass::Scope;
use crate::core::environment::{self, Database};
use crate::core::extension::{NAME as EXTENSION, SCHEMA};
use crate::core::finding::{tag_hint, Finding, Guard};
use crate::core::pg::{cstr_or, current_database, opt_cstr};
use crate::core::settings::{self, Environment, Token};

use super::Judged;

/// DROP DATABASE and ALTER DATABASE RENAME: judged by the target database.
pub fn database_removal(command: &str, dbname: *const c_char, scope: Scope) -> Vec<Judged> {
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
        tag_hint(&db.name)
    };
    let finding = Finding::blocked(
        Guard::Command,
        command,
        format!("{kind} database \"{}\"", db.name),
        "",
        why,
        alternative,
        None,
    );
    vec![Judged {
        scope,
        ..Judged::new(finding, db.protection())
    }]
}

/// ALTER SYSTEM / ALTER DATABASE / ALTER ROLE ... SET or RESET of a prodguard setting.
pub fn settings_change(
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
    let mut decided_by = current_database();
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
    let finding = Finding::blocked(
        Guard::Command,
        command,
        setting,
        place,
        why,
        tag_hint(&decided_by),
        None,
    );
    vec![Judged {
        scope,
        ..Judged::new(finding, env)
    }]
}

/// The setting a SET/RESET names, if changing it weakens or alters a guard: a prodguard
/// setting (not `prodguard.override`, which only ever counts in the transaction that sets
/// it), or a preload setting that would no longer load pg_prodguard.
///
/// # Safety
/// `setstmt` must be NULL or a valid VariableSetStmt.
unsafe fn guarded_setting(setstmt: *mut pg_sys::VariableSetStmt) -> Option<String> {
    use pg_sys::VariableSetKind::*;
    if setstmt.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let (kind, name) = unsafe { ((*setstmt).kind, opt_cstr((*setstmt).name)) };
    if kind == VAR_RESET_ALL {
        return Some("all settings (RESET ALL)".into());
    }
    let name = name?.to_ascii_lowercase();
    if name.starts_with("prodguard.") && name != settings::OVERRIDE_NAME {
        return Some(format!("setting \"{name}\""));
    }
    if name != "shared_preload_libraries" && name != "session_preload_libraries" {
        return None;
    }
    // SAFETY: guaranteed by the caller; `args` is a List of A_Const.
    let keeps_us = kind == VAR_SET_VALUE && unsafe { lists_pg_prodguard((*setstmt).args) };
    // session_preload_libraries matters only while it is what loads us
    let loads_us_now = name == "shared_preload_libraries" || {
        // SAFETY: GetConfigOption returns NULL or the current value of a known setting.
        let current = unsafe {
            cstr_or(
                pg_sys::GetConfigOption(c"session_preload_libraries".as_ptr(), true, false),
                "",
            )
        };
        names_pg_prodguard(&current)
    };
    (loads_us_now && !keeps_us)
        .then(|| format!("setting \"{name}\" (it would no longer load {EXTENSION})"))
}

/// Whether a list of preload libraries names pg_prodguard (`pg_prodguard`,
/// `$libdir/pg_prodguard`, `pg_prodguard.so`, quoted or not).
fn names_pg_prodguard(list: &str) -> bool {
    list.split(',').any(|item| {
        let item = item.trim().trim_matches('"');
        let base = item.rsplit('/').next().unwrap_or(item);
        base.strip_suffix(".so").unwrap_or(base) == EXTENSION
    })
}

/// Whether the values of a SET name pg_prodguard.
///
/// # Safety
/// `args` must be the `args` List of a VariableSetStmt.
unsafe fn lists_pg_prodguard(args: *mut pg_sys::List) -> bool {
    // SAFETY: guaranteed by the caller: each element is an A_Const (string or identifier).
    let values: Vec<String> = unsafe {
        pgrx::PgList::<pg_sys::A_Const>::from_pg(args)
            .iter_ptr()
            .map(|c| c as *const pg_sys::A_Const)
            .filter(|c| !(**c).isnull && (**c).val.node.type_ == pg_sys::NodeTag::T_String)
            .map(|c| cstr_or((*c).val.sval.sval, ""))
            .collect()
    };
    names_pg_prodguard(&values.join(","))
}

/// CREATE / ALTER PUBLICATION that would publish pg_prodguard's own tables (its audit log,
/// backups, denial log, dictionaries, changes) to subscribers: `FOR ALL TABLES`, or naming
/// a table of the `prodguard` schema or the schema itself. Judged like any change to the
/// extension's objects (always guarded in production), in a database where it is installed.
///
/// # Safety
/// `pubobjects` must be the List of PublicationObjSpec of the statement.
pub unsafe fn publication(
    command: &str,
    name: *const std::ffi::c_char,
    for_all_tables: bool,
    pubobjects: *mut pg_sys::List,
) -> Vec<Judged> {
    if crate::core::extension::own_table(c"audit_log").is_none() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    let names_ours = unsafe {
        pgrx::PgList::<pg_sys::PublicationObjSpec>::from_pg(pubobjects)
            .iter_ptr()
            .any(|spec| match (*spec).pubobjtype {
                pg_sys::PublicationObjSpecType::PUBLICATIONOBJ_TABLES_IN_SCHEMA => {
                    opt_cstr((*spec).name).as_deref() == Some(SCHEMA)
                }
                pg_sys::PublicationObjSpecType::PUBLICATIONOBJ_TABLE => {
                    let t = (*spec).pubtable;
                    !t.is_null() && !(*t).relation.is_null() && {
                        let rel = crate::core::pg::relid_of((*t).relation);
                        rel != pg_sys::InvalidOid
                            && cstr_or(
                                pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel)),
                                "",
                            ) == SCHEMA
                    }
                }
                _ => false,
            })
    };
    if !for_all_tables && !names_ours {
        return Vec::new();
    }
    let publication = opt_cstr(name).unwrap_or_default();
    let what = if for_all_tables {
        "FOR ALL TABLES"
    } else {
        "of pg_prodguard's tables"
    };
    let finding = Finding::here(
        Guard::Command,
        command,
        format!("publication \"{publication}\" ({what})"),
        format!("It would publish {EXTENSION}'s own tables (the audit log, backups, denial log, dictionaries and approved changes) to every subscriber, where they would mix with the subscriber's own history."),
        None,
    )
    .prefer("Publish the application's tables instead: CREATE PUBLICATION ... FOR TABLES IN SCHEMA public (or FOR TABLE ...).");
    vec![Judged::new(finding, settings::environment())]
}

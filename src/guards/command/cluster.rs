//! The command guard's cluster-wide statements: DROP DATABASE and ALTER DATABASE RENAME,
//! judged by the target database; ALTER SYSTEM / ALTER DATABASE / ALTER ROLE ... SET or
//! RESET of a prodguard setting, judged by the strictest database the change reaches.

use std::ffi::c_char;

use pgrx::pg_sys;

use crate::core::breakglass::Scope;
use crate::core::environment::{self, Database};
use crate::core::finding::{tag_hint, Finding, Guard};
use crate::core::pg::{current_database, opt_cstr};
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

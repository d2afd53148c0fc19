//! The extension's own objects (issue 15): in production nobody changes them except
//! through its functions. DDL on the `prodguard` schema or on anything in it is judged
//! like `DROP EXTENSION pg_prodguard` (always guarded in production, whatever
//! `prodguard.blocked_commands` says): `CREATE OR REPLACE FUNCTION` of its functions,
//! `ALTER`/`RENAME`/`OWNER TO`/`SET SCHEMA` of its tables, columns, functions, sequences,
//! views and the schema, triggers, rules and policies on its tables, and `COPY ... FROM`
//! into them (except a pg_restore into a fresh database, which loads its configuration and
//! history). Writes to its tables by statements are the row guard's.

use pgrx::pg_sys;
use pgrx::PgList;

use crate::core::extension::{self, KEPT_TABLES, SCHEMA};
use crate::core::pg::{cstr_or, opt_cstr};

use super::{local, string_node, Judged, Rule};

/// The findings of a statement that changes the extension's own objects.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
pub unsafe fn check(stmt: *mut pg_sys::Node) -> Vec<Judged> {
    use pg_sys::NodeTag::*;
    // SAFETY: each arm casts to the struct its node tag names.
    let (command, object) = unsafe {
        match (*stmt).type_ {
            T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                ("ALTER TABLE", rv_in_schema(s.relation))
            }
            T_AlterEventTrigStmt => {
                let s = &*(stmt as *mut pg_sys::AlterEventTrigStmt);
                ("ALTER EVENT TRIGGER", own_event_trigger(s.trigname))
            }
            T_RenameStmt
                if (*(stmt as *mut pg_sys::RenameStmt)).renameType
                    == pg_sys::ObjectType::OBJECT_EVENT_TRIGGER =>
            {
                let s = &*(stmt as *mut pg_sys::RenameStmt);
                // (the event trigger's name is the statement's object, a String node)
                let name = if s.object.is_null() {
                    None
                } else {
                    std::ffi::CString::new(string_node(s.object)).ok()
                };
                ("RENAME", name.and_then(|n| own_event_trigger(n.as_ptr())))
            }
            T_RenameStmt => {
                let s = &*(stmt as *mut pg_sys::RenameStmt);
                let object = if s.renameType == pg_sys::ObjectType::OBJECT_SCHEMA {
                    (opt_cstr(s.subname).as_deref() == Some(SCHEMA))
                        .then(|| format!("schema \"{SCHEMA}\""))
                } else if !s.relation.is_null() {
                    rv_in_schema(s.relation)
                } else {
                    object_in_schema(s.renameType, s.object)
                };
                ("RENAME", object)
            }
            T_AlterOwnerStmt => {
                let s = &*(stmt as *mut pg_sys::AlterOwnerStmt);
                let object = if s.objectType == pg_sys::ObjectType::OBJECT_SCHEMA {
                    // (a restore sets the owner it already has: nothing changes)
                    (!s.object.is_null()
                        && string_node(s.object) == SCHEMA
                        && !owner_unchanged(s.newowner))
                    .then(|| format!("schema \"{SCHEMA}\""))
                } else if !s.relation.is_null() {
                    rv_in_schema(s.relation)
                } else {
                    object_in_schema(s.objectType, s.object)
                };
                ("ALTER OWNER", object)
            }
            T_AlterObjectSchemaStmt => {
                let s = &*(stmt as *mut pg_sys::AlterObjectSchemaStmt);
                let object = if !s.relation.is_null() {
                    rv_in_schema(s.relation)
                } else {
                    object_in_schema(s.objectType, s.object)
                };
                ("ALTER SET SCHEMA", object)
            }
            T_CreateFunctionStmt => {
                let s = &*(stmt as *mut pg_sys::CreateFunctionStmt);
                ("CREATE FUNCTION", names_in_schema(s.funcname))
            }
            T_AlterFunctionStmt => {
                let s = &*(stmt as *mut pg_sys::AlterFunctionStmt);
                let names = if s.func.is_null() {
                    std::ptr::null_mut()
                } else {
                    (*s.func).objname
                };
                ("ALTER FUNCTION", names_in_schema(names))
            }
            T_CreateTrigStmt => {
                let s = &*(stmt as *mut pg_sys::CreateTrigStmt);
                ("CREATE TRIGGER", rv_in_schema(s.relation))
            }
            T_RuleStmt => {
                let s = &*(stmt as *mut pg_sys::RuleStmt);
                ("CREATE RULE", rv_in_schema(s.relation))
            }
            T_DropStmt
                if (*(stmt as *mut pg_sys::DropStmt)).removeType
                    == pg_sys::ObjectType::OBJECT_POLICY =>
            {
                // DROP POLICY name ON table: each object is [schema,] table, policy (the
                // policies on the extension's tables are what its row security is)
                let s = &*(stmt as *mut pg_sys::DropStmt);
                let object = PgList::<pg_sys::Node>::from_pg(s.objects)
                    .iter_ptr()
                    .find_map(|names| {
                        let names = names as *mut pg_sys::List;
                        let n = PgList::<pg_sys::Node>::from_pg(names).len();
                        if n < 2 {
                            return None;
                        }
                        let table = pg_sys::list_truncate(pg_sys::list_copy(names), n as i32 - 1);
                        rv_in_schema(pg_sys::makeRangeVarFromNameList(table))
                    });
                ("DROP POLICY", object)
            }
            T_CreatePolicyStmt => {
                let s = &*(stmt as *mut pg_sys::CreatePolicyStmt);
                ("CREATE POLICY", rv_in_schema(s.table))
            }
            T_AlterPolicyStmt => {
                let s = &*(stmt as *mut pg_sys::AlterPolicyStmt);
                ("ALTER POLICY", rv_in_schema(s.table))
            }
            T_AlterSeqStmt => {
                let s = &*(stmt as *mut pg_sys::AlterSeqStmt);
                ("ALTER SEQUENCE", rv_in_schema(s.sequence))
            }
            T_ViewStmt => {
                let s = &*(stmt as *mut pg_sys::ViewStmt);
                ("CREATE VIEW", rv_in_schema(s.view))
            }
            T_CopyStmt => {
                let s = &*(stmt as *mut pg_sys::CopyStmt);
                let into_ours = if s.is_from && !restores_fresh_database() {
                    rv_in_schema(s.relation)
                } else {
                    None
                };
                ("COPY FROM", into_ours)
            }
            _ => ("", None),
        }
    };
    let Some(object) = object else {
        return Vec::new();
    };
    local(Rule::Extension, command, object, None)
        .into_iter()
        .collect()
}

/// In a session whose CREATE EXTENSION re-attached the kept history (the restore in place
/// of a dump, by pg_restore --clean or `pg_restore | psql`, dropped and created the
/// extension), `COPY prodguard.<kept table> FROM ...` (the dump's copy of the history or
/// the approved changes) into a kept table that holds rows: this database keeps its own,
/// and the dump's rows go into a temporary table of the same layout instead, with a
/// NOTICE. Into an empty table (a fresh database), and in any other session (where a COPY
/// into the extension's tables is judged like DDL on them), nothing changes here.
/// Returns the statement to run: `pstmt` itself, or a changed copy of it.
///
/// # Safety
/// `pstmt` must be the PlannedStmt PostgreSQL passed to the ProcessUtility hook.
pub unsafe fn keep_own_history(pstmt: *mut pg_sys::PlannedStmt) -> *mut pg_sys::PlannedStmt {
    // SAFETY: guaranteed by the caller; the node is read as the struct its tag names.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        if stmt.is_null() {
            return pstmt;
        }
        if (*stmt).type_ == pg_sys::NodeTag::T_CreateExtensionStmt {
            let s = &*(stmt as *mut pg_sys::CreateExtensionStmt);
            if cstr_or(s.extname, "") == extension::NAME
                && pg_sys::get_namespace_oid(c"prodguard_history".as_ptr(), true)
                    != pg_sys::InvalidOid
            {
                REATTACHED.set(true);
            }
            return pstmt;
        }
        if (*stmt).type_ != pg_sys::NodeTag::T_CopyStmt || !REATTACHED.get() {
            return pstmt;
        }
        let s = &*(stmt as *mut pg_sys::CopyStmt);
        if !s.is_from || s.relation.is_null() || extension::in_own_script() {
            return pstmt;
        }
        let Some(ours) = extension::own_namespace() else {
            return pstmt;
        };
        let name = cstr_or((*s.relation).relname, "");
        if !KEPT_TABLES.contains(&name.as_str()) || rv_in_schema(s.relation).is_none() {
            return pstmt;
        }
        let c_name = std::ffi::CString::new(name.as_str()).unwrap_or_default();
        let relid = pg_sys::get_relname_relid(c_name.as_ptr(), ours);
        if relid == pg_sys::InvalidOid
            || crate::core::pg::holds_no_rows(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
        {
            return pstmt;
        }
        let temp = format!("prodguard_dump_{name}");
        if let Err(e) = pgrx::Spi::run(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {temp} (LIKE {SCHEMA}.{name})"
        )) {
            crate::core::error::raise_internal("set the dump's history aside", e);
        }
        crate::core::error::notice(format!(
            "table \"{SCHEMA}.{name}\" keeps this database's own history: the rows of this COPY go to temporary table \"{temp}\" and are not added to it"
        ));
        let copy =
            pg_sys::copyObjectImpl(pstmt as *const std::ffi::c_void) as *mut pg_sys::PlannedStmt;
        let copied = (*copy).utilityStmt as *mut pg_sys::CopyStmt;
        let c_temp = std::ffi::CString::new(temp).unwrap_or_default();
        (*copied).relation = pg_sys::makeRangeVar(
            pg_sys::pstrdup(c"pg_temp".as_ptr()),
            pg_sys::pstrdup(c_temp.as_ptr()),
            -1,
        );
        copy
    }
}

thread_local! {
    /// Whether this session's CREATE EXTENSION pg_prodguard found kept history to put back.
    static REATTACHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A restore into a database where pg_prodguard has no history yet (a fresh install): the
/// dump's configuration and history are loaded with COPY, table after table, in the
/// session whose first such COPY found the audit log empty.
pub(super) fn restores_fresh_database() -> bool {
    thread_local! {
        static FRESH_RESTORE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if FRESH_RESTORE.get() {
        return true;
    }
    let fresh = extension::own_table(c"audit_log").is_some_and(|log| {
        crate::core::pg::holds_no_rows(log, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
    });
    FRESH_RESTORE.set(fresh);
    fresh
}

/// `event trigger "name"` when an event trigger of this name belongs to pg_prodguard
/// (disabling or renaming one switches a guard off: new tables of protected schemas, or
/// forgetting dropped tables).
///
fn own_event_trigger(name: *const std::ffi::c_char) -> Option<String> {
    let name = opt_cstr(name)?;
    let ours = crate::core::spi::one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_event_trigger t
                          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_event_trigger'::pg_catalog.regclass
                                                     AND d.objid = t.oid AND d.deptype = 'e'
                          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_prodguard'
                         WHERE t.evtname = $1)",
        &[name.as_str().into()],
    );
    matches!(ours, Ok(Some(true))).then(|| format!("event trigger \"{name}\""))
}

/// Whether ALTER SCHEMA prodguard OWNER TO names the owner it has.
///
/// # Safety
/// `newowner` must be NULL or a valid RoleSpec.
unsafe fn owner_unchanged(newowner: *mut pg_sys::RoleSpec) -> bool {
    if newowner.is_null() {
        return false;
    }
    // SAFETY: get_rolespec_oid with missing_ok; a catalog read of the schema's owner.
    let new = unsafe { pg_sys::get_rolespec_oid(newowner, true) };
    let current = crate::core::spi::one::<pg_sys::Oid>(
        "SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $1",
        &[SCHEMA.into()],
    );
    matches!(current, Ok(Some(owner)) if owner == new)
}

/// `"prodguard.name"` when the RangeVar names (or resolves to) a relation of the schema.
///
/// # Safety
/// `rv` must be NULL or a valid RangeVar.
unsafe fn rv_in_schema(rv: *mut pg_sys::RangeVar) -> Option<String> {
    if rv.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller; a lookup without a lock, missing_ok, and only for
    // an unqualified permanent name (a lookup can raise errors of its own, e.g. for a
    // temporary relation with a schema, which must stay PostgreSQL's to raise, in order).
    unsafe {
        let name = cstr_or((*rv).relname, "");
        match opt_cstr((*rv).schemaname).as_deref() {
            Some(SCHEMA) => return Some(format!("\"{SCHEMA}.{name}\"")),
            Some(_) => return None,
            None if (*rv).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP => return None,
            None => {}
        }
        let rel = crate::core::pg::relid_of(rv);
        (rel != pg_sys::InvalidOid
            && cstr_or(
                pg_sys::get_namespace_name(pg_sys::get_rel_namespace(rel)),
                "",
            ) == SCHEMA)
            .then(|| format!("\"{SCHEMA}.{name}\""))
    }
}

/// `"prodguard.name"` when a (possibly qualified) name list is in the schema: qualified
/// with it, or, unqualified, created or found there through the search_path.
///
/// # Safety
/// `names` must be NULL or a List of String nodes.
unsafe fn names_in_schema(names: *mut pg_sys::List) -> Option<String> {
    if names.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    let parts: Vec<String> = unsafe {
        PgList::<pg_sys::Node>::from_pg(names)
            .iter_ptr()
            .map(|n| string_node(n))
            .collect()
    };
    let last = parts.last()?.clone();
    let in_schema = match parts.len() {
        1 => {
            // where an unqualified CREATE would put it
            // SAFETY: the first schema of the search_path that exists, or InvalidOid.
            let nsp = unsafe { pg_sys::get_namespace_oid(c"prodguard".as_ptr(), true) };
            // SAFETY: a catalog lookup; errors only for a missing schema (none here).
            let creation = unsafe {
                let mut objname: *mut std::ffi::c_char = std::ptr::null_mut();
                pg_sys::QualifiedNameGetCreationNamespace(names, &mut objname)
            };
            nsp != pg_sys::InvalidOid && creation == nsp
        }
        _ => parts[parts.len() - 2] == SCHEMA,
    };
    in_schema.then(|| format!("\"{SCHEMA}.{last}\""))
}

/// An object named by a parse-tree node (ObjectWithArgs for functions, a name List for
/// most others) when it is in the schema.
///
/// # Safety
/// `object` must be NULL or the object node of a statement about `kind`.
unsafe fn object_in_schema(
    kind: pg_sys::ObjectType::Type,
    object: *mut pg_sys::Node,
) -> Option<String> {
    use pg_sys::ObjectType::*;
    if object.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        match kind {
            OBJECT_FUNCTION | OBJECT_PROCEDURE | OBJECT_ROUTINE | OBJECT_AGGREGATE => {
                let owa = object as *mut pg_sys::ObjectWithArgs;
                names_in_schema((*owa).objname)
            }
            _ if (*object).type_ == pg_sys::NodeTag::T_List => {
                names_in_schema(object as *mut pg_sys::List)
            }
            _ => None,
        }
    }
}

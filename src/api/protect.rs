//! Protecting tables (SPEC §6): `prodguard.protect()` and `prodguard.unprotect()`. They
//! write `prodguard.table_protection` (which `core::protection` reads for every guard) and
//! install or remove the audit and test-data triggers of the table, as its owner. The
//! `protected_tables` view is in `sql/protection.sql`.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::breakglass;
use crate::core::error::{notice, raise, raise_internal, require_writable};
use crate::core::extension;
use crate::core::finding::{Finding, Guard};
use crate::core::passes::run_own_ddl;
use crate::core::pg::{self, current_user};
use crate::core::protection::{
    is_migration_history, stored_flags, Flags, AUDIT_TRIGGER, MIGRATION_HISTORY_TABLES,
    TEST_DATA_TRIGGER, TRUNCATE_TRIGGER,
};
use crate::core::table_arg::{kind_name, Accepts, TableArg};
use crate::guards::policy;

/// Protects a table: audit its changes, refuse test data in its rows, and/or refuse
/// DELETE, TRUNCATE and DROP of it in production. Idempotent; a second call changes the
/// options. Lowering an option counts as unprotecting, and in production needs an override.
#[pg_extern(volatile)]
fn protect(
    tbl: TableArg,
    audit: default!(bool, true),
    test_data: default!(bool, true),
    forbid_delete: default!(bool, false),
) {
    let relid = tbl.check("prodguard.protect()", Accepts::Any);
    let name = pg::describe_table(relid);
    require_protectable(relid);
    require_owner_or_operator(relid, &name, "protect");
    require_readable(relid, &name, "protect");
    let wanted = Flags {
        audit,
        test_data,
        forbid_delete,
        migration_history: false,
    };
    apply(relid, wanted, Via::Table);
}

/// How a table came to be protected (`protected_tables.via`).
#[derive(Clone, Copy, PartialEq)]
pub enum Via {
    /// By protect().
    Table,
    /// By protect_schema() of its schema (`api::protect_schema`).
    Schema,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Table => "table",
            Via::Schema => "schema",
        }
    }
}

/// Gives a table the options `wanted` (installing or removing its triggers), recorded as
/// coming `via` protect() or its schema. Lowering an option needs an override in
/// production. The caller has checked that the table can be protected and by whom.
pub fn apply(relid: pg_sys::Oid, wanted: Flags, via: Via) {
    let name = pg::describe_table(relid);
    let current = stored_flags(relid);
    if let Some(current) = current {
        let lowered: Vec<&str> = [
            ("audit", current.audit && !wanted.audit),
            ("test_data", current.test_data && !wanted.test_data),
            (
                "forbid_delete",
                current.forbid_delete && !wanted.forbid_delete,
            ),
        ]
        .into_iter()
        .filter_map(|(option, off)| off.then_some(option))
        .collect();
        if !lowered.is_empty() {
            guard_lowering(
                "prodguard.protect()",
                relid,
                &name,
                &format!("It would switch off {} for the table.", lowered.join(", ")),
            );
        }
    }
    if current == Some(wanted)
        && (via == Via::Schema || stored_via(relid).as_deref() == Some("table"))
    {
        return;
    }
    if current.is_some_and(|c| c.test_data) != wanted.test_data {
        set_test_data_trigger(relid, wanted.test_data);
    }
    if current.is_some_and(|c| c.audit) != wanted.audit {
        set_audit_trigger(relid, wanted.audit);
    }
    if current.is_none() {
        set_truncate_trigger(relid, true);
    }
    let mut args = vec![
        relid.into(),
        wanted.audit.into(),
        wanted.test_data.into(),
        wanted.forbid_delete.into(),
        current_user().into(),
    ];
    // (a library newer than the extension's objects, before ALTER EXTENSION ... UPDATE,
    // writes the 0.1.0 table, which has no `via`)
    if has_via() {
        args.push(via.name().into());
        write_config(
            "INSERT INTO prodguard.table_protection AS p
                    (table_name, audit, test_data, forbid_delete, protected_by, via)
             VALUES ($1::regclass, $2, $3, $4, $5, $6)
             ON CONFLICT (table_name) DO UPDATE
                SET audit = excluded.audit, test_data = excluded.test_data,
                    forbid_delete = excluded.forbid_delete, protected_at = now(),
                    protected_by = excluded.protected_by, via = excluded.via",
            args,
        );
    } else {
        write_config(
            "INSERT INTO prodguard.table_protection AS p
                    (table_name, audit, test_data, forbid_delete, protected_by)
             VALUES ($1::regclass, $2, $3, $4, $5)
             ON CONFLICT (table_name) DO UPDATE
                SET audit = excluded.audit, test_data = excluded.test_data,
                    forbid_delete = excluded.forbid_delete, protected_at = now(),
                    protected_by = excluded.protected_by",
            args,
        );
    }
}

/// Removes a table's protection. In production this needs an override. Migration-history
/// tables stay protected against DELETE, TRUNCATE and DROP: that protection is by name.
#[pg_extern(volatile)]
fn unprotect(tbl: TableArg) {
    let relid = tbl.check("prodguard.unprotect()", Accepts::Any);
    let name = pg::describe_table(relid);
    require_owner_or_operator(relid, &name, "unprotect");
    if stored_flags(relid).is_some() {
        guard_lowering(
            "prodguard.unprotect()",
            relid,
            &name,
            "It would switch off every protection of the table.",
        );
        remove(relid);
    } else if !is_migration_history(relid) {
        notice(format!("{name} is not protected"));
    }
    if is_migration_history(relid) {
        notice(format!(
            "{name} stays protected against DELETE, TRUNCATE and DROP as a migration-history table"
        ));
    }
}

/// Whether prodguard.table_protection has the `via` column (0.2.0's objects).
fn has_via() -> bool {
    let Some(config) = extension::own_table(c"table_protection") else {
        return false;
    };
    // SAFETY: a syscache lookup of a column by name; InvalidAttrNumber when absent.
    unsafe { pg_sys::get_attnum(config, c"via".as_ptr()) != pg_sys::InvalidAttrNumber as i16 }
}

/// How the table's protection row says it was protected (`table` or `schema`).
pub fn stored_via(relid: pg_sys::Oid) -> Option<String> {
    let config = extension::own_table(c"table_protection")?;
    extension::as_owner_of(config, || {
        crate::core::spi::one::<String>(
            "SELECT via FROM prodguard.table_protection WHERE table_name = $1::regclass",
            &[relid.into()],
        )
        .ok()
        .flatten()
    })
    .flatten()
}

/// Removes a table's protection row and triggers (the caller judged the lowering).
pub fn remove(relid: pg_sys::Oid) {
    let current = stored_flags(relid);
    write_config(
        "DELETE FROM prodguard.table_protection WHERE table_name = $1::regclass",
        vec![relid.into()],
    );
    // (only the triggers it has: DROP TRIGGER IF EXISTS would say so for each other one)
    if current.is_none_or(|c| c.test_data) {
        set_test_data_trigger(relid, false);
    }
    if current.is_none_or(|c| c.audit) {
        set_audit_trigger(relid, false);
    }
    set_truncate_trigger(relid, false);
}

/// Names of the tables protected automatically; used by the protected_tables view.
#[pg_extern(immutable, parallel_safe)]
fn migration_history_names() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(MIGRATION_HISTORY_TABLES)
}

/// Refuses tables that cannot carry protection: only ordinary and partitioned tables that
/// outlive the session can.
fn require_protectable(relid: pg_sys::Oid) {
    // SAFETY: syscache lookups of a locked relation.
    let (kind, persistence) = unsafe {
        (
            pg_sys::get_rel_relkind(relid) as u8,
            pg_sys::get_rel_persistence(relid) as u8,
        )
    };
    if !matches!(
        kind,
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
    ) {
        let what = kind_name(kind);
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "cannot protect \"{}\": it is {what}",
                pg::relation_names(relid).1.unwrap_or_default()
            ),
            "Only tables and partitioned tables can be protected.",
            "Protect the tables the object reads from or writes to.",
        );
    }
    // SAFETY: a syscache lookup of a locked relation.
    let schema = unsafe { pg_sys::get_rel_namespace(relid) };
    // SAFETY: a syscache lookup; InvalidOid when there is no such schema.
    let kept = unsafe { pg_sys::get_namespace_oid(c"prodguard_history".as_ptr(), true) };
    if extension::own_namespace() == Some(schema) || kept == schema {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "cannot protect \"{}\": it belongs to pg_prodguard",
                pg::relation_names(relid).1.unwrap_or_default()
            ),
            "pg_prodguard's own tables are guarded by the extension itself; a trigger of protect() on them could refuse or slow its own records.",
            "Protect the tables of your application.",
        );
    }
    if persistence == pg_sys::RELPERSISTENCE_TEMP {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "cannot protect temporary table \"{}\"",
                pg::relation_names(relid).1.unwrap_or_default()
            ),
            "A temporary table belongs to one session and disappears with it.",
            "Protect the permanent table the data comes from.",
        );
    }
}

/// Refuses to protect a table the caller may not read in full: its protection writes every
/// change of its rows, whole, into the audit log, so raising it must not be a way to read
/// what the caller cannot SELECT (issue 19).
pub fn require_readable(relid: pg_sys::Oid, name: &str, function: &str) {
    // SAFETY: privilege checks of a locked relation inside a transaction.
    let readable = unsafe {
        let user = pg_sys::GetUserId();
        pg_sys::pg_class_aclcheck(relid, user, pg_sys::ACL_SELECT as pg_sys::AclMode)
            == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::pg_attribute_aclcheck_all(
                relid,
                user,
                pg_sys::ACL_SELECT as pg_sys::AclMode,
                pg_sys::AclMaskHow::ACLMASK_ALL,
            ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if !readable {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {function} {name}"),
            format!("Protecting a table records its rows, whole, in the audit log; role \"{}\" may not SELECT every column of it.", current_user()),
            "Have the table's owner protect it, or grant SELECT on it first.",
        );
    }
}

fn require_owner_or_operator(relid: pg_sys::Oid, name: &str, function: &str) {
    // SAFETY: a catalog lookup inside a transaction.
    let owns = unsafe { pg_sys::pg_class_ownercheck(relid, pg_sys::GetUserId()) };
    require_owner_or_operator_of(owns, "table", name, function);
}

/// Refuses a caller who neither owns the object (`owns`) nor is an operator.
pub fn require_owner_or_operator_of(owns: bool, kind: &str, name: &str, function: &str) {
    // SAFETY: reads the current user id.
    let user = unsafe { pg_sys::GetUserId() };
    if !owns && !breakglass::is_operator(user) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {function} {name}"),
            format!(
                "Only the owner of the {kind} and members of {} may {function} it.",
                breakglass::OPERATOR_ROLE
            ),
            &format!("Ask the {kind}'s owner or a member of prodguard_operator."),
        );
    }
}

/// Lowering a table's protection is guarded like a destructive command.
fn guard_lowering(command: &str, relid: pg_sys::Oid, name: &str, why: &str) {
    policy::enforce_here(&Finding::here(Guard::Row, command, name, why, Some(relid)));
}

/// Writes prodguard.table_protection as its owner and tells every backend at commit.
fn write_config(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) {
    if let Some(config) = write_own_table(c"table_protection", sql, args) {
        // SAFETY: queues a relcache invalidation of our own table, sent at commit.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(config) };
    }
}

/// Writes one of the extension's configuration tables as its owner, past the row guard;
/// returns the table's oid (`None` where the extension is not installed).
pub fn write_own_table(
    table: &std::ffi::CStr,
    sql: &str,
    args: Vec<pgrx::datum::DatumWithOid<'_>>,
) -> Option<pg_sys::Oid> {
    let what = format!("prodguard.{}", table.to_string_lossy());
    require_writable(&format!("a change of {what}"));
    let config = extension::own_table(table)?;
    let written = extension::as_owner_of(config, || {
        crate::core::passes::own_write(|| Spi::run_with_args(sql, &args))
    });
    if let Some(Err(e)) = written {
        raise_internal(&format!("write {what}"), e);
    }
    Some(config)
}

/// Installs or removes the row-audit trigger of a table, as its owner. It is created
/// ENABLE ALWAYS, so that session_replication_role = replica does not skip it.
fn set_audit_trigger(relid: pg_sys::Oid, on: bool) {
    let table = pg::qualified_identifier(relid);
    let sql = if on {
        format!(
            "CREATE OR REPLACE TRIGGER {AUDIT_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION prodguard.audit_trigger();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {AUDIT_TRIGGER}"
        )
    } else {
        format!("DROP TRIGGER IF EXISTS {AUDIT_TRIGGER} ON {table}")
    };
    let verb = if on { "create" } else { "drop" };
    run_own_ddl(relid, &sql, &format!("{verb} the audit trigger"));
}

/// Installs or removes the test-data trigger of a table, as its owner: an AFTER row
/// trigger, which judges the row as stored (see `core::protection::TEST_DATA_TRIGGER`). It
/// is created ENABLE ALWAYS, so that session_replication_role = replica does not skip it
/// (logical replication's apply worker records its matches instead of refusing them).
fn set_test_data_trigger(relid: pg_sys::Oid, on: bool) {
    let table = pg::qualified_identifier(relid);
    let sql = if on {
        format!(
            "CREATE OR REPLACE TRIGGER {TEST_DATA_TRIGGER} AFTER INSERT OR UPDATE ON {table}
                 FOR EACH ROW EXECUTE FUNCTION prodguard.test_data_trigger();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {TEST_DATA_TRIGGER}"
        )
    } else {
        format!("DROP TRIGGER IF EXISTS {TEST_DATA_TRIGGER} ON {table}")
    };
    let verb = if on { "create" } else { "drop" };
    run_own_ddl(relid, &sql, &format!("{verb} the test-data trigger"));
}

/// Installs or removes the replicated-TRUNCATE trigger of a protected table, as its owner,
/// ENABLE ALWAYS (the apply worker runs with session_replication_role = replica).
fn set_truncate_trigger(relid: pg_sys::Oid, on: bool) {
    // A library newer than the extension's objects (before ALTER EXTENSION ... UPDATE) has
    // no trigger function to install: the update script installs the triggers.
    let installed = crate::core::spi::one::<bool>(
        "SELECT pg_catalog.to_regprocedure('prodguard.truncate_trigger()') IS NOT NULL",
        &[],
    );
    if on && !matches!(installed, Ok(Some(true))) {
        return;
    }
    let table = pg::qualified_identifier(relid);
    let sql = if on {
        format!(
            "CREATE OR REPLACE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {table}
                 FOR EACH STATEMENT EXECUTE FUNCTION prodguard.truncate_trigger();
             ALTER TABLE {table} ENABLE ALWAYS TRIGGER {TRUNCATE_TRIGGER}"
        )
    } else {
        format!("DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {table}")
    };
    let verb = if on { "create" } else { "drop" };
    run_own_ddl(relid, &sql, &format!("{verb} the truncate trigger"));
}

/// The body of the event trigger `prodguard_forget_dropped_tables` (sql_drop): removes the
/// protection rows of the tables a statement dropped, so that a new table that happens to
/// get the same oid is not protected by mistake. Outside a sql_drop event trigger
/// PostgreSQL refuses pg_event_trigger_dropped_objects().
#[pg_extern(name = "_forget_dropped_tables", volatile)]
fn forget_dropped_tables() {
    let Some(config) = extension::own_table(c"table_protection") else {
        return;
    };
    let done = extension::as_owner_of(config, || {
        crate::core::passes::own_write(|| {
            Spi::run(
                "DELETE FROM prodguard.table_protection
                  WHERE table_name::oid IN (SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
                                             WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                               AND objsubid = 0)",
            )
        })
    });
    if let Some(Err(e)) = done {
        raise_internal("forget the protection of dropped tables", e);
    }
    // and of dropped schemas (protect_schema())
    if let Some(schemas) = extension::own_table(c"schema_protection") {
        let done = extension::as_owner_of(schemas, || {
            crate::core::passes::own_write(|| {
                Spi::run(
                    "DELETE FROM prodguard.schema_protection
                      WHERE schema_name::oid IN (SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
                                                  WHERE classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass)",
                )
            })
        });
        if let Some(Err(e)) = done {
            raise_internal("forget the protection of dropped schemas", e);
        }
    }
    // SAFETY: queues a relcache invalidation of our own table, sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(config) };
}

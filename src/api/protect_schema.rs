//! Coverage by schema (SPEC §10, issue 16): `prodguard.protect_schema()` protects every
//! ordinary and partitioned table of a schema now, and every one created there (or moved
//! there) later, in the transaction that creates it: the event trigger
//! `prodguard_protect_new_tables` (ddl_command_end) calls `_protect_new_tables()`.
//! `unprotect_schema()` takes the schema's protection back from the tables that have it
//! through the schema, and needs an override in production like `unprotect()`.
//!
//! The schemas are rows of `prodguard.schema_protection`; each table keeps its own row in
//! `prodguard.table_protection` with `via = 'schema'`, so every guard reads one place. A
//! table given its own options with `protect()` keeps them (`via = 'table'`).

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::api::protect::{
    apply, remove, require_owner_or_operator_of, require_readable, stored_via, write_own_table, Via,
};
use crate::core::error::{raise, raise_internal};
use crate::core::extension::{self, KEPT_SCHEMA, SCHEMA};
use crate::core::finding::{Finding, Guard};
use crate::core::passes;
use crate::core::pg::current_user;
use crate::core::protection::Flags;
use crate::guards::policy;

/// Protects a schema's tables, now and later; returns how many tables it protected or
/// changed now. (SQL: prodguard.protect_schema(schema name, ...).)
#[pg_extern(name = "_protect_schema", volatile)]
fn protect_schema(schema: &str, audit: bool, test_data: bool, forbid_delete: bool) -> i32 {
    let nsp = protectable_schema(schema);
    require_owner_or_operator(nsp, schema, "protect_schema");
    let wanted = Flags {
        audit,
        test_data,
        forbid_delete,
        migration_history: false,
    };
    if let Some(current) = stored_schema_flags(nsp) {
        let lowered = (current.audit && !audit)
            || (current.test_data && !test_data)
            || (current.forbid_delete && !forbid_delete);
        if lowered {
            guard_schema_lowering(
                "prodguard.protect_schema()",
                schema,
                "It would switch off options of the schema's protection for its tables.",
            );
        }
    }
    write_schema_row(
        "INSERT INTO prodguard.schema_protection AS s
                (schema_name, audit, test_data, forbid_delete, protected_by)
         VALUES ($1::regnamespace, $2, $3, $4, $5)
         ON CONFLICT (schema_name) DO UPDATE
            SET audit = excluded.audit, test_data = excluded.test_data,
                forbid_delete = excluded.forbid_delete, protected_at = now(),
                protected_by = excluded.protected_by",
        vec![
            nsp.into(),
            audit.into(),
            test_data.into(),
            forbid_delete.into(),
            current_user().into(),
        ],
    );
    let tables = tables_of(nsp);
    for &relid in &tables {
        require_readable(
            relid,
            &crate::core::pg::describe_table(relid),
            "protect_schema",
        );
    }
    let mut count = 0;
    for relid in tables {
        if stored_via(relid).as_deref() == Some("table") {
            continue; // protect() gave it options of its own
        }
        apply(relid, wanted, Via::Schema);
        count += 1;
    }
    count
}

/// Takes a schema's protection back from its tables (those protected through it) and from
/// the tables created there later. In production this needs an override.
#[pg_extern(name = "_unprotect_schema", volatile)]
fn unprotect_schema(schema: &str) {
    let nsp = existing_schema(schema);
    require_owner_or_operator(nsp, schema, "unprotect_schema");
    if stored_schema_flags(nsp).is_none() {
        crate::core::error::notice(format!("schema \"{schema}\" is not protected"));
        return;
    }
    guard_schema_lowering(
        "prodguard.unprotect_schema()",
        schema,
        "It would switch off every protection the schema gives its tables, now and later.",
    );
    write_schema_row(
        "DELETE FROM prodguard.schema_protection WHERE schema_name = $1::regnamespace",
        vec![nsp.into()],
    );
    for relid in tables_of(nsp) {
        if stored_via(relid).as_deref() == Some("schema") {
            remove(relid);
        }
    }
}

/// The body of the event trigger `prodguard_protect_new_tables` (ddl_command_end of CREATE
/// TABLE, CREATE TABLE AS, SELECT INTO and ALTER TABLE): the tables the command created in,
/// or moved to, a protected schema get its protection, in the same transaction.
#[pg_extern(name = "_protect_new_tables", volatile)]
fn protect_new_tables() {
    // (pg_prodguard's own ALTER TABLE, installing the triggers, ends here too)
    if passes::OWN_DDL.get() {
        return;
    }
    let Some(config) = extension::own_table(c"schema_protection") else {
        return;
    };
    let found: Result<Vec<(pg_sys::Oid, bool, bool, bool)>, pgrx::spi::Error> =
        extension::as_owner_of(config, || {
            Spi::connect(|client| {
                let rows = client.select(
                    "SELECT DISTINCT c.oid, s.audit, s.test_data, s.forbid_delete
                       FROM pg_catalog.pg_event_trigger_ddl_commands() d
                       JOIN pg_catalog.pg_class c ON c.oid = d.objid
                       JOIN prodguard.schema_protection s ON s.schema_name::oid = c.relnamespace
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objsubid = 0 AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
                        AND NOT EXISTS (SELECT FROM prodguard.table_protection p
                                         WHERE p.table_name::oid = c.oid)
                        AND NOT (c.relispartition AND EXISTS (
                              SELECT FROM pg_catalog.pg_inherits i
                               WHERE i.inhrelid = c.oid
                                 AND i.inhparent IN (SELECT table_name::oid FROM prodguard.table_protection)))",
                    None,
                    &[],
                )?;
                let mut found = Vec::new();
                for row in rows {
                    if let (Some(oid), Some(a), Some(t), Some(f)) = (
                        row.get::<pg_sys::Oid>(1)?,
                        row.get::<bool>(2)?,
                        row.get::<bool>(3)?,
                        row.get::<bool>(4)?,
                    ) {
                        found.push((oid, a, t, f));
                    }
                }
                Ok(found)
            })
        })
        .unwrap_or_else(|| Ok(Vec::new()));
    let found =
        found.unwrap_or_else(|e| raise_internal("protect the new tables of a protected schema", e));
    for (relid, audit, test_data, forbid_delete) in found {
        let flags = Flags {
            audit,
            test_data,
            forbid_delete,
            migration_history: false,
        };
        apply(relid, flags, Via::Schema);
    }
}

/// The oid of a schema that may be protected: it exists, and is not the system's, a
/// temporary one, or pg_prodguard's own.
fn protectable_schema(schema: &str) -> pg_sys::Oid {
    let nsp = existing_schema(schema);
    let system = matches!(schema, "pg_catalog" | "information_schema" | "pg_toast")
        || schema.starts_with("pg_temp")
        || schema.starts_with("pg_toast_temp")
        || schema == SCHEMA
        || schema == KEPT_SCHEMA;
    if system {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot protect schema \"{schema}\""),
            "System schemas, temporary schemas and pg_prodguard's own schemas cannot be protected.",
            "Protect the schemas of the application's tables.",
        );
    }
    nsp
}

fn existing_schema(schema: &str) -> pg_sys::Oid {
    let c = std::ffi::CString::new(schema).unwrap_or_default();
    // SAFETY: a syscache lookup by name, missing_ok.
    let nsp = unsafe { pg_sys::get_namespace_oid(c.as_ptr(), true) };
    if nsp == pg_sys::InvalidOid {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
            format!("schema \"{schema}\" does not exist"),
            "",
            "",
        );
    }
    nsp
}

fn require_owner_or_operator(nsp: pg_sys::Oid, schema: &str, function: &str) {
    // SAFETY: a catalog lookup inside a transaction.
    let owns = unsafe { pg_sys::pg_namespace_ownercheck(nsp, pg_sys::GetUserId()) };
    require_owner_or_operator_of(owns, "schema", &format!("schema \"{schema}\""), function);
}

/// Lowering a schema's protection is guarded like a destructive command.
fn guard_schema_lowering(command: &str, schema: &str, why: &str) {
    policy::enforce_here(&Finding::here(
        Guard::Row,
        command,
        format!("schema \"{schema}\""),
        why,
        None,
    ));
}

fn stored_schema_flags(nsp: pg_sys::Oid) -> Option<Flags> {
    let config = extension::own_table(c"schema_protection")?;
    extension::as_owner_of(config, || {
        crate::core::spi::three::<bool, bool, bool>(
            "SELECT audit, test_data, forbid_delete FROM prodguard.schema_protection
              WHERE schema_name = $1::regnamespace",
            &[nsp.into()],
        )
        .ok()
        .and_then(|(a, t, f)| {
            Some(Flags {
                audit: a?,
                test_data: t?,
                forbid_delete: f?,
                migration_history: false,
            })
        })
    })
    .flatten()
}

/// The schema's permanent ordinary and partitioned tables, in oid order.
fn tables_of(nsp: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let Some(config) = extension::own_table(c"table_protection") else {
        return Vec::new();
    };
    extension::as_owner_of(config, || {
        Spi::connect(|client| {
            client
                .select(
                    // (a partition whose parent is in the schema, or protected, is covered
                    // by its parent's protection and triggers)
                    "SELECT c.oid FROM pg_catalog.pg_class c
                      WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
                        AND NOT (c.relispartition AND EXISTS (
                              SELECT FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
                               WHERE i.inhrelid = c.oid
                                 AND (p.relnamespace = $1 OR p.oid IN (SELECT table_name::oid FROM prodguard.table_protection))))
                      ORDER BY c.oid",
                    None,
                    &[nsp.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    })
    .unwrap_or_default()
}

/// Writes prodguard.schema_protection as its owner.
fn write_schema_row(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) {
    write_own_table(c"schema_protection", sql, args);
}

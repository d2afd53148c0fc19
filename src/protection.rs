//! Protected tables (SPEC §6): `prodguard.protect()`, `prodguard.unprotect()`, the
//! `prodguard.protected_tables` view, and the per-backend cache the guards read.
//!
//! A table's options live in `prodguard.table_protection`, one row per table. Well-known
//! migration-history tables need no row: they are recognised by name, in any schema, as
//! soon as they exist, and always have `forbid_delete`. A partition has the options of its
//! own row and of every ancestor's, so protecting a partitioned table covers its
//! partitions, present and future.
//!
//! The guards ask `flags(relid)` for every DELETE and every TRUNCATE/DROP TABLE, so the
//! answer is cached per backend: the rows of `table_protection` are read once, and each
//! relation's resolved flags once. A relcache invalidation of `table_protection` (which
//! `protect()`/`unprotect()` send, and PostgreSQL delivers to every backend at commit)
//! empties the cache; an invalidation of any other relation (rename, ATTACH/DETACH
//! PARTITION, drop) forgets that relation only. The callback never touches the catalogs:
//! it only forgets, and an `EPOCH` counter tells a load that raced with it to not store
//! what it read.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::policy::{raise, raise_internal};
use pgrx::PgRelation;

use crate::breakglass::{self, Scope};
use crate::extension::{self, OidMap};
use crate::policy::{self, Finding, Guard};
use crate::settings;

/// Tables that record which migrations ran. Incident B's database lost its history table;
/// these are protected against DELETE, TRUNCATE and DROP in any schema.
pub const MIGRATION_HISTORY_TABLES: [&str; 6] = [
    "schema_migrations", // Supabase (supabase_migrations.schema_migrations), Rails, golang-migrate
    "_prisma_migrations",
    "flyway_schema_history",
    "__diesel_schema_migrations",
    "_sqlx_migrations",
    "knex_migrations",
];

/// The protection options of one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub audit: bool,
    pub test_data: bool,
    pub forbid_delete: bool,
    /// Protected automatically as a migration-history table (implies `forbid_delete`).
    pub migration_history: bool,
}

impl Flags {
    /// Whether the table is protected at all.
    pub fn any(self) -> bool {
        self.audit || self.test_data || self.forbid_delete
    }

    fn union(self, other: Flags) -> Flags {
        Flags {
            audit: self.audit || other.audit,
            test_data: self.test_data || other.test_data,
            forbid_delete: self.forbid_delete || other.forbid_delete,
            migration_history: self.migration_history || other.migration_history,
        }
    }
}

#[derive(Default)]
struct Cache {
    /// The rows of prodguard.table_protection (empty when the extension is not here).
    rules: Option<Rc<OidMap<Flags>>>,
    /// prodguard.table_protection itself, when it exists.
    config: Option<pg_sys::Oid>,
    /// Flags resolved per relation (own row, ancestors' rows, migration name).
    resolved: OidMap<Flags>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    static EPOCH: Cell<u64> = const { Cell::new(0) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The effective protection of a relation.
pub fn flags(relid: pg_sys::Oid) -> Flags {
    if let Some(found) = CACHE.with(|c| c.borrow().resolved.get(&relid).copied()) {
        return found;
    }
    let epoch = EPOCH.get();
    let rules = rules();
    let mut result = own_flags(&rules, relid);
    // SAFETY: syscache lookup; false for a relation that is gone.
    if unsafe { pg_sys::get_rel_relispartition(relid) } {
        for ancestor in partition_ancestors(relid) {
            result = result.union(own_flags(&rules, ancestor));
        }
    }
    if EPOCH.get() == epoch {
        CACHE.with(|c| c.borrow_mut().resolved.insert(relid, result));
    }
    result
}

fn own_flags(rules: &OidMap<Flags>, relid: pg_sys::Oid) -> Flags {
    let mut flags = rules.get(&relid).copied().unwrap_or_default();
    if is_migration_history(relid) {
        flags.forbid_delete = true;
        flags.migration_history = true;
    }
    flags
}

fn is_migration_history(relid: pg_sys::Oid) -> bool {
    let (_, name) = extension::relation_names(relid);
    // SAFETY: syscache lookup; 0 for a relation that is gone.
    let kind = unsafe { pg_sys::get_rel_relkind(relid) } as u8;
    matches!(
        kind,
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
    ) && !extension::is_temp(relid)
        && name.is_some_and(|n| MIGRATION_HISTORY_TABLES.contains(&n.as_str()))
}

/// The rows of prodguard.table_protection, read once per backend and invalidation.
fn rules() -> Rc<OidMap<Flags>> {
    register_callback();
    if let Some(rules) = CACHE.with(|c| c.borrow().rules.clone()) {
        return rules;
    }
    let epoch = EPOCH.get();
    let config = extension::own_table(c"table_protection");
    let mut rules = OidMap::default();
    if let Some(table) = config {
        let rows = extension::as_owner_of(table, || {
            Spi::connect(|client| {
                client
                    .select(
                        "SELECT table_name::oid, audit, test_data, forbid_delete
                           FROM prodguard.table_protection",
                        None,
                        &[],
                    )
                    .map(|rows| {
                        rows.map(|row| {
                            let flag = |i| row.get::<bool>(i).ok().flatten().unwrap_or(false);
                            (
                                row.get::<pg_sys::Oid>(1).ok().flatten(),
                                Flags {
                                    audit: flag(2),
                                    test_data: flag(3),
                                    forbid_delete: flag(4),
                                    migration_history: false,
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                    })
            })
        });
        for (oid, flags) in rows.and_then(Result::ok).unwrap_or_default() {
            if let Some(oid) = oid {
                rules.insert(oid, flags);
            }
        }
    }
    let rules = Rc::new(rules);
    if EPOCH.get() == epoch {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.rules = Some(rules.clone());
            c.config = config;
        });
    }
    rules
}

fn partition_ancestors(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT relid FROM pg_catalog.pg_partition_ancestors($1) WHERE relid <> $1",
                    None,
                    &[relid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|row| row.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    })
}

fn register_callback() {
    extension::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
}

/// Relcache invalidation callback: forget, never look anything up.
#[pg_guard]
unsafe extern "C-unwind" fn forget(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => {
            if relid == pg_sys::InvalidOid || c.config.is_none_or(|cfg| cfg == relid) {
                *c = Cache::default();
                EPOCH.set(EPOCH.get() + 1);
            } else {
                c.resolved.remove(&relid);
            }
        }
        // A load is under way: make it drop what it read.
        Err(_) => EPOCH.set(EPOCH.get() + 1),
    });
}

/// Protects a table: audit its changes, refuse test data in its rows, and/or refuse
/// DELETE, TRUNCATE and DROP of it in production. Idempotent; a second call changes the
/// options. Lowering an option counts as unprotecting, and in production needs an override.
#[pg_extern(volatile)]
fn protect(
    tbl: PgRelation,
    audit: default!(bool, true),
    test_data: default!(bool, true),
    forbid_delete: default!(bool, false),
) {
    let relid = tbl.oid();
    let name = extension::describe_table(relid);
    require_protectable(&tbl);
    // Close it (the lock stays): installing the triggers runs ALTER TABLE on it.
    drop(tbl);
    require_owner_or_operator(relid, &name, "protect");
    let wanted = Flags {
        audit,
        test_data,
        forbid_delete,
        migration_history: false,
    };
    let current = stored_flags(relid);
    if let Some(current) = current {
        let lowered: Vec<&str> = [
            ("audit", current.audit && !audit),
            ("test_data", current.test_data && !test_data),
            ("forbid_delete", current.forbid_delete && !forbid_delete),
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
    if current == Some(wanted) {
        return;
    }
    if current.is_some_and(|c| c.test_data) != test_data {
        crate::test_data::set_trigger(relid, test_data);
    }
    if current.is_some_and(|c| c.audit) != audit {
        crate::audit::set_trigger(relid, audit);
    }
    write_config(
        "INSERT INTO prodguard.table_protection AS p
                (table_name, audit, test_data, forbid_delete, protected_by)
         VALUES ($1::regclass, $2, $3, $4, $5)
         ON CONFLICT (table_name) DO UPDATE
            SET audit = excluded.audit, test_data = excluded.test_data,
                forbid_delete = excluded.forbid_delete, protected_at = now(),
                protected_by = excluded.protected_by",
        vec![
            relid.into(),
            audit.into(),
            test_data.into(),
            forbid_delete.into(),
            current_user().into(),
        ],
    );
}

/// Removes a table's protection. In production this needs an override. Migration-history
/// tables stay protected against DELETE, TRUNCATE and DROP: that protection is by name.
#[pg_extern(volatile)]
fn unprotect(tbl: PgRelation) {
    let relid = tbl.oid();
    drop(tbl);
    let name = extension::describe_table(relid);
    require_owner_or_operator(relid, &name, "unprotect");
    if stored_flags(relid).is_some() {
        guard_lowering(
            "prodguard.unprotect()",
            relid,
            &name,
            "It would switch off every protection of the table.",
        );
        write_config(
            "DELETE FROM prodguard.table_protection WHERE table_name = $1::regclass",
            vec![relid.into()],
        );
        crate::test_data::set_trigger(relid, false);
        crate::audit::set_trigger(relid, false);
    } else if !is_migration_history(relid) {
        notice(format!("{name} is not protected"));
    }
    if is_migration_history(relid) {
        notice(format!(
            "{name} stays protected against DELETE, TRUNCATE and DROP as a migration-history table"
        ));
    }
}

/// Names of the tables protected automatically; used by the protected_tables view.
#[pg_extern(immutable, parallel_safe)]
fn migration_history_names() -> SetOfIterator<'static, &'static str> {
    SetOfIterator::new(MIGRATION_HISTORY_TABLES)
}

extension_sql!(
    r#"
CREATE VIEW prodguard.protected_tables AS
WITH migration_history AS (
    SELECT c.oid
      FROM pg_catalog.pg_class c
     WHERE c.relname IN (SELECT prodguard.migration_history_names())
       AND c.relkind IN ('r', 'p')
       AND c.relpersistence <> 't'
)
SELECT coalesce(p.table_name, m.oid::regclass) AS table_name,
       coalesce(p.audit, false) AS audit,
       coalesce(p.test_data, false) AS test_data,
       coalesce(p.forbid_delete, false) OR m.oid IS NOT NULL AS forbid_delete,
       m.oid IS NOT NULL AS migration_history
  FROM prodguard.table_protection p
  FULL JOIN migration_history m ON m.oid = p.table_name::oid
 WHERE p.table_name IS NULL
    OR EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = p.table_name::oid);
GRANT SELECT ON prodguard.protected_tables TO PUBLIC;
COMMENT ON VIEW prodguard.protected_tables IS
    'pg_prodguard: every protected table and its options; migration-history tables are protected automatically (forbid_delete).';
COMMENT ON COLUMN prodguard.protected_tables.migration_history IS
    'Protected automatically, by name, as a migration-history table.';
COMMENT ON FUNCTION prodguard.protect(regclass, boolean, boolean, boolean) IS
    'Protect a table: audit its changes, refuse test data, and/or (forbid_delete) refuse DELETE, TRUNCATE and DROP in production. Idempotent; lowering an option needs an override in production.';
COMMENT ON FUNCTION prodguard.unprotect(regclass) IS
    'Remove a table''s protection; in production this needs an override.';
COMMENT ON FUNCTION prodguard.migration_history_names() IS
    'Names of the migration-history tables pg_prodguard protects automatically, in any schema.';
"#,
    name = "protected_tables",
    requires = [migration_history_names, protect, unprotect]
);

/// Refuses tables that cannot carry protection: only ordinary and partitioned tables that
/// outlive the session can.
fn require_protectable(tbl: &PgRelation) {
    // SAFETY: `rd_rel` of an open relation is valid.
    let (kind, persistence) = unsafe {
        (
            (*tbl.rd_rel).relkind as u8,
            (*tbl.rd_rel).relpersistence as u8,
        )
    };
    if !matches!(
        kind,
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
    ) {
        let what = match kind {
            pg_sys::RELKIND_VIEW => "a view",
            pg_sys::RELKIND_MATVIEW => "a materialized view",
            pg_sys::RELKIND_FOREIGN_TABLE => "a foreign table",
            pg_sys::RELKIND_SEQUENCE => "a sequence",
            pg_sys::RELKIND_INDEX | pg_sys::RELKIND_PARTITIONED_INDEX => "an index",
            _ => "not a table",
        };
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("cannot protect \"{}\": it is {what}", tbl.name()),
            "Only tables and partitioned tables can be protected.",
            "Protect the tables the object reads from or writes to.",
        );
    }
    if persistence == pg_sys::RELPERSISTENCE_TEMP {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cannot protect temporary table \"{}\"", tbl.name()),
            "A temporary table belongs to one session and disappears with it.",
            "Protect the permanent table the data comes from.",
        );
    }
}

fn require_owner_or_operator(relid: pg_sys::Oid, name: &str, function: &str) {
    // SAFETY: catalog lookups inside a transaction.
    let (user, owns) = unsafe {
        let user = pg_sys::GetUserId();
        (user, pg_sys::pg_class_ownercheck(relid, user))
    };
    if !owns && !breakglass::is_operator(user) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {function} {name}"),
            format!(
                "Only the owner of the table and members of {} may {function} it.",
                breakglass::OPERATOR_ROLE
            ),
            "Ask the table's owner or a member of prodguard_operator.",
        );
    }
}

/// Lowering a table's protection is guarded like a destructive command.
fn guard_lowering(command: &str, relid: pg_sys::Oid, name: &str, why: &str) {
    let db = crate::environment::current_database();
    let env = settings::environment();
    let finding = Finding::blocked(
        Guard::Row,
        command,
        name,
        format!(" in {} database \"{db}\"", env.name()),
        why,
        policy::tag_hint(&db),
        Some(relid),
    );
    policy::enforce(env, &finding, Scope::Transaction, None);
}

/// The row of prodguard.table_protection for a table, if it has one.
fn stored_flags(relid: pg_sys::Oid) -> Option<Flags> {
    rules().get(&relid).copied()
}

/// Writes prodguard.table_protection as its owner and tells every backend at commit.
fn write_config(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) {
    let Some(config) = extension::own_table(c"table_protection") else {
        return;
    };
    let written = extension::as_owner_of(config, || Spi::run_with_args(sql, &args));
    if let Some(Err(e)) = written {
        raise_internal("write prodguard.table_protection", e);
    }
    // SAFETY: queues a relcache invalidation of our own table, sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(config) };
}

fn current_user() -> String {
    // SAFETY: GetUserId reads a backend global.
    breakglass::role_name(unsafe { pg_sys::GetUserId() })
}

fn notice(message: String) {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
        message,
        function_name!(),
    )
    .report(PgLogLevel::NOTICE);
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    fn oid_of(name: &str) -> pg_sys::Oid {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()])
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn migration_history_tables_are_recognised_by_name_in_any_schema() {
        Spi::run("CREATE SCHEMA tools; CREATE TABLE tools.knex_migrations (id int)").unwrap();
        Spi::run("CREATE TABLE knex_migrations_lock (id int)").unwrap();
        let flags = flags(oid_of("tools.knex_migrations"));
        assert!(flags.forbid_delete && flags.migration_history);
        assert!(!flags.audit);
        assert_eq!(
            super::flags(oid_of("knex_migrations_lock")),
            Flags::default()
        );
    }

    #[pg_test]
    fn views_and_temporary_tables_are_never_migration_history() {
        Spi::run("CREATE VIEW schema_migrations AS SELECT 1 AS version").unwrap();
        assert!(!flags(oid_of("schema_migrations")).forbid_delete);
        Spi::run("CREATE TEMP TABLE _prisma_migrations (id int)").unwrap();
        assert!(!flags(oid_of("pg_temp._prisma_migrations")).forbid_delete);
    }

    #[pg_test]
    fn partitions_inherit_their_ancestors_protection_and_changes_are_seen_at_once() {
        Spi::run(
            "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE events_2024 PARTITION OF events
                 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        )
        .unwrap();
        let partition = oid_of("events_2024");
        assert!(!flags(partition).forbid_delete);
        Spi::run("SELECT prodguard.protect('events', audit => false, forbid_delete => true)")
            .unwrap();
        let inherited = flags(partition);
        assert!(inherited.forbid_delete && inherited.test_data && !inherited.audit);
    }

    #[pg_test]
    fn flags_combine_option_by_option() {
        let a = Flags {
            audit: true,
            ..Flags::default()
        };
        let b = Flags {
            forbid_delete: true,
            migration_history: true,
            ..Flags::default()
        };
        assert_eq!(
            a.union(b),
            Flags {
                audit: true,
                test_data: false,
                forbid_delete: true,
                migration_history: true
            }
        );
    }
}

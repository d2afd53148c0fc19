//! Protection flags: which tables are protected and how, as every guard reads them, cached
//! per backend. (`api::protect` writes them; the SQL view `protected_tables` shows them.)
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
use pgrx::prelude::*;

use crate::core::extension;
use crate::core::pg::{self, OidMap};

/// The row-audit trigger `protect(audit => true)` installs (AFTER, ENABLE ALWAYS).
pub const AUDIT_TRIGGER: &str = "zz_prodguard_audit";
/// The test-data trigger `protect(test_data => true)` installs: an AFTER row trigger, so
/// that it judges the row as it is stored (after every BEFORE trigger, generated columns
/// computed). AFTER triggers fire in name order too: this name comes before the audit
/// trigger's, whose entry for the row carries the matches of the `log` action.
pub const TEST_DATA_TRIGGER: &str = "zz_prodguard_a_test_data";
/// The BEFORE trigger of 0.1.0, which the upgrade script replaces.
pub const TEST_DATA_TRIGGER_0_1: &str = "zz_prodguard_test_data";
/// The statement trigger every protected table gets: records a TRUNCATE that logical
/// replication applies (ENABLE ALWAYS).
pub const TRUNCATE_TRIGGER: &str = "zz_prodguard_truncate";

/// Tables that record which migrations ran (SPEC §4). Incident B's database lost its
/// history table; these are protected against DELETE, TRUNCATE and DROP in any schema, by
/// name, as their tools create them.
pub const MIGRATION_HISTORY_TABLES: [&str; 21] = [
    "schema_migrations", // Supabase (supabase_migrations.schema_migrations), Rails, golang-migrate
    "_prisma_migrations",
    "flyway_schema_history",
    "__diesel_schema_migrations",
    "_sqlx_migrations",
    "knex_migrations",
    "django_migrations",
    "alembic_version",
    "SequelizeMeta",
    "mikro_orm_migrations",
    "__EFMigrationsHistory",
    "goose_db_version",
    "databasechangelog", // Liquibase
    "schema_version",    // Flyway before 5
    "doctrine_migration_versions",
    "pgmigrations", // node-pg-migrate
    "__drizzle_migrations",
    "atlas_schema_revisions",
    "gorp_migrations", // sql-migrate
    "schemaversion",   // DbUp (as SPEC names it)
    "schemaversions",  // DbUp (the name it gives the table on PostgreSQL)
];

/// The lock tables of migration tools: the tool releases its lock with an UPDATE or DELETE
/// of every row, so they are exempt from require_where (SPEC §4).
pub const MIGRATION_LOCK_TABLES: [&str; 2] = [
    "knex_migrations_lock",
    "databasechangeloglock", // Liquibase
];

/// Whether a relation is a migration tool's lock table (by name, in any schema).
pub fn is_migration_lock(relid: pg_sys::Oid) -> bool {
    let (_, name) = pg::relation_names(relid);
    name.is_some_and(|n| MIGRATION_LOCK_TABLES.contains(&n.as_str()))
}

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

    /// Why DELETE, TRUNCATE and DROP of a `forbid_delete` table are refused, as a DETAIL
    /// sentence; `table` is its quoted name.
    pub fn why_forbidden(self, table: &str) -> String {
        if self.migration_history {
            format!("Table {table} is a migration-history table: pg_prodguard protects it against DELETE, TRUNCATE and DROP.")
        } else {
            format!("Table {table} is protected with forbid_delete (prodguard.protected_tables).")
        }
    }

    pub fn union(self, other: Flags) -> Flags {
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

pub fn is_migration_history(relid: pg_sys::Oid) -> bool {
    let (_, name) = pg::relation_names(relid);
    // SAFETY: syscache lookup; 0 for a relation that is gone.
    let kind = unsafe { pg_sys::get_rel_relkind(relid) } as u8;
    matches!(
        kind,
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
    ) && !pg::is_temp(relid)
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
                            // a value that cannot be read counts as protected (fail closed)
                            let flag = |i| row.get::<bool>(i).ok().flatten().unwrap_or(true);
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
        match rows {
            Some(Ok(rows)) => {
                for (oid, flags) in rows {
                    if let Some(oid) = oid {
                        rules.insert(oid, flags);
                    }
                }
            }
            failed => {
                let why = match failed {
                    Some(Err(e)) => e.to_string(),
                    _ => "The owner of prodguard.table_protection could not be found.".into(),
                };
                crate::core::error::cannot_decide("its protection rules", why);
                return Rc::new(rules); // (not kept: the next statement reads again)
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
    pg::register_relcache_callback(&CALLBACK_REGISTERED, Some(forget));
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

/// The row of prodguard.table_protection for a table, if it has one.
pub fn stored_flags(relid: pg_sys::Oid) -> Option<Flags> {
    rules().get(&relid).copied()
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

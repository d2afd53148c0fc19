//! Environments of databases other than the current one, as DROP DATABASE, ALTER DATABASE
//! and ALTER ROLE/SYSTEM need them from any database of the cluster.
//!
//! A database's effective environment is its own database-level setting
//! (`ALTER DATABASE x SET prodguard.environment = ...`) when it has one, and otherwise the
//! cluster default: the last value in postgresql.conf / postgresql.auto.conf, or
//! `production` when neither sets it (fail closed). The current session's value cannot
//! stand in for the cluster default, because the current database may carry its own tag.
//! Everything here is read when a guarded statement needs it and never cached: these are
//! rare, destructive statements, and a tag change must count at once.

use std::ffi::c_int;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::extension::with_pinned_search_path;
use crate::core::pg::cstr_or;
#[cfg(any(test, feature = "pg_test"))]
use crate::core::pg::current_database;
use crate::core::settings::{self, Environment, ENVIRONMENT_NAME};

/// A database as the guards see it.
pub struct Database {
    pub name: String,
    pub environment: Environment,
    /// Whether the environment is the database's own tag (else the cluster default).
    pub tagged: bool,
    /// Listed in prodguard.protected_databases.
    pub listed: bool,
}

impl Database {
    /// Looks a database up by name; `None` when it does not exist.
    pub fn by_name(name: &str) -> Option<Database> {
        let found = with_pinned_search_path(|| {
            crate::core::spi::one::<pg_sys::Oid>(
                "SELECT (SELECT oid FROM pg_catalog.pg_database WHERE datname = $1)",
                &[name.into()],
            )
        });
        let oid = match found {
            Ok(oid) => oid?,
            Err(e) => {
                // fail closed: a database that cannot be looked up is judged as production
                crate::core::error::cannot_decide(&format!("database \"{name}\""), e);
                return Some(Database {
                    name: name.to_string(),
                    environment: Environment::Production,
                    tagged: false,
                    listed: true,
                });
            }
        };
        let (environment, tagged) = database_environment(oid);
        Some(Database {
            name: name.to_string(),
            environment,
            tagged,
            listed: settings::protected_databases().iter().any(|n| n == name),
        })
    }

    /// Protected from DROP DATABASE and RENAME: production, or listed.
    pub fn protection(&self) -> Environment {
        if self.listed {
            Environment::Production
        } else {
            self.environment
        }
    }

    /// Why the database has the environment it has, as a DETAIL sentence.
    pub fn describe(&self) -> String {
        if self.listed {
            format!(
                "Database \"{}\" is listed in prodguard.protected_databases.",
                self.name
            )
        } else if self.tagged {
            format!(
                "Database \"{}\" is tagged {}.",
                self.name,
                self.environment.name()
            )
        } else {
            format!(
                "Database \"{}\" has no prodguard.environment of its own, and the cluster default is {}.",
                self.name,
                self.environment.name()
            )
        }
    }
}

/// The effective environment of one database, and whether it is the database's own tag.
pub fn database_environment(db: pg_sys::Oid) -> (Environment, bool) {
    let own = with_pinned_search_path(|| {
        crate::core::spi::one::<String>(
            "SELECT (SELECT s FROM pg_catalog.pg_db_role_setting r, unnest(r.setconfig) s
                      WHERE r.setdatabase = $1 AND r.setrole = 0
                        AND lower(split_part(s, '=', 1)) = $2
                      LIMIT 1)",
            &[db.into(), ENVIRONMENT_NAME.into()],
        )
    });
    let own = match own {
        Ok(own) => own,
        Err(e) => {
            // fail closed: a tag that cannot be read is production
            crate::core::error::cannot_decide("a database's prodguard.environment", e);
            return (Environment::Production, true);
        }
    };
    match own {
        Some(entry) => (
            Environment::parse_or_production(entry.split_once('=').map_or("", |x| x.1)),
            true,
        ),
        None => (cluster_default(), false),
    }
}

/// The strictest effective environment of any database in the cluster: what a
/// cluster-wide setting change (ALTER SYSTEM, ALTER ROLE ... SET without IN DATABASE)
/// must be judged by.
pub fn strictest_in_cluster() -> Environment {
    if !settings::protected_databases().is_empty() {
        return Environment::Production;
    }
    let tags: Vec<Option<String>> = with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
            .select(
                "SELECT (SELECT split_part(s, '=', 2) FROM pg_catalog.pg_db_role_setting r, unnest(r.setconfig) s
                          WHERE r.setdatabase = d.oid AND r.setrole = 0
                            AND lower(split_part(s, '=', 1)) = $1 LIMIT 1)
                   FROM pg_catalog.pg_database d",
                None,
                &[ENVIRONMENT_NAME.into()],
            )
            .map(|rows| rows.map(|row| row.get::<String>(1).ok().flatten()).collect())
            .unwrap_or_default()
        })
    });
    let default = cluster_default();
    tags.into_iter()
        .map(|tag| tag.map_or(default, |t| Environment::parse_or_production(&t)))
        .max()
        .unwrap_or(Environment::Production)
}

/// The cluster default: the value postgresql.conf and postgresql.auto.conf give, read the
/// way the server reads them at reload; production when they say nothing or cannot be read.
pub fn cluster_default() -> Environment {
    let mut value: Option<String> = None;
    // SAFETY: ParseConfigFile builds a palloc'd list that FreeConfigVariables releases;
    // ConfigFileName and DataDir are set in every backend. Parse errors are reported at
    // LOG level and leave the list as far as it was read.
    unsafe {
        let mut head: *mut pg_sys::ConfigVariable = std::ptr::null_mut();
        let mut tail: *mut pg_sys::ConfigVariable = std::ptr::null_mut();
        let log = pg_sys::LOG as c_int;
        if !pg_sys::ConfigFileName.is_null() {
            pg_sys::ParseConfigFile(
                pg_sys::ConfigFileName,
                true,
                std::ptr::null(),
                0,
                0,
                log,
                &mut head,
                &mut tail,
            );
            if !pg_sys::DataDir.is_null() {
                pg_sys::ParseConfigFile(
                    c"postgresql.auto.conf".as_ptr(),
                    false,
                    std::ptr::null(),
                    0,
                    0,
                    log,
                    &mut head,
                    &mut tail,
                );
            }
        }
        let mut item = head;
        while !item.is_null() {
            let name = cstr_or((*item).name, "");
            if name.eq_ignore_ascii_case(ENVIRONMENT_NAME) {
                value = Some(cstr_or((*item).value, ""));
            }
            item = (*item).next;
        }
        pg_sys::FreeConfigVariables(head);
    }
    value.map_or(Environment::Production, |v| {
        Environment::parse_or_production(&v)
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use super::*;

    #[pg_test]
    fn cluster_default_is_read_from_the_configuration_files() {
        // The test server's postgresql.auto.conf says development (lib.rs, pg_test).
        assert_eq!(cluster_default(), Environment::Development);
    }

    #[pg_test]
    fn untagged_databases_take_the_cluster_default() {
        let db = Database::by_name(&current_database()).expect("current database");
        assert!(!db.tagged);
        assert_eq!(db.environment, Environment::Development);
        assert!(Database::by_name("no such database").is_none());
    }
}

//! The extension's SQL objects that are not functions: every `sql/*.sql` file of the
//! install script, in one place, with what each needs created before it.
//!
//! pgrx writes the functions (`#[pg_extern]`, `#[pg_trigger]`) itself; these files hold the
//! tables, views, roles, grants and comments around them. `requires` names functions (by
//! their Rust name) or other files (by their `name`).

use pgrx::prelude::*;

// Tables, roles and privileges: first of all.
extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

// The protected_tables view; comments of protect() and unprotect().
extension_sql_file!(
    "../sql/protection.sql",
    name = "protection",
    requires = [
        migration_history_names,
        protect,
        unprotect,
        forget_dropped_tables
    ]
);

// Dictionary tables, the built-in dictionaries, their triggers.
extension_sql_file!(
    "../sql/test_data.sql",
    name = "test_data",
    requires = [
        dictionaries_changed,
        dictionary_add,
        dictionary_remove,
        dictionary_enable,
        test_data_trigger,
        scan,
        scan_table
    ]
);

// Backup tables, append-only triggers, row_history, recent_destructive.
extension_sql_file!(
    "../sql/audit.sql",
    name = "audit",
    requires = [
        append_only,
        audit_trigger,
        truncate_trigger,
        purge_audit,
        restore_row,
        undo_transaction,
        restore_table,
        restore_backup
    ]
);

// The denial log's table and view, and the metrics view.
extension_sql_file!(
    "../sql/denial_log.sql",
    name = "denial_log",
    requires = ["audit", metrics]
);

// Alerts: the table (written by the background writer) and its comments.
extension_sql_file!("../sql/alerts.sql", name = "alerts", requires = ["audit"]);

// Coverage by schema: the table, protect_schema(), the event trigger.
extension_sql_file!(
    "../sql/schema_protection.sql",
    name = "schema_protection",
    requires = [
        "protection",
        protect_schema,
        unprotect_schema,
        protect_new_tables
    ]
);

// Approved changes: the table, the changes view, request_change().
extension_sql_file!(
    "../sql/changes.sql",
    name = "changes",
    requires = ["audit", request_change, approve_change, revoke_change]
);

// Last: refuse to install unless the library was preloaded.
extension_sql_file!(
    "../sql/finalize.sql",
    name = "finalize",
    requires = [require_preload, status, "alerts"],
    finalize
);

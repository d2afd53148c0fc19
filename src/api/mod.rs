//! API: the SQL functions DBAs and operators call.
//!
//! Contract: may use every layer below (`core`, `records`, `guards`). Functions that lower
//! a protection are judged like destructive commands (`guards::policy`); functions that
//! write the extension's tables do it as their owner with a pinned search_path.
//!
//! - `changes`: `request_change()`, `approve_change()`, `revoke_change()`;
//! - `protect`: `protect()`, `unprotect()`;
//! - `protect_schema`: `protect_schema()`, `unprotect_schema()`, the event trigger that
//!   protects new tables of a protected schema;
//! - `dictionary`: `dictionary_add()`, `dictionary_remove()`, `dictionary_enable()`;
//! - `scan`: `scan()`, `scan_table()`;
//! - `restore`: `restore_row()`, `undo_transaction()`, `restore_table()`,
//!   `restore_backup()`, `purge_audit()`;
//! - `restore_set`: `restore_table()` as set operations, where they are exact;
//! - `status`: `status()`, `metrics`, the preload check of CREATE EXTENSION;
//! - `json_members`: the top-level members of an audited row's jsonb text (restores).

pub mod changes;
pub mod dictionary;
pub mod json_members;
pub mod protect;
pub mod protect_schema;
pub mod restore;
pub mod restore_set;
pub mod scan;
pub mod status;

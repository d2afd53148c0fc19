//! Guards: each decides whether one kind of statement or row may go through.
//!
//! Contract: a guard uses `core` and `records`, and `guards::policy` (the one rule all
//! guards share: silent in development, a warning in staging, refused in production unless
//! overridden); a guard never uses another guard or the `api`. A guard describes what it
//! found as a `core::finding::Finding` and hands it to the policy; the hooks (`hooks`) and
//! trigger functions only route to it.
//!
//! - `command`: destructive utility statements (TRUNCATE, DROP, ALTER ... SET, ...);
//! - `row`: DELETE/UPDATE/MERGE without WHERE, over `max_rows_changed`, on forbid_delete
//!   tables;
//! - `settings`: the GUCs, and changes to them from a session;
//! - `test_data`: rows carrying known test data (with its matcher and caches);
//! - `audit_trigger`: the row-audit trigger of protected tables;
//! - `append_only`: the trigger that keeps the audit and denial logs append-only;
//! - `policy`: what a finding becomes in each environment.

pub mod append_only;
pub mod audit_trigger;
pub mod command;
pub mod policy;
pub mod row;
pub mod settings;
pub mod test_data;

//! Records: what pg_prodguard writes down, and nothing about whether to refuse.
//!
//! Contract: uses `core` only. The audit writer writes in the changing transaction (a
//! committed change always has its entry, a rolled-back one never does); the denial
//! record goes to the server log at once and to a shared-memory queue that the background
//! workers (`workers`) drain into `prodguard.denial_log`, so a refusal outlives the
//! rollback of its own transaction.
//!
//! - `audit_log`: the `prodguard.audit_log` writer (command and row entries);
//! - `audit_batch`: row entries held to the end of their statement and written together;
//! - `audit_values`: the columns of an entry that repeat from row to row, made once;
//! - `row_json`: rows as jsonb, written directly in jsonb's binary format;
//! - `backup`: copies of a protected table before an overridden TRUNCATE or DROP;
//! - `denial`: the `prodguard:` log line and the denial record of each refusal;
//! - `history`: the history tables copied aside before a drop, for the next CREATE EXTENSION;
//! - `shmem`: shared memory: the denial queue and the metrics counters;
//! - `alerts`: the alerts (log line, counter, queued for `prodguard.alerts` and NOTIFY);
//! - `watch`: shared memory: the row-drop watch and the denial-burst counter.

pub mod alerts;
pub mod audit_batch;
pub mod audit_log;
pub mod audit_values;
pub mod backup;
pub mod denial;
pub mod history;
pub mod row_json;
pub mod shmem;
pub mod watch;

//! Denial writers: background workers that copy the queued denial records (`records::shmem`) into
//! `prodguard.denial_log` of the database where each refusal happened.
//!
//! A worker connects to one database for its whole life, so there are two kinds:
//! - the launcher, started with the server (and restarted a second after it stops), waits
//!   on its latch; for each database with queued records and no writer it starts a writer,
//!   and it notices writers that stopped (their records go back to the queue; three stops
//!   in a row with records left discard them, counted);
//! - a writer, a dynamic worker connected to one database, takes batches of that
//!   database's records and inserts each batch in one transaction (`ON CONFLICT (id) DO
//!   NOTHING`: a batch taken again after its writer died is stored once), frees the slots
//!   after the commit. Woken by a refusal, it first lets 20 ms of records gather, so that
//!   a storm of refusals costs one transaction per burst rather than one per refusal. It
//!   exits after half a second without records, so it never keeps a
//!   database busy for long (DROP DATABASE waits up to 5 s for other sessions).
//!
//! Databases without the extension have no table: their records are discarded (counted;
//! the server log has them).

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime,
    DynamicBackgroundWorker, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::records::denial::Session;
use crate::records::shmem::{self, Counter, Record};
use crate::records::watch;

const LAUNCHER: &str = "prodguard denial launcher";
const WRITER: &str = "prodguard denial writer";
const BATCH: usize = 500;
const IDLE_EXIT: Duration = Duration::from_millis(500);
/// How long a woken writer waits for more records before writing.
const GATHER: Duration = Duration::from_millis(20);
const MAX_FAILURES: u32 = 3;

/// Registers the launcher; called from _PG_init under shared_preload_libraries.
pub fn register() {
    BackgroundWorkerBuilder::new(LAUNCHER)
        .set_type(LAUNCHER)
        .set_library("pg_prodguard")
        .set_function("prodguard_denial_launcher_main")
        .enable_shmem_access(None)
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn prodguard_denial_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SAFETY: MyLatch is this process's latch, in shared memory.
    shmem::set_launcher_latch(unsafe { pg_sys::MyLatch });
    // writers started by an earlier launcher are not ours to watch: start afresh (a
    // duplicate writer is harmless: records are taken under the lock and ids are unique)
    shmem::forget_writers();
    let mut writers: Vec<(u32, DynamicBackgroundWorker)> = Vec::new();
    loop {
        writers.retain(|(db, w)| match w.pid() {
            Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted) => true,
            Err(_) => {
                shmem::writer_stopped(*db, MAX_FAILURES);
                false
            }
        });
        for db in shmem::claim_databases() {
            let started = BackgroundWorkerBuilder::new(WRITER)
                .set_type(WRITER)
                .set_library("pg_prodguard")
                .set_function("prodguard_denial_writer_main")
                .enable_spi_access()
                .set_argument(Some(pg_sys::Datum::from(db)))
                // SAFETY: a read of this process's pid.
                .set_notify_pid(unsafe { pg_sys::MyProcPid })
                .load_dynamic();
            match started {
                Ok(w) => writers.push((db, w)),
                Err(_) => {
                    pgrx::warning!(
                        "prodguard: could not start a denial writer for database {db}: no free background worker slot"
                    );
                    shmem::writer_stopped(db, MAX_FAILURES);
                }
            }
        }
        // a client whose minute of refusals ended with some not stored is summed up, also
        // when it refuses no more
        for left in crate::records::watch::finished_minutes() {
            crate::records::denial::sum_up(&left);
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
            break;
        }
    }
    shmem::set_launcher_latch(std::ptr::null_mut());
    // a non-zero exit code makes the postmaster restart the launcher (unless it is shutting
    // down), also when someone terminated it
    // SAFETY: leaving the worker process.
    unsafe { pg_sys::proc_exit(1) }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn prodguard_denial_writer_main(arg: pg_sys::Datum) {
    let dboid = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(dboid)), None);
    // SAFETY: MyLatch is this process's latch, in shared memory.
    shmem::writer_started(dboid, unsafe { pg_sys::MyLatch });
    let mut idle_since = Instant::now();
    let mut expired_at: Option<Instant> = None;
    loop {
        let batch = shmem::take(dboid, BATCH);
        if !batch.is_empty() {
            write(dboid, &batch);
            if batch.iter().any(|(_, r)| r.kind == shmem::KIND_DENIAL) {
                expire(&mut expired_at);
            }
            idle_since = Instant::now();
            if batch.len() == BATCH {
                continue;
            }
        }
        if idle_since.elapsed() >= IDLE_EXIT && shmem::writer_may_exit(dboid) {
            return;
        }
        let awake = BackgroundWorker::wait_latch(Some(Duration::from_millis(100)));
        if awake {
            // let a burst gather: one transaction per burst, not one per refusal
            // SAFETY: pg_usleep only sleeps.
            unsafe { pg_sys::pg_usleep(GATHER.as_micros() as std::ffi::c_long) };
        } else {
            // terminated (or shutting down): write what is queued, then go
            loop {
                let batch = shmem::take(dboid, BATCH);
                if batch.is_empty() {
                    break;
                }
                write(dboid, &batch);
            }
            shmem::writer_may_exit(dboid);
            return;
        }
    }
}

/// Removes the rows of prodguard.denial_log and prodguard.alerts older than
/// prodguard.denial_log_retention: when the writer first stores refusals, then at most
/// once an hour.
fn expire(expired_at: &mut Option<Instant>) {
    let retention = crate::core::settings::DENIAL_LOG_RETENTION.get();
    if retention <= 0 || expired_at.is_some_and(|t| t.elapsed() < Duration::from_secs(3600)) {
        return;
    }
    *expired_at = Some(Instant::now());
    let _own = crate::core::passes::FlagGuard::set(&crate::core::passes::OWN_WRITE, true);
    let _purging = crate::core::passes::FlagGuard::set(&crate::core::passes::PURGING, true);
    BackgroundWorker::transaction(|| {
        Spi::run("SET LOCAL search_path = pg_catalog, pg_temp")
            .unwrap_or_else(|e| pgrx::error!("prodguard: {e}"));
        // (a table dropped with the extension meanwhile is no error: nothing to expire)
        for table in ["denial_log", "alerts"] {
            Spi::run(&format!(
                "DO $expire$ BEGIN
                     DELETE FROM prodguard.{table} WHERE at < pg_catalog.now() - {retention} * interval '1 second';
                 EXCEPTION WHEN undefined_table THEN NULL;
                 END $expire$"
            ))
            .unwrap_or_else(|e| pgrx::error!("prodguard: could not expire {table}: {e}"));
        }
    });
}

/// Writes one batch taken from the queue: denials, alerts and row counts each in their own
/// transaction, then frees the slots. An error ends the worker; the launcher puts the
/// batch back into the queue.
fn write(dboid: u32, batch: &[(usize, Record)]) {
    let of_kind = |kind: u8| -> Vec<(usize, Record)> {
        batch
            .iter()
            .filter(|(_, r)| r.kind == kind)
            .cloned()
            .collect()
    };
    let denials = of_kind(shmem::KIND_DENIAL);
    if !denials.is_empty() {
        write_denials(dboid, &denials);
    }
    let alerts = of_kind(shmem::KIND_ALERT);
    if !alerts.is_empty() {
        write_alerts(dboid, &alerts);
    }
    for (slot, request) in of_kind(shmem::KIND_BASELINE) {
        count_rows(&request);
        shmem::release(dboid, &[(slot, request.id)]);
    }
}

/// Inserts the alerts into prodguard.alerts and announces each with NOTIFY prodguard_alert
/// (delivered when this transaction commits, so a listener never hears of an alert that
/// is not in the table).
fn write_alerts(dboid: u32, batch: &[(usize, Record)]) {
    let written = store(dboid, batch, "alerts", || {
        let col = |f: fn(&Record) -> &str| text_column(batch, f);
        let (ids, ats, pids) = numbers(batch);
        Spi::run_with_args(
            "WITH new AS (
                 INSERT INTO prodguard.alerts (id, at, database, kind, object, detail, db_user,
                         \"session_user\", application_name, client_addr, backend_pid)
                 SELECT id, timestamptz '2000-01-01 00:00:00+00' + at * interval '1 microsecond',
                        database, kind, object, detail, db_user, \"session_user\",
                        application_name, nullif(client, '')::inet, pid
                   FROM ROWS FROM (pg_catalog.unnest($1::bigint[]),
                            pg_catalog.unnest($2::bigint[]),
                            pg_catalog.unnest($3::text[]),
                            pg_catalog.unnest($4::text[]),
                            pg_catalog.unnest($5::text[]),
                            pg_catalog.unnest($6::text[]),
                            pg_catalog.unnest($7::text[]),
                            pg_catalog.unnest($8::text[]),
                            pg_catalog.unnest($9::text[]),
                            pg_catalog.unnest($10::text[]),
                            pg_catalog.unnest($11::int[]))
                        AS u(id, at, database, kind, object, detail, db_user, \"session_user\",
                             application_name, client, pid)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING *)
             SELECT pg_catalog.count(pg_catalog.pg_notify('prodguard_alert',
                        pg_catalog.json_build_object('id', id, 'at', at, 'kind', kind,
                            'database', database, 'object', object, 'detail', detail,
                            'user', db_user, 'session_user', \"session_user\",
                            'application', application_name, 'client_addr', client_addr,
                            'pid', backend_pid)::text))
               FROM (SELECT * FROM new ORDER BY id) n",
            &[
                ids.into(),
                ats.into(),
                col(|r| r.database.get()).into(),
                col(|r| r.command.get()).into(),
                col(|r| r.object.get()).into(),
                col(|r| r.detail.get()).into(),
                col(|r| r.db_user.get()).into(),
                col(|r| r.session_user.get()).into(),
                col(|r| r.application.get()).into(),
                col(|r| r.client.get()).into(),
                pids.into(),
            ],
        )
        .unwrap_or_else(|e| pgrx::error!("prodguard: could not write alerts: {e}"));
    });
    if !written {
        shmem::add(Counter::DenialsDiscarded, batch.len() as u64);
    }
}

/// Counts a table's rows for the row-drop watch (once per table and window) and raises
/// the row_drop alert when the rows lost so far already cross the threshold.
fn count_rows(request: &Record) {
    let Ok(relid) = request.object.get().parse::<u32>() else {
        return;
    };
    let Some((lost, since)) = watch::waiting(request.dboid, relid) else {
        return;
    };
    let rows = BackgroundWorker::transaction(|| {
        Spi::run("SET LOCAL search_path = pg_catalog, pg_temp")
            .unwrap_or_else(|e| pgrx::error!("prodguard: {e}"));
        let name = Spi::get_one_with_args::<String>(
            "SELECT c.oid::pg_catalog.regclass::text FROM pg_catalog.pg_class c WHERE c.oid = $1",
            &[pg_sys::Oid::from(relid).into()],
        )
        .ok()
        .flatten();
        match name {
            // the table was dropped: it has nothing left
            None => 0,
            Some(name) => Spi::get_one::<i64>(&format!("SELECT pg_catalog.count(*) FROM {name}"))
                .unwrap_or_else(|e| {
                    pgrx::error!("prodguard: could not count the rows of {name}: {e}")
                })
                .unwrap_or(0),
        }
    });
    if let Some((lost, baseline)) = watch::set_baseline(request.dboid, relid, since, rows, lost) {
        let who = Session::of_record(request);
        watch::alert_row_drop(&who, request.detail.get(), lost, baseline, since);
    }
}

/// Runs `insert` in one transaction of the writer, with a pinned search_path (the worker
/// runs as a superuser: nothing a user created may shadow what it calls), unless
/// `prodguard.<table>` is missing; then frees the batch's slots. Returns whether it ran.
fn store(dboid: u32, batch: &[(usize, Record)], table: &str, insert: impl FnOnce()) -> bool {
    let _own = crate::core::passes::FlagGuard::set(&crate::core::passes::OWN_WRITE, true);
    let name = format!("prodguard.{table}");
    // (an error aborts the transaction and ends the worker: nothing of `insert` is used
    // after a panic)
    let written = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(move || {
        Spi::run("SET LOCAL search_path = pg_catalog, pg_temp")
            .unwrap_or_else(|e| pgrx::error!("prodguard: {e}"));
        let exists = Spi::get_one_with_args::<bool>(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[name.as_str().into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false);
        if exists {
            insert();
        }
        exists
    }));
    let slots: Vec<(usize, i64)> = batch.iter().map(|(i, r)| (*i, r.id)).collect();
    shmem::release(dboid, &slots);
    written
}

/// One text field of every record of a batch, as an array argument.
fn text_column(batch: &[(usize, Record)], field: fn(&Record) -> &str) -> Vec<String> {
    batch.iter().map(|(_, r)| field(r).to_string()).collect()
}

/// The ids, times and process ids of a batch, as array arguments.
fn numbers(batch: &[(usize, Record)]) -> (Vec<i64>, Vec<i64>, Vec<i32>) {
    (
        batch.iter().map(|(_, r)| r.id).collect(),
        batch.iter().map(|(_, r)| r.at).collect(),
        batch.iter().map(|(_, r)| r.pid).collect(),
    )
}

/// Inserts a batch of denials in one transaction.
fn write_denials(dboid: u32, batch: &[(usize, Record)]) {
    // the only writer of prodguard.denial_log (the row guard lets its INSERT through)
    let written = store(dboid, batch, "denial_log", || {
        let col = |f: fn(&Record) -> &str| text_column(batch, f);
        let (ids, ats, pids) = numbers(batch);
        Spi::run_with_args(
            "INSERT INTO prodguard.denial_log (id, at, database, db_user, \"session_user\",
                     application_name, client_addr, backend_pid, guard, command, object,
                     detail, statement)
             SELECT id, timestamptz '2000-01-01 00:00:00+00' + at * interval '1 microsecond',
                    database, db_user, \"session_user\", application_name,
                    nullif(client, '')::inet, pid, guard, command, object, detail,
                    nullif(statement, '')
               FROM ROWS FROM (pg_catalog.unnest($1::bigint[]),
                        pg_catalog.unnest($2::bigint[]),
                        pg_catalog.unnest($3::text[]),
                        pg_catalog.unnest($4::text[]),
                        pg_catalog.unnest($5::text[]),
                        pg_catalog.unnest($6::text[]),
                        pg_catalog.unnest($7::text[]),
                        pg_catalog.unnest($8::int[]),
                        pg_catalog.unnest($9::text[]),
                        pg_catalog.unnest($10::text[]),
                        pg_catalog.unnest($11::text[]),
                        pg_catalog.unnest($12::text[]),
                        pg_catalog.unnest($13::text[]))
                    AS u(id, at, database, db_user, \"session_user\", application_name, client,
                         pid, guard, command, object, detail, statement)
             ON CONFLICT (id) DO NOTHING",
            &[
                ids.into(),
                ats.into(),
                col(|r| r.database.get()).into(),
                col(|r| r.db_user.get()).into(),
                col(|r| r.session_user.get()).into(),
                col(|r| r.application.get()).into(),
                col(|r| r.client.get()).into(),
                pids.into(),
                col(|r| r.guard.get()).into(),
                col(|r| r.command.get()).into(),
                col(|r| r.object.get()).into(),
                col(|r| r.detail.get()).into(),
                col(|r| r.statement.get()).into(),
            ],
        )
        .unwrap_or_else(|e| pgrx::error!("prodguard: could not write denial records: {e}"));
    });
    let n = batch.len() as u64;
    shmem::add(
        if written {
            Counter::DenialsWritten
        } else {
            Counter::DenialsDiscarded
        },
        n,
    );
}

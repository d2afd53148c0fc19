//! Shared memory: the queue of denial records waiting to be written to a table, and the
//! counters behind `prodguard.metrics`. (The shared-memory hooks that call `request` and
//! `attach` are in `hooks`.)
//!
//! Present only when the library is in `shared_preload_libraries` (shared memory can only
//! be reserved at server start); otherwise every function here is a no-op and the server
//! log is the only record of a refusal.
//!
//! The queue is an array of `prodguard.denial_queue_size` fixed-size records under one
//! LWLock, each FREE, READY (queued) or TAKEN (being written by a writer). A refusing
//! backend copies its record into a FREE slot and sets a latch; it never waits: when no
//! slot is free the record is dropped and counted. Each record carries an id unique across
//! restarts (microseconds since 2000 at server start, plus one per record), so a record
//! written twice after a crash of its writer is stored once. On a clean shutdown the
//! postmaster saves the records still queued to `pg_prodguard_denials.queue` in the data
//! directory and reloads them at the next start.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};

use pgrx::pg_sys;

const NAME: &CStr = c"pg_prodguard";
const QUEUE_FILE: &str = "pg_prodguard_denials.queue";
const FILE_MAGIC: u64 = 0x7067_7072_6f64_0001;
/// The queue file starts with three 8-byte words: magic, record size, next record id.
const FILE_HEADER_LEN: usize = 24;
/// AddinShmemInitLock's index in MainLWLockArray (lwlocknames.txt), which pgrx does not
/// export.
pub const ADDIN_SHMEM_INIT_LOCK: usize = 21;
/// At most this many databases have a writer at a time.
pub const MAX_WRITERS: usize = 32;

/// The counters, in the order of `prodguard.metrics`.
#[derive(Clone, Copy)]
pub enum Counter {
    RefusedCommand,
    RefusedSettings,
    RefusedRow,
    RefusedTestData,
    RefusedAudit,
    Warned,
    OverridesUsed,
    AuditRowsWritten,
    DenialsQueued,
    DenialsWritten,
    DenialsDropped,
    DenialsDiscarded,
    DenialsSuppressed,
    AlertRowDrop,
    AlertOverrideUsed,
    AlertChangeUsed,
    AlertMigrationHistoryChanged,
    AlertTestDataLogged,
    AlertDenialBurst,
    AlertsDropped,
}

/// Name and description of each counter.
pub const COUNTERS: [(&str, &str); 20] = [
    ("commands_refused", "statements refused by the command guard (utility statements)"),
    ("settings_refused", "changes of prodguard settings refused"),
    ("row_statements_refused", "DELETE/UPDATE/MERGE statements refused by the row guard"),
    ("test_data_rows_refused", "rows refused because they carry test data"),
    ("audit_tampering_refused", "UPDATE/DELETE/TRUNCATE of the audit tables refused"),
    ("warnings", "statements a guard warned about in staging"),
    ("overrides_used", "guarded statements that ran on an override in production"),
    ("audit_rows_written", "rows written to prodguard.audit_log (including by transactions that rolled back)"),
    ("denials_queued", "denial records put into the shared queue"),
    ("denials_written", "denial records written to prodguard.denial_log"),
    ("denials_dropped", "denial records not queued because the queue was full (still in the server log)"),
    ("denials_discarded", "denial and alert records of databases without the extension, or whose writer kept failing (still in the server log)"),
    ("denials_suppressed", "denial records not stored in full because their client passed prodguard.denial_log_rate within a minute (counted, summed up in one record, still in the server log)"),
    ("alerts_row_drop", "row_drop alerts: a protected table lost more than prodguard.row_drop_alert_percent of its rows within prodguard.row_drop_window"),
    ("alerts_override_used", "override_used alerts: a guarded statement ran on an operator's override"),
    ("alerts_change_used", "change_used alerts: a session ran guarded statements under an approved change"),
    ("alerts_migration_history_changed", "migration_history_changed alerts: rows of a migration-history table were deleted or the table truncated or dropped"),
    ("alerts_test_data_logged", "test_data_logged alerts: rows carrying test data were let in (test_data_action log or warn, staging, replication)"),
    ("alerts_denial_burst", "denial_burst alerts: one client was refused more than prodguard.denial_burst_threshold times within a minute"),
    ("alerts_dropped", "alert records not queued because the queue was full (still in the server log)"),
];
const N_COUNTERS: usize = COUNTERS.len();

/// A string of at most N bytes, cut at a character boundary.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub fn set(&mut self, s: &str) {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes[..end].copy_from_slice(&s.as_bytes()[..end]);
        self.len = end as u16;
    }

    pub fn get(&self) -> &str {
        // (a length beyond the buffer, from a damaged queue file, reads as empty)
        self.bytes
            .get(..self.len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Whether the length fits the buffer and the bytes are text.
    fn sane(&self) -> bool {
        (self.len as usize) <= N && std::str::from_utf8(&self.bytes[..self.len as usize]).is_ok()
    }
}

/// What a queued record is (`Record::kind`).
pub const KIND_DENIAL: u8 = 0;
/// An alert, for `prodguard.alerts` and `NOTIFY prodguard_alert` (`command` holds its kind).
pub const KIND_ALERT: u8 = 1;
/// A request to count a table's rows for the row-drop watch (`object` holds the table's
/// oid, `detail` its name).
pub const KIND_BASELINE: u8 = 2;

pub const FREE: u8 = 0;
pub const READY: u8 = 1;
pub const TAKEN: u8 = 2;

/// One refused attempt, as `prodguard.denied_attempts` shows it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Record {
    pub state: u8,
    /// KIND_DENIAL, KIND_ALERT or KIND_BASELINE (in what was padding in 0.1.0's records, so
    /// that a queue file saved by 0.1.0 loads as denials).
    pub kind: u8,
    pub id: i64,
    pub at: i64,
    pub dboid: u32,
    pub pid: i32,
    pub database: Text<64>,
    pub db_user: Text<64>,
    pub session_user: Text<64>,
    pub application: Text<64>,
    /// Empty for a Unix-socket or in-process client.
    pub client: Text<64>,
    pub guard: Text<16>,
    pub command: Text<64>,
    pub object: Text<256>,
    pub detail: Text<512>,
    pub statement: Text<2048>,
}

impl Record {
    /// Whether every text field is within its buffer and valid UTF-8.
    fn sane(&self) -> bool {
        self.kind <= KIND_BASELINE
            && self.database.sane()
            && self.db_user.sane()
            && self.session_user.sane()
            && self.application.sane()
            && self.client.sane()
            && self.guard.sane()
            && self.command.sane()
            && self.object.sane()
            && self.detail.sane()
            && self.statement.sane()
    }

    pub fn empty() -> Box<Record> {
        // SAFETY: every field is an integer or a byte array; all zeroes is a valid value
        // (FREE, empty strings).
        Box::new(unsafe { std::mem::zeroed() })
    }
}

/// A database's writer, as the launcher started it.
#[repr(C)]
pub struct Writer {
    pub dboid: u32,
    /// The writer's latch while it runs and waits for records; null otherwise.
    pub latch: *mut pg_sys::Latch,
    /// Whether a writer was started and has not been seen to stop.
    pub running: bool,
    /// How many writers of this database stopped in a row without writing their records.
    pub failures: u32,
}

impl Writer {
    fn clear(&mut self) {
        self.dboid = 0;
        self.latch = std::ptr::null_mut();
        self.running = false;
        self.failures = 0;
    }
}

#[repr(C)]
struct Header {
    counters: [AtomicU64; N_COUNTERS],
    next_id: AtomicI64,
    launcher_latch: AtomicPtr<pg_sys::Latch>,
    capacity: usize,
    /// Where the next search for a free slot starts (under the lock).
    hint: usize,
    writers: [Writer; MAX_WRITERS],
}

static mut HEADER: *mut Header = std::ptr::null_mut();
static mut RECORDS: *mut Record = std::ptr::null_mut();
static mut LOCK: *mut pg_sys::LWLock = std::ptr::null_mut();
static mut CAPACITY: usize = 0;

fn size(capacity: usize) -> usize {
    std::mem::size_of::<Header>() + capacity * std::mem::size_of::<Record>()
}

/// Sets the queue's capacity; called from _PG_init under shared_preload_libraries, before
/// the shared-memory hooks run.
pub fn configure(capacity: usize) {
    // SAFETY: _PG_init of a preloaded library runs in the postmaster before any other
    // process exists.
    unsafe { CAPACITY = capacity };
}

/// What the shared-memory request hook asks for: the space and one named lock.
pub fn request() {
    // SAFETY: called by the postmaster while shared memory is being sized.
    unsafe {
        pg_sys::RequestAddinShmemSpace(size(CAPACITY));
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

/// What the shared-memory startup hook does: finds (or creates and initialises) the queue
/// and counters; in the postmaster, also reloads the records saved at the last clean
/// shutdown and arranges to save them at the next.
pub fn attach() {
    // SAFETY: called once per (re)initialisation of shared memory, in the postmaster (and
    // in EXEC_BACKEND children); the struct is sized by `request` and initialised only
    // when not found, under AddinShmemInitLock.
    unsafe {
        let init_lock =
            &mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock as *mut pg_sys::LWLock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let base = pg_sys::ShmemInitStruct(NAME.as_ptr(), size(CAPACITY), &mut found);
        HEADER = base as *mut Header;
        RECORDS = (base as *mut u8).add(std::mem::size_of::<Header>()) as *mut Record;
        LOCK = &mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock;
        if !found {
            std::ptr::write_bytes(base as *mut u8, 0, size(CAPACITY));
            (*HEADER).capacity = CAPACITY;
            (*HEADER)
                .next_id
                .store(pg_sys::GetCurrentTimestamp(), Ordering::Relaxed);
        }
        pg_sys::LWLockRelease(init_lock);
        if !pg_sys::IsUnderPostmaster {
            load_saved();
            pg_sys::on_shmem_exit(Some(save_at_exit), pg_sys::Datum::from(0));
        }
    }
}

/// Whether the queue and counters exist in this server.
pub fn available() -> bool {
    // SAFETY: a read of a pointer set before any backend started.
    unsafe { !HEADER.is_null() }
}

pub fn count(counter: Counter) {
    add(counter, 1);
}

pub fn add(counter: Counter, n: u64) {
    // SAFETY: HEADER points into shared memory for the life of the server when not null.
    if let Some(h) = unsafe { HEADER.as_ref() } {
        h.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

/// The counters, or `None` without shared memory.
pub fn counters() -> Option<[u64; N_COUNTERS]> {
    // SAFETY: as in `add`.
    let h = unsafe { HEADER.as_ref() }?;
    Some(std::array::from_fn(|i| {
        h.counters[i].load(Ordering::Relaxed)
    }))
}

/// Runs `f` with the queue locked: its records and writers.
fn locked<R>(f: impl FnOnce(&mut [Record], &mut Header) -> R) -> Option<R> {
    // SAFETY: the pointers are set before any backend starts; the records and writer
    // entries are only touched under LOCK, and `f` does not raise errors (it copies
    // memory), so the lock is always released here.
    unsafe {
        if HEADER.is_null() {
            return None;
        }
        pg_sys::LWLockAcquire(LOCK, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let records = std::slice::from_raw_parts_mut(RECORDS, (*HEADER).capacity);
        let r = f(records, &mut *HEADER);
        pg_sys::LWLockRelease(LOCK);
        Some(r)
    }
}

/// Queues a record and wakes its writer (or the launcher). Never waits for space: returns
/// false when the queue is full or absent.
pub fn enqueue(record: &Record) -> bool {
    let latch = locked(|records, h| {
        let n = records.len();
        let slot = (0..n)
            .map(|i| (h.hint + i) % n)
            .find(|&i| records[i].state == FREE)?;
        h.hint = (slot + 1) % n;
        records[slot] = *record;
        records[slot].state = READY;
        records[slot].id = h.next_id.fetch_add(1, Ordering::Relaxed);
        let writer = h
            .writers
            .iter()
            .find(|w| w.dboid == record.dboid && !w.latch.is_null());
        Some(writer.map_or(h.launcher_latch.load(Ordering::Relaxed), |w| w.latch))
    })
    .flatten();
    let denial = record.kind == KIND_DENIAL;
    match latch {
        Some(latch) => {
            if denial {
                count(Counter::DenialsQueued);
            }
            if !latch.is_null() {
                // SAFETY: latches live in shared memory (PGPROC) for the life of the
                // server; setting one whose owner has gone is harmless.
                unsafe { pg_sys::SetLatch(latch) }
            }
            true
        }
        None => {
            if available() {
                count(if denial {
                    Counter::DenialsDropped
                } else {
                    Counter::AlertsDropped
                });
            }
            false
        }
    }
}

/// Registers the launcher's latch, so that backends can wake it.
pub fn set_launcher_latch(latch: *mut pg_sys::Latch) {
    // SAFETY: as in `add`.
    if let Some(h) = unsafe { HEADER.as_ref() } {
        h.launcher_latch.store(latch, Ordering::Relaxed);
    }
}

/// The databases with queued records and no running writer; marks them as having one.
pub fn claim_databases() -> Vec<u32> {
    locked(|records, h| {
        let mut claimed = Vec::new();
        for r in records.iter().filter(|r| r.state == READY) {
            if claimed.contains(&r.dboid) {
                continue;
            }
            let entry = match h.writers.iter().position(|w| w.dboid == r.dboid) {
                Some(i) if h.writers[i].running => continue,
                Some(i) => i,
                None => match h.writers.iter().position(|w| w.dboid == 0) {
                    Some(i) => i,
                    None => break,
                },
            };
            let w = &mut h.writers[entry];
            w.dboid = r.dboid;
            w.running = true;
            w.latch = std::ptr::null_mut();
            claimed.push(r.dboid);
        }
        claimed
    })
    .unwrap_or_default()
}

/// Called by a (re)started launcher: no writer is known to run.
pub fn forget_writers() {
    locked(|_, h| {
        for w in h.writers.iter_mut() {
            w.clear();
        }
    });
}

/// Called by the launcher when the writer of a database has stopped. Records it had taken
/// go back to the queue. A writer that stops with records left counts as a failure; after
/// `max_failures` in a row the database's records are discarded (and counted). Returns
/// whether records remain to be written.
pub fn writer_stopped(dboid: u32, max_failures: u32) -> bool {
    locked(|records, h| {
        let mut left = 0;
        for r in records
            .iter_mut()
            .filter(|r| r.dboid == dboid && r.state != FREE)
        {
            r.state = READY;
            left += 1;
        }
        let Some(w) = h.writers.iter_mut().find(|w| w.dboid == dboid) else {
            return left > 0;
        };
        if left == 0 {
            w.clear();
            return false;
        }
        w.failures += 1;
        w.running = false;
        w.latch = std::ptr::null_mut();
        if w.failures >= max_failures {
            w.clear();
            for r in records.iter_mut().filter(|r| r.dboid == dboid) {
                r.state = FREE;
            }
            add(Counter::DenialsDiscarded, left);
            return false;
        }
        true
    })
    .unwrap_or(false)
}

/// Called by a writer when it starts: its latch, and the records a previous writer of
/// the database had taken go back to the queue.
pub fn writer_started(dboid: u32, latch: *mut pg_sys::Latch) {
    locked(|records, h| {
        for r in records
            .iter_mut()
            .filter(|r| r.dboid == dboid && r.state == TAKEN)
        {
            r.state = READY;
        }
        if let Some(w) = h.writers.iter_mut().find(|w| w.dboid == dboid) {
            w.latch = latch;
        }
    });
}

/// Takes up to `max` queued records of a database: (slot, record).
pub fn take(dboid: u32, max: usize) -> Vec<(usize, Record)> {
    locked(|records, _| {
        let mut out = Vec::new();
        for (i, r) in records.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            if r.state == READY && r.dboid == dboid {
                r.state = TAKEN;
                out.push((i, *r));
            }
        }
        out
    })
    .unwrap_or_default()
}

/// Frees the slots (slot, record id) of records a writer has written (or discarded); a
/// slot that meanwhile holds another record is left alone.
pub fn release(dboid: u32, slots: &[(usize, i64)]) {
    locked(|records, h| {
        for &(i, id) in slots {
            if records[i].id == id {
                records[i].state = FREE;
            }
        }
        if let Some(w) = h.writers.iter_mut().find(|w| w.dboid == dboid) {
            w.failures = 0;
        }
    });
}

/// Called by an idle writer: if nothing is queued for its database, stops taking wake-ups
/// (backends wake the launcher instead) and returns true: the writer may exit.
pub fn writer_may_exit(dboid: u32) -> bool {
    locked(|records, h| {
        if records.iter().any(|r| r.dboid == dboid && r.state == READY) {
            return false;
        }
        if let Some(w) = h.writers.iter_mut().find(|w| w.dboid == dboid) {
            w.latch = std::ptr::null_mut();
        }
        true
    })
    .unwrap_or(true)
}

/// How many records are queued or being written.
pub fn depth() -> Option<usize> {
    locked(|records, _| records.iter().filter(|r| r.state != FREE).count())
}

/// The queue's capacity (0 without shared memory).
pub fn capacity() -> usize {
    // SAFETY: as in `add`.
    unsafe { HEADER.as_ref() }.map_or(0, |h| h.capacity)
}

// ---------------------------------------------------------------------------------------
// Records queued at a clean shutdown are kept in a file until the next start.

fn record_bytes(r: &Record) -> &[u8] {
    // SAFETY: Record is plain old data of a fixed size.
    unsafe {
        std::slice::from_raw_parts(
            r as *const Record as *const u8,
            std::mem::size_of::<Record>(),
        )
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn save_at_exit(code: i32, _arg: pg_sys::Datum) {
    // after a crash shared memory cannot be trusted: save nothing
    if code != 0 {
        return;
    }
    // SAFETY: the postmaster's exit: every other process has gone, nobody holds the lock.
    let (header, records) = unsafe {
        if HEADER.is_null() {
            return;
        }
        (
            &*HEADER,
            std::slice::from_raw_parts(RECORDS, (*HEADER).capacity),
        )
    };
    let pending: Vec<&Record> = records.iter().filter(|r| r.state != FREE).collect();
    if pending.is_empty() {
        return;
    }
    let mut out =
        Vec::with_capacity(FILE_HEADER_LEN + pending.len() * std::mem::size_of::<Record>());
    out.extend_from_slice(&FILE_MAGIC.to_ne_bytes());
    out.extend_from_slice(&(std::mem::size_of::<Record>() as u64).to_ne_bytes());
    out.extend_from_slice(&header.next_id.load(Ordering::Relaxed).to_ne_bytes());
    for r in &pending {
        out.extend_from_slice(record_bytes(r));
    }
    // the postmaster's working directory is the data directory
    let tmp = format!("{QUEUE_FILE}.tmp");
    if std::fs::write(&tmp, &out).is_ok() {
        let _ = std::fs::rename(&tmp, QUEUE_FILE);
    }
}

/// Puts the records saved at the last clean shutdown back into the queue.
fn load_saved() {
    let Ok(bytes) = std::fs::read(QUEUE_FILE) else {
        return;
    };
    let _ = std::fs::remove_file(QUEUE_FILE);
    let rsize = std::mem::size_of::<Record>();
    let word = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
    };
    if word(0) != Some(FILE_MAGIC) || word(8) != Some(rsize as u64) || word(16).is_none() {
        pgrx::log!("prodguard: ignored {QUEUE_FILE}: written by another version, or damaged");
        return;
    }
    let next_id = word(16).unwrap_or(0) as i64;
    let mut loaded = 0;
    let mut damaged = 0;
    locked(|records, h| {
        // ids stay unique: continue after the saved ones if the clock went back
        if h.next_id.load(Ordering::Relaxed) < next_id {
            h.next_id.store(next_id, Ordering::Relaxed);
        }
        for (slot, chunk) in records
            .iter_mut()
            .zip(bytes[FILE_HEADER_LEN..].chunks_exact(rsize))
        {
            // SAFETY: the chunk has the size of a Record, which is plain old data: any bytes
            // are a value of it; the text fields are checked before the record is kept.
            let mut r: Record =
                unsafe { std::ptr::read_unaligned(chunk.as_ptr() as *const Record) };
            if !r.sane() {
                damaged += 1;
                continue;
            }
            r.state = READY;
            *slot = r;
            loaded += 1;
        }
    });
    pgrx::log!("prodguard: {loaded} queued denial records restored from {QUEUE_FILE} ({damaged} damaged ones skipped)");
}

//! The row-drop watch and the denial-burst counter (SPEC §11), in shared memory.
//!
//! **Row drops.** The audit trigger counts, per transaction, the rows each protected table
//! loses (DELETE, MERGE, replicated deletes) and gains (INSERT); a backup before an
//! overridden or replicated TRUNCATE, DROP TABLE or DROP SCHEMA counts the rows it copies as
//! lost. Savepoints rolled back take their counts with them. Before commit the counts are
//! put under the partitioned table a partition belongs to (its root) and named; after
//! commit they are added to the table's entry in shared memory: one LWLock round per
//! committing transaction that touched a protected table, nothing per row but a counter.
//!
//! An entry is a tumbling window of `prodguard.row_drop_window`, opened by the first
//! commit that removes rows: `lost` is the net number of rows removed since (removed less
//! added, so a table that grows and shrinks within the window loses nothing), `baseline` the
//! table's size when the window opened. The size is counted once per window, exactly
//! (`count(*)`), by the background writer of the database, not on the write path: the first
//! losing commit queues a request, and the writer stores `rows now + rows lost so far`.
//! When `lost` exceeds `prodguard.row_drop_alert_percent` of `baseline`, one `row_drop`
//! alert is raised for the table and window, by whichever commit (or the writer) sees it.
//!
//! **Denial bursts.** Refusals are counted per client (IP address, or for a Unix-socket
//! connection the login role) in windows of a minute; the refusal that makes the count
//! exceed `prodguard.denial_burst_threshold` raises one `denial_burst` alert per window.
//!
//! Both tables are fixed in size: the least recently used entry (or one whose window has
//! passed) makes room for a new one. Without shared_preload_libraries nothing here runs.

use std::cell::{Cell, RefCell};
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::{PgList, PgXactCallbackEvent};

use crate::core::pg;
use crate::core::settings::{self, Environment};
use crate::records::alerts::{self, Kind};
use crate::records::denial::Session;
use crate::records::shmem::{self, Record, KIND_BASELINE};

const NAME: &CStr = c"pg_prodguard_watch";
/// Protected tables watched at a time (all databases).
const TABLES: usize = 1024;
/// Clients whose refusals are counted at a time.
const CLIENTS: usize = 256;
const MINUTE_US: i64 = 60_000_000;

#[repr(C)]
#[derive(Clone, Copy)]
struct Table {
    dboid: u32,
    relid: u32,
    window_start: i64,
    touched: i64,
    /// Rows removed less rows added since the window opened.
    lost: i64,
    /// The table's size when the window opened; -1 until counted.
    baseline: i64,
    alerted: bool,
    /// A count of the table's rows has been asked of the writer.
    pending: bool,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Client {
    key: u64,
    since: i64,
    count: u32,
    alerted: bool,
}

#[repr(C)]
struct Shared {
    tables: [Table; TABLES],
    clients: [Client; CLIENTS],
}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut LOCK: *mut pg_sys::LWLock = std::ptr::null_mut();

/// What the shared-memory request hook asks for.
pub fn request() {
    // SAFETY: called by the postmaster while shared memory is being sized.
    unsafe {
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
        pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), 1);
    }
}

/// What the shared-memory startup hook does: finds or creates the (zeroed) tables.
pub fn attach() {
    // SAFETY: as in shmem::attach: sized by `request`, initialised only when not found,
    // under AddinShmemInitLock.
    unsafe {
        let init_lock = &mut (*pg_sys::MainLWLockArray.add(shmem::ADDIN_SHMEM_INIT_LOCK)).lock
            as *mut pg_sys::LWLock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let size = std::mem::size_of::<Shared>();
        let base = pg_sys::ShmemInitStruct(NAME.as_ptr(), size, &mut found);
        if !found {
            std::ptr::write_bytes(base as *mut u8, 0, size);
        }
        SHARED = base as *mut Shared;
        LOCK = &mut (*pg_sys::GetNamedLWLockTranche(NAME.as_ptr())).lock;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// Runs `f` on the shared tables, locked. `f` only reads and writes memory.
fn locked<R>(f: impl FnOnce(&mut Shared) -> R) -> Option<R> {
    // SAFETY: the pointers are set before any backend starts; the tables are only touched
    // under LOCK, and `f` raises no error, so the lock is always released here.
    unsafe {
        if SHARED.is_null() {
            return None;
        }
        pg_sys::LWLockAcquire(LOCK, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let r = f(&mut *SHARED);
        pg_sys::LWLockRelease(LOCK);
        Some(r)
    }
}

fn now() -> i64 {
    // SAFETY: GetCurrentTimestamp has no preconditions.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// Whether `lost` rows of `baseline` are more than `percent` per cent.
pub fn crossed(lost: i64, baseline: i64, percent: i64) -> bool {
    lost > 0 && lost.saturating_mul(100) > percent.saturating_mul(baseline.max(0))
}

// ---------------------------------------------------------------------------------------
// Counting in the changing transaction

struct Pending {
    relid: pg_sys::Oid,
    subxact: pg_sys::SubTransactionId,
    removed: i64,
    added: i64,
}

/// A table's net loss in a committing transaction, resolved before commit.
struct Folded {
    relid: pg_sys::Oid,
    name: String,
    lost: i64,
}

thread_local! {
    /// The local transaction the pending counts belong to (0: none).
    static TXN: Cell<u32> = const { Cell::new(0) };
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// Names of tables counted by a backup (a dropped table has no name at commit).
    static NAMES: RefCell<Vec<(pg_sys::Oid, String)>> = const { RefCell::new(Vec::new()) };
    static READY: RefCell<(Vec<Folded>, Option<Session>)> = const { RefCell::new((Vec::new(), None)) };
    static SUBXACT_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this session's changes are watched: shared memory, a database, the watch on,
/// not development.
fn watching() -> bool {
    // SAFETY: reads of pointers and backend globals.
    let attached = unsafe { !SHARED.is_null() && pg_sys::MyDatabaseId != pg_sys::InvalidOid };
    attached
        && settings::ROW_DROP_ALERT_PERCENT.get() > 0
        && settings::environment() != Environment::Development
}

/// Counts one row an INSERT added (`removed` false) or a DELETE removed (true).
pub fn note_row(relid: pg_sys::Oid, removed: bool) {
    if watching() {
        add(relid, i64::from(removed), i64::from(!removed));
    }
}

/// Counts the rows a TRUNCATE, DROP TABLE or DROP SCHEMA is about to destroy (counted by
/// its backup).
pub fn note_removed(relid: pg_sys::Oid, rows: i64) {
    if watching() && rows > 0 {
        let name = pg::describe_table(root(relid));
        NAMES.with_borrow_mut(|n| n.push((relid, name)));
        add(relid, rows, 0);
    }
}

fn add(relid: pg_sys::Oid, removed: i64, added: i64) {
    let txn = crate::core::breakglass::local_transaction();
    if TXN.get() != txn {
        start_transaction(txn);
    }
    // SAFETY: GetCurrentSubTransactionId has no preconditions inside a transaction.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    PENDING.with_borrow_mut(|p| {
        match p
            .iter_mut()
            .rev()
            .find(|e| e.relid == relid && e.subxact == subxact)
        {
            Some(e) => {
                e.removed += removed;
                e.added += added;
            }
            None => p.push(Pending {
                relid,
                subxact,
                removed,
                added,
            }),
        }
    });
}

fn start_transaction(txn: u32) {
    TXN.set(txn);
    clear();
    pgrx::register_xact_callback(PgXactCallbackEvent::PreCommit, resolve);
    pgrx::register_xact_callback(PgXactCallbackEvent::Commit, fold);
    pgrx::register_xact_callback(PgXactCallbackEvent::Abort, clear);
    if !SUBXACT_REGISTERED.get() {
        // SAFETY: registers a #[pg_guard] callback for the life of the backend.
        unsafe { pg_sys::RegisterSubXactCallback(Some(subxact_event), std::ptr::null_mut()) };
        SUBXACT_REGISTERED.set(true);
    }
}

fn clear() {
    PENDING.with_borrow_mut(|p| p.clear());
    NAMES.with_borrow_mut(|n| n.clear());
    READY.with_borrow_mut(|r| *r = (Vec::new(), None));
}

/// A savepoint rolled back: its counts (and those of the savepoints inside it) go.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        PENDING.with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.retain(|e| e.subxact < my_subid);
            }
        });
    }
}

// PostgreSQL's partition catalog lookup (pgrx keeps partition.h out of its bindings).
unsafe extern "C-unwind" {
    fn get_partition_ancestors(relid: pg_sys::Oid) -> *mut pg_sys::List;
}

/// The partitioned table at the top of a partition's tree, else the table itself.
fn root(relid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: syscache lookups; get_partition_ancestors returns a List of the ancestors'
    // oids, nearest first.
    unsafe {
        if !pg_sys::get_rel_relispartition(relid) {
            return relid;
        }
        let ancestors = PgList::<pg_sys::Oid>::from_pg(get_partition_ancestors(relid));
        ancestors.iter_oid().last().unwrap_or(relid)
    }
}

/// Before commit (still in the transaction): net counts per root table, named, and who
/// committed them.
fn resolve() {
    let pending = PENDING.with_borrow_mut(std::mem::take);
    let names = NAMES.with_borrow_mut(std::mem::take);
    let mut folded: Vec<Folded> = Vec::new();
    for e in pending {
        let relid = root(e.relid);
        let lost = e.removed - e.added;
        match folded.iter_mut().find(|f| f.relid == relid) {
            Some(f) => f.lost += lost,
            None => {
                let name = names
                    .iter()
                    .find(|(r, _)| *r == e.relid || root(*r) == relid)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| pg::describe_table(relid));
                folded.push(Folded { relid, name, lost });
            }
        }
    }
    let who = folded.iter().any(|f| f.lost > 0).then(Session::current);
    READY.with_borrow_mut(|r| *r = (folded, who));
}

/// After commit: adds the counts to the shared entries; raises the alerts they cross, and
/// asks the writer to count the tables whose window has no size yet. Raises no error.
fn fold() {
    let (folded, who) = READY.with_borrow_mut(std::mem::take);
    TXN.set(0);
    if folded.is_empty() {
        return;
    }
    // SAFETY: a read of a backend global.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let now = now();
    let window = window_us();
    let percent = i64::from(settings::ROW_DROP_ALERT_PERCENT.get());
    let mut crossings = Vec::new();
    let mut requests = Vec::new();
    locked(|sh| {
        for f in &folded {
            let relid = f.relid.to_u32();
            let slot = match sh
                .tables
                .iter()
                .position(|t| t.dboid == dboid && t.relid == relid)
            {
                Some(i) => i,
                None if f.lost > 0 => evict(&sh.tables, now, window),
                None => continue,
            };
            let t = &mut sh.tables[slot];
            if t.dboid != dboid || t.relid != relid || now - t.window_start > window {
                *t = Table {
                    dboid,
                    relid,
                    window_start: now,
                    touched: now,
                    lost: 0,
                    baseline: -1,
                    alerted: false,
                    pending: false,
                };
                if f.lost <= 0 {
                    // a window opens only with a loss
                    t.dboid = 0;
                    continue;
                }
            }
            t.touched = now;
            t.lost += f.lost;
            if t.lost <= 0 || t.alerted {
                continue;
            }
            if t.baseline >= 0 {
                if crossed(t.lost, t.baseline, percent) {
                    t.alerted = true;
                    crossings.push((f.name.clone(), t.lost, t.baseline, t.window_start));
                }
            } else if !t.pending {
                t.pending = true;
                requests.push((f.relid, f.name.clone()));
            }
        }
    });
    let Some(who) = who else { return };
    for (name, lost, baseline, since) in crossings {
        alert_row_drop(&who, &name, lost, baseline, since);
    }
    for (relid, name) in requests {
        let mut r = Record::empty();
        r.kind = KIND_BASELINE;
        r.at = now;
        r.dboid = dboid;
        r.pid = who.pid;
        who.fill(&mut r);
        r.object.set(&relid.to_u32().to_string());
        r.detail.set(&name);
        shmem::enqueue(&r);
    }
}

fn window_us() -> i64 {
    i64::from(settings::ROW_DROP_WINDOW.get()).saturating_mul(1_000_000)
}

/// A slot for a new entry: a free one, else one whose window has passed, else the least
/// recently touched.
fn evict<const N: usize>(tables: &[Table; N], now: i64, window: i64) -> usize {
    tables
        .iter()
        .position(|t| t.dboid == 0)
        .or_else(|| tables.iter().position(|t| now - t.window_start > window))
        .unwrap_or_else(|| {
            tables
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| t.touched)
                .map_or(0, |(i, _)| i)
        })
}

fn alert_row_drop(who: &Session, table: &str, lost: i64, baseline: i64, since: i64) {
    let percent = (lost as f64) * 100.0 / (baseline.max(1) as f64);
    let window = settings::ROW_DROP_WINDOW.get();
    alerts::emit(
        who,
        Kind::RowDrop,
        table,
        &format!(
            "{table} lost {lost} of its {baseline} rows ({percent:.0}%) since {}: more than prodguard.row_drop_alert_percent ({}%) within prodguard.row_drop_window ({}).",
            pg::timestamp_text(since),
            settings::ROW_DROP_ALERT_PERCENT.get(),
            pretty_seconds(window),
        ),
    );
}

fn pretty_seconds(s: i32) -> String {
    match s {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

// ---------------------------------------------------------------------------------------
// The writer's side: counting a table's rows once per window

/// The rows a table has lost in its open window, and when the window opened; `None`
/// when no window waits for a count.
pub fn waiting(dboid: u32, relid: u32) -> Option<(i64, i64)> {
    locked(|sh| {
        sh.tables
            .iter()
            .find(|t| t.dboid == dboid && t.relid == relid && t.pending)
            .map(|t| (t.lost, t.window_start))
    })
    .flatten()
}

/// Stores the size a table had when its window opened (`rows` counted now plus `lost`, the
/// rows lost when the count began); returns (lost, baseline) when that crosses the alert
/// threshold, which the caller raises.
pub fn set_baseline(
    dboid: u32,
    relid: u32,
    window_start: i64,
    rows: i64,
    lost: i64,
) -> Option<(i64, i64)> {
    let percent = i64::from(settings::ROW_DROP_ALERT_PERCENT.get());
    locked(|sh| {
        let t = sh
            .tables
            .iter_mut()
            .find(|t| t.dboid == dboid && t.relid == relid && t.window_start == window_start)?;
        t.pending = false;
        t.baseline = rows + lost;
        if !t.alerted && crossed(t.lost, t.baseline, percent) {
            t.alerted = true;
            return Some((t.lost, t.baseline));
        }
        None
    })
    .flatten()
}

/// Raises the row_drop alert the writer found, as the session that asked for the count.
pub fn alert_from_writer(who: &Session, table: &str, lost: i64, baseline: i64, since: i64) {
    alert_row_drop(who, table, lost, baseline, since);
}

// ---------------------------------------------------------------------------------------
// Denial bursts

/// Counts one refusal of the client `who`; returns the count when it first exceeds
/// prodguard.denial_burst_threshold in the client's current minute.
pub fn note_refusal(who: &Session) -> Option<u32> {
    let threshold = u32::try_from(settings::DENIAL_BURST_THRESHOLD.get()).unwrap_or(0);
    if threshold == 0 {
        return None;
    }
    let key = client_key(who);
    let now = now();
    locked(|sh| {
        let i = sh
            .clients
            .iter()
            .position(|c| c.key == key)
            .unwrap_or_else(|| {
                sh.clients
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, c)| c.since)
                    .map_or(0, |(i, _)| i)
            });
        let c = &mut sh.clients[i];
        if c.key != key || now - c.since > MINUTE_US {
            *c = Client {
                key,
                since: now,
                count: 0,
                alerted: false,
            };
        }
        c.count += 1;
        if c.count > threshold && !c.alerted {
            c.alerted = true;
            return Some(c.count);
        }
        None
    })
    .flatten()
}

/// The client a refusal came from: its IP address, or its login role over a Unix socket.
pub fn client_name(who: &Session) -> String {
    match &who.client {
        Some(addr) => format!("client {addr}"),
        None => format!("local client (role \"{}\")", who.session_user),
    }
}

fn client_key(who: &Session) -> u64 {
    // FNV-1a of the client's name and database: stable, no allocation of a hasher
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_name(who)
        .bytes()
        .chain([0])
        .chain(who.database.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

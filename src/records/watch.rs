//! The row-drop watch and the denial-burst counter (SPEC §11), in shared memory.
//!
//! **Row drops.** The audit trigger counts, per transaction, the rows each protected table
//! loses (DELETE, MERGE, replicated deletes) and gains (INSERT); a backup before an
//! overridden or replicated TRUNCATE, DROP TABLE or DROP SCHEMA counts the rows it copies as
//! lost. Savepoints rolled back take their counts with them. Just before commit the counts
//! are put under the partitioned table a partition belongs to (its root) and added to the
//! table's entry in shared memory (taken back if the commit fails after all); what they
//! cross is announced after the commit. One LWLock round per committing transaction that
//! touched a protected table, a hash probe of a few slots, nothing per row but a counter.
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
use pgrx::PgList;

use crate::core::pg;
use crate::core::settings::{self, Environment};
use crate::records::alerts::{self, Kind};
use crate::records::denial::Session;
use crate::records::shmem::{self, Record, KIND_BASELINE};

const NAME: &CStr = c"pg_prodguard_watch";
/// Protected tables watched at a time (all databases).
const TABLES: usize = 1024;
/// Clients whose refusals are counted at a time: an entry per client for the burst alert,
/// one per client and login role for the denial log's rate.
const CLIENTS: usize = 1024;
const MINUTE_US: i64 = 60_000_000;
/// How many slots from its hash a table's entry may be in.
const PROBE: usize = 8;

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
    /// Refusals stored in full this minute, and those only counted.
    stored: u32,
    suppressed: u32,
    /// A hash of the statement text last stored for the client this minute.
    statement: u64,
    /// Who the client is, for the record that sums up its refusals not stored.
    who: Who,
}

/// Who a client is, as the record that sums up its refusals not stored names it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Who {
    pub dboid: u32,
    pub pid: i32,
    pub database: shmem::Text<64>,
    pub db_user: shmem::Text<64>,
    pub session_user: shmem::Text<64>,
    pub application: shmem::Text<64>,
    /// Empty for a Unix-socket client.
    pub client: shmem::Text<64>,
    /// The guard of the client's last refusal.
    pub guard: shmem::Text<16>,
    /// prodguard.denial_log_rate in the client's session.
    pub rate: u32,
}

impl Who {
    fn of(who: &Session, guard: &str, rate: u32) -> Who {
        let mut r = Record::empty();
        who.fill(&mut r);
        r.guard.set(guard);
        Who {
            // SAFETY: a read of the backend's database.
            dboid: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            pid: r.pid,
            database: r.database,
            db_user: r.db_user,
            session_user: r.session_user,
            application: r.application,
            client: r.client,
            guard: r.guard,
            rate,
        }
    }

    /// The session it names (for the client's name).
    pub fn session(&self) -> Session {
        let mut r = Record::empty();
        self.fill(&mut r);
        Session::of_record(&r)
    }

    pub fn fill(&self, r: &mut Record) {
        r.dboid = self.dboid;
        r.pid = self.pid;
        r.database = self.database;
        r.db_user = self.db_user;
        r.session_user = self.session_user;
        r.application = self.application;
        r.client = self.client;
        r.guard = self.guard;
    }
}

/// A client's minute that ended with refusals counted, not stored: to be summed up in one
/// record.
pub struct Leftover {
    pub who: Who,
    pub count: u32,
    /// When the minute began.
    pub since: i64,
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
    /// Whether the table is a partition (counted under its root).
    partition: bool,
    subxact: pg_sys::SubTransactionId,
    removed: i64,
    added: i64,
}

/// What the commit of this transaction does to one table's entry, decided before commit.
enum Then {
    Nothing,
    /// Raise the row_drop alert: (lost, baseline, window start).
    Alert(i64, i64, i64),
    /// Ask the writer to count the table.
    Count,
}

/// One table's net loss, added to its shared entry before commit (taken back if the
/// transaction aborts after all).
struct Folded {
    relid: pg_sys::Oid,
    lost: i64,
    /// The entry's window when the loss was added.
    window_start: i64,
    then: Then,
    name: String,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// Names of tables counted by a backup (a dropped table has no name at commit).
    static NAMES: RefCell<Vec<(pg_sys::Oid, String)>> = const { RefCell::new(Vec::new()) };
    /// Added to shared memory before commit: what commit announces, abort takes back.
    static FOLDED: RefCell<(Vec<Folded>, Option<Session>)> = const { RefCell::new((Vec::new(), None)) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// The current subtransaction, kept by the callbacks (cheaper than asking per row).
    static SUBXACT: Cell<pg_sys::SubTransactionId> = const { Cell::new(1) };
    /// Net loss per root table of the committing transaction (scratch).
    static TOTALS: RefCell<Vec<(pg_sys::Oid, i64)>> = const { RefCell::new(Vec::new()) };
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

/// Counts one row an INSERT added (`removed` false) or a DELETE removed (true) in a table
/// (`partition`: whether it is a partition, from its relcache entry).
pub fn note_row(relid: pg_sys::Oid, partition: bool, removed: bool) {
    if watching() {
        add(relid, partition, i64::from(removed), i64::from(!removed));
    }
}

/// Counts the rows a TRUNCATE, DROP TABLE or DROP SCHEMA is about to destroy (counted by
/// its backup).
pub fn note_removed(relid: pg_sys::Oid, rows: i64) {
    if watching() && rows > 0 {
        let name = pg::describe_table(root(relid));
        NAMES.with_borrow_mut(|n| n.push((relid, name)));
        // SAFETY: syscache lookup of a relation about to be destroyed, still there.
        let partition = unsafe { pg_sys::get_rel_relispartition(relid) };
        add(relid, partition, rows, 0);
    }
}

fn add(relid: pg_sys::Oid, partition: bool, removed: i64, added: i64) {
    if !REGISTERED.get() {
        // SAFETY: registers #[pg_guard] callbacks for the life of the backend; from now on
        // they keep SUBXACT current, so it is read from PostgreSQL only this once.
        unsafe {
            pg_sys::RegisterXactCallback(Some(xact_event), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(subxact_event), std::ptr::null_mut());
            SUBXACT.set(pg_sys::GetCurrentSubTransactionId());
        }
        REGISTERED.set(true);
    }
    let subxact = SUBXACT.get();
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
                partition,
                subxact,
                removed,
                added,
            }),
        }
    });
}

/// The end of every transaction of a backend that counted rows once: cheap when it
/// counted none this time.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    if matches!(
        event,
        XACT_EVENT_COMMIT | XACT_EVENT_ABORT | XACT_EVENT_PREPARE
    ) {
        SUBXACT.set(1); // TopSubTransactionId
    }
    match event {
        XACT_EVENT_PRE_COMMIT => {
            if PENDING.with_borrow(|p| !p.is_empty()) {
                before_commit();
            }
        }
        XACT_EVENT_COMMIT => {
            if FOLDED.with_borrow(|f| !f.0.is_empty()) {
                after_commit();
            }
        }
        XACT_EVENT_ABORT => {
            if FOLDED.with_borrow(|f| !f.0.is_empty()) {
                take_back();
            }
            clear();
        }
        // a prepared transaction's rows are not counted (its commit may come from any
        // session, or never)
        XACT_EVENT_PRE_PREPARE => clear(),
        _ => {}
    }
}

fn clear() {
    PENDING.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.clear();
        }
    });
    NAMES.with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            n.clear();
        }
    });
    FOLDED.with(|f| {
        if let Ok(mut f) = f.try_borrow_mut() {
            *f = (Vec::new(), None);
        }
    });
}

/// A savepoint rolled back: its counts (and those of the savepoints inside it) go.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my_subid: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_START_SUB => SUBXACT.set(my_subid),
        SUBXACT_EVENT_COMMIT_SUB | SUBXACT_EVENT_ABORT_SUB => SUBXACT.set(parent),
        _ => {}
    }
    if event == SUBXACT_EVENT_ABORT_SUB {
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

/// Before commit (still in the transaction, so names can be looked up): adds the net
/// counts per root table to the shared entries, and decides what the commit announces.
fn before_commit() {
    let names = NAMES.with_borrow_mut(|n| {
        if n.is_empty() {
            Vec::new()
        } else {
            std::mem::take(n)
        }
    });
    // the lists below keep their allocations from one transaction to the next
    TOTALS.with_borrow_mut(|totals| {
        totals.clear();
        PENDING.with_borrow_mut(|p| {
            for e in p.iter() {
                let relid = if e.partition { root(e.relid) } else { e.relid };
                let lost = e.removed - e.added;
                match totals.iter_mut().find(|(r, _)| *r == relid) {
                    Some((_, l)) => *l += lost,
                    None => totals.push((relid, lost)),
                }
            }
            p.clear();
        });
    });
    // SAFETY: a read of a backend global.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let now = now();
    let window = window_us();
    let percent = i64::from(settings::ROW_DROP_ALERT_PERCENT.get());
    let mut folded = FOLDED.with_borrow_mut(|f| std::mem::take(&mut f.0));
    folded.clear();
    TOTALS.with_borrow(|totals| {
        locked(|sh| {
            for &(relid, lost) in totals {
                let Some(t) = entry(&mut sh.tables, dboid, relid.to_u32(), now, window, lost > 0)
                else {
                    continue;
                };
                t.touched = now;
                t.lost += lost;
                let then = if t.lost <= 0 || t.alerted {
                    Then::Nothing
                } else if t.baseline >= 0 {
                    if crossed(t.lost, t.baseline, percent) {
                        t.alerted = true;
                        Then::Alert(t.lost, t.baseline, t.window_start)
                    } else {
                        Then::Nothing
                    }
                } else if !t.pending {
                    t.pending = true;
                    Then::Count
                } else {
                    Then::Nothing
                };
                folded.push(Folded {
                    relid,
                    lost,
                    window_start: t.window_start,
                    then,
                    name: String::new(),
                });
            }
        });
    });
    // names and who only for what commit will announce
    let mut who = None;
    for f in folded
        .iter_mut()
        .filter(|f| !matches!(f.then, Then::Nothing))
    {
        f.name = names
            .iter()
            .find(|(r, _)| *r == f.relid || root(*r) == f.relid)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| pg::describe_table(f.relid));
        who.get_or_insert_with(Session::current);
    }
    FOLDED.with_borrow_mut(|f| *f = (folded, who));
}

/// The shared entry of a table: its open window, or a new one (only when `open` and the
/// table lost rows: a window opens with a loss). Probes a few slots from the table's hash;
/// a new entry takes a free one, else one whose window has passed, else the least
/// recently touched.
fn entry(
    tables: &mut [Table; TABLES],
    dboid: u32,
    relid: u32,
    now: i64,
    window: i64,
    open: bool,
) -> Option<&mut Table> {
    let start = (hash(dboid, relid) as usize) % TABLES;
    let probe = (0..PROBE).map(|k| (start + k) % TABLES);
    let found = probe
        .clone()
        .find(|&i| tables[i].dboid == dboid && tables[i].relid == relid);
    let i = match found {
        Some(i) if now - tables[i].window_start <= window => return Some(&mut tables[i]),
        Some(i) => i,
        None if !open => return None,
        None => probe
            .clone()
            .find(|&i| tables[i].dboid == 0)
            .or_else(|| {
                probe
                    .clone()
                    .find(|&i| now - tables[i].window_start > window)
            })
            .unwrap_or_else(|| probe.min_by_key(|&i| tables[i].touched).unwrap_or(start)),
    };
    if !open {
        // the window has passed and nothing was lost: the entry is done with
        tables[i].dboid = 0;
        return None;
    }
    tables[i] = Table {
        dboid,
        relid,
        window_start: now,
        touched: now,
        lost: 0,
        baseline: -1,
        alerted: false,
        pending: false,
    };
    Some(&mut tables[i])
}

/// After commit: raises the alerts decided before it and asks the writer for the counts.
/// Looks nothing up, raises no error.
fn after_commit() {
    let Some(who) = FOLDED.with_borrow_mut(|f| {
        let who = f.1.take();
        if who.is_none() {
            // nothing to announce: keep the list's allocation
            f.0.clear();
        }
        who
    }) else {
        return;
    };
    let folded = FOLDED.with_borrow_mut(|f| std::mem::take(&mut f.0));
    // SAFETY: a read of a backend global.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    for f in folded {
        match f.then {
            Then::Nothing => {}
            Then::Alert(lost, baseline, since) => {
                alert_row_drop(&who, &f.name, lost, baseline, since)
            }
            Then::Count => {
                let mut r = Record::empty();
                r.kind = KIND_BASELINE;
                r.at = now();
                r.dboid = dboid;
                who.fill(&mut r);
                r.object.set(&f.relid.to_u32().to_string());
                r.detail.set(&f.name);
                shmem::enqueue(&r);
            }
        }
    }
}

/// The transaction aborted after its counts were added: takes them back.
fn take_back() {
    let (folded, _) = FOLDED.with_borrow_mut(std::mem::take);
    // SAFETY: a read of a backend global.
    let dboid = unsafe { pg_sys::MyDatabaseId }.to_u32();
    locked(|sh| {
        for f in &folded {
            let relid = f.relid.to_u32();
            let start = (hash(dboid, relid) as usize) % TABLES;
            let Some(i) = (0..PROBE).map(|k| (start + k) % TABLES).find(|&i| {
                let t = &sh.tables[i];
                t.dboid == dboid && t.relid == relid && t.window_start == f.window_start
            }) else {
                continue;
            };
            let t = &mut sh.tables[i];
            t.lost -= f.lost;
            match f.then {
                Then::Alert(..) => t.alerted = false,
                Then::Count => t.pending = false,
                Then::Nothing => {}
            }
        }
    });
}

/// FNV-1a: stable, and no hasher to allocate.
fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of a table's entry.
fn hash(dboid: u32, relid: u32) -> u64 {
    fnv(dboid.to_le_bytes().into_iter().chain(relid.to_le_bytes()))
}

fn window_us() -> i64 {
    i64::from(settings::ROW_DROP_WINDOW.get()).saturating_mul(1_000_000)
}

/// Raises the row_drop alert of a table (also for the writer, as the session that asked
/// for the count).
pub fn alert_row_drop(who: &Session, table: &str, lost: i64, baseline: i64, since: i64) {
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
    let (count, left) = locked(|sh| {
        let (c, left) = client_minute(sh, key, now);
        c.count += 1;
        if c.count > threshold && !c.alerted {
            c.alerted = true;
            return (Some(c.count), left);
        }
        (None, left)
    })
    .unwrap_or((None, None));
    if let Some(l) = left {
        crate::records::denial::sum_up(&l);
    }
    count
}

/// The entry of client `key` for the minute around `now` (a new one when its minute is
/// over, or the oldest entry evicted), and what the entry it replaces left unstored: this
/// client's minute before, or the evicted client's.
fn client_minute(sh: &mut Shared, key: u64, now: i64) -> (&mut Client, Option<Leftover>) {
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
    let mut left = None;
    if c.key != key || now - c.since > MINUTE_US {
        if c.suppressed > 0 {
            left = Some(Leftover {
                who: c.who,
                count: c.suppressed,
                since: c.since,
            });
        }
        let who = c.who;
        *c = Client {
            key,
            since: now,
            count: 0,
            alerted: false,
            stored: 0,
            suppressed: 0,
            statement: 0,
            who,
        };
    }
    (c, left)
}

/// The minutes over whose clients had refusals counted, not stored (each taken once): the
/// denial launcher sums each up in one record, also for a client that refused no more.
pub fn finished_minutes() -> Vec<Leftover> {
    let now = now();
    locked(|sh| {
        sh.clients
            .iter_mut()
            .filter(|c| c.suppressed > 0 && now - c.since > MINUTE_US)
            .map(|c| {
                let l = Leftover {
                    who: c.who,
                    count: c.suppressed,
                    since: c.since,
                };
                c.suppressed = 0;
                l
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Whether a refusal's record is stored in full: at most prodguard.denial_log_rate per
/// login role, client and minute, so that one client's flood costs the others nothing (its
/// records past the rate are counted instead). `Store` says whether the statement is the
/// one the client's previous stored record of this minute has already (its text is then
/// stored once, not again). Either way, what the entry replaced left unstored is returned,
/// to be summed up in one record.
pub enum Admit {
    Store { repeated: bool },
    Count,
}

pub fn admit_record(who: &Session, guard: &str, statement: &str) -> (Admit, Option<Leftover>) {
    let rate = u32::try_from(settings::DENIAL_LOG_RATE.get()).unwrap_or(0);
    if rate == 0 {
        return (Admit::Store { repeated: false }, None);
    }
    // per login role and client: a role flooding from an address (a NAT, a pooler, an
    // application host) crowds out neither the other roles there nor anyone else
    let key = fnv(client_name(who)
        .bytes()
        .chain([0])
        .chain(who.session_user.bytes())
        .chain([0])
        .chain(who.database.bytes()))
    .max(1);
    let text = fnv(statement.bytes()).max(1);
    let identity = Who::of(who, guard, rate);
    let now = now();
    locked(|sh| {
        let (c, left) = client_minute(sh, key, now);
        c.who = identity;
        if c.stored < rate {
            c.stored += 1;
            let repeated = c.statement == text;
            c.statement = text;
            (Admit::Store { repeated }, left)
        } else {
            c.suppressed += 1;
            (Admit::Count, left)
        }
    })
    .unwrap_or((Admit::Store { repeated: false }, None))
}

/// The client a refusal came from: its IP address, or its login role over a Unix socket.
pub fn client_name(who: &Session) -> String {
    match &who.client {
        Some(addr) => format!("client {addr}"),
        None => format!("local client (role \"{}\")", who.session_user),
    }
}

fn client_key(who: &Session) -> u64 {
    let name = client_name(who);
    fnv(name.bytes().chain([0]).chain(who.database.bytes())).max(1)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    fn empty() -> Box<[Table; TABLES]> {
        // SAFETY: Table is integers and booleans; all zeroes is a free entry.
        Box::new(unsafe { std::mem::zeroed() })
    }

    #[pg_test]
    fn more_than_the_share_crosses() {
        assert!(!crossed(500, 1000, 50));
        assert!(crossed(501, 1000, 50));
        assert!(!crossed(0, 0, 50));
        assert!(!crossed(-10, 1000, 50));
        assert!(crossed(1, 1, 99));
        assert!(!crossed(1, 1, 100));
    }

    #[pg_test]
    fn a_window_opens_with_a_loss_and_tumbles() {
        let mut tables = empty();
        let window = 3_600_000_000;
        // growth alone opens nothing
        assert!(entry(&mut tables, 1, 42, 0, window, false).is_none());
        let t = entry(&mut tables, 1, 42, 10, window, true).expect("opened");
        t.lost = 7;
        // within the window: the same entry
        let t = entry(&mut tables, 1, 42, 20, window, false).expect("open");
        assert_eq!((t.lost, t.window_start), (7, 10));
        // after it: growth closes it, a loss opens a fresh one
        assert!(entry(&mut tables, 1, 42, 10 + window + 1, window, false).is_none());
        let t = entry(&mut tables, 1, 42, 20 + window, window, true).expect("reopened");
        assert_eq!((t.lost, t.baseline, t.window_start), (0, -1, 20 + window));
    }

    #[pg_test]
    fn a_full_probe_evicts_the_least_recently_touched() {
        let mut tables = empty();
        let window = i64::MAX / 2;
        // fill more entries than one probe holds; every lookup still finds its own
        for relid in 0..(TABLES as u32 * 2) {
            let t = entry(&mut tables, 1, relid, i64::from(relid), window, true).expect("slot");
            t.touched = i64::from(relid);
        }
        let last = TABLES as u32 * 2 - 1;
        assert!(entry(&mut tables, 1, last, 0, window, false).is_some());
        // another database's table of the same oid is another entry
        assert!(entry(&mut tables, 2, last, 0, window, false).is_none());
    }
}

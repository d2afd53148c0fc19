//! Row-audit entries held from the row trigger to the end of their statement, then written
//! together (issue 18): one `heap_multi_insert` puts a statement's entries on their pages
//! with one WAL record per page instead of one per entry, then each index gets its entries
//! (the BRIN index only those it would keep: its summaries are looked up once per page).
//!
//! What it guarantees, as the entry-at-a-time writer did:
//! - same transaction: an entry is written in the (sub)transaction that made the change,
//!   never in another; held entries of a subtransaction that rolls back are dropped with
//!   it, those of one that commits become its parent's;
//! - visible to the next statement: the executor hook writes them when the statement's
//!   AFTER triggers have run (`ExecutorFinish`), the utility hook after a utility statement
//!   (COPY FROM fires its triggers itself), and the pre-commit callback whatever is left (a
//!   logical replication apply worker fires triggers outside both hooks);
//! - bounded: at `MAX_HELD` entries or `MAX_BYTES` the trigger writes them at once.
//!
//! Entries are held only where they were made: an entry is written when its own
//! subtransaction is the current one (a trigger that opens a subtransaction in the middle of
//! a statement, a PL/pgSQL EXCEPTION block, leaves the statement's held entries alone).

use std::cell::{Cell, RefCell};

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Entries held before the trigger writes them itself.
const MAX_HELD: usize = 1000;
/// Bytes of held tuples before the trigger writes them itself.
const MAX_BYTES: usize = 8 << 20;

/// Memory each context keeps across resets (its first block), enough for the entries of a
/// 100-row statement and for writing them: a reset that gave its blocks back to the C
/// library made the next statement fault its pages in again (2.6 % of the CPU time of a
/// 100-row UPDATE workload, against 0.4 % for a PL/pgSQL statement trigger).
const KEPT_ENTRIES: usize = 128 << 10;
const KEPT_SCRATCH: usize = 64 << 10;

/// One entry formed and not yet written, with the subtransaction that made it.
struct Held {
    subxact: pg_sys::SubTransactionId,
    tuple: pg_sys::HeapTuple,
}

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    /// The memory context of the held tuples, null until the first.
    static CONTEXT: Cell<pg_sys::MemoryContext> = const { Cell::new(std::ptr::null_mut()) };
    /// The context a write works in (slots, index values, what the multi-insert makes),
    /// reset after each.
    static SCRATCH: Cell<pg_sys::MemoryContext> = const { Cell::new(std::ptr::null_mut()) };
}

/// Whether entries are held (a thread-local read: the hooks ask at every statement).
pub fn is_empty() -> bool {
    HELD.with(|h| h.borrow().is_empty())
}

/// The contexts of held tuples and of writes (children of TopMemoryContext, made once per
/// backend; held tuples are freed one by one as they are written or dropped).
fn contexts() -> (pg_sys::MemoryContext, pg_sys::MemoryContext) {
    let mut context = CONTEXT.get();
    if context.is_null() {
        // SAFETY: registers a #[pg_guard] callback for the life of the backend, and two
        // contexts that live as long.
        unsafe {
            pg_sys::RegisterSubXactCallback(Some(subxact_event), std::ptr::null_mut());
            let make = |name: &std::ffi::CStr, kept: usize| {
                pg_sys::AllocSetContextCreateInternal(
                    pg_sys::TopMemoryContext,
                    name.as_ptr(),
                    kept,
                    kept,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                )
            };
            context = make(c"pg_prodguard audit entries", KEPT_ENTRIES);
            SCRATCH.set(make(c"pg_prodguard audit writes", KEPT_SCRATCH));
        }
        CONTEXT.set(context);
    }
    (context, SCRATCH.get())
}

/// The context held tuples are formed in (`audit_log::write_row`).
pub fn context() -> pg_sys::MemoryContext {
    contexts().0
}

/// Holds a formed entry; true when the batch is full and should be written now.
///
/// # Safety
/// `tuple` must be a tuple of audit_log, one chunk allocated in `context()` (as
/// heap_form_tuple makes it); it is freed when it is written or dropped.
pub unsafe fn hold(tuple: pg_sys::HeapTuple) -> bool {
    // SAFETY: guaranteed by the caller; a plain read of the current subtransaction.
    let (subxact, len) = unsafe { (pg_sys::GetCurrentSubTransactionId(), (*tuple).t_len) };
    BYTES.set(BYTES.get() + len as usize);
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        h.push(Held { subxact, tuple });
        h.len() >= MAX_HELD || BYTES.get() >= MAX_BYTES
    })
}

/// Writes the held entries of the current subtransaction (`all`: every held entry, at
/// pre-commit, where every subtransaction has ended) into audit_log. Returns how many
/// were written.
///
/// # Safety
/// `rel` must be audit_log, open with RowExclusiveLock, and `indexes` its open indexes
/// (`CatalogOpenIndexes`).
pub unsafe fn write_held(
    rel: pg_sys::Relation,
    indexes: pg_sys::CatalogIndexState,
    all: bool,
) -> usize {
    // SAFETY: a plain read of the current subtransaction.
    let current = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let (mine, n) = HELD.with(|h| {
        let mut h = h.borrow_mut();
        let (mine, rest): (Vec<Held>, Vec<Held>) =
            h.drain(..).partition(|e| all || e.subxact == current);
        *h = rest;
        let n = mine.len();
        (mine, n)
    });
    if n == 0 {
        return 0;
    }
    let tuples: Vec<pg_sys::HeapTuple> = mine.iter().map(|e| e.tuple).collect();
    // SAFETY: guaranteed by the caller; the tuples were formed with audit_log's
    // descriptor, and are freed once written (or, if the write fails, with the
    // transaction: `forget`).
    unsafe { insert(rel, indexes, &tuples) };
    free(mine);
    n
}

/// Writes one entry now (command entries: `audit_log::write`).
///
/// # Safety
/// As `write_held`; `tuple` a tuple of audit_log.
pub unsafe fn write_one(
    rel: pg_sys::Relation,
    indexes: pg_sys::CatalogIndexState,
    tuple: pg_sys::HeapTuple,
) {
    // SAFETY: guaranteed by the caller.
    unsafe { insert(rel, indexes, &[tuple]) }
}

/// Inserts tuples into audit_log's heap (one multi-insert: one WAL record per page; a
/// plain insert for one, which costs less than a multi-insert's set-up) and their index
/// entries, working in the scratch context, reset afterwards.
///
/// # Safety
/// As `write_held`; `tuples` tuples of audit_log.
unsafe fn insert(
    rel: pg_sys::Relation,
    indexes: pg_sys::CatalogIndexState,
    tuples: &[pg_sys::HeapTuple],
) {
    let (_, scratch) = contexts();
    // SAFETY: guaranteed by the caller; the slots use a copy of audit_log's descriptor (not
    // reference-counted: no pin per slot to take and release; made once per write) or, for
    // one tuple, the descriptor itself (pinned by the slot, released when it is dropped
    // below); they only point at the tuples; the scratch context is reset once nothing in
    // it is used.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(scratch);
        let desc = if tuples.len() == 1 {
            (*rel).rd_att
        } else {
            pg_sys::CreateTupleDescCopy((*rel).rd_att)
        };
        let mut slots: Vec<*mut pg_sys::TupleTableSlot> = tuples
            .iter()
            .map(|&t| {
                let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple);
                // A multi-insert materializes each slot, which copies a tuple the slot does
                // not own: marked as owned, the held tuple is used as it is. The slot is
                // never cleared (it goes with the scratch context), so it never frees it:
                // `free` does, once written.
                pg_sys::ExecStoreHeapTuple(t, slot, tuples.len() > 1);
                slot
            })
            .collect();
        if let [tuple] = tuples {
            pg_sys::simple_heap_insert(rel, *tuple);
            (*slots[0]).tts_tid = (**tuple).t_self;
        } else {
            pg_sys::heap_multi_insert(
                rel,
                slots.as_mut_ptr(),
                slots.len() as i32,
                pg_sys::GetCurrentCommandId(true),
                0,
                std::ptr::null_mut(),
            );
        }
        insert_index_entries(rel, indexes, &slots);
        if tuples.len() == 1 {
            pg_sys::ExecDropSingleTupleTableSlot(slots[0]);
        }
        pg_sys::MemoryContextSwitchTo(old);
        pg_sys::MemoryContextReset(scratch);
    }
}

/// Each written entry into each index of audit_log, by the heap position the insert gave
/// it (`tts_tid`). Indexes on expressions or with a predicate (a DBA's own) are evaluated
/// in an executor state made for the purpose.
///
/// # Safety
/// As `write_held`; `slots` hold tuples just inserted into `rel`.
unsafe fn insert_index_entries(
    rel: pg_sys::Relation,
    indexes: pg_sys::CatalogIndexState,
    slots: &[*mut pg_sys::TupleTableSlot],
) {
    // SAFETY: guaranteed by the caller; CatalogIndexState is the ResultRelInfo whose index
    // arrays CatalogOpenIndexes filled. The executor state, and the expression states
    // FormIndexDatum keeps in the IndexInfo, live in the current (scratch) context until
    // the state is freed, and the IndexInfo forgets them then.
    unsafe {
        let info = indexes as *mut pg_sys::ResultRelInfo;
        let mut values = [pg_sys::Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
        let mut nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
        let mut estate: *mut pg_sys::EState = std::ptr::null_mut();
        let mut econtext: *mut pg_sys::ExprContext = std::ptr::null_mut();
        for i in 0..(*info).ri_NumIndices as usize {
            let index = *(*info).ri_IndexRelationDescs.add(i);
            let index_info = *(*info).ri_IndexRelationInfo.add(i);
            if !(*index_info).ii_ReadyForInserts {
                continue;
            }
            let evaluated =
                !(*index_info).ii_Expressions.is_null() || !(*index_info).ii_Predicate.is_null();
            if evaluated && estate.is_null() {
                estate = pg_sys::CreateExecutorState();
                econtext = pg_sys::MakePerTupleExprContext(estate);
            }
            let predicate = if (*index_info).ii_Predicate.is_null() {
                std::ptr::null_mut()
            } else {
                pg_sys::ExecPrepareQual((*index_info).ii_Predicate.cast(), estate)
            };
            let unique = if (*index_info).ii_Unique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            let brin = (*(*index).rd_rel).relam == pg_sys::BRIN_AM_OID;
            let summarized = if brin {
                summarized_blocks(index, slots)
            } else {
                Vec::new()
            };
            for &slot in slots {
                if brin && !brin_needs(&summarized, &(*slot).tts_tid) {
                    continue;
                }
                if evaluated {
                    pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
                    (*econtext).ecxt_scantuple = slot;
                }
                if !predicate.is_null() && !holds(predicate, econtext) {
                    continue;
                }
                pg_sys::FormIndexDatum(
                    index_info,
                    slot,
                    estate,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                );
                pg_sys::index_insert(
                    index,
                    values.as_mut_ptr(),
                    nulls.as_mut_ptr(),
                    &mut (*slot).tts_tid,
                    rel,
                    unique,
                    false,
                    index_info,
                );
            }
            if evaluated {
                // (made in the executor state's memory, freed with it below)
                (*index_info).ii_ExpressionsState = std::ptr::null_mut();
            }
        }
        if !estate.is_null() {
            pg_sys::FreeExecutorState(estate);
        }
    }
}

/// Whether an index predicate holds for the row in `econtext`'s scan slot (as ExecQual: a
/// qual prepared by ExecPrepareQual yields false, never NULL, for a row it rejects).
///
/// # Safety
/// `predicate` prepared with ExecPrepareQual; `econtext` its expression context.
unsafe fn holds(predicate: *mut pg_sys::ExprState, econtext: *mut pg_sys::ExprContext) -> bool {
    // SAFETY: guaranteed by the caller; evaluated in the per-tuple memory.
    unsafe {
        let Some(eval) = (*predicate).evalfunc else {
            return false;
        };
        let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
        let mut isnull = false;
        let value = eval(predicate, econtext, &mut isnull);
        pg_sys::MemoryContextSwitchTo(old);
        !isnull && value.value() != 0
    }
}

// BRIN's revmap lookups (brin_revmap.h, not in pgrx's bindings).
unsafe extern "C-unwind" {
    fn brinRevmapInitialize(
        idxrel: pg_sys::Relation,
        pages_per_range: *mut pg_sys::BlockNumber,
        snapshot: pg_sys::Snapshot,
    ) -> *mut std::ffi::c_void;
    fn brinRevmapTerminate(revmap: *mut std::ffi::c_void);
    fn brinGetTupleForHeapBlock(
        revmap: *mut std::ffi::c_void,
        heap_blk: pg_sys::BlockNumber,
        buf: *mut pg_sys::Buffer,
        off: *mut pg_sys::OffsetNumber,
        size: *mut usize,
        mode: std::ffi::c_int,
        snapshot: pg_sys::Snapshot,
    ) -> *mut std::ffi::c_void;
}

fn block_of(tid: &pg_sys::ItemPointerData) -> pg_sys::BlockNumber {
    ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32
}

/// The heap blocks among the slots' whose BRIN range has a summary (or a placeholder of a
/// summarization under way), looked up once per block instead of once per entry.
///
/// Why an entry on a block whose range has no summary needs no BRIN insertion: brininsert
/// itself does nothing for it (but request the range's summarization, for the first tuple
/// of a range's first page when autosummarize is on, which `brin_needs` keeps). Every entry
/// of this batch is on its page before the lookup (`heap_multi_insert` ran first), so a
/// summarization that starts after the lookup reads them from the heap, and one that
/// started before has left a placeholder, which the lookup sees: then every entry of the
/// block is inserted.
///
/// # Safety
/// `index` must be an open BRIN index of the heap the slots' tuples were inserted into.
unsafe fn summarized_blocks(
    index: pg_sys::Relation,
    slots: &[*mut pg_sys::TupleTableSlot],
) -> Vec<pg_sys::BlockNumber> {
    let mut summarized = Vec::new();
    // SAFETY: guaranteed by the caller; the revmap pins its pages until terminated, and a
    // summary tuple's buffer comes back locked, and is unlocked here, then released.
    unsafe {
        let mut pages_per_range: pg_sys::BlockNumber = 0;
        let revmap = brinRevmapInitialize(index, &mut pages_per_range, std::ptr::null_mut());
        let mut buf: pg_sys::Buffer = 0;
        let mut last = None;
        for &slot in slots {
            let block = block_of(&(*slot).tts_tid);
            if last == Some(block) {
                continue;
            }
            last = Some(block);
            let mut off: pg_sys::OffsetNumber = 0;
            let tuple = brinGetTupleForHeapBlock(
                revmap,
                block,
                &mut buf,
                &mut off,
                std::ptr::null_mut(),
                pg_sys::BUFFER_LOCK_SHARE as i32,
                std::ptr::null_mut(),
            );
            if !tuple.is_null() {
                pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_UNLOCK as i32);
                summarized.push(block);
            }
        }
        if buf != 0 {
            pg_sys::ReleaseBuffer(buf);
        }
        brinRevmapTerminate(revmap);
    }
    summarized
}

/// Whether an entry at `tid` goes into the BRIN index: its range has a summary to widen,
/// or it is the first tuple of its page (where brininsert may request a summarization).
fn brin_needs(summarized: &[pg_sys::BlockNumber], tid: &pg_sys::ItemPointerData) -> bool {
    tid.ip_posid == 1 // FirstOffsetNumber
         || summarized.contains(&block_of(tid))
}

/// Drops every held entry: the transaction ended.
pub fn forget() {
    let context = CONTEXT.get();
    HELD.with(|h| h.borrow_mut().clear());
    BYTES.set(0);
    if !context.is_null() {
        // SAFETY: nothing held points into the contexts any more.
        unsafe {
            pg_sys::MemoryContextReset(context);
            pg_sys::MemoryContextReset(SCRATCH.get());
        }
    }
}

/// Frees entries written or dropped.
fn free(gone: Vec<Held>) {
    for e in gone {
        // SAFETY: each held tuple is one chunk of the held context, referenced only here.
        unsafe {
            BYTES.set(BYTES.get().saturating_sub((*e.tuple).t_len as usize));
            pg_sys::pfree(e.tuple.cast());
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn subxact_event(
    event: pg_sys::SubXactEvent::Type,
    my: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    let dropped = HELD.with(|h| {
        let Ok(mut h) = h.try_borrow_mut() else {
            return Vec::new();
        };
        match event {
            // its changes are its parent's now, and so are their entries
            SUBXACT_EVENT_COMMIT_SUB => {
                for e in h.iter_mut().filter(|e| e.subxact == my) {
                    e.subxact = parent;
                }
                Vec::new()
            }
            // its changes are undone: so are their entries
            SUBXACT_EVENT_ABORT_SUB => {
                let (dropped, kept): (Vec<Held>, Vec<Held>) =
                    h.drain(..).partition(|e| e.subxact == my);
                *h = kept;
                dropped
            }
            _ => Vec::new(),
        }
    });
    free(dropped);
}

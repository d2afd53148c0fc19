//! Row guard (SPEC §4): DELETE, UPDATE and MERGE in production.
//!
//! Three rules, enforced in the executor, where every path a statement can take meets:
//! top level, prepared statements, PL/pgSQL and its cached plans, DO blocks, SECURITY
//! DEFINER functions, data-modifying CTEs, whatever `session_replication_role` says.
//!
//! - **require_where**: a DELETE or UPDATE with no WHERE clause. Whether there was one is
//!   known only before planning (the planner folds `WHERE true` away), while the executor
//!   may run a plan made long before, under other settings. So the planner hook marks
//!   each plan that contains a DELETE/UPDATE without WHERE, and the ExecutorStart hook
//!   decides with the settings in force when the plan runs. The mark must survive
//!   `copyObject` (plan caches copy plans) and must not change what the plan does: it is
//!   one extra `PlanInvalItem` per offending statement, whose `cacheId` is no syscache's
//!   (so plan invalidation never matches it) and whose `hashValue` is the target table.
//! - **forbid_delete**: DELETE, and MERGE with a DELETE action, of a table protected with
//!   `forbid_delete` (checked at ExecutorStart from the plan's result relations).
//! - **max_rows_changed**: counted, not estimated, at ExecutorFinish, once every row and
//!   every data-modifying CTE is done: `es_processed` for the statement's own DELETE or
//!   UPDATE, the MERGE counters for MERGE, and for a DELETE/UPDATE inside a CTE the rows
//!   its subplan handed it (the executor keeps no per-CTE count), counted by wrapping that
//!   subplan's ExecProcNode. An ERROR there rolls the statement back.
//!
//! Temporary tables are exempt, as from the command guard; in development nothing here
//! runs beyond one comparison per statement.

use std::cell::{Cell, RefCell};
use std::ffi::{c_int, c_void};
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::core::breakglass::Scope;
use crate::core::extension;
use crate::core::finding::{Finding, Guard};
use crate::core::passes;
use crate::core::pg::{self, current_database};
use crate::core::protection;
use crate::core::restore_session;
use crate::core::settings::{self, Environment};
use crate::guards::policy;

/// `PlanInvalItem.cacheId` values that mark a DELETE / UPDATE without WHERE. Syscache ids
/// are small non-negative numbers, so these never match a real invalidation.
const MARK_DELETE_WITHOUT_WHERE: c_int = -0x7067_0001;
const MARK_UPDATE_WITHOUT_WHERE: c_int = -0x7067_0002;

/// The row-changing commands this guard watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowCommand {
    Delete,
    Update,
    Merge,
    /// INSERT ... ON CONFLICT DO UPDATE (only its updated rows count).
    Upsert,
}

impl RowCommand {
    fn name(self) -> &'static str {
        match self {
            RowCommand::Delete => "DELETE",
            RowCommand::Update => "UPDATE",
            RowCommand::Merge => "MERGE",
            RowCommand::Upsert => "INSERT ON CONFLICT DO UPDATE",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Planner: mark DELETE/UPDATE statements that have no WHERE clause.

/// What the planner hook learns from a query before planning it (the planner simplifies
/// the query in place, so `WHERE true` is gone once it has run): its DELETE/UPDATE
/// statements without a WHERE clause, as a palloc'd List of PlanInvalItem marks in the
/// current memory context (NIL when there are none). A plain pointer, so the hook holds
/// nothing to drop while the planner runs.
///
/// # Safety
/// `parse` must be the Query about to be planned.
pub unsafe fn marks_before_planning(parse: *mut pg_sys::Query) -> *mut pg_sys::List {
    let mut marks = Vec::new();
    // SAFETY: guaranteed by the caller.
    unsafe { collect_missing_where(parse, &mut marks) };
    let mut list: *mut pg_sys::List = std::ptr::null_mut();
    for (cache_id, relid) in marks {
        // SAFETY: a palloc'd node in the current (planner's) memory context, built the way
        // setrefs.c builds real invalidation items.
        unsafe {
            let item = pg_sys::palloc0(std::mem::size_of::<pg_sys::PlanInvalItem>())
                as *mut pg_sys::PlanInvalItem;
            (*item).type_ = pg_sys::NodeTag::T_PlanInvalItem;
            (*item).cacheId = cache_id;
            (*item).hashValue = relid.to_u32();
            list = pg_sys::lappend(list, item as *mut c_void);
        }
    }
    list
}

/// Leaves the marks on the plan made of the query.
///
/// # Safety
/// `marks` must come from `marks_before_planning` of the query `plan` was made of, in the
/// same memory context.
pub unsafe fn mark_plan(marks: *mut pg_sys::List, plan: *mut pg_sys::PlannedStmt) {
    if !marks.is_null() && !plan.is_null() {
        // SAFETY: guaranteed by the caller; list_concat appends to the plan's own list.
        unsafe { (*plan).invalItems = pg_sys::list_concat((*plan).invalItems, marks) };
    }
}

/// # Safety
/// `query` must be NULL or a valid Query.
unsafe fn collect_missing_where(query: *mut pg_sys::Query, marks: &mut Vec<(c_int, pg_sys::Oid)>) {
    use pg_sys::CmdType::*;
    if query.is_null() {
        return;
    }
    // SAFETY: guaranteed by the caller; CTE queries of an analyzed Query are Queries.
    unsafe {
        let q = &*query;
        let mark = match q.commandType {
            CMD_DELETE => Some(MARK_DELETE_WITHOUT_WHERE),
            CMD_UPDATE => Some(MARK_UPDATE_WITHOUT_WHERE),
            _ => None,
        };
        if let Some(mark) = mark {
            if q.jointree.is_null() || (*q.jointree).quals.is_null() {
                if let Some(relid) = rte_relid(q.rtable, q.resultRelation) {
                    marks.push((mark, relid));
                }
            }
        }
        for cte in PgList::<pg_sys::CommonTableExpr>::from_pg(q.cteList).iter_ptr() {
            let inner = (*cte).ctequery;
            if !inner.is_null() && (*inner).type_ == pg_sys::NodeTag::T_Query {
                collect_missing_where(inner as *mut pg_sys::Query, marks);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// ExecutorStart: require_where and forbid_delete, before the statement touches a row.
// (Called from `after_start` below.)

/// require_where and forbid_delete, once the executor has started (so PostgreSQL's own
/// permission checks come first) and before ExecutorRun touches a row.
///
/// # Safety
/// `pstmt` must be the plan being started.
unsafe fn check_plan(pstmt: *mut pg_sys::PlannedStmt, env: Environment) {
    if settings::REQUIRE_WHERE.get() {
        // SAFETY: `pstmt` is a valid PlannedStmt.
        for (mark, relid) in unsafe { marks(pstmt) } {
            if !pg::is_temp(relid) && !protection::is_migration_lock(relid) {
                let command = if mark == MARK_DELETE_WITHOUT_WHERE {
                    RowCommand::Delete
                } else {
                    RowCommand::Update
                };
                judge(env, missing_where(command, relid));
            }
        }
    }
    // SAFETY: `pstmt` is a valid PlannedStmt.
    for mt in unsafe { modify_tables(pstmt) } {
        // SAFETY: `mt` is one of the plan's ModifyTable nodes.
        if unsafe { deletes_rows(mt) } {
            for relid in unsafe { targets(pstmt, mt) } {
                let flags = protection::flags(relid);
                if flags.forbid_delete {
                    judge(env, forbidden_delete(relid, flags));
                    break;
                }
            }
        }
    }
}

/// Whether the plan may change rows (and is going to run, not only be explained).
fn modifies_rows(pstmt: *mut pg_sys::PlannedStmt, eflags: c_int) -> bool {
    use pg_sys::CmdType::*;
    if pstmt.is_null() || eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int != 0 {
        return false;
    }
    // SAFETY: a valid PlannedStmt.
    let (op, cte) = unsafe { ((*pstmt).commandType, (*pstmt).hasModifyingCTE) };
    matches!(op, CMD_DELETE | CMD_UPDATE | CMD_MERGE) || cte || (op == CMD_INSERT && upserts(pstmt))
}

/// Writes to pg_prodguard's own tables by statements (issue 15): in production only its
/// functions write them (the OWN_WRITE pass); an INSERT into any of them (a forged audit
/// entry) and any write to its configuration (protection rules, dictionaries, changes)
/// is judged like a change to the extension itself.
///
/// # Safety
/// `estate` must be the executor state of `pstmt` after standard start.
unsafe fn own_tables(
    estate: *mut pg_sys::EState,
    pstmt: *mut pg_sys::PlannedStmt,
    env: Environment,
) {
    if passes::OWN_WRITE.get() || passes::PURGING.get() {
        return;
    }
    let Some(ours) = extension::own_namespace() else {
        return;
    };
    // SAFETY: guaranteed by the caller; the opened result relations are open.
    unsafe {
        let insert = (*pstmt).commandType == pg_sys::CmdType::CMD_INSERT;
        for info in PgList::<pg_sys::ResultRelInfo>::from_pg((*estate).es_opened_result_relations)
            .iter_ptr()
        {
            let rel = (*info).ri_RelationDesc;
            if rel.is_null() || (*(*rel).rd_rel).relnamespace != ours {
                continue;
            }
            let name = pg::cstr_or((*(*rel).rd_rel).relname.data.as_ptr(), "");
            if !insert && extension::HISTORY_TABLES.contains(&name.as_str()) {
                continue; // append_only refuses it, for everyone
            }
            let command = match (*pstmt).commandType {
                pg_sys::CmdType::CMD_INSERT => "INSERT",
                pg_sys::CmdType::CMD_UPDATE => "UPDATE",
                pg_sys::CmdType::CMD_DELETE => "DELETE",
                pg_sys::CmdType::CMD_MERGE => "MERGE",
                _ => "a write",
            };
            judge(
                env,
                Finding::here(
                    Guard::Row,
                    command,
                    pg::describe_table((*rel).rd_id),
                    format!(
                        "pg_prodguard's own tables change only through its functions (protect(), dictionary_add(), request_change(), ...), which record the change; a statement that writes them directly is judged like a change to the extension itself."
                    ),
                    Some((*rel).rd_id),
                ),
            );
        }
    }
}

/// Whether the plan writes anything (and is going to run).
fn writes(pstmt: *mut pg_sys::PlannedStmt, eflags: c_int) -> bool {
    // SAFETY: a valid PlannedStmt.
    !pstmt.is_null()
        && eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as c_int == 0
        && unsafe {
            (*pstmt).commandType != pg_sys::CmdType::CMD_SELECT || (*pstmt).hasModifyingCTE
        }
}

/// Whether the statement's own ModifyTable is an INSERT ... ON CONFLICT DO UPDATE.
fn upserts(pstmt: *mut pg_sys::PlannedStmt) -> bool {
    // SAFETY: a valid PlannedStmt; its planTree is a Plan node or NULL.
    unsafe {
        let top = (*pstmt).planTree;
        !top.is_null()
            && (*top).type_ == pg_sys::NodeTag::T_ModifyTable
            && (*(top as *mut pg_sys::ModifyTable)).onConflictAction
                == pg_sys::OnConflictAction::ONCONFLICT_UPDATE
    }
}

/// Applies the policy to a finding (refuse, warn, or audit the override).
fn judge(env: Environment, finding: Finding) {
    policy::enforce(env, &finding, Scope::Transaction, None);
}

fn missing_where(command: RowCommand, relid: pg_sys::Oid) -> Finding {
    let table = pg::describe_table(relid);
    let db = current_database();
    let verb = if command == RowCommand::Delete {
        "delete"
    } else {
        "update"
    };
    let command = command.name();
    Finding::here(
        Guard::Row,
        command,
        format!("{table} without a WHERE clause"),
        format!(
            "The {command} on {table} has no WHERE clause, so it would {verb} every row, and prodguard.require_where is on in database \"{db}\"."
        ),
        Some(relid),
    )
    .prefer("Otherwise add a WHERE clause; WHERE true states that every row is meant (prodguard.max_rows_changed still applies).")
    // pg-safeupdate's wording and SQLSTATE, so that its clients keep working.
    .with_message(format!("{command} requires a WHERE clause"))
    .with_sqlstate(PgSqlErrorCode::ERRCODE_CARDINALITY_VIOLATION)
}

fn forbidden_delete(relid: pg_sys::Oid, flags: protection::Flags) -> Finding {
    Finding::here(
        Guard::Row,
        "DELETE",
        pg::describe_table(relid),
        flags.why_forbidden(&pg::quoted_name(relid)),
        Some(relid),
    )
}

/// The require_where marks the planner left on a plan.
///
/// # Safety
/// `pstmt` must be a valid PlannedStmt.
unsafe fn marks(pstmt: *mut pg_sys::PlannedStmt) -> Vec<(c_int, pg_sys::Oid)> {
    // SAFETY: invalItems is a List of PlanInvalItem.
    let items = unsafe { PgList::<pg_sys::PlanInvalItem>::from_pg((*pstmt).invalItems) };
    items
        .iter_ptr()
        // SAFETY: each element is a valid PlanInvalItem.
        .map(|item| unsafe { ((*item).cacheId, (*item).hashValue) })
        .filter(|(id, _)| matches!(*id, MARK_DELETE_WITHOUT_WHERE | MARK_UPDATE_WITHOUT_WHERE))
        .map(|(id, rel)| (id, pg_sys::Oid::from(rel)))
        .collect()
}

/// The plan's ModifyTable nodes: at the top of the plan, and at the top of each subplan
/// (data-modifying CTEs).
///
/// # Safety
/// `pstmt` must be a valid PlannedStmt.
unsafe fn modify_tables(pstmt: *mut pg_sys::PlannedStmt) -> Vec<*mut pg_sys::ModifyTable> {
    // SAFETY: planTree and the subplans are valid Plan nodes (or NULL).
    unsafe {
        let subplans = PgList::<pg_sys::Plan>::from_pg((*pstmt).subplans);
        std::iter::once((*pstmt).planTree)
            .chain(subplans.iter_ptr())
            .filter(|p| !p.is_null() && (**p).type_ == pg_sys::NodeTag::T_ModifyTable)
            .map(|p| p as *mut pg_sys::ModifyTable)
            .collect()
    }
}

/// # Safety
/// `mt` must be a valid ModifyTable node.
unsafe fn deletes_rows(mt: *mut pg_sys::ModifyTable) -> bool {
    use pg_sys::CmdType::*;
    // SAFETY: guaranteed by the caller; mergeActionLists is a List of Lists of MergeAction.
    unsafe {
        match (*mt).operation {
            CMD_DELETE => true,
            CMD_MERGE => PgList::<pg_sys::List>::from_pg((*mt).mergeActionLists)
                .iter_ptr()
                .any(|actions| {
                    PgList::<pg_sys::MergeAction>::from_pg(actions)
                        .iter_ptr()
                        .any(|a| (*a).commandType == CMD_DELETE)
                }),
            _ => false,
        }
    }
}

/// The tables a ModifyTable node changes: its root (a partitioned or inheritance parent)
/// and every result relation (the partitions or children actually touched).
///
/// # Safety
/// `pstmt` must be a valid PlannedStmt and `mt` one of its ModifyTable nodes.
unsafe fn targets(
    pstmt: *mut pg_sys::PlannedStmt,
    mt: *mut pg_sys::ModifyTable,
) -> Vec<pg_sys::Oid> {
    // SAFETY: guaranteed by the caller; the indexes point into the plan's range table.
    unsafe {
        let rtable = (*pstmt).rtable;
        let mut relids: Vec<pg_sys::Oid> = PgList::<c_void>::from_pg((*mt).resultRelations)
            .iter_int()
            .filter_map(|i| rte_relid(rtable, i))
            .collect();
        if let Some(root) = rte_relid(rtable, (*mt).rootRelation as c_int) {
            relids.push(root);
        }
        relids
    }
}

/// The relation of range-table entry `index` (1-based), if there is one.
///
/// # Safety
/// `rtable` must be a valid range table.
unsafe fn rte_relid(rtable: *mut pg_sys::List, index: c_int) -> Option<pg_sys::Oid> {
    let index = usize::try_from(index).ok()?.checked_sub(1)?;
    // SAFETY: guaranteed by the caller.
    let rte = unsafe { PgList::<pg_sys::RangeTblEntry>::from_pg(rtable).get_ptr(index)? };
    // SAFETY: a valid RangeTblEntry.
    let relid = unsafe { (*rte).relid };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

// ---------------------------------------------------------------------------------------
// max_rows_changed: watch the statement, count at ExecutorFinish.

/// One DELETE/UPDATE/MERGE under watch: the table it changes and how to count its rows.
struct Watched {
    relid: pg_sys::Oid,
    command: RowCommand,
    count: Count,
}

enum Count {
    /// The statement's own DELETE/UPDATE: the executor's es_processed.
    Processed,
    /// The statement's own MERGE: rows updated plus rows deleted.
    Merge(*mut pg_sys::ModifyTableState),
    /// A DELETE/UPDATE in a CTE: rows its subplan produced.
    Subplan(Rc<Cell<u64>>),
    /// INSERT ... ON CONFLICT DO UPDATE: rows that conflicted and were updated, as the
    /// executor counts them for EXPLAIN ANALYZE ("Conflicting Tuples" less those its WHERE
    /// filtered out), in the node's instrumentation.
    Conflicts(*mut pg_sys::Instrumentation),
}

/// The instrumentation of an INSERT ... ON CONFLICT DO UPDATE node, where the executor
/// counts conflicting rows; allocated (rows only, no timing) when the statement is not
/// already instrumented, before the node first runs.
///
/// # Safety
/// `mts` must be a ModifyTableState of `estate` that has not run yet.
unsafe fn count_conflicts(
    mts: *mut pg_sys::ModifyTableState,
    estate: *mut pg_sys::EState,
) -> *mut pg_sys::Instrumentation {
    // SAFETY: guaranteed by the caller; ExecProcNodeFirst switches a node that has an
    // instrument to the instrumented path on its first call.
    unsafe {
        if (*mts).ps.instrument.is_null() {
            let old = pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
            (*mts).ps.instrument = pg_sys::InstrAlloc(1, 0, false);
            pg_sys::MemoryContextSwitchTo(old);
        }
        (*mts).ps.instrument
    }
}

/// A wrapped CTE subplan: its own ExecProcNodeReal and the count of rows it produced.
type Wrapped = (pg_sys::ExecProcNodeMtd, Rc<Cell<u64>>);

// Both lists hold one entry per statement (or CTE) under way in this backend: a handful at
// most, with nesting. A vector searched from the end beats hashing on this path.
thread_local! {
    /// Statements under watch, by QueryDesc.
    static WATCHED: RefCell<Vec<(usize, Vec<Watched>)>> = const { RefCell::new(Vec::new()) };
    /// Wrapped CTE subplans: the original ExecProcNode and the counter, by PlanState.
    static WRAPPED: RefCell<Vec<(usize, Wrapped)>> = const { RefCell::new(Vec::new()) };
}

/// Removes and returns the entry for `key`.
fn take<V>(list: &RefCell<Vec<(usize, V)>>, key: usize) -> Option<V> {
    let mut list = list.borrow_mut();
    let i = list.iter().rposition(|(k, _)| *k == key)?;
    Some(list.swap_remove(i).1)
}

/// Called by the ExecutorStart hook once the executor has started: the plan state exists,
/// PostgreSQL has checked permissions, and no row has been touched yet.
///
/// # Safety
/// `qd` must be the QueryDesc PostgreSQL passed to the hook, after standard start.
pub unsafe fn after_start(qd: *mut pg_sys::QueryDesc, eflags: c_int) {
    // SAFETY: guaranteed by the caller.
    let (pstmt, estate) = unsafe { ((*qd).plannedstmt, (*qd).estate) };
    if estate.is_null() || !writes(pstmt, eflags) {
        return;
    }
    if restore_session::refused() {
        restore_session::refuse_rest("a write");
    }
    let env = settings::environment();
    if env == Environment::Development || extension::in_own_script() {
        return;
    }
    // SAFETY: the executor state after standard start.
    unsafe { own_tables(estate, pstmt, env) };
    if !modifies_rows(pstmt, eflags) {
        return;
    }
    // SAFETY: `pstmt` is the plan being started.
    unsafe { check_plan(pstmt, env) };
    if settings::MAX_ROWS_CHANGED.get() <= 0 {
        return;
    }
    let mut watched = Vec::new();
    // SAFETY: the plan state tree mirrors the plan: the root for planTree, and
    // es_subplanstates in the order of pstmt->subplans.
    unsafe {
        let root = (*qd).planstate;
        let subplans = PgList::<pg_sys::PlanState>::from_pg((*estate).es_subplanstates);
        for state in std::iter::once(root).chain(subplans.iter_ptr()) {
            if state.is_null() || (*state).type_ != pg_sys::NodeTag::T_ModifyTableState {
                continue;
            }
            let mts = state as *mut pg_sys::ModifyTableState;
            let upsert = (*mts).operation == pg_sys::CmdType::CMD_INSERT
                && !(*state).plan.is_null()
                && (*((*state).plan as *mut pg_sys::ModifyTable)).onConflictAction
                    == pg_sys::OnConflictAction::ONCONFLICT_UPDATE;
            let command = match (*mts).operation {
                pg_sys::CmdType::CMD_DELETE => RowCommand::Delete,
                pg_sys::CmdType::CMD_UPDATE => RowCommand::Update,
                pg_sys::CmdType::CMD_MERGE => RowCommand::Merge,
                pg_sys::CmdType::CMD_INSERT if upsert => RowCommand::Upsert,
                _ => continue,
            };
            // The table named in the statement: the root of a partitioned or inherited
            // target, else the only result relation. Already open: no catalog lookup.
            let info = if (*mts).rootResultRelInfo.is_null() {
                (*mts).resultRelInfo
            } else {
                (*mts).rootResultRelInfo
            };
            if info.is_null() || (*info).ri_RelationDesc.is_null() {
                continue;
            }
            let rel = (*info).ri_RelationDesc;
            if (*(*rel).rd_rel).relpersistence as u8 == pg_sys::RELPERSISTENCE_TEMP {
                continue;
            }
            let relid = (*rel).rd_id;
            let count = if command == RowCommand::Upsert {
                Count::Conflicts(count_conflicts(mts, estate))
            } else if state == root && (*mts).canSetTag {
                if command == RowCommand::Merge {
                    Count::Merge(mts)
                } else {
                    Count::Processed
                }
            } else {
                match wrap_subplan((*state).lefttree) {
                    Some(counter) => Count::Subplan(counter),
                    None => continue,
                }
            };
            watched.push(Watched {
                relid,
                command,
                count,
            });
        }
        if watched.is_empty() {
            return;
        }
        WATCHED.with(|w| w.borrow_mut().push((qd as usize, watched)));
        forget_when_done(qd, estate);
    }
}

/// Called by the ExecutorFinish hook after the executor finished (every row changed,
/// every CTE run, AFTER triggers fired).
///
/// # Safety
/// `qd` must be the QueryDesc PostgreSQL passed to the hook.
pub unsafe fn after_finish(qd: *mut pg_sys::QueryDesc) {
    let Some(watched) = WATCHED.with(|w| take(w, qd as usize)) else {
        return;
    };
    let limit = u64::try_from(settings::MAX_ROWS_CHANGED.get()).unwrap_or(0);
    let env = settings::environment();
    if limit == 0 || env == Environment::Development {
        return;
    }
    for w in watched {
        // SAFETY: the QueryDesc and its estate/plan state are alive until ExecutorEnd.
        let rows = unsafe {
            match &w.count {
                Count::Processed => (*(*qd).estate).es_processed,
                Count::Merge(mts) => ((**mts).mt_merge_updated + (**mts).mt_merge_deleted) as u64,
                Count::Subplan(counter) => counter.get(),
                Count::Conflicts(instr) => {
                    ((**instr).ntuples2 - (**instr).nfiltered1).max(0.0) as u64
                }
            }
        };
        if rows > limit {
            judge(env, too_many_rows(w.command, w.relid, rows, limit));
        }
    }
}

fn too_many_rows(command: RowCommand, relid: pg_sys::Oid, rows: u64, limit: u64) -> Finding {
    let table = pg::describe_table(relid);
    Finding::here(
        Guard::Row,
        command.name(),
        format!("{rows} rows of {table}"),
        format!(
            "The statement changed {rows} rows; prodguard.max_rows_changed is {limit}. It has been rolled back."
        ),
        Some(relid),
    )
    .prefer(&format!("Otherwise change the rows in batches of at most {limit}."))
}

/// Counts the rows a subplan produces, by wrapping its ExecProcNodeReal (which both the
/// plain and the instrumented executor paths call).
///
/// # Safety
/// `state` must be NULL or a PlanState whose execution has not started.
unsafe fn wrap_subplan(state: *mut pg_sys::PlanState) -> Option<Rc<Cell<u64>>> {
    if state.is_null() {
        return None;
    }
    let counter = Rc::new(Cell::new(0));
    // SAFETY: guaranteed by the caller; the original is kept and called by `counting`.
    let original = unsafe { (*state).ExecProcNodeReal };
    WRAPPED.with(|w| {
        w.borrow_mut()
            .push((state as usize, (original, counter.clone())))
    });
    // SAFETY: as above.
    unsafe { (*state).ExecProcNodeReal = Some(counting) };
    Some(counter)
}

/// The wrapped ExecProcNode of a CTE's subplan: counts the rows it produces.
///
/// Not `#[pg_guard]`: an ERROR raised below (in the subplan) must reach PostgreSQL's error
/// handling unchanged, so this frame holds only plain values (no destructors) and cannot
/// panic; the original function is called directly, without pgrx's error boundary.
unsafe extern "C-unwind" fn counting(state: *mut pg_sys::PlanState) -> *mut pg_sys::TupleTableSlot {
    let Some((original, counter)) = wrapped(state) else {
        // SAFETY: raises an ERROR (a bug: the statement's wrapper was forgotten early).
        unsafe { lost_wrapper() };
        return std::ptr::null_mut();
    };
    // SAFETY: the node's own ExecProcNodeReal, with its own argument.
    let slot = unsafe { original(state) };
    // SAFETY: a NULL slot or an empty one (TupIsNull) means the subplan is done; the counter
    // is kept alive by WRAPPED until the statement's memory is reset.
    unsafe {
        if !slot.is_null() && (*slot).tts_flags as u32 & pg_sys::TTS_FLAG_EMPTY == 0 {
            (*counter).set((*counter).get() + 1);
        }
    }
    slot
}

/// The original ExecProcNode of a wrapped subplan and its counter. Never panics.
#[allow(clippy::type_complexity)]
fn wrapped(
    state: *mut pg_sys::PlanState,
) -> Option<(
    unsafe extern "C-unwind" fn(*mut pg_sys::PlanState) -> *mut pg_sys::TupleTableSlot,
    *const Cell<u64>,
)> {
    WRAPPED.with(|w| {
        let list = w.try_borrow().ok()?;
        let (_, (original, counter)) = list.iter().rev().find(|(k, _)| *k == state as usize)?;
        Some(((*original)?, Rc::as_ptr(counter)))
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn lost_wrapper() {
    crate::core::error::raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        "pg_prodguard lost track of a subplan it counts".into(),
        "This is a bug in pg_prodguard; the statement was not completed.",
        "",
    )
}

/// Drops the statement's watch and wrappers when its executor state goes away, whether it
/// ended normally or with an ERROR.
///
/// # Safety
/// `estate` must be the QueryDesc's executor state.
unsafe fn forget_when_done(qd: *mut pg_sys::QueryDesc, estate: *mut pg_sys::EState) {
    // SAFETY: the callback struct lives in es_query_cxt, which outlives its registration.
    unsafe {
        let cb = pg_sys::MemoryContextAlloc(
            (*estate).es_query_cxt,
            std::mem::size_of::<pg_sys::MemoryContextCallback>(),
        ) as *mut pg_sys::MemoryContextCallback;
        (*cb).func = Some(forget_statement);
        (*cb).arg = qd as *mut c_void;
        (*cb).next = std::ptr::null_mut();
        pg_sys::MemoryContextRegisterResetCallback((*estate).es_query_cxt, cb);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn forget_statement(arg: *mut c_void) {
    drop(WATCHED.with(|w| take(w, arg as usize)));
    // Wrapped nodes belong to the statement being freed; other statements' wrappers stay.
    WRAPPED.with(|w| {
        w.borrow_mut()
            .retain(|(_, (_, counter))| Rc::strong_count(counter) > 1)
    });
}

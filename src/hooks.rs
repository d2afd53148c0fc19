//! Hooks: the one place where pg_prodguard attaches itself to PostgreSQL.
//!
//! `install()` runs once from `_PG_init`: for each hook it saves the one installed before
//! ours and puts ours in its place. Our hooks only route the event to the guard that
//! decides, then always call the saved hook (or PostgreSQL's standard function), so
//! extensions loaded before or after pg_prodguard keep working whatever the order in
//! shared_preload_libraries.
//!
//! | hook | routes to |
//! |---|---|
//! | ProcessUtility | `command_guard::check` (TRUNCATE, DROP, ALTER ... SET, ...), `test_data_guard::ddl` (DDL that writes values into protected tables: before and after it runs) |
//! | planner | `row_guard::mark_plan` (DELETE/UPDATE without WHERE) |
//! | ExecutorStart | `row_guard::after_start` (before any row is touched) |
//! | ExecutorFinish | `row_guard::after_finish` (rows changed) |
//! | object_access (OAT_FUNCTION_EXECUTE of setval()) | `command_guard::function_prepared`, then `executor_started` / `statement_finished` from the executor hooks (the extension's own sequences) |
//! | object_access (OAT_DROP) | `command_guard::cascaded_drop` (a protected table or column dropped by a statement the command guard does not judge, e.g. `DROP TYPE ... CASCADE`), `command_guard::large_object_drop` (`lo_unlink()`), `records::history::keep_before_drop` (the history tables copied aside before any drop) |
//! //! | shmem_request, shmem_startup | `records::shmem` (the denial queue and the metrics counters) and `records::watch` (row-drop watch, denial bursts); only under shared_preload_libraries |
//!
//! # Errors pass through untouched
//!
//! An ERROR raised by PostgreSQL (or another extension) while one of our hooks is on the
//! stack must reach the client exactly as without pg_prodguard: position, CONTEXT and
//! QUERY lines, schema/table/column/constraint names. pgrx's error boundary cannot keep
//! them (it copies a few fields of the ErrorData into a Rust panic and raises a new error
//! from them), so the hooks do not use it around the calls they pass on:
//!
//! - each hook function is a plain `extern "C-unwind"` function, not `#[pg_guard]`, and
//!   holds only plain values (pointers, integers, booleans: nothing with a destructor), so
//!   PostgreSQL's longjmp may pass over its frame;
//! - it calls the saved hook or the standard function directly (`raw`), without pgrx's
//!   boundary, so an ERROR there leaves with its ErrorData intact;
//! - everything pg_prodguard itself decides runs in small `#[pg_guard]` functions (`*_guarded`)
//!   before or after that call, where pgrx turns our refusals into ERRORs and a Rust panic
//!   (a bug) into one clean XX000 (`core::error::catch_bug`);
//! - the one piece of state that must be put back when the passed-on call fails (the
//!   command guard's mark of the statement being judged) is put back by a `PG_FINALLY`
//!   equivalent (`call_utility`), which then re-throws the same error (`pg_re_throw`).

use std::ffi::{c_char, c_int, c_void};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::error::catch_bug;
use crate::core::extension;
use crate::core::statement;
use crate::guards::command as command_guard;
use crate::guards::row as row_guard;
use crate::guards::test_data as test_data_guard;
use crate::records::{audit_batch, audit_log, history, shmem, watch};

/// LargeObjectRelationId (pg_largeobject), the class of a large object in the object-access
/// hook; pgrx does not export it.
const LARGE_OBJECT_RELATION_ID: pg_sys::Oid = pg_sys::Oid::from_u32(2613);

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// PostgreSQL's functions, declared without pgrx's error boundary (pgrx wraps every
/// function of `pg_sys`). Call them only from frames that hold nothing to drop.
mod raw {
    use pgrx::pg_sys::*;
    use std::ffi::{c_char, c_int};

    unsafe extern "C-unwind" {
        pub fn standard_ProcessUtility(
            pstmt: *mut PlannedStmt,
            query_string: *const c_char,
            read_only_tree: bool,
            context: ProcessUtilityContext::Type,
            params: ParamListInfo,
            query_env: *mut QueryEnvironment,
            dest: *mut DestReceiver,
            qc: *mut QueryCompletion,
        );
        pub fn standard_planner(
            parse: *mut Query,
            query_string: *const c_char,
            cursor_options: c_int,
            bound_params: ParamListInfo,
        ) -> *mut PlannedStmt;
        pub fn standard_ExecutorStart(query_desc: *mut QueryDesc, eflags: c_int);
        pub fn standard_ExecutorFinish(query_desc: *mut QueryDesc);
        /// Re-throws the ERROR being handled, its ErrorData unchanged (PG_RE_THROW).
        pub fn pg_re_throw() -> !;
    }
}

pub fn install() {
    // SAFETY: _PG_init runs once per process, before any statement, on the only thread.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREV_PLANNER = pg_sys::planner_hook;
        pg_sys::planner_hook = Some(planner);
        PREV_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
        PREV_EXECUTOR_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// Installs the shared-memory hooks; only from _PG_init under shared_preload_libraries.
pub fn install_shmem() {
    // SAFETY: _PG_init of a preloaded library runs in the postmaster before any other
    // process exists.
    unsafe {
        PREV_SHMEM_REQUEST = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

// ---------------------------------------------------------------------------------------
// object_access

unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: c_int,
    arg: *mut c_void,
) {
    if access == pg_sys::ObjectAccessType::OAT_DROP
        && (class_id == pg_sys::RelationRelationId || class_id == LARGE_OBJECT_RELATION_ID)
    {
        // SAFETY: a #[pg_guard] function with plain arguments.
        unsafe { object_drop_guarded(class_id, object_id, sub_id) };
    } else if access == pg_sys::ObjectAccessType::OAT_FUNCTION_EXECUTE
        && command_guard::is_setval(object_id)
    {
        // SAFETY: a #[pg_guard] function with a plain argument.
        unsafe { function_prepared_guarded(object_id) };
    }
    // SAFETY: the saved hook receives our arguments unchanged; this frame holds nothing to
    // drop.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            prev(access, class_id, object_id, sub_id, arg);
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn function_prepared_guarded(fn_oid: pg_sys::Oid) {
    catch_bug("the object-access hook", || {
        command_guard::function_prepared(fn_oid)
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn object_drop_guarded(
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: c_int,
) {
    catch_bug("the object-access hook", || {
        if class_id == LARGE_OBJECT_RELATION_ID {
            command_guard::large_object_drop(object_id)
        } else {
            audit_log::release();
            command_guard::cascaded_drop(object_id, sub_id);
            if sub_id == 0 && !extension::in_own_script() {
                history::keep_before_drop(object_id);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// ProcessUtility

#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL passes a valid PlannedStmt.
    unsafe { statement::note(query_string, (*pstmt).stmt_location, (*pstmt).stmt_len) };
    // SAFETY: PostgreSQL passes a valid PlannedStmt and query text. The guard refuses here
    // (an ERROR from a #[pg_guard] function), or marks whether it judged the statement's
    // drops and returns the enclosing statement's mark.
    // A COPY of a dump's history into a history table that holds this database's own
    // history is sent to a temporary table instead (a copy of the tree: ours to change).
    // (only COPY and CREATE EXTENSION are looked at: one comparison for the others)
    let pstmt = unsafe {
        let stmt = (*pstmt).utilityStmt;
        let tag = if stmt.is_null() {
            pg_sys::NodeTag::T_Invalid
        } else {
            (*stmt).type_
        };
        if matches!(
            tag,
            pg_sys::NodeTag::T_CopyStmt | pg_sys::NodeTag::T_CreateExtensionStmt
        ) {
            redirect_guarded(pstmt)
        } else {
            pstmt
        }
    };
    let enclosing = unsafe { utility_guarded(pstmt, query_string) };
    // SAFETY: as above; the arguments are passed on unchanged.
    let failed = unsafe {
        call_utility(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        )
    };
    // Drops made while this statement ran were judged by the command guard above, or, for
    // other statements, by the object-access hook: the enclosing statement's mark comes back
    // whether the statement ended or failed.
    command_guard::leave_statement(enclosing);
    if failed {
        // SAFETY: the ERROR is still PostgreSQL's current error; re-throw it as it is.
        unsafe { raw::pg_re_throw() }
    }
    // DDL that wrote values into a protected table is checked in its own transaction.
    // SAFETY: the statement ran; its node is read for its tag only; a #[pg_guard] function.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        if !stmt.is_null() && (*stmt).type_ == pg_sys::NodeTag::T_AlterTableStmt {
            after_utility_guarded(pstmt);
        }
    }
    // the row entries of a COPY FROM, whose triggers fire outside the executor hooks
    if !audit_batch::is_empty() {
        flush_guarded();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn flush_guarded() {
    catch_bug("the row audit", audit_log::flush);
}

#[pg_guard]
unsafe extern "C-unwind" fn after_utility_guarded(pstmt: *mut pg_sys::PlannedStmt) {
    catch_bug("the test-data guard", || {
        // SAFETY: the hook's PlannedStmt, whose statement just ran.
        unsafe {
            let stmt = (*pstmt).utilityStmt;
            if !stmt.is_null() {
                test_data_guard::ddl::after(stmt);
            }
        }
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn redirect_guarded(
    pstmt: *mut pg_sys::PlannedStmt,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: guaranteed by the caller (the hook's own argument).
    catch_bug("the command guard", || unsafe {
        command_guard::keep_own_history(pstmt)
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn utility_guarded(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
) -> bool {
    catch_bug("the command guard", || {
        // SAFETY: guaranteed by the caller (the hook's own arguments).
        unsafe {
            command_guard::check(pstmt, query_string);
            let stmt = (*pstmt).utilityStmt;
            if !stmt.is_null() {
                test_data_guard::ddl::before(stmt);
            }
            // (after the guards, whose audit entries open the audit log)
            audit_log::release();
            command_guard::enter_statement(pstmt)
        }
    })
}

/// Calls the saved ProcessUtility hook (or the standard function) inside the equivalent of
/// PG_TRY: returns true when it raised an ERROR, which is then still PostgreSQL's current
/// error, for the caller to re-throw after its clean-up.
///
/// # Safety
/// The hook's own arguments; the caller's frame holds nothing to drop.
#[allow(clippy::too_many_arguments)]
unsafe fn call_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) -> bool {
    // SAFETY: PG_TRY: PostgreSQL's longjmp target is set to our sigsetjmp buffer for the
    // call, and the previous target and error-context stack are put back afterwards, on
    // both paths, as PG_END_TRY does. The closure captures only plain values.
    unsafe {
        let saved_exception_stack = pg_sys::PG_exception_stack;
        let saved_context_stack = pg_sys::error_context_stack;
        let jumped = cee_scape::call_with_sigsetjmp(false, |jump_buffer| {
            pg_sys::PG_exception_stack =
                jump_buffer as *const cee_scape::SigJmpBufFields as *mut pg_sys::sigjmp_buf;
            match PREV_PROCESS_UTILITY {
                Some(prev) => prev(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
                None => raw::standard_ProcessUtility(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                ),
            }
            0
        });
        pg_sys::PG_exception_stack = saved_exception_stack;
        pg_sys::error_context_stack = saved_context_stack;
        jumped != 0
    }
}

// ---------------------------------------------------------------------------------------
// planner

unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: `parse` is the query about to be planned.
    unsafe { statement::note(query_string, (*parse).stmt_location, (*parse).stmt_len) };
    // SAFETY: `parse` is the query about to be planned; the marks are a palloc'd List (a
    // plain pointer) in the planner's memory context.
    let marks = unsafe { marks_guarded(parse) };
    // SAFETY: the saved hook (or the standard planner) receives our arguments unchanged.
    let plan = unsafe {
        match PREV_PLANNER {
            Some(prev) => prev(parse, query_string, cursor_options, bound_params),
            None => raw::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    // SAFETY: `plan` is the plan made of the query the marks were taken from.
    unsafe { mark_guarded(marks, plan) };
    plan
}

#[pg_guard]
unsafe extern "C-unwind" fn marks_guarded(parse: *mut pg_sys::Query) -> *mut pg_sys::List {
    // SAFETY: guaranteed by the caller.
    catch_bug("the row guard", || unsafe {
        row_guard::marks_before_planning(parse)
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn mark_guarded(marks: *mut pg_sys::List, plan: *mut pg_sys::PlannedStmt) {
    // SAFETY: guaranteed by the caller.
    catch_bug("the row guard", || unsafe {
        row_guard::mark_plan(marks, plan)
    });
}

// ---------------------------------------------------------------------------------------
// ExecutorStart, ExecutorFinish

unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: c_int) {
    // SAFETY: PostgreSQL passes a valid QueryDesc; the saved hook (or the standard
    // function) receives our arguments unchanged.
    command_guard::executor_starting();
    unsafe {
        let plan = (*query_desc).plannedstmt;
        if !plan.is_null() {
            statement::note(
                (*query_desc).sourceText,
                (*plan).stmt_location,
                (*plan).stmt_len,
            );
        }
        match PREV_EXECUTOR_START {
            Some(prev) => prev(query_desc, eflags),
            None => raw::standard_ExecutorStart(query_desc, eflags),
        }
        start_guarded(query_desc, eflags);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn start_guarded(query_desc: *mut pg_sys::QueryDesc, eflags: c_int) {
    // SAFETY: the QueryDesc after standard start.
    catch_bug("the row guard", || unsafe {
        command_guard::executor_started((*query_desc).plannedstmt);
        row_guard::after_start(query_desc, eflags)
    });
}

unsafe extern "C-unwind" fn executor_finish(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: as for executor_start.
    unsafe {
        match PREV_EXECUTOR_FINISH {
            Some(prev) => prev(query_desc),
            None => raw::standard_ExecutorFinish(query_desc),
        }
        finish_guarded(query_desc);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn finish_guarded(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: the QueryDesc after standard finish.
    catch_bug("the row guard", || unsafe {
        // the statement's AFTER triggers have run: its row entries are written together
        audit_log::flush();
        command_guard::statement_finished();
        row_guard::after_finish(query_desc)
    });
}

// ---------------------------------------------------------------------------------------
// Shared memory

unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster while shared memory is being sized.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            prev();
        }
        shmem_request_guarded();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request_guarded() {
    shmem::request();
    watch::request();
}

unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: called once per (re)initialisation of shared memory.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            prev();
        }
        shmem_startup_guarded();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup_guarded() {
    shmem::attach();
    watch::attach();
}

//! Hooks: the one place where pg_prodguard attaches itself to PostgreSQL.
//!
//! `install()` runs once from `_PG_init`: for each hook it saves the one installed before
//! ours and puts ours in its place. Our hooks only route the event to the guard that
//! decides, then always call the saved hook (or PostgreSQL's standard function), so
//! extensions loaded before or after pg_prodguard keep working whatever the order in
//! shared_preload_libraries. Saved hooks are called through pgrx's FFI boundary, so an
//! ERROR inside them unwinds through our frames correctly.
//!
//! | hook | routes to |
//! |---|---|
//! | ProcessUtility | `command_guard::check` (TRUNCATE, DROP, ALTER ... SET, ...) |
//! | planner | `row_guard::mark_plan` (DELETE/UPDATE without WHERE) |
//! | ExecutorStart | `row_guard::after_start` (before any row is touched) |
//! | ExecutorFinish | `row_guard::after_finish` (rows changed) |
//! | object_access (OAT_DROP) | `command_guard::cascaded_drop` (a protected table or column dropped by a statement the command guard does not judge, e.g. `DROP TYPE ... CASCADE`) |
//! | shmem_request, shmem_startup | `records::shmem` (the denial queue and the metrics counters; only under shared_preload_libraries) |

use std::ffi::{c_char, c_int};

use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::prelude::*;

use crate::guards::command as command_guard;
use crate::guards::row as row_guard;
use crate::records::shmem;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREV_PLANNER: pg_sys::planner_hook_type = None;
static mut PREV_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;
static mut PREV_EXECUTOR_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;
static mut PREV_SHMEM_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP: pg_sys::shmem_startup_hook_type = None;

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

#[pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster while shared memory is being sized.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST {
            pg_guard_ffi_boundary(|| prev());
        }
    }
    shmem::request();
}

#[pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: called once per (re)initialisation of shared memory.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP {
            pg_guard_ffi_boundary(|| prev());
        }
    }
    shmem::attach();
}

#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: pg_sys::Oid,
    object_id: pg_sys::Oid,
    sub_id: c_int,
    arg: *mut std::ffi::c_void,
) {
    if access == pg_sys::ObjectAccessType::OAT_DROP && class_id == pg_sys::RelationRelationId {
        command_guard::cascaded_drop(object_id, sub_id);
    }
    // SAFETY: the saved hook receives our arguments unchanged.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            pg_guard_ffi_boundary(|| prev(access, class_id, object_id, sub_id, arg));
        }
    }
}

#[pg_guard]
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
    // SAFETY: PostgreSQL passes a valid PlannedStmt and query text.
    unsafe { command_guard::check(pstmt, query_string) };
    // Drops made while this statement runs are judged by the command guard above, or, for
    // other statements, by the object-access hook (reset when the statement ends, also
    // by an error).
    // SAFETY: as above.
    let _judged = unsafe { command_guard::JudgedStatement::enter(pstmt) };
    // SAFETY: the saved hook (or the standard function) receives our arguments unchanged.
    unsafe {
        match PREV_PROCESS_UTILITY {
            Some(prev) => pg_guard_ffi_boundary(|| {
                prev(
                    pstmt,
                    query_string,
                    read_only_tree,
                    context,
                    params,
                    query_env,
                    dest,
                    qc,
                )
            }),
            None => pg_sys::standard_ProcessUtility(
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
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn planner(
    parse: *mut pg_sys::Query,
    query_string: *const c_char,
    cursor_options: c_int,
    bound_params: pg_sys::ParamListInfo,
) -> *mut pg_sys::PlannedStmt {
    // SAFETY: `parse` is the query about to be planned.
    let marks = unsafe { row_guard::marks_before_planning(parse) };
    // SAFETY: the saved hook (or the standard planner) receives our arguments unchanged.
    let plan = unsafe {
        match PREV_PLANNER {
            Some(prev) => {
                pg_guard_ffi_boundary(|| prev(parse, query_string, cursor_options, bound_params))
            }
            None => pg_sys::standard_planner(parse, query_string, cursor_options, bound_params),
        }
    };
    // SAFETY: `plan` is the plan made of the query the marks were taken from.
    unsafe { row_guard::mark_plan(marks, plan) };
    plan
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: c_int) {
    // SAFETY: PostgreSQL passes a valid QueryDesc; the saved hook (or the standard
    // function) receives our arguments unchanged.
    unsafe {
        match PREV_EXECUTOR_START {
            Some(prev) => pg_guard_ffi_boundary(|| prev(query_desc, eflags)),
            None => pg_sys::standard_ExecutorStart(query_desc, eflags),
        }
        row_guard::after_start(query_desc, eflags);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn executor_finish(query_desc: *mut pg_sys::QueryDesc) {
    // SAFETY: as for executor_start.
    unsafe {
        match PREV_EXECUTOR_FINISH {
            Some(prev) => pg_guard_ffi_boundary(|| prev(query_desc)),
            None => pg_sys::standard_ExecutorFinish(query_desc),
        }
        row_guard::after_finish(query_desc);
    }
}

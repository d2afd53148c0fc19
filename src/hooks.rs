//! Hooks: the one place where pg_prodguard attaches itself to PostgreSQL.
//!
//! `install()` runs once from `_PG_init`: it saves the hook that was installed before ours
//! and puts ours in its place. Our hook only routes the event to the guard that decides,
//! then always calls the saved hook (or PostgreSQL's standard function), so extensions
//! loaded before or after pg_prodguard keep working whatever the order in
//! shared_preload_libraries.

use std::ffi::c_char;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::command_guard;

static mut PREV_PROCESS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

pub fn install() {
    // SAFETY: _PG_init runs once per process, before any statement, on the only thread.
    unsafe {
        PREV_PROCESS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
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
    // SAFETY: the saved hook (or the standard function) receives our arguments unchanged.
    unsafe {
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

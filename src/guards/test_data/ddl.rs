//! DDL that writes values into tables the test-data guard protects (issue 16). The row
//! trigger sees rows that statements write; these statements put values into rows without
//! firing it, so the hook hands them to this module:
//! - before it runs, `ALTER TABLE parent ATTACH PARTITION t` into a parent protected with
//!   `test_data`: `t`'s rows are scanned with the matcher, and the first ones carrying test
//!   data are named;
//! - before it runs, `ALTER TYPE ... RENAME VALUE` to a label carrying test data, of an
//!   enum a protected table uses;
//! - after it ran (in its transaction, so that a refusal rolls it back), `ALTER TABLE` of a
//!   protected table that changed a column's type (`USING ...`) or added a column with a
//!   default or a generated value: those columns are scanned.
//!
//! The action is `prodguard.test_data_action`'s, as for rows: `reject` refuses (staging
//! warns), `warn` warns, `log` records the matches in an audit entry of their own.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::core::breakglass::Scope;
use crate::core::extension;
use crate::core::finding::{Finding, Guard};
use crate::core::passes::OWN_DDL;
use crate::core::pg::{self, cstr_or, opt_cstr};
use crate::core::protection;
use crate::core::settings::{self, Environment, TestDataAction};
use crate::guards::policy;
use crate::records::audit_log;
use crate::records::denial::{self, Event};

use super::cache::matcher;
use super::table_scan::{self, RowHit};

/// Rows named in a refusal's DETAIL at most.
const NAMED_ROWS: usize = 3;

/// Whether this guard judges anything here now.
fn active() -> Option<(Environment, TestDataAction)> {
    let env = settings::environment();
    let action = settings::TEST_DATA_ACTION.get();
    (env != Environment::Development
        && action != TestDataAction::Off
        && !OWN_DDL.get()
        && !extension::in_own_script()
        && extension::own_namespace().is_some())
    .then_some((env, action))
}

/// Before a utility statement runs.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
pub unsafe fn before(stmt: *mut pg_sys::Node) {
    // SAFETY: guaranteed by the caller.
    let tag = unsafe { (*stmt).type_ };
    if !matches!(
        tag,
        pg_sys::NodeTag::T_AlterTableStmt | pg_sys::NodeTag::T_AlterEnumStmt
    ) {
        return; // (every other utility statement: one comparison)
    }
    let Some((env, action)) = active() else {
        return;
    };
    // SAFETY: guaranteed by the caller; each arm reads the node its tag names.
    unsafe {
        match (*stmt).type_ {
            pg_sys::NodeTag::T_AlterTableStmt => {
                let s = &*(stmt as *mut pg_sys::AlterTableStmt);
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds).iter_ptr() {
                    if (*cmd).subtype != pg_sys::AlterTableType::AT_AttachPartition {
                        continue;
                    }
                    let parent = pg::relid_of(s.relation);
                    let part = (*cmd).def as *mut pg_sys::PartitionCmd;
                    if parent == pg_sys::InvalidOid
                        || part.is_null()
                        || !protection::flags(parent).test_data
                    {
                        continue;
                    }
                    let table = pg::relid_of((*part).name);
                    if table == pg_sys::InvalidOid {
                        continue;
                    }
                    let hits = table_scan::scan(table, None, None, NAMED_ROWS);
                    if !hits.is_empty() {
                        let why = format!(
                            "The rows of {}, which would become a partition of {} (protected against test data), carry test data: {}.",
                            pg::describe_table(table),
                            pg::describe_table(parent),
                            named(&hits)
                        );
                        judge(
                            env,
                            action,
                            parent,
                            "ALTER TABLE ATTACH PARTITION",
                            &hits,
                            why,
                        );
                    }
                }
            }
            pg_sys::NodeTag::T_AlterEnumStmt => {
                let s = &*(stmt as *mut pg_sys::AlterEnumStmt);
                let (Some(_), Some(label)) = (opt_cstr(s.oldVal), opt_cstr(s.newVal)) else {
                    return;
                };
                let m = matcher();
                let Some(hit) = m.first(&label, &mut String::new()) else {
                    return;
                };
                let typid = pg_sys::typenameTypeId(
                    std::ptr::null_mut(),
                    pg_sys::makeTypeNameFromNameList(s.typeName),
                );
                for relid in tables_using(typid) {
                    let p = m.pattern(hit.pattern);
                    let hits = vec![RowHit {
                        ctid: pg_sys::ItemPointerData::default(),
                        column: String::new(),
                        dictionary: p.dictionary.to_string(),
                        pattern: p.pattern.to_string(),
                        text: hit.text.clone(),
                    }];
                    let why = format!(
                        "The new label \"{label}\" of type {} matches pattern \"{}\" of dictionary \"{}\", and table {}, which is protected against test data, holds values of the type.",
                        cstr_or(pg_sys::format_type_be(typid), "?"),
                        p.pattern,
                        p.dictionary,
                        pg::describe_table(relid)
                    );
                    judge(env, action, relid, "ALTER TYPE RENAME VALUE", &hits, why);
                    return;
                }
            }
            _ => {}
        }
    }
}

/// After a utility statement ran, in its transaction.
///
/// # Safety
/// `stmt` must be a valid utility parse node.
pub unsafe fn after(stmt: *mut pg_sys::Node) {
    // SAFETY: guaranteed by the caller.
    if unsafe { (*stmt).type_ } != pg_sys::NodeTag::T_AlterTableStmt {
        return;
    }
    let Some((env, action)) = active() else {
        return;
    };
    // SAFETY: an AlterTableStmt; its commands and their ColumnDefs are read as such.
    unsafe {
        let s = &*(stmt as *mut pg_sys::AlterTableStmt);
        let mut columns: Vec<String> = Vec::new();
        let mut added: Vec<String> = Vec::new();
        for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds).iter_ptr() {
            let def = (*cmd).def as *mut pg_sys::ColumnDef;
            match (*cmd).subtype {
                pg_sys::AlterTableType::AT_AlterColumnType => {
                    columns.push(cstr_or((*cmd).name, ""));
                }
                pg_sys::AlterTableType::AT_AddColumn
                    if !def.is_null() && (*def).type_ == pg_sys::NodeTag::T_ColumnDef =>
                {
                    // a default or generated value written, or a domain's default
                    if writes_values(def) {
                        columns.push(cstr_or((*def).colname, ""));
                    } else {
                        added.push(cstr_or((*def).colname, ""));
                    }
                }
                _ => {}
            }
        }
        if columns.is_empty() && added.is_empty() {
            return;
        }
        let relid = pg::relid_of(s.relation);
        if relid == pg_sys::InvalidOid || !protection::flags(relid).test_data {
            return;
        }
        // an added column whose type (a domain) has a default got that value in every row
        for name in added {
            let c = std::ffi::CString::new(name.as_str()).unwrap_or_default();
            let attnum = pg_sys::get_attnum(relid, c.as_ptr());
            if attnum > 0 && !pg_sys::get_typdefault(pg_sys::get_atttype(relid, attnum)).is_null() {
                columns.push(name);
            }
        }
        if columns.is_empty() {
            return;
        }
        let attnums: Vec<i32> = columns
            .iter()
            .filter_map(|c| {
                let name = std::ffi::CString::new(c.as_str()).ok()?;
                let n = pg_sys::get_attnum(relid, name.as_ptr());
                (n > 0).then_some(n as i32)
            })
            .collect();
        let hits = table_scan::scan(relid, Some(&attnums), None, NAMED_ROWS);
        if !hits.is_empty() {
            let why = format!(
                "The statement wrote values into column(s) {} of {}, which is protected against test data, and they carry some: {}.",
                columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", "),
                pg::describe_table(relid),
                named(&hits)
            );
            judge(env, action, relid, "ALTER TABLE", &hits, why);
        }
    }
}

/// Whether an added column gets values in the existing rows: a default or a generated
/// expression.
///
/// # Safety
/// `def` must be a valid ColumnDef.
unsafe fn writes_values(def: *mut pg_sys::ColumnDef) -> bool {
    // SAFETY: guaranteed by the caller; constraints is a List of Constraint nodes.
    unsafe {
        !(*def).raw_default.is_null()
            || !(*def).cooked_default.is_null()
            || PgList::<pg_sys::Constraint>::from_pg((*def).constraints)
                .iter_ptr()
                .any(|c| {
                    matches!(
                        (*c).contype,
                        pg_sys::ConstrType::CONSTR_DEFAULT | pg_sys::ConstrType::CONSTR_GENERATED
                    )
                })
    }
}

/// The protected (test_data) tables with a column whose type holds `typid` anywhere:
/// directly, in arrays, domains, composites, ranges and multiranges of it.
fn tables_using(typid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    let tables: Vec<pg_sys::Oid> = extension::with_pinned_search_path(|| {
        Spi::connect(|client| {
            client
                .select(
                    "WITH RECURSIVE holding(oid) AS (
                         SELECT $1::oid
                         UNION
                         SELECT t.oid FROM holding h
                           JOIN pg_catalog.pg_type t
                             ON (t.typelem = h.oid AND t.typcategory = 'A') OR t.typbasetype = h.oid
                             OR t.oid = (SELECT c.reltype FROM pg_catalog.pg_class c
                                           JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
                                          WHERE c.relkind = 'c' AND a.atttypid = h.oid AND c.reltype = t.oid LIMIT 1)
                             OR t.oid IN (SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngsubtype = h.oid)
                             OR t.oid IN (SELECT r.rngmultitypid FROM pg_catalog.pg_range r WHERE r.rngtypid = h.oid))
                     SELECT DISTINCT a.attrelid FROM pg_catalog.pg_attribute a
                      WHERE NOT a.attisdropped AND a.attnum > 0
                        AND a.atttypid IN (SELECT oid FROM holding)",
                    None,
                    &[typid.into()],
                )
                .map(|rows| {
                    rows.filter_map(|r| r.get::<pg_sys::Oid>(1).ok().flatten())
                        .collect()
                })
                .unwrap_or_default()
        })
    });
    tables
        .into_iter()
        .filter(|t| protection::flags(*t).test_data)
        .collect()
}

/// "row (0,3), column "name": "John Doe" (pattern "John Doe" of dictionary
/// "placeholder_people"); ..." for the first rows found.
fn named(hits: &[RowHit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "row {} column \"{}\": \"{}\" (pattern \"{}\" of dictionary \"{}\")",
                ctid(&h.ctid),
                h.column,
                h.text,
                h.pattern,
                h.dictionary
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn ctid(t: &pg_sys::ItemPointerData) -> String {
    let block = (u32::from(t.ip_blkid.bi_hi) << 16) | u32::from(t.ip_blkid.bi_lo);
    format!("({block},{})", t.ip_posid)
}

/// What the matches do, by prodguard.test_data_action and the environment.
fn judge(
    env: Environment,
    action: TestDataAction,
    relid: pg_sys::Oid,
    command: &str,
    hits: &[RowHit],
    why: String,
) {
    let statement = pg::current_statement();
    let statement = statement.as_deref();
    let finding = Finding::here(Guard::TestData, command, pg::describe_table(relid), why.clone(), Some(relid))
        .prefer("Otherwise correct the values (prodguard.scan_table() lists them), or remove the pattern with prodguard.dictionary_remove() if it is real data.")
        .with_message(format!(
            "{command} would put test data into {}",
            pg::describe_table(relid)
        ))
        .with_sqlstate(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION);
    match action {
        TestDataAction::Reject => {
            let _ = policy::enforce(env, &finding, Scope::Transaction, statement);
        }
        TestDataAction::Warn => {
            denial::log(Event::Warned, &finding, None);
            pgrx::warning!(
                "{command} puts test data into {}: {why}",
                pg::describe_table(relid)
            );
        }
        TestDataAction::Log => {
            let matches = serde_json::Value::Array(
                hits.iter()
                    .map(|h| {
                        serde_json::json!({
                            "column": h.column,
                            "text": h.text,
                            "pattern": h.pattern,
                            "dictionary": h.dictionary,
                        })
                    })
                    .collect(),
            );
            audit_log::record_test_data(relid, command, env, matches);
        }
        TestDataAction::Off => {}
    }
}

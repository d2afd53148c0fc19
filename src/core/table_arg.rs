//! Table arguments of the API functions (SQL type `regclass`), checked before anything
//! opens them: an OID that names no relation is 42P01, a relation of the wrong kind 42809,
//! NULL 22004, each with the function's name, never an internal error from opening it.

use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable,
};
use pgrx::prelude::*;

use crate::core::error::raise;

/// A `regclass` argument, not yet looked up.
#[derive(Clone, Copy)]
pub struct TableArg(pg_sys::Oid);

impl FromDatum for TableArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<TableArg> {
        // SAFETY: a regclass datum is an oid.
        (!is_null).then(|| TableArg(unsafe { pg_sys::Oid::from_datum(datum, false) }.unwrap()))
    }
}

// SAFETY: unboxed as FromDatum reads it, from a regclass argument.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for TableArg {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: guaranteed by the caller: the argument is a regclass.
        let value = unsafe { arg.unbox_arg_using_from_datum::<TableArg>() };
        required(value, "a prodguard function", "its table argument")
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        // SAFETY: guaranteed by the caller: the argument is a regclass.
        unsafe { arg.unbox_arg_using_from_datum::<TableArg>() }.into()
    }
}

impl IntoDatum for TableArg {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

// SAFETY: the argument is a regclass, an oid, as the datum conversions read it.
unsafe impl SqlTranslatable for TableArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(TableArg);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Ok(SqlMappingRef::literal("regclass"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("regclass")));
}

/// What a function accepts.
#[derive(Clone, Copy, PartialEq)]
pub enum Accepts {
    /// Ordinary and partitioned tables.
    Tables,
    /// Any relation (the function explains a wrong kind itself).
    Any,
}

impl TableArg {
    /// The relation's oid, locked with AccessShareLock until the end of the transaction,
    /// after checking that it exists and is of a kind `function` accepts.
    pub fn check(self, function: &str, accepts: Accepts) -> pg_sys::Oid {
        let relid = self.0;
        if relkind(relid).is_none() {
            no_such_relation(relid, function);
        }
        // SAFETY: locks an oid that named a relation a moment ago; its existence is
        // checked again once the lock is held (it may have been dropped in between).
        unsafe { pg_sys::LockRelationOid(relid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
        let Some(kind) = relkind(relid) else {
            no_such_relation(relid, function)
        };
        let ok = match accepts {
            Accepts::Tables => matches!(
                kind,
                pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE
            ),
            Accepts::Any => true,
        };
        if !ok {
            let what = kind_name(kind);
            raise(
                PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
                format!(
                    "{function}: {} is {what}",
                    crate::core::pg::quoted_name(relid)
                ),
                format!("{function} works on tables and partitioned tables."),
                "Give it the table the object reads from or writes to.",
            );
        }
        relid
    }
}

/// What a relation of kind `relkind` is, in words ("a view", "an index", ...).
pub fn kind_name(relkind: u8) -> &'static str {
    match relkind {
        pg_sys::RELKIND_RELATION | pg_sys::RELKIND_PARTITIONED_TABLE => "a table",
        pg_sys::RELKIND_VIEW => "a view",
        pg_sys::RELKIND_MATVIEW => "a materialized view",
        pg_sys::RELKIND_FOREIGN_TABLE => "a foreign table",
        pg_sys::RELKIND_SEQUENCE => "a sequence",
        pg_sys::RELKIND_INDEX | pg_sys::RELKIND_PARTITIONED_INDEX => "an index",
        pg_sys::RELKIND_COMPOSITE_TYPE => "a composite type",
        pg_sys::RELKIND_TOASTVALUE => "a TOAST table",
        _ => "not a table",
    }
}

/// The argument, or a 22004 error naming the function and argument when it is NULL.
pub fn required(arg: Option<TableArg>, function: &str, argument: &str) -> TableArg {
    match arg {
        Some(a) => a,
        None => raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{function}: {argument} must not be NULL"),
            "",
            "Name the table, as in 'public.orders' or 'orders'::regclass.",
        ),
    }
}

fn relkind(relid: pg_sys::Oid) -> Option<u8> {
    // SAFETY: a syscache lookup inside a transaction; 0 means no such relation.
    let kind = unsafe { pg_sys::get_rel_relkind(relid) } as u8;
    (kind != 0).then_some(kind)
}

fn no_such_relation(relid: pg_sys::Oid, function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!(
            "{function}: relation with OID {} does not exist",
            relid.to_u32()
        ),
        "",
        "Name the table, as in 'public.orders' or 'orders'::regclass.",
    )
}

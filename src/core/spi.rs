//! Read-only SPI queries.
//!
//! pgrx's `Spi::get_one*` helpers run their query as a write: they make PostgreSQL assign
//! the transaction an id first. That costs an xid on a primary for every look-up, and
//! fails on a hot standby ("cannot assign TransactionIds during recovery", XX000). Every
//! query of pg_prodguard that only reads goes through here instead: it runs read-only
//! while the transaction has written nothing, and sees the transaction's own writes once
//! it has.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// The first column of the first row (an error when there is no row, as pgrx's own).
pub fn one<A: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> SpiResult<Option<A>> {
    Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_one::<A>())
}

/// The first two columns of the first row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<(Option<A>, Option<B>)> {
    Spi::connect(|client| client.select(sql, Some(1), args)?.first().get_two::<A, B>())
}

/// The first three columns of the first row.
pub fn three<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum, C: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<(Option<A>, Option<B>, Option<C>)> {
    Spi::connect(|client| {
        client
            .select(sql, Some(1), args)?
            .first()
            .get_three::<A, B, C>()
    })
}

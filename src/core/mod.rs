//! Core: what every guard needs and no guard owns.
//!
//! Contract: nothing here uses `records`, `guards`, `api`, `hooks` or `workers`. Modules
//! here describe and look up; they never refuse a statement on their own (the guards
//! decide, through `guards::policy`). Every SPI query runs with a pinned search_path
//! (`extension::with_pinned_search_path`), and every per-backend cache forgets on relcache
//! invalidation without touching the catalogs in its callback.
//!
//! - `pg`: PostgreSQL helpers (names, C strings, the current database/user/statement, oid
//!   maps, relcache callbacks, stored images of values);
//! - `extension`: the extension's own objects, running work as their owner, preload state;
//! - `error`: errors and notices in PostgreSQL's style;
//! - `settings`: the values of the `prodguard.*` GUCs and the list parsers;
//! - `environment`: which environment other databases of the cluster are in;
//! - `breakglass`: when `prodguard.override` is honoured, and who is an operator;
//! - `changes`: approved changes (`change:<id>`) as break glass reads them;
//! - `finding`: what a guard found, in words a DBA reads;
//! - `passes`: the flags that let pg_prodguard's own work past its own guards;
//! - `protection`: which tables are protected and how (the per-backend cache);
//! - `restore_session`: the mark of a refused pg_restore session;
//! - `spi`: read-only queries (that work on a hot standby);
//! - `statement`: the statement being run as it is recorded (alone, secrets masked);
//! - `table_arg`: the API's `regclass` arguments, checked before use.

pub mod breakglass;
pub mod changes;
pub mod environment;
pub mod error;
pub mod extension;
pub mod finding;
pub mod passes;
pub mod pg;
pub mod protection;
pub mod restore_session;
pub mod settings;
pub mod spi;
pub mod statement;
pub mod table_arg;

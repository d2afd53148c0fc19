//! The command guard's statements that rewrite or discard data without dropping a table
//! (SPEC §3, issue 14):
//! - `ALTER TABLE ... DROP COLUMN` (`drop_column`), `ALTER COLUMN ... TYPE` with or without
//!   `USING` (`alter_column_type`; an overridden one on a protected table backs the rows up
//!   first, as TRUNCATE does), `SET UNLOGGED` (`set_unlogged`: a crash would empty the
//!   table), `DROP CONSTRAINT` of a primary key, unique, foreign key or exclusion constraint
//!   (`drop_constraint`); a table that holds no rows or was created in this transaction
//!   loses nothing and is not judged;
//! - `DROP INDEX` of an index that backs such a constraint (`drop_constraint`);
//! - `ALTER TYPE ... DROP ATTRIBUTE`, `ALTER ATTRIBUTE ... TYPE` and `RENAME VALUE` of a
//!   type that a table column uses (`alter_type`);
//! - `DROP SEQUENCE` of a sequence that a column owns or uses as its default
//!   (`drop_sequence`);
//! - the removal of a large object (`lo_unlink()`, `DROP OWNED`, ...), seen by the
//!   object-access hook (`drop_large_object`); one created in this transaction is not
//!   judged.

#![allow(non_upper_case_globals)] // PostgreSQL's AT_* constants in patterns

use pgrx::pg_sys;
use pgrx::PgList;

use crate::core::extension::{self, SCHEMA};
use crate::core::pg::cstr_or;
use crate::core::settings::Token;

use super::tables::Table;
use super::{local, Judged, Rule};

/// ALTER TABLE subcommands that rewrite or discard the table's data.
pub fn alter_table(s: &pg_sys::AlterTableStmt) -> Vec<Judged> {
    use pg_sys::AlterTableType::*;
    if s.objtype == pg_sys::ObjectType::OBJECT_TYPE {
        return alter_type_attributes(s);
    }
    if s.objtype != pg_sys::ObjectType::OBJECT_TABLE {
        return Vec::new();
    }
    // SAFETY: `cmds` is a List of AlterTableCmd.
    let cmds = unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds) };
    let wanted: Vec<(pg_sys::AlterTableType::Type, String)> = cmds
        .iter_ptr()
        // SAFETY: each element is a valid AlterTableCmd; `name` is NULL or a C string.
        .map(|c| unsafe { ((*c).subtype, cstr_or((*c).name, "")) })
        .filter(|(t, _)| {
            matches!(
                *t,
                AT_DropColumn | AT_AlterColumnType | AT_SetUnLogged | AT_DropConstraint
            )
        })
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    // SAFETY: `relation` is a valid RangeVar for ALTER TABLE.
    let Some(table) = (unsafe { Table::resolve(s.relation) }) else {
        return Vec::new();
    };
    if table.temp {
        return Vec::new();
    }
    wanted
        .into_iter()
        .filter_map(|(subtype, name)| {
            let column = format!("column \"{name}\" of table {}", table.display());
            let (token, command, object, backup) = match subtype {
                AT_DropColumn => (Token::DropColumn, "ALTER TABLE DROP COLUMN", column, false),
                AT_AlterColumnType => (
                    Token::AlterColumnType,
                    "ALTER TABLE ALTER COLUMN TYPE",
                    column,
                    true,
                ),
                AT_SetUnLogged => (
                    Token::SetUnlogged,
                    "ALTER TABLE SET UNLOGGED",
                    format!("table {}", table.display()),
                    false,
                ),
                _ => {
                    let kind = constraint_kind(table.oid, &name)?;
                    (
                        Token::DropConstraint,
                        "ALTER TABLE DROP CONSTRAINT",
                        format!("{kind} constraint \"{name}\" of table {}", table.display()),
                        false,
                    )
                }
            };
            let judged = local(
                table.column_rule_for(token)?,
                command,
                object,
                Some(table.oid),
            )?;
            Some(if backup {
                judged.destroying_rows()
            } else {
                judged
            })
        })
        .collect()
}

/// The kind of a constraint whose loss lets wrong rows in ("primary key", "unique",
/// "foreign key", "exclusion"), `None` for any other (CHECK, NOT NULL) or none.
fn constraint_kind(table: pg_sys::Oid, name: &str) -> Option<&'static str> {
    let kind = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<String>(
            "SELECT contype::text FROM pg_catalog.pg_constraint
              WHERE conrelid = $1 AND conname = $2",
            &[table.into(), name.into()],
        )
    })
    .ok()
    .flatten()?;
    match kind.as_str() {
        "p" => Some("primary key"),
        "u" => Some("unique"),
        "f" => Some("foreign key"),
        "x" => Some("exclusion"),
        _ => None,
    }
}

/// ALTER TYPE ... DROP ATTRIBUTE / ALTER ATTRIBUTE ... TYPE of a composite type.
fn alter_type_attributes(s: &pg_sys::AlterTableStmt) -> Vec<Judged> {
    use pg_sys::AlterTableType::*;
    // SAFETY: `cmds` is a List of AlterTableCmd.
    let cmds = unsafe { PgList::<pg_sys::AlterTableCmd>::from_pg(s.cmds) };
    let commands: Vec<&str> = cmds
        .iter_ptr()
        // SAFETY: each element is a valid AlterTableCmd.
        .filter_map(|c| match unsafe { (*c).subtype } {
            AT_DropColumn => Some("ALTER TYPE DROP ATTRIBUTE"),
            AT_AlterColumnType => Some("ALTER TYPE ALTER ATTRIBUTE TYPE"),
            _ => None,
        })
        .collect();
    if commands.is_empty() {
        return Vec::new();
    }
    // SAFETY: `relation` names the composite type's relation.
    let Some(relation) = (unsafe { Table::resolve(s.relation) }) else {
        return Vec::new();
    };
    // SAFETY: lsyscache lookup; 0 for a relation without a row type.
    let typoid = unsafe { pg_sys::get_rel_type_id(relation.oid) };
    let name = relation.display();
    commands
        .into_iter()
        .filter_map(|command| type_in_use(typoid, &name, command))
        .collect()
}

/// ALTER TYPE ... RENAME VALUE of an enum: every stored value of it changes meaning.
pub fn enum_rename(s: &pg_sys::AlterEnumStmt) -> Vec<Judged> {
    if s.oldVal.is_null() {
        return Vec::new(); // ADD VALUE: nothing stored changes
    }
    // SAFETY: typeName is a List of String nodes; LookupTypeNameOid with missing_ok.
    let typoid = unsafe {
        let name = pg_sys::makeTypeNameFromNameList(s.typeName);
        pg_sys::LookupTypeNameOid(std::ptr::null_mut(), name, true)
    };
    if typoid == pg_sys::InvalidOid {
        return Vec::new();
    }
    // SAFETY: format_type_be of an existing type returns a palloc'd name.
    let name = format!("\"{}\"", unsafe {
        cstr_or(pg_sys::format_type_be(typoid), "")
    });
    type_in_use(typoid, &name, "ALTER TYPE RENAME VALUE")
        .into_iter()
        .collect()
}

/// A finding when a column of a permanent table uses the type (directly, as an array, or
/// through a domain); `None` when no table stores it.
fn type_in_use(typoid: pg_sys::Oid, name: &str, command: &str) -> Option<Judged> {
    if typoid == pg_sys::InvalidOid {
        return None;
    }
    let (table, column) = extension::with_pinned_search_path(|| {
        crate::core::spi::two::<pg_sys::Oid, String>(
            "SELECT a.attrelid, a.attname::text
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
              WHERE a.attnum > 0 AND NOT a.attisdropped
                AND c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't'
                AND a.atttypid IN (SELECT $1
                                   UNION SELECT typarray FROM pg_catalog.pg_type WHERE oid = $1
                                   UNION SELECT oid FROM pg_catalog.pg_type
                                          WHERE typtype = 'd' AND typbasetype = $1)
              ORDER BY a.attrelid, a.attnum LIMIT 1",
            &[typoid.into()],
        )
    })
    .ok()?;
    let table = Table::from_oid(table?)?;
    let rule = if table.schema == SCHEMA {
        Rule::Extension
    } else {
        Rule::Token(Token::AlterType)
    };
    local(
        rule,
        command,
        format!(
            "type {name} (used by column \"{}\" of table {})",
            column.unwrap_or_default(),
            table.display()
        ),
        Some(table.oid),
    )
}

/// DROP INDEX of indexes that back a primary key, unique, exclusion or foreign key
/// constraint (`CASCADE` drops the constraint with them).
pub fn drop_indexes(objects: &PgList<pg_sys::Node>) -> Vec<Judged> {
    objects
        .iter_ptr()
        // SAFETY: each element is a List of String naming an index.
        .filter_map(|names| unsafe {
            Table::resolve(pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
        })
        .filter_map(|index| {
            let (conrelid, conname) = extension::with_pinned_search_path(|| {
                crate::core::spi::two::<pg_sys::Oid, String>(
                    "SELECT conrelid, conname::text FROM pg_catalog.pg_constraint
                      WHERE conindid = $1 AND contype IN ('p', 'u', 'x', 'f')
                      ORDER BY contype = 'f', oid LIMIT 1",
                    &[index.oid.into()],
                )
            })
            .ok()?;
            let table = Table::from_oid(conrelid?)?;
            if table.temp {
                return None;
            }
            local(
                table.column_rule_for(Token::DropConstraint)?,
                "DROP INDEX",
                format!(
                    "index {} (backing constraint \"{}\" of table {})",
                    index.display(),
                    conname.unwrap_or_default(),
                    table.display()
                ),
                Some(table.oid),
            )
        })
        .collect()
}

/// DROP SEQUENCE of sequences that a column owns (serial, identity) or uses as its default.
pub fn drop_sequences(objects: &PgList<pg_sys::Node>) -> Vec<Judged> {
    objects
        .iter_ptr()
        // SAFETY: each element is a List of String naming a sequence.
        .filter_map(|names| unsafe {
            Table::resolve(pg_sys::makeRangeVarFromNameList(names as *mut pg_sys::List))
        })
        .filter(|seq| !seq.temp && seq.kind == pg_sys::RELKIND_SEQUENCE)
        .filter_map(|seq| {
            let (relid, column) = extension::with_pinned_search_path(|| {
                crate::core::spi::two::<pg_sys::Oid, String>(
                    "SELECT refobjid, a.attname::text
                       FROM pg_catalog.pg_depend d
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = $1
                        AND d.refclassid = 'pg_catalog.pg_class'::regclass
                        AND d.deptype IN ('a', 'i')
                     UNION ALL
                     SELECT ad.adrelid, a.attname::text
                       FROM pg_catalog.pg_depend d
                       JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
                       JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
                      WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass
                        AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1
                     LIMIT 1",
                    &[seq.oid.into()],
                )
            })
            .ok()?;
            let table = Table::from_oid(relid?)?;
            if table.temp {
                return None;
            }
            let rule = if seq.schema == SCHEMA {
                Rule::Extension
            } else {
                Rule::Token(Token::DropSequence)
            };
            local(
                rule,
                "DROP SEQUENCE",
                format!(
                    "sequence {} (used by column \"{}\" of table {})",
                    seq.display(),
                    column.unwrap_or_default(),
                    table.display()
                ),
                Some(table.oid),
            )
        })
        .collect()
}

/// A large object about to be removed (the object-access hook, for any statement or
/// function: `lo_unlink()`, `DROP OWNED`, ...); `None` when it was created in this
/// transaction or the token is not blocked.
pub fn large_object_removal(loid: pg_sys::Oid) -> Option<Judged> {
    let new = extension::with_pinned_search_path(|| {
        crate::core::spi::one::<bool>(
            "SELECT xmin::text::bigint
                    = (pg_catalog.pg_current_xact_id_if_assigned()::text::bigint % 4294967296)
               FROM pg_catalog.pg_largeobject_metadata WHERE oid = $1",
            &[loid.into()],
        )
    })
    .ok()
    .flatten()
    .unwrap_or(false);
    if new {
        return None;
    }
    local(
        Rule::Token(Token::DropLargeObject),
        "lo_unlink",
        format!("large object {}", loid.to_u32()),
        None,
    )
}

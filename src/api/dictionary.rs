//! Dictionaries of the test-data guard (SPEC §5): `dictionary_add()`,
//! `dictionary_remove()`, `dictionary_enable()`, and the statement trigger that tells
//! every backend to rebuild its matcher when the dictionary tables change.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::core::breakglass;
use crate::core::error::{raise, raise_internal};
use crate::core::extension;
use crate::core::finding::{Finding, Guard};
use crate::guards::policy;
use crate::guards::test_data::matcher::Kind;
use crate::guards::test_data::{folds_to_nothing, MAX_PATTERN_CHARS};

/// Adds patterns to a dictionary, creating it if needed. Returns how many were new.
/// (SQL: prodguard.dictionary_add(dictionary, patterns, "match" DEFAULT 'word').)
#[pg_extern(name = "_dictionary_add", volatile)]
fn dictionary_add(dictionary: &str, patterns: Vec<Option<String>>, match_kind: &str) -> i32 {
    require_operator("add patterns to", dictionary);
    let patterns = valid_patterns(dictionary, patterns);
    if Kind::parse(match_kind).is_none() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown match kind \"{match_kind}\""),
            "A pattern matches as a whole word (word) or anywhere (substring).",
            "Use 'word' or 'substring'.",
        );
    }
    write(
        "WITH d AS (INSERT INTO prodguard.dictionary (name, builtin) VALUES ($1, false)
                    ON CONFLICT (name) DO NOTHING),
              e AS (INSERT INTO prodguard.dictionary_entry (dictionary, pattern, match)
                    SELECT $1, p, $3 FROM unnest($2::text[]) AS p
                    ON CONFLICT (dictionary, pattern) DO UPDATE SET match = excluded.match
                    RETURNING xmax = 0 AS inserted)
         SELECT count(*) FILTER (WHERE inserted)::int FROM e",
        vec![dictionary.into(), patterns.into(), match_kind.into()],
    )
}

/// Removes patterns from a dictionary; returns how many were removed. Removing lowers the
/// guard, so in production it needs an override.
#[pg_extern(volatile)]
fn dictionary_remove(dictionary: &str, patterns: Vec<Option<String>>) -> i32 {
    require_operator("remove patterns from", dictionary);
    let patterns = valid_patterns(dictionary, patterns);
    lower_guard(
        "prodguard.dictionary_remove()",
        dictionary,
        "Removing patterns lets rows that carry them through.",
    );
    write(
        "WITH e AS (DELETE FROM prodguard.dictionary_entry
                     WHERE dictionary = $1 AND pattern = ANY ($2::text[]) RETURNING 1)
         SELECT count(*)::int FROM e",
        vec![dictionary.into(), patterns.into()],
    )
}

/// Enables or disables a whole dictionary (built-in ones included). Disabling lowers the
/// guard, so in production it needs an override.
#[pg_extern(volatile)]
fn dictionary_enable(dictionary: &str, enabled: bool) -> bool {
    require_operator("enable or disable", dictionary);
    if !enabled {
        lower_guard(
            "prodguard.dictionary_enable()",
            dictionary,
            "Disabling a dictionary lets rows that carry its patterns through.",
        );
    }
    let changed = write(
        "WITH u AS (UPDATE prodguard.dictionary SET enabled = $2 WHERE name = $1 RETURNING 1)
         SELECT count(*)::int FROM u",
        vec![dictionary.into(), enabled.into()],
    );
    if changed == 0 {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("dictionary \"{dictionary}\" does not exist"),
            "",
            "SELECT name FROM prodguard.dictionary lists them.",
        );
    }
    enabled
}

/// Statement trigger on the dictionary tables: moves the dictionaries' generation on (the
/// name of the compiled matcher the backends share) and tells every backend of this
/// database, at commit, to take its matcher anew.
#[pg_trigger]
fn dictionaries_changed<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    if let Some(table) = extension::own_table(c"dictionary") {
        // (the write the dictionary change was allowed brings with it: not judged again;
        // 0.1.0's objects, before ALTER EXTENSION UPDATE, have no generation to move)
        let moved = extension::own_table(c"dictionary_generation").and_then(|_| {
            extension::as_owner_of(table, || {
                crate::core::passes::own_write(|| {
                    Spi::run(
                        "UPDATE prodguard.dictionary_generation SET generation = DEFAULT WHERE one",
                    )
                })
            })
        });
        if let Some(Err(e)) = moved {
            raise_internal("move the dictionaries' generation on", e);
        }
        // SAFETY: queues a relcache invalidation of our own table, sent at commit.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(table) };
    }
    Ok(None)
}

fn valid_patterns(dictionary: &str, patterns: Vec<Option<String>>) -> Vec<String> {
    if dictionary.trim().is_empty() {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "dictionary name must not be empty".into(),
            "",
            "Name the dictionary, e.g. 'fixtures'.",
        );
    }
    patterns
        .into_iter()
        .map(|p| {
            let Some(p) = p else {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "patterns must not contain NULL".into(),
                    format!("Dictionary \"{dictionary}\"."),
                    "Remove the NULL elements from the array.",
                )
            };
            if p.trim().is_empty() || folds_to_nothing(&p) {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "a pattern must not be empty".into(),
                    "A pattern that is empty once spaces and zero-width characters are set aside would match every value.",
                    "Remove the empty elements from the array.",
                );
            }
            if p.chars().count() > MAX_PATTERN_CHARS {
                raise(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("pattern is longer than {MAX_PATTERN_CHARS} characters"),
                    format!("The pattern has {} characters.", p.chars().count()),
                    "Use a shorter, characteristic part of it.",
                );
            }
            p
        })
        .collect()
}

fn require_operator(what: &str, dictionary: &str) {
    breakglass::require_operator(
        format!("permission denied to {what} dictionary \"{dictionary}\""),
        format!(
            "Only members of {} may change dictionaries.",
            breakglass::OPERATOR_ROLE
        ),
    );
}

/// Removing patterns or disabling a dictionary lowers the guard, like a destructive command.
fn lower_guard(command: &str, dictionary: &str, why: &str) {
    policy::enforce_here(&Finding::here(
        Guard::TestData,
        command,
        format!("dictionary \"{dictionary}\""),
        why,
        None,
    ));
}

/// Runs a statement on the dictionary tables as their owner; returns its single int.
fn write(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) -> i32 {
    crate::core::error::require_writable("a change of the dictionaries");
    let Some(table) = extension::own_table(c"dictionary") else {
        return 0;
    };
    match extension::as_owner_of(table, || {
        crate::core::passes::own_write(|| Spi::get_one_with_args::<i32>(sql, &args))
    }) {
        Some(Ok(n)) => n.unwrap_or(0),
        Some(Err(e)) => raise_internal("change the dictionary", e),
        None => 0,
    }
}

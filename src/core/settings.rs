//! Settings: the values of every `prodguard.*` GUC, their types, and the parsers of the
//! list settings. The GUCs are registered, and changes to them judged, by the settings
//! guard (`guards::settings`); everything else only reads them here.

use std::ffi::{CStr, CString};

use pgrx::{GucSetting, PostgresGucEnum};

/// The environment a database is tagged with. Ordered from most lenient to strictest.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Environment {
    #[name = c"development"]
    Development,
    #[name = c"staging"]
    Staging,
    #[name = c"production"]
    Production,
}

impl Environment {
    pub fn name(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// Reads a value the way the enum GUC does (case-insensitive). Anything unknown is
    /// production: a tag that cannot be read must not weaken the guard.
    pub fn parse_or_production(value: &str) -> Environment {
        match value.trim().to_ascii_lowercase().as_str() {
            "development" => Environment::Development,
            "staging" => Environment::Staging,
            _ => Environment::Production,
        }
    }
}

/// What a test-data match does to the row (`prodguard.test_data_action`).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum TestDataAction {
    #[name = c"reject"]
    Reject,
    #[name = c"warn"]
    Warn,
    #[name = c"log"]
    Log,
    #[name = c"off"]
    Off,
}

/// One token of `prodguard.blocked_commands`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Token {
    Truncate,
    DropTable,
    DropSchema,
    DropDatabase,
    DropColumn,
    DropOwned,
    GuardSettings,
    AlterColumnType,
    SetUnlogged,
    AlterType,
    DropConstraint,
    DropSequence,
    DropLargeObject,
}

impl Token {
    pub const ALL: [Token; 13] = [
        Token::Truncate,
        Token::DropTable,
        Token::DropSchema,
        Token::DropDatabase,
        Token::DropColumn,
        Token::DropOwned,
        Token::GuardSettings,
        Token::AlterColumnType,
        Token::SetUnlogged,
        Token::AlterType,
        Token::DropConstraint,
        Token::DropSequence,
        Token::DropLargeObject,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Token::Truncate => "truncate",
            Token::DropTable => "drop_table",
            Token::DropSchema => "drop_schema",
            Token::DropDatabase => "drop_database",
            Token::DropColumn => "drop_column",
            Token::DropOwned => "drop_owned",
            Token::GuardSettings => "guard_settings",
            Token::AlterColumnType => "alter_column_type",
            Token::SetUnlogged => "set_unlogged",
            Token::AlterType => "alter_type",
            Token::DropConstraint => "drop_constraint",
            Token::DropSequence => "drop_sequence",
            Token::DropLargeObject => "drop_large_object",
        }
    }

    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

pub const ENVIRONMENT_NAME: &str = "prodguard.environment";
pub const OVERRIDE_NAME: &str = "prodguard.override";
pub const DEFAULT_BLOCKED: &CStr = c"truncate,drop_table,drop_schema,drop_database,drop_column,drop_owned,guard_settings,alter_column_type,set_unlogged,alter_type,drop_constraint,drop_sequence,drop_large_object";

pub static ENVIRONMENT: GucSetting<Environment> =
    GucSetting::<Environment>::new(Environment::Production);
pub static OVERRIDE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
pub static BLOCKED_COMMANDS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DEFAULT_BLOCKED));
pub static PROTECTED_DATABASES: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));
pub static REQUIRE_WHERE: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static REQUIRE_APPROVAL: GucSetting<bool> = GucSetting::<bool>::new(false);
pub static MAX_ROWS_CHANGED: GucSetting<i32> = GucSetting::<i32>::new(10000);
pub static AUDIT: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static BACKUP_MAX_ROWS: GucSetting<i32> = GucSetting::<i32>::new(1_000_000);
pub static DENIAL_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static TEST_DATA_ACTION: GucSetting<TestDataAction> =
    GucSetting::<TestDataAction>::new(TestDataAction::Reject);
/// The share of its rows a protected table may lose within `ROW_DROP_WINDOW` before a
/// `row_drop` alert (0: off).
pub static ROW_DROP_ALERT_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(50);
/// The row-drop window, in seconds.
pub static ROW_DROP_WINDOW: GucSetting<i32> = GucSetting::<i32>::new(3600);
/// More refusals than this from one client within a minute raise a `denial_burst` alert
/// (0: off).
pub static DENIAL_BURST_THRESHOLD: GucSetting<i32> = GucSetting::<i32>::new(100);
/// How many refusals of one client per minute are stored in full in the denial log; the
/// rest are counted and summed up in one record (0: no limit).
pub static DENIAL_LOG_RATE: GucSetting<i32> = GucSetting::<i32>::new(60);
/// How long the denial log and the alerts keep their rows, in seconds (0: for ever).
pub static DENIAL_LOG_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(90 * 86_400);

/// The environment of the current database, as this session sees it.
pub fn environment() -> Environment {
    ENVIRONMENT.get()
}

/// Whether the command guard refuses statements of this token.
pub fn is_blocked(token: Token) -> bool {
    let value = string_setting(&BLOCKED_COMMANDS);
    // The check hook only lets valid lists in; should that ever fail, block everything.
    parse_blocked_commands(&value).map_or(true, |mask| mask & token.bit() != 0)
}

/// The names listed in `prodguard.protected_databases`.
pub fn protected_databases() -> Vec<String> {
    parse_name_list(&string_setting(&PROTECTED_DATABASES)).unwrap_or_default()
}

pub fn string_setting(setting: &GucSetting<Option<CString>>) -> String {
    setting
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses `prodguard.blocked_commands` into a bit mask. Tokens are case-insensitive and
/// may be surrounded by spaces; empty items are ignored, so `''` blocks nothing.
pub fn parse_blocked_commands(value: &str) -> Result<u32, String> {
    let mut mask = 0;
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = item.to_ascii_lowercase();
        match Token::ALL.iter().find(|t| t.name() == item) {
            Some(token) => mask |= token.bit(),
            None => return Err(item),
        }
    }
    Ok(mask)
}

/// Parses a list of names with SQL identifier rules: comma-separated, unquoted names are
/// folded to lower case, double-quoted names are kept as written (`""` is a quote).
pub fn parse_name_list(value: &str) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            if names.is_empty() {
                return Ok(names);
            }
            return Err("the list ends with a comma".into());
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a double-quoted name is not closed".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    Some('"') => break,
                    Some(c) => name.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '"' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            name = name.trim_end().to_lowercase();
        }
        if name.is_empty() {
            return Err("the list has an empty name".into());
        }
        names.push(name);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Ok(names),
            Some(',') => continue,
            Some(c) => {
                return Err(format!(
                    "unexpected character \"{c}\" after name \"{}\"",
                    names.last().unwrap()
                ))
            }
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn blocked_commands_parse() {
        assert_eq!(parse_blocked_commands(""), Ok(0));
        assert_eq!(
            parse_blocked_commands(" TRUNCATE , drop_table,"),
            Ok(Token::Truncate.bit() | Token::DropTable.bit())
        );
        assert_eq!(
            parse_blocked_commands("truncate,drop_tables"),
            Err("drop_tables".into())
        );
        assert_eq!(
            parse_blocked_commands(DEFAULT_BLOCKED.to_str().unwrap())
                .unwrap()
                .count_ones(),
            13
        );
    }

    #[pg_test]
    fn name_lists_follow_identifier_rules() {
        assert_eq!(parse_name_list(""), Ok(vec![]));
        assert_eq!(parse_name_list("  "), Ok(vec![]));
        assert_eq!(
            parse_name_list(r#"App, "My DB", "a""b",  ünïcode "#),
            Ok(vec![
                "app".into(),
                "My DB".into(),
                "a\"b".into(),
                "ünïcode".into()
            ])
        );
        assert!(parse_name_list(r#""open"#).is_err());
        assert!(parse_name_list("a,,b").is_err());
        assert!(parse_name_list("a,").is_err());
        assert!(parse_name_list(r#""a" b"#).is_err());
    }

    #[pg_test]
    fn unreadable_tags_are_production() {
        assert_eq!(
            Environment::parse_or_production("Development"),
            Environment::Development
        );
        assert_eq!(
            Environment::parse_or_production(" staging "),
            Environment::Staging
        );
        assert_eq!(
            Environment::parse_or_production("prod"),
            Environment::Production
        );
        assert_eq!(
            Environment::parse_or_production(""),
            Environment::Production
        );
    }
}

//! Every SQL statement the exporter runs, embedded from `sql/` at compile time, and the one place
//! where their placeholders are filled in. Placeholders only ever receive column names or NULL
//! literals chosen from the detected schema, numbers and the exporter's name, and the URL's
//! schema as a quoted identifier (`SET search_path` takes no parameters); values from users or
//! the database always travel as `$n` parameters. `tests/tidy.rs` checks that no other source
//! file holds SQL text.

pub const SCHEMA_COLUMNS: &str = include_str!("../sql/schema_columns.sql");
pub const LEDGER_PROJECT: &str = include_str!("../sql/ledger/project.sql");
pub const LEDGER_WINDOW_PLAN: &str = include_str!("../sql/ledger/window_plan.sql");
pub const LEDGER_INDEX_PLAN: &str = include_str!("../sql/ledger/index_plan.sql");
pub const LEDGER_SNAPSHOT: &str = include_str!("../sql/ledger/snapshot.sql");
pub const LEDGER_BOUNDS: &str = include_str!("../sql/ledger/bounds.sql");
pub const LEDGER_ROW_ESTIMATE: &str = include_str!("../sql/ledger/row_estimate.sql");
pub const LEDGER_NEXT_START: &str = include_str!("../sql/ledger/next_start.sql");
pub const LEDGER_CHUNK_END: &str = include_str!("../sql/ledger/chunk_end.sql");
pub const LEDGER_NOT_COPIED: &str = include_str!("../sql/ledger/not_copied.sql");
pub const LEDGER_WITH_LEGACY: &str = include_str!("../sql/ledger/with_legacy.sql");
pub const LEDGER_TAG_MATCH: &str = include_str!("../sql/ledger/tag_match.sql");
pub const ENTITY_TEAMS: &str = include_str!("../sql/entities/teams.sql");
pub const ENTITY_KEYS: &str = include_str!("../sql/entities/keys.sql");
pub const ENTITY_USERS: &str = include_str!("../sql/entities/users.sql");
pub const ENTITY_ORGS: &str = include_str!("../sql/entities/orgs.sql");
pub const ENTITY_CUSTOMERS: &str = include_str!("../sql/entities/customers.sql");
pub const ENTITY_USER_COUNTS: &str = include_str!("../sql/entities/user_counts.sql");
pub const REPLICA: &str = include_str!("../sql/replica.sql");
pub const STATE_IDENTITY: &str = include_str!("../sql/state_identity.sql");
pub const LOCK_WAITERS: &str = include_str!("../sql/lock_waiters.sql");
pub const CANCEL_READ: &str = include_str!("../sql/cancel_read.sql");
pub const BACKEND_PID: &str = include_str!("../sql/backend_pid.sql");
pub const UNREADABLE_TABLES: &str = include_str!("../sql/unreadable_tables.sql");
pub const LITELLM_SETTINGS: &str = include_str!("../sql/litellm_settings.sql");
pub const SESSION: &str = include_str!("../sql/session.sql");
pub const SESSION_SEARCH_PATH: &str = include_str!("../sql/session_search_path.sql");

/// Replaces every `{{name}}` in `template`, in one pass over the template: a value is inserted as
/// it is and never scanned for placeholders itself (a schema name from the URL may hold braces).
/// Panics on a placeholder without a value, a programming error caught by the tests that run
/// every statement.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    // A placeholder in a comment would receive a multi-line value whose later lines are SQL.
    debug_assert!(
        !template
            .lines()
            .any(|l| l.split_once("--").is_some_and(|(_, c)| c.contains("{{"))),
        "placeholder in an SQL comment: {template}"
    );
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("unclosed placeholder in SQL: {template}"));
        let name = &rest[start + 2..end];
        let Some((_, value)) = values.iter().find(|(n, _)| *n == name) else {
            panic!("unfilled placeholder {{{{{name}}}}} in SQL: {template}");
        };
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn fill_replaces_all() {
        assert_eq!(
            super::fill("a {{x}} {{x}} {{y}}", &[("x", "1"), ("y", "2")]),
            "a 1 1 2"
        );
    }

    #[test]
    fn fill_inserts_values_verbatim() {
        assert_eq!(
            super::fill(
                "x \"{{name}}\" {{n}}",
                &[("name", "a{{b}}"), ("n", "{{n}}")]
            ),
            "x \"a{{b}}\" {{n}}"
        );
    }

    #[test]
    #[allow(clippy::panic)]
    fn fill_rejects_leftovers() {
        let r = std::panic::catch_unwind(|| super::fill("a {{x}}", &[]));
        assert!(r.is_err());
    }
}

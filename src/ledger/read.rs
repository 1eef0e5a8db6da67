//! The ledger's SQL: builds the projection for the detected schema and label settings, and reads
//! rows (collected, or streamed to a callback) inside a caller's read-only transaction. Nothing here decides *what* to
//! read; that is `tail`'s job.

use chrono::Datelike;
use tokio_postgres::Transaction;

use super::class::Dims;
use super::dimension::{Source, DIMENSIONS};
use super::project;
use super::values::Thresholds;
use super::RawRow;
use crate::schema::{Schema, LEGACY_SPEND_LOGS};
use crate::sql;

const SPEND_LOGS: &str = "LiteLLM_SpendLogs";

// Settings `project` applies to every row; `Projection::new` takes them, so its callers find
// them here too.
pub use super::dimension::Identity;
pub use super::project::Extra;

/// The ledger's row statement for one schema and one label configuration, and the rules that
/// turn its rows into raw facts (`project`).
#[derive(Debug, Clone)]
pub struct Projection {
    rows_sql: String,
    /// The statements that plan the catch-up's chunks, over the same tables as `rows_sql`.
    bounds_sql: String,
    next_start_sql: String,
    chunk_end_sql: String,
    /// Whether `LiteLLM_SpendLogs_legacy` is read too (see `sql/ledger/not_copied.sql`).
    legacy: bool,
    pub thresholds: Thresholds,
    dims: Dims,
    identity: Identity,
    stream: bool,
    extras: Vec<Extra>,
}

impl Projection {
    pub fn new(
        schema: &Schema,
        dims: Dims,
        identity: Identity,
        thresholds: Thresholds,
        stream: bool,
        extras: &[Extra],
    ) -> Self {
        // Tag patterns travel as parameters ($5, $6, ...), never inside the SQL text.
        let mut tags = String::new();
        for i in 0..extras.iter().filter(|e| matches!(e, Extra::Tag(_))).count() {
            let n = (i + 5).to_string();
            tags.push_str(",\n");
            let tag = sql::fill(sql::LEDGER_TAG_MATCH, &[("n", &n), ("i", &i.to_string())]);
            tags.push_str(tag.trim_end());
        }
        // The statement for one table; its optional columns are those of that table.
        let branch = |table: &str, not_copied: &str| {
            let col = |name: &str| {
                if schema.has_column(table, name) {
                    format!("s.\"{name}\"::text")
                } else {
                    "NULL::text".to_string()
                }
            };
            // The dimensions' optional columns; person-identifying ones that are off never leave
            // the database.
            let optional: Vec<(&str, String)> = DIMENSIONS
                .iter()
                .filter_map(|d| match d.source {
                    Source::OptionalColumn(c) | Source::OptionalColumnOrMetadata(c, _) => {
                        let on = d.allowed(&identity);
                        Some((d.name, if on { col(c) } else { "NULL::text".into() }))
                    }
                    _ => None,
                })
                .collect();
            let table = format!("\"{table}\"");
            let status = col("status");
            let mut fills = vec![
                ("table", table.as_str()),
                ("not_copied", not_copied),
                ("tags", &tags),
                ("status", &status),
            ];
            fills.extend(optional.iter().map(|(n, e)| (*n, e.as_str())));
            sql::fill(sql::LEDGER_PROJECT, &fills)
        };
        let legacy = schema.has_table(LEGACY_SPEND_LOGS);
        let mut rows_sql = branch(SPEND_LOGS, "");
        let mut start_times = format!("\"{SPEND_LOGS}\"");
        if legacy {
            rows_sql.push_str("\nUNION ALL\n");
            rows_sql.push_str(&branch(LEGACY_SPEND_LOGS, sql::LEDGER_NOT_COPIED));
            start_times = sql::LEDGER_WITH_LEGACY.to_string();
        }
        let times = |template: &str| sql::fill(template, &[("start_times", &start_times)]);
        Projection {
            rows_sql,
            bounds_sql: times(sql::LEDGER_BOUNDS),
            next_start_sql: times(sql::LEDGER_NEXT_START),
            chunk_end_sql: times(sql::LEDGER_CHUNK_END),
            legacy,
            thresholds,
            dims,
            identity,
            stream,
            extras: extras.to_vec(),
        }
    }

    /// The four bounds of every ledger read followed by the tag labels' patterns.
    fn params<'a>(
        &'a self,
        base: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync); 4],
    ) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
        let mut v: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = base.to_vec();
        for e in &self.extras {
            if let Extra::Tag(pattern) = e {
                v.push(pattern);
            }
        }
        v
    }

    pub fn rows_sql(&self) -> &str {
        &self.rows_sql
    }

    /// Where a catch-up chunk ends (`sql/ledger/chunk_end.sql` over this projection's tables).
    pub fn chunk_end_sql(&self) -> &str {
        &self.chunk_end_sql
    }

    /// Whether this projection reads `LiteLLM_SpendLogs_legacy` as well as the spend log.
    pub fn reads_legacy(&self) -> bool {
        self.legacy
    }

    fn rules(&self) -> project::Rules<'_> {
        project::Rules {
            dims: self.dims,
            identity: self.identity,
            stream: self.stream,
            extras: &self.extras,
        }
    }
}

/// The snapshot a read transaction sees, and the database clock.
#[derive(Debug, Clone, Copy)]
pub struct Snap {
    /// Whether `LiteLLM_SpendLogs_legacy` exists now.
    pub has_legacy: bool,
    pub xmin: i64,
    pub xmax: i64,
    pub now_ms: i64,
}

pub async fn snapshot(tx: &Transaction<'_>) -> Result<Snap, tokio_postgres::Error> {
    let r = tx.query_one(sql::LEDGER_SNAPSHOT, &[]).await?;
    Ok(Snap {
        has_legacy: r.try_get("has_legacy")?,
        xmin: r.try_get(0)?,
        xmax: r.try_get(1)?,
        now_ms: r.try_get(2)?,
    })
}

/// Makes the rest of the transaction read a window's rows page by page (a bitmap heap scan)
/// rather than row by row in `startTime` order (sql/ledger/window_plan.sql says why).
pub async fn prefer_page_order(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(sql::LEDGER_WINDOW_PLAN).await
}

/// Lets the rest of the transaction walk the `startTime` index in order again (`chunk_end`), until
/// `prefer_page_order` runs again.
pub async fn allow_index_order(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(sql::LEDGER_INDEX_PLAN).await
}

/// Oldest finite `startTime` in ms, or None for an empty table.
pub async fn oldest_start(
    tx: &Transaction<'_>,
    p: &Projection,
) -> Result<Option<i64>, tokio_postgres::Error> {
    tx.query_one(&p.bounds_sql, &[]).await?.try_get(0)
}

/// The planner's estimate of the spend log's rows (partitions summed), None where the table was
/// never analysed. Only for progress messages: it may be stale or off by a fair share.
pub async fn row_estimate(tx: &Transaction<'_>) -> Result<Option<f64>, tokio_postgres::Error> {
    tx.query_one(sql::LEDGER_ROW_ESTIMATE, &[])
        .await?
        .try_get(0)
}

/// Oldest readable `startTime` at or after `from_ms`, or None when no row is left.
pub async fn next_start(
    tx: &Transaction<'_>,
    p: &Projection,
    from_ms: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    tx.query_one(&p.next_start_sql, &[&bound(Some(from_ms), false)])
        .await?
        .try_get(0)
}

/// The `startTime` (ms) of the row after the first `n` rows of `[lo, hi)` in `startTime` order, or
/// None when the range holds no more than `n` (finite) rows: a chunk `[lo, that)` holds at most `n`.
pub async fn chunk_end(
    tx: &Transaction<'_>,
    p: &Projection,
    lo: Option<i64>,
    hi: Option<i64>,
    n: u64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let (lo, hi) = (bound(lo, false), bound(hi, true));
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let row = tx.query_opt(&p.chunk_end_sql, &[&lo, &hi, &n]).await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// A bound as PostgreSQL timestamp text; None is the infinity on that side.
fn bound(ms: Option<i64>, upper: bool) -> String {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => {
            // PostgreSQL writes years before 1 AD as "<n> BC" (chrono's year 0 is 1 BC) and
            // rejects a minus sign: without this, one row dated BC would fail every catch-up.
            let rest = t.naive_utc().format("%m-%d %H:%M:%S%.3f");
            match t.year() {
                y if y <= 0 => format!("{:04}-{rest} BC", 1 - y),
                y => format!("{y:04}-{rest}"),
            }
        }
        None if upper => "infinity".into(),
        None => "-infinity".into(),
    }
}

/// Like [`rows`], but hands each row to `f` as it arrives instead of collecting them, so that
/// the catch-up reads large chunks of history in bounded memory. Returns the number of rows.
#[allow(clippy::too_many_arguments)]
pub async fn each_row(
    tx: &Transaction<'_>,
    p: &Projection,
    lo: Option<i64>,
    hi: Option<i64>,
    since: i64,
    xmax: i64,
    mut f: impl FnMut(RawRow),
) -> Result<u64, tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let (lo, hi) = (bound(lo, false), bound(hi, true));
    let base: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&lo, &hi, &since, &xmax];
    let stream = tx.query_raw(&p.rows_sql, p.params(&base)).await?;
    futures_util::pin_mut!(stream);
    let rules = p.rules();
    // Built from the first row's columns: they are the statement's.
    let mut reader = None;
    let mut n = 0u64;
    while let Some(row) = stream.try_next().await? {
        let reader = reader.get_or_insert_with(|| project::Reader::new(row.columns(), &rules));
        f(reader.row(&row)?);
        n += 1;
    }
    Ok(n)
}

/// Rows with `startTime` in [lo, hi) created by transactions >= `since` (0: all).
pub async fn rows(
    tx: &Transaction<'_>,
    p: &Projection,
    lo: Option<i64>,
    hi: Option<i64>,
    since: i64,
    xmax: i64,
) -> Result<Vec<RawRow>, tokio_postgres::Error> {
    let mut out = Vec::new();
    each_row(tx, p, lo, hi, since, xmax, |r| out.push(r)).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::bound;

    #[test]
    fn bounds_are_postgresql_timestamps_in_every_era() {
        assert_eq!(bound(Some(0), false), "1970-01-01 00:00:00.000");
        assert_eq!(bound(None, false), "-infinity");
        assert_eq!(bound(None, true), "infinity");
        // Milliseconds as PostgreSQL computes them for 4713-01-01 BC, 0001-01-01 BC and AD.
        assert_eq!(
            bound(Some(-210_863_520_000_000), false),
            "4713-01-01 00:00:00.000 BC"
        );
        assert_eq!(
            bound(Some(-62_167_219_200_000), false),
            "0001-01-01 00:00:00.000 BC"
        );
        assert_eq!(
            bound(Some(-62_135_596_800_000), false),
            "0001-01-01 00:00:00.000"
        );
    }
}

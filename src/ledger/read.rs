//! The ledger's SQL: builds the projection for the detected schema and label settings, and reads
//! rows or grouped rows inside a caller's read-only transaction. Nothing here decides *what* to
//! read; that is `tail`'s job.

use chrono::Datelike;
use tokio_postgres::{Row, Transaction};

use super::class::{ClassKey, KEY_COLUMNS};
use super::values::{ClassAcc, RowValues, Thresholds, NV};
use super::RawRow;
use crate::schema::Schema;
use crate::sql;

/// Which person-identifying dimensions are read at all. Off means the label is exported as
/// "None" and the value never leaves the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub end_user: bool,
    pub user_email: bool,
    pub client_ip: bool,
}

/// A configured custom label: a JSON path into the row's metadata (LiteLLM's
/// `custom_prometheus_metadata_labels`, read from `metadata.spend_logs_metadata` first, then
/// `metadata`), or a LIKE pattern matched against `request_tags` (`custom_prometheus_tags`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Extra {
    Metadata(Vec<String>),
    Tag(String),
}

/// The two ledger statements for one schema and one label configuration.
#[derive(Debug, Clone)]
pub struct Projection {
    rows_sql: String,
    grouped_sql: String,
    pub thresholds: Thresholds,
    extras: Vec<Extra>,
}

impl Projection {
    pub fn new(
        schema: &Schema,
        identity: Identity,
        thresholds: Thresholds,
        stream: bool,
        extras: &[Extra],
    ) -> Self {
        let col = |name: &str, expr: &'static str| -> &'static str {
            if schema.has_column("LiteLLM_SpendLogs", name) {
                expr
            } else {
                "NULL::text"
            }
        };
        let opt = |on: bool, expr: &'static str| if on { expr } else { "''::text" };
        // Values of custom labels travel as parameters ($5, $6, ...), never inside the SQL text.
        let mut extra_cols = String::new();
        let mut extra_dims = String::new();
        for (i, e) in extras.iter().enumerate() {
            let n = i + 5;
            let expr = match e {
                Extra::Metadata(_) => format!(
                    "left(coalesce(m.md->'spend_logs_metadata' #>> ${n}::text[], m.md #>> ${n}::text[], ''), 1024)"
                ),
                Extra::Tag(_) => format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.request_tags) = 'array' THEN s.request_tags ELSE '[]'::jsonb END) tag(v) WHERE tag.v LIKE ${n}::text) THEN 'true' ELSE 'false' END"
                ),
            };
            extra_cols.push_str(&format!(",\n  {expr} AS x{i}"));
            extra_dims.push_str(&format!(", x{i}"));
        }
        let stream_expr = if stream {
            "CASE WHEN d.ttft_us IS NOT NULL THEN 'True' ELSE 'False' END"
        } else {
            "''::text"
        };
        let projection = sql::fill(
            sql::LEDGER_PROJECT,
            &[
                ("stream", stream_expr),
                ("extras", &extra_cols),
                ("status", col("status", "s.status")),
                (
                    "organization_id",
                    col("organization_id", "s.organization_id"),
                ),
                (
                    "user_email",
                    opt(
                        identity.user_email,
                        "left(coalesce(m.md->>'user_api_key_user_email', ''), 1024)",
                    ),
                ),
                (
                    "end_user",
                    opt(identity.end_user, "left(coalesce(s.end_user, ''), 1024)"),
                ),
                (
                    "client_ip",
                    opt(
                        identity.client_ip,
                        "left(coalesce(s.requester_ip_address, ''), 1024)",
                    ),
                ),
            ],
        );
        let names = [
            "total_latency_us",
            "llm_api_latency_us",
            "ttft_us",
            "overhead_us",
            "per_token_us",
        ];
        let mut buckets = String::new();
        for (h, name) in names.iter().enumerate() {
            for t in &thresholds.micros[h] {
                buckets.push_str(&format!(
                    ",\n  count(*) FILTER (WHERE {name} <= {t})::bigint"
                ));
            }
        }
        let grouped_sql = sql::fill(
            sql::LEDGER_GROUPED,
            &[
                ("buckets", &buckets),
                ("projection", &projection),
                ("extra_dims", &extra_dims),
            ],
        );
        Projection {
            rows_sql: projection,
            grouped_sql,
            thresholds,
            extras: extras.to_vec(),
        }
    }

    /// The four bounds of every ledger read followed by the custom labels' parameters.
    fn params<'a>(
        &'a self,
        base: &'a [&'a (dyn tokio_postgres::types::ToSql + Sync); 4],
    ) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
        let mut v: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = base.to_vec();
        for e in &self.extras {
            match e {
                Extra::Metadata(path) => v.push(path),
                Extra::Tag(pattern) => v.push(pattern),
            }
        }
        v
    }

    pub fn rows_sql(&self) -> &str {
        &self.rows_sql
    }

    pub fn grouped_sql(&self) -> &str {
        &self.grouped_sql
    }
}

/// The snapshot a read transaction sees, and the database clock.
#[derive(Debug, Clone, Copy)]
pub struct Snap {
    pub xmin: i64,
    pub xmax: i64,
    pub now_ms: i64,
}

pub async fn snapshot(tx: &Transaction<'_>) -> Result<Snap, tokio_postgres::Error> {
    let r = tx.query_one(sql::LEDGER_SNAPSHOT, &[]).await?;
    Ok(Snap {
        xmin: r.try_get(0)?,
        xmax: r.try_get(1)?,
        now_ms: r.try_get(2)?,
    })
}

/// Oldest finite `startTime` in ms, or None for an empty table.
pub async fn oldest_start(tx: &Transaction<'_>) -> Result<Option<i64>, tokio_postgres::Error> {
    tx.query_one(sql::LEDGER_BOUNDS, &[]).await?.try_get(0)
}

/// Oldest readable `startTime` at or after `from_ms`, or None when no row is left.
pub async fn next_start(
    tx: &Transaction<'_>,
    from_ms: i64,
) -> Result<Option<i64>, tokio_postgres::Error> {
    tx.query_one(sql::LEDGER_NEXT_START, &[&bound(Some(from_ms), false)])
        .await?
        .try_get(0)
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

/// Rows with `startTime` in [lo, hi) created by transactions >= `since` (0: all).
pub async fn rows(
    tx: &Transaction<'_>,
    p: &Projection,
    lo: Option<i64>,
    hi: Option<i64>,
    since: i64,
    xmax: i64,
) -> Result<Vec<RawRow>, tokio_postgres::Error> {
    let (lo, hi) = (bound(lo, false), bound(hi, true));
    let base: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&lo, &hi, &since, &xmax];
    let out = tx.query(&p.rows_sql, &p.params(&base)).await?;
    out.iter().map(|r| decode_row(r, p.extras.len())).collect()
}

fn decode_row(r: &Row, extras: usize) -> Result<RawRow, tokio_postgres::Error> {
    let mut key = ClassKey::from_row(r, 3)?;
    let base = 3 + KEY_COLUMNS;
    let mut v = [0i64; NV];
    for (j, slot) in v.iter_mut().enumerate() {
        *slot = r.try_get(base + 1 + j)?;
    }
    let h = base + 2 + NV;
    key.stream = r.try_get(h + 5)?;
    for i in 0..extras {
        key.extras.push(r.try_get(h + 6 + i)?);
    }
    Ok(RawRow {
        request_id: r.try_get(0)?,
        start_ms: r.try_get(1)?,
        xmin: r.try_get::<_, i64>(2)? as u32,
        key,
        values: RowValues {
            spend_pico: r.try_get(base)?,
            v,
            bad_numbers: r.try_get(base + 1 + NV)?,
            hist: [
                r.try_get(h)?,
                r.try_get(h + 1)?,
                r.try_get(h + 2)?,
                r.try_get(h + 3)?,
                r.try_get(h + 4)?,
            ],
        },
    })
}

/// One group of the start-up rebuild.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: ClassKey,
    pub acc: ClassAcc,
    pub bad: u64,
    pub max_start_ms: i64,
}

/// Rows with `startTime` in [lo, hi), summed per class.
pub async fn grouped(
    tx: &Transaction<'_>,
    p: &Projection,
    lo: Option<i64>,
    hi: Option<i64>,
) -> Result<Vec<Group>, GroupError> {
    let (lo, hi) = (bound(lo, false), bound(hi, true));
    let base: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&lo, &hi, &0i64, &0i64];
    let out = tx.query(&p.grouped_sql, &p.params(&base)).await?;
    out.iter()
        .map(|r| decode_group(r, &p.thresholds, p.extras.len()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("spend sum {0:?} is not an integer")]
    Spend(String),
}

fn u(r: &Row, i: usize) -> Result<u64, tokio_postgres::Error> {
    Ok(r.try_get::<_, i64>(i)?.max(0) as u64)
}

fn decode_group(r: &Row, t: &Thresholds, extras: usize) -> Result<Group, GroupError> {
    let mut key = ClassKey::from_row(r, 0)?;
    key.stream = r.try_get(KEY_COLUMNS)?;
    let b = KEY_COLUMNS + 1;
    let spend: String = r.try_get(b + 2)?;
    let mut acc = ClassAcc {
        rows: u(r, b)?,
        ..Default::default()
    };
    acc.add.spend_pico = spend.parse().map_err(|_| GroupError::Spend(spend))?;
    for j in 0..NV {
        acc.add.v[j] = u(r, b + 3 + j)?;
    }
    let bad = u(r, b + 3 + NV)?;
    let mut col = b + 4 + NV;
    for h in 0..5 {
        acc.hist[h].count = u(r, col)?;
        acc.hist[h].sum = u(r, col + 1)?;
        col += 2;
    }
    for h in 0..5 {
        let mut buckets = Vec::with_capacity(t.micros[h].len());
        for _ in &t.micros[h] {
            buckets.push(u(r, col)?);
            col += 1;
        }
        acc.hist[h].buckets = buckets;
    }
    for _ in 0..extras {
        key.extras.push(r.try_get(col)?);
        col += 1;
    }
    Ok(Group {
        key,
        acc,
        bad,
        max_start_ms: r.try_get(b + 1)?,
    })
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

//! The per-row projection (`ledger::project`, Rust) against its SQL oracle
//! (`oracle_project.sql`: the same definition written with PostgreSQL's jsonb operators, numeric
//! rounding and timestamp arithmetic), row by row on the same database: generated traffic plus
//! hand-made rows aimed at the places where the two could part (JSON null against absent,
//! non-object metadata, numbers needing decimal rounding, escapes, deep nesting, long values,
//! NULL and empty columns, NaN spend, custom labels and tags).

use crate::seed::{self, SeedOptions};
use litellm_exporter::ledger::class::{ClassKey, Dims};
use litellm_exporter::ledger::read::{self, Extra, Identity, Projection};
use litellm_exporter::ledger::values::Thresholds;

use super::support::{fresh_db, Schema};

const ORACLE: &str = include_str!("oracle_project.sql");

/// (request_id, metadata as JSON text or None for SQL NULL, status, organization_id, cache_hit,
/// spend, completionStartTime offset in ms or None, request_tags)
type Edge = (
    &'static str,
    Option<String>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    f64,
    Option<i64>,
    &'static str,
);

fn edges() -> Vec<Edge> {
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let long = "é".repeat(3000);
    vec![
        ("e-rounding", Some(r#"{"usage_object": {"prompt_tokens_details": {"cached_tokens": 2.5, "audio_tokens": -3.5}, "completion_tokens_details": {"reasoning_tokens": "7", "audio_tokens": 1e3}, "output_image_count": 0.49999999999999999999, "duration_seconds": 0.0000005, "cache_read_input_tokens": 12345678901234567890}, "litellm_overhead_time_ms": 1.0005}"#.into()), Some("success"), None, Some("True"), 0.1, Some(5), "[]"),
        ("e-null-coalesce", Some(r#"{"usage_object": {"prompt_tokens_details": {"cache_write_tokens": null, "cache_creation_tokens": 9}, "cache_creation_input_tokens": null}, "additional_usage_values": {"cache_read_input_tokens": 4, "cache_creation_input_tokens": 6}}"#.into()), Some("success"), Some(""), Some("False"), 1.5, None, "[\"prod\"]"),
        ("e-array", Some(r#"[1, 2, {"user_agent": "x", "project": "no"}]"#.into()), None, None, None, 2.0, Some(0), "\"prod\""),
        ("e-string", Some(r#""just text""#.into()), Some("failure"), Some("org-col"), Some("maybe"), f64::NAN, Some(-5), "[\"preview\", 3]"),
        ("e-sql-null", None, None, None, None, -1.0, None, "[]"),
        ("e-json-null", Some("null".into()), Some(""), None, Some("True"), 1e6, Some(20), "[]"),
        ("e-types", Some(r#"{"user_api_key_alias": 123, "user_api_key_team_alias": {"b": [1, "two"], "a": null}, "user_agent": true, "original_model_group": "", "user_api_key_org_id": "org-meta", "status": "failure", "error_information": {"error_code": 429, "error_class": "RateLimitError", "llm_provider": "openai"}, "user_api_key_user_email": "a@b.c", "usage_object": {"service_tier": 1.50}}"#.into()), None, Some(""), None, 0.25, Some(10), "[]"),
        ("e-deep", Some(format!(r#"{{"z": {deep}, "user_agent": "after-deep", "spend_logs_metadata": {{"project": ["p0", {{"x": "nested"}}]}}, "project": "top"}}"#)), Some("success"), None, None, 3.0, None, "[\"x\", \"prod\"]"),
        ("e-escapes", Some(r#"{"user_agent": "q\"b\\s\u00e9\n", "user_api_key_alias": "\u2028sep", "project": {"k": 1}, "k\"ey": "v"}"#.into()), Some("success"), None, None, 0.000001, Some(1), "[]"),
        ("e-not-objects", Some(r#"{"usage_object": [1], "error_information": "oops", "additional_usage_values": 5, "status": "failure"}"#.into()), None, None, None, 0.5, Some(3), "[]"),
        ("e-overhead-text", Some(r#"{"litellm_overhead_time_ms": "12", "project": 7}"#.into()), Some("success"), None, None, 0.5, None, "[]"),
        ("e-big", Some(r#"{"litellm_overhead_time_ms": 1e20, "usage_object": {"duration_seconds": -1, "output_image_count": 999999999999999.5}}"#.into()), Some("success"), None, None, 999_999.999, Some(2), "[]"),
        ("e-spend-logs-null", Some(r#"{"spend_logs_metadata": {"project": null}, "project": "fallback"}"#.into()), Some("success"), None, None, 0.0, None, "[]"),
        ("e-spend-logs-array", Some(r#"{"spend_logs_metadata": ["a"], "project": ["top", {"x": "y"}]}"#.into()), Some("success"), None, None, 0.0, None, "[]"),
        ("e-long", Some(format!(r#"{{"user_api_key_alias": "{long}", "project": "{long}"}}"#)), Some("success"), None, None, 0.0, Some(7), "[]"),
    ]
}

fn extras() -> Vec<Extra> {
    vec![
        Extra::Metadata(vec!["project".into()]),
        Extra::Metadata(vec!["project".into(), "1".into(), "x".into()]),
        Extra::Metadata(vec!["project".into(), "-2".into()]),
        Extra::Tag("pr%".into()),
    ]
}

/// The oracle's SQL for `extras`, with the SQL definitions of the custom labels (what the exporter
/// generated before the move to Rust).
fn oracle_sql(extras: &[Extra]) -> String {
    let mut cols = String::new();
    for (i, e) in extras.iter().enumerate() {
        let n = i + 5;
        cols.push_str(&match e {
            Extra::Metadata(_) => format!(
                ",\n  left(coalesce(m.md->'spend_logs_metadata' #>> ${n}::text[], m.md #>> ${n}::text[], ''), 1024) AS x{i}"
            ),
            Extra::Tag(_) => format!(
                ",\n  CASE WHEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(s.request_tags) = 'array' THEN s.request_tags ELSE '[]'::jsonb END) tag(v) WHERE tag.v LIKE ${n}::text) THEN 'true' ELSE 'false' END AS x{i}"
            ),
        });
    }
    let fills = [
        (
            "stream",
            // LiteLLM 1.110.2 labels non-streamed requests "None", not "False".
            "CASE WHEN d.ttft_us IS NOT NULL THEN 'True' ELSE '' END",
        ),
        ("extras", cols.as_str()),
        ("status", "s.status"),
        ("organization_id", "s.organization_id"),
        (
            "user_email",
            "left(coalesce(m.md->>'user_api_key_user_email', ''), 1024)",
        ),
        ("end_user", "left(coalesce(s.end_user, ''), 1024)"),
        (
            "client_ip",
            "left(coalesce(s.requester_ip_address, ''), 1024)",
        ),
    ];
    let mut sql = ORACLE.to_string();
    for (k, v) in fills {
        sql = sql.replace(&format!("{{{{{k}}}}}"), v);
    }
    assert!(!sql.contains("{{"), "unfilled oracle placeholder");
    sql
}

#[tokio::test]
async fn rust_projection_equals_the_sql_oracle_row_by_row() {
    let db = fresh_db(Schema::New);
    let mut c = db.client().await;
    let opts = SeedOptions {
        rows: 3000,
        days: 2,
        ..Default::default()
    };
    let u = seed::seed_entities(&c, &opts).await.expect("seed entities");
    seed::seed_spend_logs(&c, &opts, &u)
        .await
        .expect("seed rows");
    for (id, md, status, org, cache_hit, spend, first_ms, tags) in edges() {
        c.execute(
            "INSERT INTO \"LiteLLM_SpendLogs\" (request_id, call_type, api_key, spend, total_tokens,
                prompt_tokens, completion_tokens, \"startTime\", \"endTime\", \"completionStartTime\",
                model, model_group, custom_llm_provider, team_id, status, metadata, organization_id,
                cache_hit, request_tags, end_user, requester_ip_address, \"user\")
             SELECT $1, 'acompletion', 'hash-edge', $2, 30, 10, 20, s, s + interval '2.5 seconds',
                    s + make_interval(secs => $3::float8 / 1000), 'openai/gpt-4o', 'gpt-4o', 'openai',
                    'team-edge', $4, $5::text::jsonb, $6, $7, $8::text::jsonb, 'eu-1', '10.0.0.1', 'u1'
             FROM (SELECT date_trunc('milliseconds', now() AT TIME ZONE 'UTC') - interval '1 hour' AS s) x",
            &[
                &id,
                &spend,
                &first_ms.map(|m| m as f64),
                &status,
                &md,
                &org,
                &cache_hit,
                &tags,
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
    }
    let schema = litellm_exporter::schema::Schema::detect(&c)
        .await
        .expect("schema");
    let t = Thresholds::new(
        litellm_exporter::catalogue::LATENCY_BUCKETS,
        litellm_exporter::catalogue::DEFAULT_BUCKETS,
    );
    let identity = Identity {
        end_user: true,
        user_email: true,
        client_ip: true,
    };
    let extras = extras();
    let p = Projection::new(&schema, Dims::ALL, identity, t, true, &extras);
    let tx = c.transaction().await.expect("transaction");
    let mut ours = read::rows(&tx, &p, None, None, 0, 0).await.expect("rows");
    ours.sort_by(|a, b| a.request_id.cmp(&b.request_id));

    // The oracle, with the same bounds and custom-label parameters.
    let lo = "-infinity".to_string();
    let hi = "infinity".to_string();
    let (since, xmax) = (0i64, 0i64);
    let paths: Vec<Vec<String>> = extras
        .iter()
        .map(|e| match e {
            Extra::Metadata(p) => p.clone(),
            Extra::Tag(_) => Vec::new(),
        })
        .collect();
    let patterns: Vec<String> = extras
        .iter()
        .map(|e| match e {
            Extra::Tag(p) => p.clone(),
            Extra::Metadata(_) => String::new(),
        })
        .collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&lo, &hi, &since, &xmax];
    for (i, e) in extras.iter().enumerate() {
        match e {
            Extra::Metadata(_) => params.push(&paths[i]),
            Extra::Tag(_) => params.push(&patterns[i]),
        }
    }
    let mut want = tx
        .query(&oracle_sql(&extras), &params)
        .await
        .expect("oracle query");
    want.sort_by_key(|r| r.get::<_, String>(0));
    assert_eq!(ours.len(), want.len(), "row counts differ");
    assert!(ours.len() > 3000, "the seeded and hand-made rows were read");

    for (got, w) in ours.iter().zip(&want) {
        let id: String = w.get(0);
        assert_eq!(got.request_id, id);
        let s = |i: usize| -> String { w.get(i) };
        let key = ClassKey {
            api_key: s(3),
            key_alias: s(4),
            team_id: s(5),
            team_alias: s(6),
            user_id: s(7),
            user_email: s(8),
            end_user: s(9),
            org_id: s(10),
            model: s(11),
            model_group: s(12),
            original_model_group: s(13),
            model_id: s(14),
            api_base: s(15),
            provider: s(16),
            client_ip: s(17),
            user_agent: s(18),
            service_tier: s(19),
            failed: w.get(20),
            error_code: s(21),
            error_class: s(22),
            error_provider: s(23),
            cache_hit: s(24),
            stream: s(44),
            extras: (0..extras.len()).map(|i| s(45 + i)).collect(),
        };
        assert_eq!(got.key, key, "labels of {id}");
        assert_eq!(got.start_ms, w.get::<_, i64>(1), "start of {id}");
        assert_eq!(i64::from(got.xmin), w.get::<_, i64>(2), "xmin of {id}");
        assert_eq!(got.values.spend_pico, w.get::<_, i64>(25), "spend of {id}");
        let v: Vec<i64> = (26..38).map(|i| w.get(i)).collect();
        assert_eq!(got.values.v.to_vec(), v, "values of {id}");
        assert_eq!(
            got.values.bad_numbers,
            w.get::<_, i64>(38),
            "bad numbers of {id}"
        );
        let h: Vec<Option<i64>> = (39..44).map(|i| w.get(i)).collect();
        assert_eq!(got.values.hist.to_vec(), h, "observations of {id}");
    }
    // The hand-made rows reached the interesting branches (not vacuous comparisons).
    let by_id = |id: &str| ours.iter().find(|r| r.request_id == id).expect("edge row");
    assert_eq!(
        by_id("e-rounding").values.v[3],
        3,
        "2.5 cached tokens round up"
    );
    assert_eq!(
        by_id("e-null-coalesce").values.v[4],
        6,
        "a present null does not fall through"
    );
    assert_eq!(by_id("e-deep").key.user_agent, "after-deep");
    assert_eq!(by_id("e-deep").key.extras[1], "nested");
    assert_eq!(by_id("e-long").key.key_alias.chars().count(), 1024);
    assert_eq!(
        by_id("e-types").key.team_alias,
        r#"{"a": null, "b": [1, "two"]}"#
    );
}

//! The exporter's own metrics (`litellm_exporter_*`), kept in a registry of the `prometheus`
//! crate: whether the database answers, how fresh and how expensive the data is, what went wrong.

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct SelfMetrics {
    registry: Registry,
    pub database_up: IntGauge,
    pub ready: IntGauge,
    pub last_success: Gauge,
    pub refresh_duration: GaugeVec,
    pub source_up: IntGaugeVec,
    pub source_duration: GaugeVec,
    pub rows_ingested: IntCounter,
    pub ingest_lag: Gauge,
    pub errors: IntCounterVec,
    pub series: IntGaugeVec,
    pub bad_numbers: IntCounter,
    pub corrections_ignored: IntCounter,
    pub catch_up_progress: Gauge,
    pub catching_up: IntGauge,
    pub catch_up_remaining: Gauge,
    pub schema_up: IntGauge,
    pub memory_budget: IntGauge,
    pub classes_estimate: IntGauge,
    pub fold_level: IntGauge,
    pub memory_folded_classes: IntCounter,
    pub memory_folded_rows: IntCounter,
    pub resident: IntGauge,
    pub remembered_rows: IntGauge,
    pub poll_rows_read: IntGauge,
    pub renders: IntCounter,
    pub schema_feature: IntGaugeVec,
    pub state_saved: Gauge,
    pub folded_series: IntGaugeVec,
    pub folded_rows: IntCounterVec,
    pub web_config_reload_ok: IntGauge,
    pub pool_connections: IntGauge,
    pub connections_discarded: IntCounter,
    pub gave_way: IntCounter,
    pub in_recovery: IntGauge,
    pub replay_lag_seconds: Gauge,
    pub replay_lag_bytes: Gauge,
    pub last_replay: Gauge,
    pub replay_paused: IntGauge,
    pub wal_receiver_up: IntGauge,
}

/// What went wrong, as the `kind` label of `litellm_exporter_errors_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection (refused, reset, DNS), or a pool error without a server answer.
    Connect,
    /// The server refused the credentials.
    Auth,
    /// A TLS handshake failure other than the three below.
    Tls,
    /// The server does not offer TLS, and sslmode requires it.
    TlsUnavailable,
    /// The server's certificate is not signed by a trusted CA.
    TlsUnknownCa,
    /// The server's certificate does not name the URL's host.
    TlsHostname,
    /// `statement_timeout`, or no answer within the client-side bound.
    Timeout,
    /// Any other server error.
    Query,
    /// A LiteLLM table or column is missing.
    Schema,
    /// A read cancelled by a recovery conflict on a hot-standby replica.
    Conflict,
    /// A spend-log read gave way to waiting DDL (LiteLLM's partition maintenance) too often.
    Locks,
    /// An entity table could not be read (other than a missing table).
    Entities,
    /// The state file could not be read or written.
    State,
    /// `--db-url-file` could not be used on SIGHUP.
    DbUrlFile,
}

impl ErrorKind {
    /// Every kind, in the order the metric's help lists them; each is created at zero so that
    /// `rate()` and alerts see it before the first error.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Connect,
        ErrorKind::Auth,
        ErrorKind::Tls,
        ErrorKind::TlsUnavailable,
        ErrorKind::TlsUnknownCa,
        ErrorKind::TlsHostname,
        ErrorKind::Timeout,
        ErrorKind::Query,
        ErrorKind::Schema,
        ErrorKind::Conflict,
        ErrorKind::Locks,
        ErrorKind::Entities,
        ErrorKind::State,
        ErrorKind::DbUrlFile,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::TlsUnavailable => "tls_unavailable",
            ErrorKind::TlsUnknownCa => "tls_unknown_ca",
            ErrorKind::TlsHostname => "tls_hostname",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Query => "query",
            ErrorKind::Schema => "schema",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Locks => "locks",
            ErrorKind::Entities => "entities",
            ErrorKind::State => "state",
            ErrorKind::DbUrlFile => "db_url_file",
        }
    }
}

/// The help of `litellm_exporter_errors_total`, listing every kind.
fn errors_help() -> String {
    let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
    format!("Failed refreshes by kind ({}).", kinds.join(", "))
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl SelfMetrics {
    pub fn new() -> Self {
        let r = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m.expect("metric definitions are static and valid");
                r.register(Box::new(m.clone())).expect("names are unique");
                m
            }};
        }
        let build = reg!(IntGaugeVec::new(
            opts(
                "litellm_exporter_build_info",
                "Version, git revision and compiler of this exporter; always 1."
            ),
            &["version", "revision", "rustc"]
        ));
        build
            .with_label_values(&[crate::VERSION, crate::REVISION, crate::RUSTC])
            .set(1);
        let m = SelfMetrics {
            database_up: reg!(IntGauge::with_opts(opts("litellm_exporter_database_up", "1 if the last refresh could read LiteLLM's database, else 0."))),
            ready: reg!(IntGauge::with_opts(opts("litellm_exporter_ready", "1 once the first complete catch-up of the spend log has finished and the database answers."))),
            last_success: reg!(Gauge::with_opts(opts("litellm_exporter_last_refresh_success_timestamp_seconds", "Unix time of the last refresh that read the database without error."))),
            refresh_duration: reg!(GaugeVec::new(opts("litellm_exporter_refresh_duration_seconds", "Wall time of the last refresh, by step (ledger, entities, render)."), &["source"])),
            source_up: reg!(IntGaugeVec::new(opts("litellm_exporter_source_up", "1 if the source's last read succeeded, else 0 (replica: the database check, ledger: the spend log, entities: the entity tables); a source not attempted because the database did not answer is 0."), &["source"])),
            source_duration: reg!(GaugeVec::new(opts("litellm_exporter_source_duration_seconds", "Wall time of the source's last read, its retries included (replica, ledger, entities)."), &["source"])),
            rows_ingested: reg!(IntCounter::with_opts(opts("litellm_exporter_rows_ingested_total", "Distinct spend-log rows counted into the counters."))),
            ingest_lag: reg!(Gauge::with_opts(opts("litellm_exporter_ingest_lag_seconds", "Database time now minus the newest startTime counted; grows while no traffic arrives."))),
            errors: reg!(IntCounterVec::new(opts("litellm_exporter_errors_total", &errors_help()), &["kind"])),
            series: reg!(IntGaugeVec::new(opts("litellm_exporter_series", "Series exported per LiteLLM metric family."), &["family"])),
            bad_numbers: reg!(IntCounter::with_opts(opts("litellm_exporter_bad_numbers_total", "NaN, infinite, negative or absurd numbers in LiteLLM's tables that were counted as 0 or skipped."))),
            corrections_ignored: reg!(IntCounter::with_opts(opts("litellm_exporter_corrections_ignored_total", "Rewritten spend-log rows whose shrinking values or changed labels were not applied, so that no counter decreases."))),
            catch_up_progress: reg!(Gauge::with_opts(opts("litellm_exporter_catch_up_progress_ratio", "Share of the spend-log history read by the start-up catch-up (1 when done): rows read of the planner's estimate, or the share of the history's time span where there is no credible estimate."))),
            catching_up: reg!(IntGauge::with_opts(opts("litellm_exporter_catching_up", "1 while the start-up catch-up reads the spend log (the database answers; the ledger families appear once it is done), else 0."))),
            catch_up_remaining: reg!(Gauge::with_opts(opts("litellm_exporter_catch_up_remaining_seconds", "Estimated seconds left in the start-up catch-up at its pace so far (0 when done, -1 while unknown)."))),
            memory_budget: reg!(IntGauge::with_opts(opts("litellm_exporter_memory_budget_bytes", "The memory budget (--memory.budget, or 80% of the container's limit); 0 without one."))),
            classes_estimate: reg!(IntGauge::with_opts(opts("litellm_exporter_memory_classes_estimate_bytes", "Estimated bytes the label combinations with series of their own take (ledger, renderer, exposition text), held under the budget's share for them."))),
            fold_level: reg!(IntGauge::with_opts(opts("litellm_exporter_memory_fold_level", "0 while every label combination has series of its own; past the memory budget N, and about 1 in 2^N combinations keep their own series (the rest count in \"other\" series)."))),
            memory_folded_classes: reg!(IntCounter::with_opts(opts("litellm_exporter_memory_folded_classes_total", "Label combinations that had series of their own and were folded into \"other\" series by the memory guard."))),
            memory_folded_rows: reg!(IntCounter::with_opts(opts("litellm_exporter_memory_folded_rows_total", "Spend-log rows counted in the memory guard's \"other\" series."))),
            resident: reg!(IntGauge::with_opts(opts("litellm_exporter_resident_memory_bytes", "Resident memory of the exporter process (VmRSS), at the last refresh."))),
            schema_up: reg!(IntGauge::with_opts(opts("litellm_exporter_schema_up", "0 while the database answers but has no LiteLLM spend-log table (wrong database or schema, migrations not run), else 1."))),
            remembered_rows: reg!(IntGauge::with_opts(opts("litellm_exporter_remembered_rows", "Recent spend-log rows kept in memory to recognise late rewrites."))),
            poll_rows_read: reg!(IntGauge::with_opts(opts("litellm_exporter_poll_rows_read", "Rows returned by the last steady-state poll."))),
            renders: reg!(IntCounter::with_opts(opts("litellm_exporter_renders_total", "Renders of the spend-log families: one per refresh whose totals or organization names changed (an idle proxy costs none)."))),
            schema_feature: reg!(IntGaugeVec::new(opts("litellm_exporter_schema_feature", "1 if a LiteLLM table or optional column the exporter can use exists."), &["feature"])),
            state_saved: reg!(Gauge::with_opts(opts("litellm_exporter_state_saved_timestamp_seconds", "Unix time the state file was last written (0 without --state.file)."))),
            folded_series: reg!(IntGaugeVec::new(opts("litellm_exporter_folded_series", "Series beyond prometheus_metrics_max_series_per_metric, folded into the \"other\" series (counters, histograms) or dropped (gauges)."), &["family"])),
            folded_rows: reg!(IntCounterVec::new(opts("litellm_exporter_folded_rows_total", "Spend-log rows counted in the \"other\" series of a capped family."), &["family"])),
            web_config_reload_ok: reg!(IntGauge::with_opts(opts("litellm_exporter_web_config_last_reload_successful", "1 if the last (re)load of --web.config.file and --web.bearer-token-file succeeded, 0 if the last SIGHUP found an invalid file (the previous settings stay in force)."))),
            pool_connections: reg!(IntGauge::with_opts(opts("litellm_exporter_pool_connections", "Database connections the exporter holds open (at most the pool size)."))),
            connections_discarded: reg!(IntCounter::with_opts(opts("litellm_exporter_connections_discarded_total", "Connections closed instead of reused because a refresh step was abandoned on its client-side timeout (the server did not answer)."))),
            gave_way: reg!(IntCounter::with_opts(opts("litellm_exporter_reads_given_way_total", "Spend-log reads cancelled and repeated because another session (LiteLLM's partition maintenance) waited for a lock they held."))),
            in_recovery: reg!(IntGauge::with_opts(opts("litellm_exporter_database_in_recovery", "1 if the exporter reads a hot-standby replica (pg_is_in_recovery()), else 0."))),
            replay_lag_seconds: reg!(Gauge::with_opts(opts("litellm_exporter_replica_replay_lag_seconds", "On a replica: seconds since the last replayed transaction committed on the primary, while received WAL waits to be replayed; 0 when everything received is replayed (a quiet primary) and on a primary."))),
            replay_lag_bytes: reg!(Gauge::with_opts(opts("litellm_exporter_replica_replay_lag_bytes", "On a replica: WAL bytes received but not replayed yet; 0 on a primary."))),
            last_replay: reg!(Gauge::with_opts(opts("litellm_exporter_replica_last_replay_timestamp_seconds", "On a replica: Unix time (primary's clock) of the last replayed commit; 0 on a primary or before the first replay."))),
            replay_paused: reg!(IntGauge::with_opts(opts("litellm_exporter_replica_replay_paused", "1 if replay on the replica is paused (pg_wal_replay_pause()), else 0."))),
            wal_receiver_up: reg!(IntGauge::with_opts(opts("litellm_exporter_replica_wal_receiver_up", "On a replica: 1 while a WAL receiver streams from the primary; 0 means the replica receives nothing new (its lag metrics cannot see that). 1 on a primary."))),
            registry: r,
        };
        // The files were valid at start, or the process would not have started.
        m.web_config_reload_ok.set(1);
        // Nothing is known to be missing before the first detection: an unreachable database
        // is database_up's to report, not a missing schema.
        m.schema_up.set(1);
        for k in ErrorKind::ALL {
            m.errors.with_label_values(&[k.label()]);
        }
        m
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.label()]).inc();
    }

    /// Makes a counter reach `total` (counters only move up; a smaller total is ignored).
    pub fn catch_up_counter(c: &IntCounter, total: u64) {
        let now = c.get();
        if total > now {
            c.inc_by(total - now);
        }
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The help names every kind once, in the wording the README's metric table has.
    #[test]
    fn every_error_kind_is_listed_once_and_starts_at_zero() {
        assert_eq!(
            errors_help(),
            "Failed refreshes by kind (connect, auth, tls, tls_unavailable, tls_unknown_ca, tls_hostname, timeout, query, schema, conflict, locks, entities, state, db_url_file)."
        );
        let mut labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
        let text = SelfMetrics::new().encode();
        for k in ErrorKind::ALL {
            let line = format!("litellm_exporter_errors_total{{kind=\"{}\"}} 0", k.label());
            assert!(text.contains(&line), "{line}");
        }
    }
}

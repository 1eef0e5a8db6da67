//! The metric catalogue: every family this exporter serves from LiteLLM's data, with LiteLLM's own
//! names, types, help texts and default label sets (in LiteLLM's emission order). This table is
//! the public API; the README's metric table and the golden tests are checked against it.
//!
//! It owns names and shapes only. How a spend-log row fills a label lives in `ledger::class`,
//! how entity rows fill the gauges lives in `entities`.

/// One label of a ledger family. Several variants can share a Prometheus name when LiteLLM fills
/// the same name differently on different metrics (`requested_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    /// `requested_model` as on the proxy-level request counters: the pre-fallback model group.
    RequestedModelOriginal,
    /// `requested_model` everywhere else: the model group that served the request.
    RequestedModel,
    Team,
    TeamAlias,
    User,
    StatusCode,
    UserEmail,
    Route,
    ClientIp,
    UserAgent,
    ModelId,
    ApiProvider,
    OrgId,
    OrgAlias,
    Model,
    ModelGroup,
    LitellmModelName,
    ApiBase,
    ServiceTier,
    ExceptionStatus,
    ExceptionClass,
    /// `stream` ("True"/"False"), with `prometheus_emit_stream_label`.
    Stream,
    /// The n-th configured custom label (metadata or tag); its name lives in the `Selection`.
    Extra(u8),
}

impl Label {
    pub fn name(self) -> &'static str {
        use Label::*;
        match self {
            EndUser => "end_user",
            HashedApiKey => "hashed_api_key",
            ApiKeyAlias => "api_key_alias",
            RequestedModelOriginal | RequestedModel => "requested_model",
            Team => "team",
            TeamAlias => "team_alias",
            User => "user",
            StatusCode => "status_code",
            UserEmail => "user_email",
            Route => "route",
            ClientIp => "client_ip",
            UserAgent => "user_agent",
            ModelId => "model_id",
            ApiProvider => "api_provider",
            OrgId => "org_id",
            OrgAlias => "org_alias",
            Model => "model",
            ModelGroup => "model_group",
            LitellmModelName => "litellm_model_name",
            ApiBase => "api_base",
            ServiceTier => "service_tier",
            ExceptionStatus => "exception_status",
            ExceptionClass => "exception_class",
            Stream => "stream",
            Extra(_) => "custom",
        }
    }
}

/// Which rows a ledger family counts. LiteLLM increments most families from its success callback
/// only, the failure families from its failure hooks, and the "total" families from both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    All,
    Success,
    Failure,
}

/// What a ledger counter adds per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterValue {
    Requests,
    Spend,
    TotalTokens,
    PromptTokens,
    CompletionTokens,
    CachedInputTokens,
    CacheCreationInputTokens,
    InputAudioTokens,
    OutputReasoningTokens,
    OutputAudioTokens,
    ImagesGenerated,
    VideoSeconds,
    CacheHits,
    CacheMisses,
    CachedTokens,
    ProviderCacheReadTokens,
    ProviderCacheCreationTokens,
}

/// Which observation a ledger histogram records; see `ledger::values` for how each is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistValue {
    TotalLatency,
    LlmApiLatency,
    TimeToFirstToken,
    Overhead,
    LatencyPerOutputToken,
}

impl HistValue {
    pub const ALL: [HistValue; 5] = [
        HistValue::TotalLatency,
        HistValue::LlmApiLatency,
        HistValue::TimeToFirstToken,
        HistValue::Overhead,
        HistValue::LatencyPerOutputToken,
    ];
    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter(CounterValue),
    Histogram(HistValue),
}

/// A family derived from `LiteLLM_SpendLogs`.
#[derive(Debug)]
pub struct LedgerFamily {
    /// The registered name; counters are exposed as `<name>_total`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub rows: Rows,
    pub labels: &'static [Label],
}

use CounterValue as C;
use HistValue as H;
use Label::*;

const PROXY_TOTAL: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    RequestedModelOriginal,
    Team,
    TeamAlias,
    User,
    StatusCode,
    UserEmail,
    Route,
    ClientIp,
    UserAgent,
    ModelId,
    ApiProvider,
    OrgId,
    OrgAlias,
];
const PROXY_FAILED: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    RequestedModelOriginal,
    Team,
    TeamAlias,
    User,
    UserEmail,
    ExceptionStatus,
    ExceptionClass,
    Route,
    ClientIp,
    UserAgent,
    ModelId,
    ApiProvider,
    OrgId,
    OrgAlias,
];
const REQUESTS: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    Model,
    Team,
    TeamAlias,
    User,
    UserEmail,
    ClientIp,
    UserAgent,
    RequestedModel,
    ModelId,
    ApiProvider,
    OrgId,
    OrgAlias,
];
const LLM_API_FAILED: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    Model,
    Team,
    TeamAlias,
    User,
    ModelId,
];
const SPEND: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    Model,
    Team,
    TeamAlias,
    User,
    UserEmail,
    ClientIp,
    UserAgent,
    RequestedModel,
    ModelId,
    ApiProvider,
    ServiceTier,
    OrgId,
    OrgAlias,
];
const TOKENS: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    Model,
    Team,
    TeamAlias,
    User,
    UserEmail,
    RequestedModel,
    ModelId,
    ApiProvider,
    OrgId,
    OrgAlias,
];
const TOKEN_DETAIL: &[Label] = &[
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    Model,
    Team,
    TeamAlias,
    User,
    UserEmail,
    RequestedModel,
    ModelId,
    ApiProvider,
];
const CACHE: &[Label] = &[
    Model,
    HashedApiKey,
    ApiKeyAlias,
    Team,
    TeamAlias,
    EndUser,
    User,
    ModelId,
    ApiProvider,
];
const TOTAL_LATENCY: &[Label] = &[
    ModelGroup,
    EndUser,
    HashedApiKey,
    ApiKeyAlias,
    RequestedModel,
    Team,
    TeamAlias,
    User,
    Model,
    ModelId,
    ApiProvider,
    ServiceTier,
    OrgId,
    OrgAlias,
];
const API_LATENCY: &[Label] = &[
    ModelGroup,
    Model,
    HashedApiKey,
    ApiKeyAlias,
    Team,
    TeamAlias,
    RequestedModel,
    EndUser,
    User,
    ModelId,
    ApiProvider,
    ServiceTier,
    OrgId,
    OrgAlias,
];
const OVERHEAD: &[Label] = &[
    ModelGroup,
    ApiProvider,
    ApiBase,
    LitellmModelName,
    HashedApiKey,
    ApiKeyAlias,
    ModelId,
];
const PER_TOKEN: &[Label] = &[
    ModelGroup,
    LitellmModelName,
    ModelId,
    ApiBase,
    ApiProvider,
    HashedApiKey,
    ApiKeyAlias,
    Team,
    TeamAlias,
    OrgId,
    OrgAlias,
];
const DEPLOYMENT: &[Label] = &[
    ModelGroup,
    RequestedModel,
    LitellmModelName,
    ModelId,
    ApiBase,
    ApiProvider,
    HashedApiKey,
    ApiKeyAlias,
    Team,
    TeamAlias,
    ClientIp,
    UserAgent,
];
const DEPLOYMENT_FAILURE: &[Label] = &[
    ModelGroup,
    RequestedModel,
    LitellmModelName,
    ModelId,
    ApiBase,
    ApiProvider,
    ExceptionStatus,
    ExceptionClass,
    HashedApiKey,
    ApiKeyAlias,
    Team,
    TeamAlias,
    ClientIp,
    UserAgent,
];

const fn counter(
    name: &'static str,
    help: &'static str,
    value: CounterValue,
    rows: Rows,
    labels: &'static [Label],
) -> LedgerFamily {
    LedgerFamily {
        name,
        help,
        kind: Kind::Counter(value),
        rows,
        labels,
    }
}

const fn histogram(
    name: &'static str,
    help: &'static str,
    value: HistValue,
    labels: &'static [Label],
) -> LedgerFamily {
    LedgerFamily {
        name,
        help,
        kind: Kind::Histogram(value),
        rows: Rows::Success,
        labels,
    }
}

/// Every family derived from the spend-log ledger, in exposition order.
/// Every label the renderer can ask for: the families' own, the opt-in stream label and a
/// custom label (what `Selection::build` can select). For tests that must cover them all.
#[cfg(test)]
pub fn every_label() -> Vec<Label> {
    let mut all: Vec<Label> = LEDGER_FAMILIES
        .iter()
        .flat_map(|f| f.labels.iter().copied())
        .chain([Label::Stream, Label::Extra(0)])
        .collect();
    all.sort_by_key(|l| format!("{l:?}"));
    all.dedup();
    all
}

pub const LEDGER_FAMILIES: &[LedgerFamily] = &[
    counter("litellm_proxy_total_requests_metric", "Total number of requests made to the proxy server - track number of client side requests", C::Requests, Rows::All, PROXY_TOTAL),
    counter("litellm_proxy_failed_requests_metric", "Total number of failed responses from proxy - the client did not get a success response from litellm proxy", C::Requests, Rows::Failure, PROXY_FAILED),
    counter("litellm_requests_metric", "Total number of LLM calls to litellm - track total per API Key, team, user", C::Requests, Rows::Success, REQUESTS),
    counter("litellm_llm_api_failed_requests_metric", "deprecated - use litellm_proxy_failed_requests_metric", C::Requests, Rows::Failure, LLM_API_FAILED),
    counter("litellm_spend_metric", "Total spend on LLM requests", C::Spend, Rows::Success, SPEND),
    counter("litellm_total_tokens_metric", "Total number of input + output tokens from LLM requests", C::TotalTokens, Rows::Success, TOKENS),
    counter("litellm_input_tokens_metric", "Total number of input tokens from LLM requests", C::PromptTokens, Rows::Success, TOKENS),
    counter("litellm_output_tokens_metric", "Total number of output tokens from LLM requests", C::CompletionTokens, Rows::Success, TOKENS),
    counter("litellm_input_cached_tokens_metric", "Total number of cached input tokens (prompt_tokens_details.cached_tokens)", C::CachedInputTokens, Rows::Success, TOKEN_DETAIL),
    counter("litellm_input_cache_creation_tokens_metric", "Total number of input tokens written to the provider cache", C::CacheCreationInputTokens, Rows::Success, TOKEN_DETAIL),
    counter("litellm_input_audio_tokens_metric", "Total number of audio input tokens", C::InputAudioTokens, Rows::Success, TOKEN_DETAIL),
    counter("litellm_output_reasoning_tokens_metric", "Total number of reasoning output tokens", C::OutputReasoningTokens, Rows::Success, TOKEN_DETAIL),
    counter("litellm_output_audio_tokens_metric", "Total number of audio output tokens", C::OutputAudioTokens, Rows::Success, TOKEN_DETAIL),
    counter("litellm_images_generated_metric", "Total number of images generated", C::ImagesGenerated, Rows::Success, TOKENS),
    counter("litellm_video_duration_seconds_metric", "Total seconds of video generated", C::VideoSeconds, Rows::Success, TOKENS),
    counter("litellm_cache_hits_metric", "Total number of LiteLLM cache hits", C::CacheHits, Rows::Success, CACHE),
    counter("litellm_cache_misses_metric", "Total number of LiteLLM cache misses", C::CacheMisses, Rows::Success, CACHE),
    counter("litellm_cached_tokens_metric", "Total tokens served from the LiteLLM cache", C::CachedTokens, Rows::Success, CACHE),
    counter("litellm_provider_cache_read_input_tokens_metric", "Total input tokens read from the provider's prompt cache", C::ProviderCacheReadTokens, Rows::Success, CACHE),
    counter("litellm_provider_cache_creation_input_tokens_metric", "Total input tokens written to the provider's prompt cache", C::ProviderCacheCreationTokens, Rows::Success, CACHE),
    histogram("litellm_request_total_latency_metric", "Total latency (seconds) for a request to LiteLLM", H::TotalLatency, TOTAL_LATENCY),
    histogram("litellm_llm_api_latency_metric", "Total latency (seconds) for a models LLM API call", H::LlmApiLatency, API_LATENCY),
    histogram("litellm_llm_api_time_to_first_token_metric", "Time to first token for a models LLM API call", H::TimeToFirstToken, API_LATENCY),
    histogram("litellm_overhead_latency_metric", "Latency overhead (seconds) added by LiteLLM processing", H::Overhead, OVERHEAD),
    histogram("litellm_deployment_latency_per_output_token", "Latency per output token", H::LatencyPerOutputToken, PER_TOKEN),
    counter("litellm_deployment_success_responses", "LLM Deployment Analytics - Total number of successful LLM API calls via litellm", C::Requests, Rows::Success, DEPLOYMENT),
    counter("litellm_deployment_failure_responses", "LLM Deployment Analytics - Total number of failed LLM API calls for a specific LLM deploymeny", C::Requests, Rows::Failure, DEPLOYMENT_FAILURE),
    counter("litellm_deployment_total_requests", "LLM Deployment Analytics - Total number of LLM API calls via litellm - success + failure", C::Requests, Rows::All, DEPLOYMENT),
];

/// LiteLLM's LATENCY_BUCKETS (seconds), used by every latency histogram unless overridden.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 420.0,
    600.0,
];

/// prometheus_client's default buckets, which LiteLLM uses for the per-output-token histogram.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A gauge family rebuilt from LiteLLM's entity tables on every refresh.
#[derive(Debug)]
pub struct GaugeFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
) -> GaugeFamily {
    GaugeFamily { name, help, labels }
}

pub const TEAM: &[&str] = &["team", "team_alias"];
pub const KEY: &[&str] = &["hashed_api_key", "api_key_alias"];
pub const USER: &[&str] = &["user"];
pub const USER_WITH_EMAIL: &[&str] = &["user", "user_email", "user_alias"];
pub const ORG: &[&str] = &["org_id", "org_alias"];
pub const CUSTOMER: &[&str] = &["end_user"];

/// Every entity gauge family, in exposition order. Index constants below name them for `entities`.
pub const GAUGE_FAMILIES: &[GaugeFamily] = &[
    gauge(
        "litellm_remaining_team_budget_metric",
        "Remaining budget for team",
        TEAM,
    ),
    gauge(
        "litellm_team_max_budget_metric",
        "Maximum budget set for team",
        TEAM,
    ),
    gauge(
        "litellm_team_budget_remaining_hours_metric",
        "Remaining days for team budget to be reset",
        TEAM,
    ),
    gauge(
        "litellm_remaining_api_key_budget_metric",
        "Remaining budget for api key",
        KEY,
    ),
    gauge(
        "litellm_api_key_max_budget_metric",
        "Maximum budget set for api key",
        KEY,
    ),
    gauge(
        "litellm_api_key_budget_remaining_hours_metric",
        "Remaining hours for api key budget to be reset",
        KEY,
    ),
    gauge(
        "litellm_remaining_user_budget_metric",
        "Remaining budget for user",
        USER,
    ),
    gauge(
        "litellm_user_max_budget_metric",
        "Maximum budget set for user",
        USER,
    ),
    gauge(
        "litellm_user_budget_remaining_hours_metric",
        "Remaining hours for user budget to be reset",
        USER,
    ),
    gauge(
        "litellm_remaining_org_budget_metric",
        "Remaining budget for organization",
        ORG,
    ),
    gauge(
        "litellm_org_max_budget_metric",
        "Maximum budget set for organization",
        ORG,
    ),
    gauge(
        "litellm_org_budget_remaining_hours_metric",
        "Remaining hours for organization budget to be reset",
        ORG,
    ),
    gauge(
        "litellm_remaining_customer_budget_metric",
        "Remaining budget for customer",
        CUSTOMER,
    ),
    gauge(
        "litellm_customer_max_budget_metric",
        "Maximum budget set for customer",
        CUSTOMER,
    ),
    gauge(
        "litellm_customer_budget_remaining_hours_metric",
        "Remaining hours for customer budget to be reset",
        CUSTOMER,
    ),
    gauge(
        "litellm_api_key_rate_limit_allowed_metric",
        "Rate limit allowed for the api key (requests or tokens per minute)",
        &["hashed_api_key", "api_key_alias", "rate_limit_type"],
    ),
    gauge(
        "litellm_team_rate_limit_allowed_metric",
        "Rate limit allowed for the team (requests or tokens per minute)",
        &["team", "team_alias", "rate_limit_type"],
    ),
    gauge(
        "litellm_team_members_metric",
        "Number of members in the team",
        TEAM,
    ),
    gauge(
        "litellm_total_users",
        "Total number of users in LiteLLM",
        &[],
    ),
    gauge(
        "litellm_active_users",
        "Number of users not deactivated by SCIM",
        &[],
    ),
    gauge(
        "litellm_teams_count",
        "Total number of teams in LiteLLM",
        &[],
    ),
];

/// Families LiteLLM defines that a database cannot supply, with the reason; the README lists them.
pub const NOT_DERIVABLE: &[(&str, &str)] = &[
    (
        "litellm_deployment_state",
        "router health state is kept in the proxy's memory",
    ),
    (
        "litellm_deployment_cooled_down",
        "router cooldowns are kept in the proxy's memory",
    ),
    (
        "litellm_remaining_requests_metric",
        "provider rate-limit headers are never stored",
    ),
    (
        "litellm_remaining_tokens_metric",
        "provider rate-limit headers are never stored",
    ),
    (
        "litellm_remaining_api_key_requests_for_model",
        "live limiter windows are in memory or Redis",
    ),
    (
        "litellm_remaining_api_key_tokens_for_model",
        "live limiter windows are in memory or Redis",
    ),
    (
        "litellm_api_key_rate_limit_used_metric",
        "live limiter windows are in memory or Redis",
    ),
    (
        "litellm_team_rate_limit_used_metric",
        "live limiter windows are in memory or Redis",
    ),
    (
        "litellm_request_queue_time_seconds",
        "queue and auth wait time is not written to the spend log",
    ),
    (
        "litellm_in_flight_requests",
        "in-flight requests exist only in the proxy process",
    ),
    (
        "litellm_callback_logging_failures_metric",
        "callback failures are not persisted",
    ),
    (
        "litellm_deployment_successful_fallbacks",
        "fallback outcomes per attempt are not persisted",
    ),
    (
        "litellm_deployment_failed_fallbacks",
        "fallback outcomes per attempt are not persisted",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut seen = HashSet::new();
        for f in LEDGER_FAMILIES {
            assert!(f.name.starts_with("litellm_"), "{}", f.name);
            assert!(seen.insert(f.name), "duplicate {}", f.name);
            let mut labels = HashSet::new();
            for l in f.labels {
                assert!(
                    labels.insert(l.name()),
                    "duplicate label {} in {}",
                    l.name(),
                    f.name
                );
            }
        }
        for g in GAUGE_FAMILIES {
            assert!(seen.insert(g.name), "duplicate {}", g.name);
        }
    }

    #[test]
    fn fifteen_budget_families() {
        let n = GAUGE_FAMILIES
            .iter()
            .filter(|g| g.name.contains("budget"))
            .count();
        assert_eq!(n, 15);
    }
}

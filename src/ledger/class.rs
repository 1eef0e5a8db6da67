//! A label class: the raw spend-log facts that decide which series a row lands in, and LiteLLM's
//! conventions for turning them into label values (`None` for missing values, the model without
//! the provider prefix, `<Provider>.<Class>` exception classes, ...). Pure functions, no I/O.

use serde::{Deserialize, Serialize};

use crate::catalogue::{HistValue, Label};

/// The raw dimensions of a row, as produced by `ledger::project` (missing values as `""`,
/// capped at 1024 characters). Two rows with equal keys are indistinguishable to every
/// family, so totals are kept per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct ClassKey {
    pub api_key: String,
    pub key_alias: String,
    pub team_id: String,
    pub team_alias: String,
    pub user_id: String,
    pub user_email: String,
    pub end_user: String,
    pub org_id: String,
    pub model: String,
    pub model_group: String,
    pub original_model_group: String,
    pub model_id: String,
    pub api_base: String,
    pub provider: String,
    pub client_ip: String,
    pub user_agent: String,
    pub service_tier: String,
    pub failed: bool,
    pub error_code: String,
    pub error_class: String,
    pub error_provider: String,
    /// "True", "False" or "" (unknown), as LiteLLM writes `cache_hit`.
    pub cache_hit: String,
    /// "True" for a stream with `prometheus_emit_stream_label`, else "" (rendered "None").
    #[serde(default)]
    pub stream: String,
    /// Values of the configured custom labels, in configuration order.
    #[serde(default)]
    pub extras: Vec<String>,
}

/// The raw dimensions the exported families use. The others are left empty when rows are read,
/// so that rows differing only in dimensions nobody exports share one class: the ledger's memory
/// and work follow the exported series, not every combination of a row's 22 dimensions
/// (measured: 1.09 M classes for 10 M rows, where a per-team configuration needs a few thousand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims(u64);

impl Dims {
    pub const API_KEY: u64 = 1;
    pub const KEY_ALIAS: u64 = 1 << 1;
    pub const TEAM_ID: u64 = 1 << 2;
    pub const TEAM_ALIAS: u64 = 1 << 3;
    pub const USER_ID: u64 = 1 << 4;
    pub const USER_EMAIL: u64 = 1 << 5;
    pub const END_USER: u64 = 1 << 6;
    pub const ORG_ID: u64 = 1 << 7;
    pub const MODEL: u64 = 1 << 8;
    pub const MODEL_GROUP: u64 = 1 << 9;
    pub const ORIGINAL_MODEL_GROUP: u64 = 1 << 10;
    pub const MODEL_ID: u64 = 1 << 11;
    pub const API_BASE: u64 = 1 << 12;
    pub const PROVIDER: u64 = 1 << 13;
    pub const CLIENT_IP: u64 = 1 << 14;
    pub const USER_AGENT: u64 = 1 << 15;
    pub const SERVICE_TIER: u64 = 1 << 16;
    pub const ERROR_CODE: u64 = 1 << 17;
    pub const ERROR_CLASS: u64 = 1 << 18;
    pub const ERROR_PROVIDER: u64 = 1 << 19;
    pub const STREAM: u64 = 1 << 20;
    pub const EXTRAS: u64 = 1 << 21;
    /// Not a label: the first of five bits, one per `HistValue`, for the histograms an exported
    /// family shows. A class keeps (and a row computes) only those: five histograms of 18
    /// counters each were most of a class's memory where no histogram is exported.
    const HIST: u64 = 1 << 22;
    /// Not a label: whether a row failed, kept where an exported family counts only successes or
    /// only failures, or shows a status code.
    pub const OUTCOME: u64 = 1 << 27;
    /// Not a label: `cache_hit`, kept where an exported family counts cache hits or misses. With
    /// neither kept, the benchmark's per-team, key and model classes are 291k instead of 361k.
    pub const CACHE: u64 = 1 << 28;

    /// Not a label: the first of twelve bits, one per additive value (`values::additive_index`),
    /// for the values an exported counter shows. A class keeps (and a row carries) only those:
    /// twelve of them inline were 96 bytes of every class where three families show one.
    const VALUE: u64 = 1 << 32;

    /// Every dimension (nothing merged).
    pub const ALL: Dims = Dims(u64::MAX);

    /// The dimensions that `label_value` reads for `labels` (`Selection::dims` adds what decides
    /// which families count a row).
    pub fn of<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Dims {
        use Label::*;
        let mut d = 0;
        for l in labels {
            d |= match l {
                EndUser => Self::END_USER,
                HashedApiKey => Self::API_KEY,
                ApiKeyAlias => Self::KEY_ALIAS,
                RequestedModelOriginal => Self::ORIGINAL_MODEL_GROUP | Self::MODEL_GROUP,
                RequestedModel | ModelGroup => Self::MODEL_GROUP,
                Team => Self::TEAM_ID,
                TeamAlias => Self::TEAM_ALIAS,
                User => Self::USER_ID,
                StatusCode => Self::ERROR_CODE | Self::OUTCOME,
                ExceptionStatus => Self::ERROR_CODE,
                UserEmail => Self::USER_EMAIL,
                Route => 0,
                ClientIp => Self::CLIENT_IP,
                UserAgent => Self::USER_AGENT,
                ModelId => Self::MODEL_ID,
                ApiProvider => Self::PROVIDER,
                OrgId | OrgAlias => Self::ORG_ID,
                Model | LitellmModelName => Self::MODEL | Self::PROVIDER,
                ApiBase => Self::API_BASE,
                ServiceTier => Self::SERVICE_TIER,
                ExceptionClass => Self::ERROR_CLASS | Self::ERROR_PROVIDER,
                Stream => Self::STREAM,
                Extra(_) => Self::EXTRAS,
            };
        }
        Dims(d)
    }

    pub fn has(self, bits: u64) -> bool {
        self.0 & bits != 0
    }

    /// The bit of histogram `h`.
    pub fn hist(h: HistValue) -> u64 {
        Self::HIST << h.index()
    }

    /// The bit of additive value `j`.
    pub fn value(j: usize) -> u64 {
        Self::VALUE << j
    }

    pub fn with(self, bits: u64) -> Dims {
        Dims(self.0 | bits)
    }
}

impl ClassKey {
    pub fn is_cache_hit(&self) -> bool {
        self.cache_hit == "True"
    }

    pub fn is_cache_miss(&self) -> bool {
        self.cache_hit == "False"
    }

    /// The value of `label` for this class, following LiteLLM's request-path conventions.
    /// `org_alias` comes from the organization table (LiteLLM does not store it per request).
    pub fn label_value<'a>(&'a self, label: Label, org_alias: Option<&'a str>) -> String {
        use Label::*;
        let v: &str = match label {
            EndUser => &self.end_user,
            HashedApiKey => &self.api_key,
            ApiKeyAlias => &self.key_alias,
            RequestedModelOriginal => {
                if self.original_model_group.is_empty() {
                    &self.model_group
                } else {
                    &self.original_model_group
                }
            }
            RequestedModel | ModelGroup => &self.model_group,
            Team => &self.team_id,
            TeamAlias => &self.team_alias,
            User => &self.user_id,
            StatusCode => {
                if self.failed {
                    &self.error_code
                } else {
                    "200"
                }
            }
            UserEmail => &self.user_email,
            // LiteLLM does not write the HTTP route to the spend log.
            Route => "",
            ClientIp => &self.client_ip,
            UserAgent => &self.user_agent,
            ModelId => &self.model_id,
            ApiProvider => &self.provider,
            OrgId => &self.org_id,
            OrgAlias => org_alias.unwrap_or(""),
            // LiteLLM gives both the request's `model` kwarg, which has no `<provider>/` prefix
            // (prometheus.py: `litellm_model_name=model`).
            Model | LitellmModelName => {
                return none_if_empty(strip_provider(&self.model, &self.provider))
            }
            // LiteLLM's logging payload writes a deployment without an api_base as "" (never
            // None), and the label shows it as it is.
            ApiBase => return self.api_base.clone(),
            ServiceTier => &self.service_tier,
            ExceptionStatus => &self.error_code,
            ExceptionClass => {
                return none_if_empty(&exception_class(&self.error_class, &self.error_provider))
            }
            Stream => &self.stream,
            // Tag labels are always "true"/"false"; an absent metadata value is "None".
            Extra(i) => self.extras.get(usize::from(i)).map_or("", String::as_str),
        };
        none_if_empty(v)
    }
}

/// LiteLLM's Python client renders a missing request label as the string "None".
pub fn or_none(v: &str) -> &str {
    if v.is_empty() {
        "None"
    } else {
        v
    }
}

fn none_if_empty(v: &str) -> String {
    or_none(v).to_string()
}

/// Newer LiteLLM versions write `<provider>/<model>` to the spend log where the Prometheus `model`
/// label carries the plain model; the prefix is dropped only when it is the row's own provider.
pub fn strip_provider<'a>(model: &'a str, provider: &str) -> &'a str {
    if provider.is_empty() {
        return model;
    }
    match model.split_once('/') {
        Some((prefix, rest)) if prefix == provider && !rest.is_empty() => rest,
        _ => model,
    }
}

/// `<Provider>.<ExceptionClass>` with the provider capitalised the way Python's
/// `str.capitalize()` does it; budget errors are raised by the proxy and never prefixed.
pub fn exception_class(class: &str, provider: &str) -> String {
    if class.is_empty() {
        return String::new();
    }
    if provider.is_empty() || class == "BudgetExceededError" || class.contains('.') {
        return class.to_string();
    }
    let mut chars = provider.chars();
    let mut out = String::with_capacity(provider.len() + class.len() + 1);
    if let Some(first) = chars.next() {
        out.extend(first.to_uppercase());
        out.extend(chars.flat_map(char::to_lowercase));
    }
    out.push('.');
    out.push_str(class);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_own_provider() {
        assert_eq!(strip_provider("openai/gpt-4o", "openai"), "gpt-4o");
        assert_eq!(
            strip_provider("azure/my-deploy", "openai"),
            "azure/my-deploy"
        );
        assert_eq!(strip_provider("gpt-4o", "openai"), "gpt-4o");
        assert_eq!(strip_provider("openai/", "openai"), "openai/");
        assert_eq!(strip_provider("a/b/c", "a"), "b/c");
    }

    #[test]
    fn dims_follow_what_label_value_reads() {
        let d = Dims::of(&[Label::Team, Label::Model]);
        assert!(d.has(Dims::TEAM_ID) && d.has(Dims::MODEL) && d.has(Dims::PROVIDER));
        assert!(!d.has(Dims::API_KEY) && !d.has(Dims::TEAM_ALIAS) && !d.has(Dims::EXTRAS));
        // Every label of a key with all dimensions empty except the ones kept reads the same.
        let full = ClassKey {
            team_id: "t".into(),
            model: "openai/gpt".into(),
            provider: "openai".into(),
            api_key: "k".into(),
            ..Default::default()
        };
        let kept = ClassKey {
            api_key: String::new(),
            ..full.clone()
        };
        for l in [Label::Team, Label::Model] {
            assert_eq!(full.label_value(l, None), kept.label_value(l, None));
        }
        assert!(Dims::ALL.has(Dims::EXTRAS));
    }

    #[test]
    fn exception_classes() {
        assert_eq!(
            exception_class("RateLimitError", "openai"),
            "Openai.RateLimitError"
        );
        assert_eq!(exception_class("Timeout", "vertex_ai"), "Vertex_ai.Timeout");
        assert_eq!(
            exception_class("BudgetExceededError", "openai"),
            "BudgetExceededError"
        );
        assert_eq!(exception_class("X", ""), "X");
        assert_eq!(exception_class("", "openai"), "");
    }

    #[test]
    fn request_label_conventions() {
        let k = ClassKey {
            model: "openai/gpt-4o".into(),
            provider: "openai".into(),
            model_group: "gpt4".into(),
            failed: true,
            error_code: "429".into(),
            error_class: "RateLimitError".into(),
            error_provider: "openai".into(),
            ..Default::default()
        };
        assert_eq!(k.label_value(Label::Model, None), "gpt-4o");
        assert_eq!(k.label_value(Label::LitellmModelName, None), "gpt-4o");
        assert_eq!(k.label_value(Label::ApiBase, None), "");
        assert_eq!(k.label_value(Label::StatusCode, None), "429");
        assert_eq!(
            k.label_value(Label::ExceptionClass, None),
            "Openai.RateLimitError"
        );
        assert_eq!(k.label_value(Label::Team, None), "None");
        assert_eq!(k.label_value(Label::RequestedModelOriginal, None), "gpt4");
        assert_eq!(k.label_value(Label::OrgAlias, Some("Acme")), "Acme");
        let ok = ClassKey { failed: false, ..k };
        assert_eq!(ok.label_value(Label::StatusCode, None), "200");
    }
}

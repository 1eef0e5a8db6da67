//! A label class: the raw spend-log facts that decide which series a row lands in, and LiteLLM's
//! conventions for turning them into label values (`None` for missing values, the model without
//! the provider prefix, `<Provider>.<Class>` exception classes, ...). Pure functions, no I/O.

use serde::{Deserialize, Serialize};

use crate::catalogue::Label;

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
    /// "True"/"False" with `prometheus_emit_stream_label`, else "".
    #[serde(default)]
    pub stream: String,
    /// Values of the configured custom labels, in configuration order.
    #[serde(default)]
    pub extras: Vec<String>,
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
            Model => return none_if_empty(strip_provider(&self.model, &self.provider)),
            LitellmModelName => &self.model,
            ApiBase => &self.api_base,
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
fn none_if_empty(v: &str) -> String {
    if v.is_empty() {
        "None".to_string()
    } else {
        v.to_string()
    }
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
        assert_eq!(
            k.label_value(Label::LitellmModelName, None),
            "openai/gpt-4o"
        );
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

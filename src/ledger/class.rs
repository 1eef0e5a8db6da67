//! A label class: the raw spend-log facts that decide which series a row lands in, and LiteLLM's
//! conventions for turning them into label values (`None` for missing values, the model without
//! the provider prefix, `<Provider>.<Class>` exception classes, ...). A label shows one dimension
//! as stored (`dimension`'s list says which) or is made here from several (`made`, with what it
//! reads in `made_from`); `read` says which for any key, packed or not. Pure functions, no I/O.

use serde::{Deserialize, Serialize};

use super::dimension::FIELDS;
pub use super::dimension::{ClassKey, Dim};
use super::packed::{KeyView, FAILED};
use crate::catalogue::{HistValue, Label};

/// The raw dimensions the exported families use. The others are left empty when rows are read,
/// so that rows differing only in dimensions nobody exports share one class: the ledger's memory
/// and work follow the exported series, not every combination of a row's 22 dimensions
/// (measured: 1.09 M classes for 10 M rows, where a per-team configuration needs a few thousand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dims(u64);

const _: () = assert!(
    Dims::VALUE.trailing_zeros() as usize + super::values::NV <= 64,
    "every bit of Dims fits in its u64"
);

impl Dims {
    /// Not a label dimension: the custom labels. Bits below it are the dimensions' (`Dim::bit`).
    pub const EXTRAS: u64 = 1 << FIELDS;
    /// Not a label: the first of five bits, one per `HistValue`, for the histograms an exported
    /// family shows. A class keeps (and a row computes) only those: five histograms of 18
    /// counters each were most of a class's memory where no histogram is exported.
    const HIST: u64 = Self::EXTRAS << 1;
    /// Not a label: whether a row failed, kept where an exported family counts only successes or
    /// only failures, or shows a status code.
    pub const OUTCOME: u64 = Self::HIST << HistValue::ALL.len();
    /// Not a label: `cache_hit`, kept where an exported family counts cache hits or misses. With
    /// neither kept, the benchmark's per-team, key and model classes are 291k instead of 361k.
    pub const CACHE: u64 = Self::OUTCOME << 1;

    /// Not a label: the first of twelve bits, one per additive value (`values::additive_index`),
    /// for the values an exported counter shows. A class keeps (and a row carries) only those:
    /// twelve of them inline were 96 bytes of every class where three families show one.
    const VALUE: u64 = Self::CACHE << 4;

    /// Every dimension (nothing merged).
    pub const ALL: Dims = Dims(u64::MAX);

    /// The dimensions that `label_value` reads for `labels` (`Selection::dims` adds what decides
    /// which families count a row): a label's dimension (`Dim::shown_by`), or those it is made of
    /// (`made_from`).
    pub fn of<'a>(labels: impl IntoIterator<Item = &'a Label>) -> Dims {
        let mut d = 0;
        for l in labels {
            d |= match Dim::shown_by(*l) {
                Some(dim) => dim.bit(),
                None => made_from(*l),
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

/// Where a label's value comes from for one class (`read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRead {
    /// Dimension `Dim` as stored ("None" when empty).
    Field(Dim),
    /// A text made for the class from several dimensions or flags, or a custom label.
    Made(String),
    /// The alias of the class's organization ("None" when unknown): LiteLLM does not store it
    /// per request, the organization table names it.
    OrgAlias,
}

/// The dimensions and flags that a label not shown by one dimension is made of (what `made`
/// reads).
fn made_from(label: Label) -> u64 {
    use Label::*;
    match label {
        RequestedModelOriginal => Dim::OriginalModelGroup.bit() | Dim::ModelGroup.bit(),
        StatusCode => Dim::ErrorCode.bit() | Dims::OUTCOME,
        OrgAlias => Dim::OrgId.bit(),
        Model | LitellmModelName => Dim::Model.bit() | Dim::Provider.bit(),
        ApiBase => Dim::ApiBase.bit(),
        ExceptionClass => Dim::ErrorClass.bit() | Dim::ErrorProvider.bit(),
        Extra(_) => Dims::EXTRAS,
        _ => 0,
    }
}

/// A label not shown by one dimension, following LiteLLM's request-path conventions.
fn made(label: Label, k: &impl KeyView) -> LabelRead {
    use Label::*;
    let field = |d: Dim| k.field(d.index());
    let text = |s: &str| LabelRead::Made(or_none(s).to_string());
    match label {
        RequestedModelOriginal if field(Dim::OriginalModelGroup).is_empty() => {
            LabelRead::Field(Dim::ModelGroup)
        }
        RequestedModelOriginal => LabelRead::Field(Dim::OriginalModelGroup),
        StatusCode if k.header() & FAILED != 0 => LabelRead::Field(Dim::ErrorCode),
        StatusCode => text("200"),
        OrgAlias => LabelRead::OrgAlias,
        // LiteLLM gives both the request's `model` kwarg, which has no `<provider>/` prefix
        // (prometheus.py: `litellm_model_name=model`).
        Model | LitellmModelName => text(strip_provider(field(Dim::Model), field(Dim::Provider))),
        // LiteLLM's logging payload writes a deployment without an api_base as "" (never None),
        // and the label shows it as it is.
        ApiBase => LabelRead::Made(field(Dim::ApiBase).to_string()),
        ExceptionClass => text(&exception_class(
            field(Dim::ErrorClass),
            field(Dim::ErrorProvider),
        )),
        // Tag labels are always "true"/"false"; an absent metadata value is "None".
        Extra(i) => {
            let i = usize::from(i);
            text(if i < k.extras_len() { k.extra(i) } else { "" })
        }
        // LiteLLM does not write the HTTP route to the spend log.
        Route => text(""),
        shown => unreachable!("{shown:?} is shown by a dimension"),
    }
}

/// Where the value of `label` comes from for the class `k`, however the key is stored.
pub fn read(label: Label, k: &impl KeyView) -> LabelRead {
    match Dim::shown_by(label) {
        Some(d) => LabelRead::Field(d),
        None => made(label, k),
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
    pub fn label_value(&self, label: Label, org_alias: Option<&str>) -> String {
        match read(label, self) {
            LabelRead::Field(d) => none_if_empty(self.fields()[d.index()]),
            LabelRead::Made(s) => s,
            LabelRead::OrgAlias => none_if_empty(org_alias.unwrap_or("")),
        }
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
        assert!(d.has(Dim::TeamId.bit()) && d.has(Dim::Model.bit()) && d.has(Dim::Provider.bit()));
        assert!(!d.has(Dim::ApiKey.bit()) && !d.has(Dim::TeamAlias.bit()) && !d.has(Dims::EXTRAS));
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

    /// Every label reads only what `Dims::of` keeps for it: a key whose other dimensions and
    /// flags are cleared (as the projection leaves them) gives the same value.
    #[test]
    fn dims_of_covers_everything_a_label_reads() {
        use Label::*;
        // The catalogue's labels, and a second custom label.
        let mut labels = crate::catalogue::every_label();
        labels.push(Extra(1));
        let mut full = ClassKey {
            failed: true,
            cache_hit: "True".into(),
            extras: vec!["x0".into(), "x1".into()],
            ..Default::default()
        };
        for (i, f) in full.fields_mut().into_iter().enumerate() {
            *f = format!("v{i}");
        }
        full.model = "v13/gpt".into();
        for failed in [true, false] {
            let full = ClassKey {
                failed,
                ..full.clone()
            };
            for &l in &labels {
                let d = Dims::of([&l]);
                let mut kept = ClassKey {
                    failed: full.failed && d.has(Dims::OUTCOME),
                    extras: if d.has(Dims::EXTRAS) {
                        full.extras.clone()
                    } else {
                        Vec::new()
                    },
                    ..full.clone()
                };
                for (dim, f) in Dim::ALL.iter().zip(kept.fields_mut()) {
                    if !d.has(dim.bit()) {
                        f.clear();
                    }
                }
                assert_eq!(
                    full.label_value(l, Some("alias")),
                    kept.label_value(l, Some("alias")),
                    "{l:?}"
                );
            }
        }
    }

    /// The state file's fingerprint holds these bits: with the 21 dimensions of the state format
    /// they are what earlier versions wrote, so a state file keeps being reused.
    #[test]
    fn the_bits_are_those_of_the_state_fingerprint() {
        assert_eq!(FIELDS, 21);
        assert_eq!(Dims::EXTRAS, 1 << 21);
        assert_eq!(Dims::hist(HistValue::TotalLatency), 1 << 22);
        assert_eq!(Dims::OUTCOME, 1 << 27);
        assert_eq!(Dims::CACHE, 1 << 28);
        assert_eq!(Dims::value(0), 1 << 32);
        assert_eq!(Dim::Stream.bit(), 1 << 20);
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

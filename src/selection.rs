//! Which families exist and which labels they carry, from LiteLLM's own settings
//! (`prometheus_metrics_config`, `prometheus_exclude_metrics`, `prometheus_exclude_labels`), with
//! LiteLLM's rules: if a metrics config is given only the listed metrics exist, `include_labels`
//! restricts a group's labels, and exclusion always wins. Removing a label sums the series that
//! differed only in it. Validation names the file position and the closest valid name.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use crate::catalogue::{Label, GAUGE_FAMILIES, LEDGER_FAMILIES, NOT_DERIVABLE};

/// One entry of `prometheus_metrics_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsGroup {
    pub group: Option<String>,
    pub metrics: Vec<String>,
    pub include_labels: Option<Vec<String>>,
}

/// LiteLLM metric names this exporter cannot serve but LiteLLM's settings accept; naming one is
/// a warning, not an error.
const OTHER_LITELLM_METRICS: &[&str] = &[
    "litellm_total_tokens",
    "litellm_overhead_with_guardrails_latency_metric",
    "litellm_deployment_rpm_limit",
    "litellm_deployment_tpm_limit",
    "litellm_provider_remaining_budget_metric",
    "litellm_guardrail_requests_total",
    "litellm_guardrail_errors_total",
    "litellm_guardrail_latency_seconds",
    "litellm_mcp_tool_calls_total",
    "litellm_mcp_tool_call_spend_metric",
    "litellm_managed_file_created_total",
    "litellm_managed_file_deleted_total",
    "litellm_managed_file_size_bytes",
    "litellm_managed_batch_created_total",
    "litellm_managed_batch_duration_seconds",
    "litellm_zero_cost_requests_total",
    "litellm_project_model_rate_limit_allowed_metric",
    "litellm_project_model_rate_limit_used_metric",
];

/// The families and labels to export.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Per `LEDGER_FAMILIES` entry: None = not exported, else its labels in LiteLLM's order.
    pub ledger: Vec<Option<Vec<Label>>>,
    /// Per `GAUGE_FAMILIES` entry: None = not exported, else its label names.
    pub gauges: Vec<Option<Vec<&'static str>>>,
    /// `prometheus_exclude_labels`, also applied to opt-in labels (user_email, user_alias).
    pub dropped: BTreeSet<String>,
    /// Names of the custom labels (`Label::Extra(i)`), in configuration order.
    pub extra_names: Vec<String>,
    /// `prometheus_metrics_max_series_per_metric`: series beyond it fold into "other"
    /// (counters, histograms) or are dropped (gauges), as in LiteLLM.
    pub max_series: Option<usize>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            ledger: LEDGER_FAMILIES
                .iter()
                .map(|f| Some(f.labels.to_vec()))
                .collect(),
            gauges: GAUGE_FAMILIES
                .iter()
                .map(|g| Some(g.labels.to_vec()))
                .collect(),
            dropped: BTreeSet::new(),
            extra_names: Vec::new(),
            max_series: None,
        }
    }
}

/// Validation results: errors make the configuration invalid, warnings do not.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

fn all_labels(extra_names: &[String]) -> BTreeSet<&str> {
    let mut s: BTreeSet<&str> = LEDGER_FAMILIES
        .iter()
        .flat_map(|f| f.labels.iter().map(|l| l.name()))
        .collect();
    s.extend(GAUGE_FAMILIES.iter().flat_map(|g| g.labels.iter().copied()));
    s.extend(["user_email", "user_alias", "stream"]);
    s.extend(extra_names.iter().map(String::as_str));
    s
}

fn served_metrics() -> Vec<&'static str> {
    LEDGER_FAMILIES
        .iter()
        .map(|f| f.name)
        .chain(GAUGE_FAMILIES.iter().map(|g| g.name))
        .collect()
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min()
        .map(|(_, c)| c)
}

/// `file:line:column` of the first occurrence of `token` as a YAML scalar in `text`.
pub fn position(file: &str, text: &str, token: &str) -> String {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(token) {
            return format!("{file}:{}:{}", i + 1, col + 1);
        }
    }
    file.to_string()
}

/// Checks the names a configuration uses against the families and labels that exist; what is
/// wrong is recorded with its position in the file, and the closest valid name.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    served: Vec<&'static str>,
    labels: BTreeSet<&'a str>,
    found: Findings,
}

impl Checker<'_> {
    /// Custom label names are their keys with every other character replaced by '_', so two
    /// keys can meet in one name; a sample with a label twice is not valid text.
    fn custom_names_differ(&mut self, extra_names: &[String]) {
        let mut names = BTreeSet::new();
        for n in extra_names {
            if !names.insert(n.as_str()) {
                self.found.errors.push(format!(
                    "{}: two custom labels (custom_prometheus_metadata_labels, custom_prometheus_tags) are both exported as {n:?}",
                    self.file
                ));
            }
        }
    }

    /// Whether `name` is a served family; a LiteLLM metric the database cannot supply is a
    /// warning, anything else an error.
    fn metric(&mut self, name: &str) -> bool {
        if self.served.contains(&name) {
            return true;
        }
        let at = position(self.file, self.text, name);
        if NOT_DERIVABLE.iter().any(|(n, _)| *n == name) || OTHER_LITELLM_METRICS.contains(&name) {
            self.found.warnings.push(format!(
                "{at}: {name} is a LiteLLM metric the database cannot supply; it is ignored"
            ));
        } else {
            let hint = closest(name, self.served.iter().copied())
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            self.found
                .errors
                .push(format!("{at}: unknown metric {name:?}{hint}"));
        }
        false
    }

    /// Whether `name` is a label some family carries (or a custom one).
    fn label(&mut self, name: &str) -> bool {
        if self.labels.contains(name) {
            return true;
        }
        let hint = closest(name, self.labels.iter().copied())
            .map(|c| format!(" (did you mean {c}?)"))
            .unwrap_or_default();
        self.found.errors.push(format!(
            "{}: unknown label {name:?}{hint}",
            position(self.file, self.text, name)
        ));
        false
    }
}

/// What LiteLLM's three settings choose, unknown names left out: the metrics a metrics config
/// lists, the metrics and labels excluded.
struct Choice<'a> {
    /// name -> Some(allowed labels) / None (all labels) for metrics named in the config; None
    /// without a config (every metric).
    listed: Option<HashMap<String, Option<BTreeSet<String>>>>,
    excluded: BTreeSet<&'a str>,
    dropped: BTreeSet<&'a str>,
}

impl<'a> Choice<'a> {
    fn read(
        config: Option<&[MetricsGroup]>,
        exclude_metrics: &'a [String],
        exclude_labels: &'a [String],
        check: &mut Checker,
    ) -> Self {
        let listed = config.map(|groups| {
            let mut map = HashMap::new();
            for g in groups {
                let include = g.include_labels.as_ref().map(|ls| {
                    ls.iter()
                        .filter(|l| check.label(l))
                        .cloned()
                        .collect::<BTreeSet<_>>()
                });
                for m in &g.metrics {
                    if check.metric(m) {
                        map.insert(m.clone(), include.clone());
                    }
                }
            }
            map
        });
        let excluded = exclude_metrics
            .iter()
            .filter(|m| check.metric(m))
            .map(String::as_str)
            .collect();
        let dropped = exclude_labels
            .iter()
            .filter(|l| check.label(l))
            .map(String::as_str)
            .collect();
        Choice {
            listed,
            excluded,
            dropped,
        }
    }

    /// Exclusion always wins; a group's `include_labels` restricts its metrics' labels.
    fn keep(&self, name: &str, label: &str) -> bool {
        if self.dropped.contains(label) {
            return false;
        }
        match self.listed.as_ref().and_then(|m| m.get(name)) {
            Some(Some(include)) => include.contains(label),
            _ => true,
        }
    }

    fn exists(&self, name: &str) -> bool {
        !self.excluded.contains(name) && self.listed.as_ref().is_none_or(|m| m.contains_key(name))
    }

    /// Per `LEDGER_FAMILIES` entry, its kept labels: the catalogue's, `stream` on the proxy
    /// request counter when asked for, then the custom labels.
    fn ledger(&self, stream: bool, extra_names: &[String]) -> Vec<Option<Vec<Label>>> {
        let name_of = |l: Label| -> &str {
            match l {
                Label::Extra(i) => extra_names[usize::from(i)].as_str(),
                other => other.name(),
            }
        };
        LEDGER_FAMILIES
            .iter()
            .map(|fam| {
                self.exists(fam.name).then(|| {
                    let stream_label = (stream
                        && fam.name == "litellm_proxy_total_requests_metric")
                        .then_some(Label::Stream);
                    fam.labels
                        .iter()
                        .copied()
                        .chain(stream_label)
                        .chain((0..extra_names.len()).map(|i| Label::Extra(i as u8)))
                        .filter(|l| self.keep(fam.name, name_of(*l)))
                        .collect()
                })
            })
            .collect()
    }

    /// Per `GAUGE_FAMILIES` entry, its kept labels.
    fn gauges(&self) -> Vec<Option<Vec<&'static str>>> {
        GAUGE_FAMILIES
            .iter()
            .map(|g| {
                self.exists(g.name).then(|| {
                    g.labels
                        .iter()
                        .copied()
                        .filter(|l| self.keep(g.name, l))
                        .collect()
                })
            })
            .collect()
    }
}

impl Selection {
    /// The raw dimensions the exported ledger families use (see `Dims`).
    pub fn dims(&self) -> crate::ledger::class::Dims {
        use crate::catalogue::{CounterValue as V, Kind, Rows};
        use crate::ledger::class::Dims;
        let mut d = Dims::of(self.ledger.iter().flatten().flatten());
        for (f, labels) in LEDGER_FAMILIES.iter().zip(&self.ledger) {
            if labels.is_none() {
                continue;
            }
            if let Kind::Histogram(h) = f.kind {
                d = d.with(Dims::hist(h));
            }
            if f.rows != Rows::All {
                d = d.with(Dims::OUTCOME);
            }
            if let Kind::Counter(V::CacheHits | V::CacheMisses | V::CachedTokens) = f.kind {
                d = d.with(Dims::CACHE);
            }
            if let Kind::Counter(v) = f.kind {
                if let Some(j) = crate::ledger::values::value_shown(v) {
                    d = d.with(Dims::value(j));
                }
            }
        }
        d
    }

    /// Builds the selection; `file` and `text` are used to point at offending entries.
    /// `stream` adds LiteLLM's `stream` label to the proxy request counter; `extra_names` are the
    /// custom labels appended to every ledger family.
    pub fn build(
        config: Option<&[MetricsGroup]>,
        exclude_metrics: &[String],
        exclude_labels: &[String],
        stream: bool,
        extra_names: &[String],
        file: &str,
        text: &str,
    ) -> (Selection, Findings) {
        let mut check = Checker {
            file,
            text,
            served: served_metrics(),
            labels: all_labels(extra_names),
            found: Findings::default(),
        };
        check.custom_names_differ(extra_names);
        let choice = Choice::read(config, exclude_metrics, exclude_labels, &mut check);
        let sel = Selection {
            ledger: choice.ledger(stream, extra_names),
            gauges: choice.gauges(),
            dropped: choice.dropped.iter().map(|d| d.to_string()).collect(),
            extra_names: extra_names.to_vec(),
            max_series: None,
        };
        (sel, check.found)
    }

    /// A gauge's exported labels and their values, for `values` given in the family's full
    /// label order (`all`); None when the family is not exported.
    pub fn gauge_labels<'a>(
        &self,
        family: usize,
        all: &[&'a str],
        values: &[&'a str],
    ) -> Option<(Vec<&'a str>, Vec<&'a str>)> {
        let keep = self.gauges[family].as_ref()?;
        let default = GAUGE_FAMILIES[family].labels;
        let (names, vals): (Vec<&str>, Vec<&str>) = all
            .iter()
            .zip(values)
            // Opt-in labels beyond the family's defaults stay unless excluded by name.
            .filter(|(n, _)| {
                keep.contains(n) || (!default.contains(n) && !self.dropped.contains(**n))
            })
            .map(|(n, v)| (*n, *v))
            .unzip();
        Some((names, vals))
    }

    /// A label's Prometheus name (custom labels are named by the configuration).
    pub fn name(&self, l: Label) -> &str {
        match l {
            Label::Extra(i) => self.extra_names[usize::from(i)].as_str(),
            other => other.name(),
        }
    }

    /// One line per exported family, for `check-config`.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (fam, sel) in LEDGER_FAMILIES.iter().zip(&self.ledger) {
            if let Some(ls) = sel {
                let names: Vec<&str> = ls.iter().map(|l| self.name(*l)).collect();
                out.push(format!("{} [{}]", fam.name, names.join(", ")));
            }
        }
        for (g, sel) in GAUGE_FAMILIES.iter().zip(&self.gauges) {
            if let Some(ls) = sel {
                out.push(format!("{} [{}]", g.name, ls.join(", ")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(cfg: Option<Vec<MetricsGroup>>, em: &[&str], el: &[&str]) -> (Selection, Findings) {
        let em: Vec<String> = em.iter().map(|s| s.to_string()).collect();
        let el: Vec<String> = el.iter().map(|s| s.to_string()).collect();
        Selection::build(
            cfg.as_deref(),
            &em,
            &el,
            false,
            &[],
            "c.yaml",
            "x: litellm_spend_metrc\n",
        )
    }

    fn idx(name: &str) -> usize {
        LEDGER_FAMILIES
            .iter()
            .position(|f| f.name == name)
            .expect(name)
    }

    #[test]
    fn only_listed_metrics_with_their_labels_and_exclusion_wins() {
        let cfg = vec![MetricsGroup {
            group: Some("spend".into()),
            metrics: vec![
                "litellm_spend_metric".into(),
                "litellm_requests_metric".into(),
            ],
            include_labels: Some(vec!["team".into(), "model".into(), "user".into()]),
        }];
        let (s, f) = build(Some(cfg), &["litellm_requests_metric"], &["user"]);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(
            s.ledger[idx("litellm_spend_metric")],
            Some(vec![Label::Model, Label::Team])
        );
        assert_eq!(s.ledger[idx("litellm_requests_metric")], None);
        assert_eq!(s.ledger[idx("litellm_total_tokens_metric")], None);
        assert!(s.gauges.iter().all(Option::is_none));
    }

    #[test]
    fn classes_keep_only_the_exported_histograms() {
        use crate::catalogue::HistValue;
        use crate::ledger::class::Dims;
        let group = |metrics: &[&str]| {
            vec![MetricsGroup {
                group: None,
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                include_labels: None,
            }]
        };
        let (s, _) = build(Some(group(&["litellm_spend_metric"])), &[], &[]);
        assert!(HistValue::ALL.iter().all(|h| !s.dims().has(Dims::hist(*h))));
        let (s, _) = build(
            Some(group(&[
                "litellm_spend_metric",
                "litellm_llm_api_time_to_first_token_metric",
            ])),
            &[],
            &[],
        );
        let kept: Vec<HistValue> = HistValue::ALL
            .into_iter()
            .filter(|h| s.dims().has(Dims::hist(*h)))
            .collect();
        assert_eq!(kept, vec![HistValue::TimeToFirstToken]);
        let all = Selection::default().dims();
        assert!(HistValue::ALL.iter().all(|h| all.has(Dims::hist(*h))));
    }

    #[test]
    fn classes_keep_the_outcome_and_cache_hit_only_where_a_family_tells_them_apart() {
        use crate::ledger::class::Dims;
        let dims = |metrics: &[&str], labels: Option<&[&str]>| {
            let group = vec![MetricsGroup {
                group: None,
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                include_labels: labels.map(|l| l.iter().map(|s| s.to_string()).collect()),
            }];
            let (s, f) = build(Some(group), &[], &[]);
            assert!(f.errors.is_empty(), "{:?}", f.errors);
            let d = s.dims();
            (d.has(Dims::OUTCOME), d.has(Dims::CACHE))
        };
        // Every row counts in the request total: which failed does not matter.
        let total = "litellm_proxy_total_requests_metric";
        assert_eq!(dims(&[total], Some(&["team"])), (false, false));
        // ... unless its status code is a label.
        assert_eq!(
            dims(&[total], Some(&["team", "status_code"])),
            (true, false)
        );
        assert_eq!(dims(&[total, "litellm_spend_metric"], None), (true, false));
        assert_eq!(
            dims(&["litellm_proxy_failed_requests_metric"], None),
            (true, false)
        );
        assert_eq!(dims(&["litellm_cache_hits_metric"], None), (true, true));
        let all = Selection::default().dims();
        assert!(all.has(Dims::OUTCOME) && all.has(Dims::CACHE));
    }

    #[test]
    fn classes_keep_only_the_values_an_exported_counter_shows() {
        use crate::ledger::class::Dims;
        let kept = |metrics: &[&str]| {
            let group = vec![MetricsGroup {
                group: None,
                metrics: metrics.iter().map(|m| m.to_string()).collect(),
                include_labels: None,
            }];
            let d = build(Some(group), &[], &[]).0.dims();
            (0..12)
                .filter(|j| d.has(Dims::value(*j)))
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(&["litellm_spend_metric"]), Vec::<usize>::new());
        assert_eq!(kept(&["litellm_total_tokens_metric"]), vec![0]);
        assert_eq!(kept(&["litellm_cached_tokens_metric"]), vec![0]);
        assert_eq!(
            kept(&[
                "litellm_output_tokens_metric",
                "litellm_output_reasoning_tokens_metric"
            ]),
            vec![2, 6]
        );
        let all = Selection::default().dims();
        assert!((0..12).all(|j| all.has(Dims::value(j))));
    }

    #[test]
    fn custom_labels_meeting_in_one_name_are_an_error() {
        let names = ["tag_a_b".to_string(), "tag_a_b".to_string()];
        let (_, f) = Selection::build(None, &[], &[], false, &names, "c.yaml", "");
        assert_eq!(f.errors.len(), 1, "{:?}", f.errors);
        assert!(f.errors[0].contains("\"tag_a_b\""), "{:?}", f.errors);
    }

    #[test]
    fn typos_get_a_position_and_a_suggestion() {
        let (_, f) = build(None, &["litellm_spend_metrc"], &["teem"]);
        assert_eq!(f.errors.len(), 2, "{:?}", f.errors);
        assert!(f.errors[0].starts_with("c.yaml:1:4: unknown metric"));
        assert!(f.errors[0].contains("did you mean litellm_spend_metric?"));
        assert!(f.errors[1].contains("did you mean team?"));
        let (_, f) = build(None, &["litellm_deployment_state"], &[]);
        assert!(f.errors.is_empty() && f.warnings.len() == 1);
    }
}

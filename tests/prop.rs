//! Bad input, fuzzed in process (no database): property tests of the row -> series mapping
//! (`Ledger::apply_row`, `ClassKey::label_value`) and the exposition writer
//! (`LedgerRenderer::render`). Every label-bearing field gets arbitrary text (quotes,
//! backslashes, newlines, carriage returns, line separators, combining characters, escape-looking
//! text, "other", "None", megabyte strings) and every number arbitrary 64-bit values (negative,
//! zero, huge). The SQL projection turns LiteLLM's floats into these integers; floats themselves
//! (NaN, infinities, subnormals) are fuzzed against PostgreSQL in `tests/it/fuzz.rs`.
//!
//! Properties, checked after every batch of rows:
//! - the text passes a strict checker of the text format 0.0.4 written below from the format's
//!   specification (and, for a sample of cases, `promtool check metrics`);
//! - no value is NaN, no counter is negative, and no counter, bucket, `_count` or `_sum` goes down
//!   between successive renders as more rows and rewritten rows arrive (with a series cap, a series
//!   may only leave by folding into `other`);
//! - histogram buckets are cumulative, end with `+Inf`, and `_count` equals the `+Inf` bucket;
//! - the request counters count each distinct row exactly once, and token totals equal a model of
//!   the accounting rules (largest version of each row).
//!
//! Longer runs: `PROPTEST_CASES=2000 cargo test --test prop` (every property, the promtool one
//! included, runs that many cases; about five minutes on two busy cores).

use std::collections::{BTreeMap, HashMap, HashSet};

use litellm_exporter::catalogue::{Label, LATENCY_BUCKETS, LEDGER_FAMILIES};
use litellm_exporter::ledger::class::ClassKey;
use litellm_exporter::ledger::values::{RowValues, Thresholds, NV};
use litellm_exporter::ledger::{Ledger, RawRow};
use litellm_exporter::render::LedgerRenderer;
use litellm_exporter::selection::Selection;
use proptest::collection::vec;
use proptest::prelude::*;

#[path = "support/promtool.rs"]
mod promtool_support;

// ---------------------------------------------------------------------------------------------
// A strict checker of the Prometheus text format 0.0.4.

/// One parsed sample: its name, its labels in written order, its value and the value's text.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    text: String,
}

/// A parsed exposition: family kinds by family name, samples by (name, sorted labels).
#[derive(Debug, Default)]
struct Exposition {
    kinds: BTreeMap<String, String>,
    /// Sample name -> family name.
    family_of: HashMap<String, String>,
    series: BTreeMap<(String, Vec<(String, String)>), Sample>,
}

fn is_metric_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Go's `strconv.ParseFloat` forms the format allows, plus its special values.
fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !ok {
        return Err(format!("bad number {s:?}"));
    }
    s.parse::<f64>()
        .map_err(|e| format!("bad number {s:?}: {e}"))
}

/// `\\` and `\n` escapes (HELP text); `quote` adds `\"` (label values).
fn unescape(s: &str, quote: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut cs = s.chars();
    while let Some(c) = cs.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            other => return Err(format!("invalid escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let lname = &rest[..eq];
            if !is_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value not quoted")?;
            // The value ends at the first quote not escaped by a backslash.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in rest.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated label value")?;
            let value = unescape(&rest[..end], true)?;
            if labels.iter().any(|(n, _): &(String, String)| n == lname) {
                return Err(format!("duplicate label {lname:?}"));
            }
            labels.push((lname.to_string(), value));
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected one space before the value")?;
    let mut parts = rest.split(' ');
    let vtext = parts.next().unwrap_or("");
    let value = parse_value(vtext)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        text: vtext.to_string(),
    })
}

/// Checks a whole exposition; Err names the first offending line.
fn check(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    if text.is_empty() {
        return Ok(e);
    }
    if !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut current: Option<String> = None;
    let mut closed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut with_samples: HashSet<String> = HashSet::new();
    // Histogram series (family, then labels without le) -> (last le, last bound, last bucket
    // count, _count).
    type Buckets = (String, f64, f64, Option<f64>);
    let mut buckets: BTreeMap<Vec<(String, String)>, Buckets> = BTreeMap::new();
    let mut open = |fam: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(fam) {
            if closed.contains(fam) {
                return Err(format!("family {fam} is split"));
            }
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            *current = Some(fam.to_string());
        }
        Ok(())
    };
    for (n, line) in text[..text.len() - 1].split('\n').enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(c) = line.strip_prefix('#') {
            let mut t = c.trim_start_matches(' ').splitn(3, ' ');
            match (t.next(), t.next(), t.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) {
                        return Err(at("bad name".into()));
                    }
                    open(name, &mut current).map_err(at)?;
                    unescape(help.unwrap_or(""), false).map_err(at)?;
                    if !helped.insert(name.to_string()) {
                        return Err(at("second HELP".into()));
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    open(name, &mut current).map_err(at)?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at("unknown type".into()));
                    }
                    if with_samples.contains(name)
                        || e.kinds.insert(name.into(), kind.into()).is_some()
                    {
                        return Err(at("TYPE after samples or twice".into()));
                    }
                }
                (Some("TYPE"), _, None) => return Err(at("TYPE without a type".into())),
                _ => {} // a comment
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let s = parse_sample(line).map_err(at)?;
        let fam = match current.as_deref() {
            Some(f) if e.kinds.get(f).map(String::as_str) == Some("histogram") => {
                let suffix = s.name.strip_prefix(f).unwrap_or("");
                if !["_bucket", "_count", "_sum"].contains(&suffix) {
                    return Err(at(format!("not a sample of histogram {f}")));
                }
                f.to_string()
            }
            Some(f) if s.name == f => f.to_string(),
            _ => return Err(at("sample outside its family".into())),
        };
        with_samples.insert(fam.clone());
        let kind = e.kinds[&fam].clone();
        if s.value.is_nan() {
            return Err(at("NaN".into()));
        }
        if kind == "counter" && s.value < 0.0 {
            return Err(at("negative counter".into()));
        }
        if kind == "histogram" {
            let le = s
                .labels
                .iter()
                .find(|(n, _)| n == "le")
                .map(|(_, v)| v.clone());
            let mut rest: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .cloned()
                .collect();
            rest.sort();
            let mut key = vec![(fam.clone(), String::new())];
            key.extend(rest);
            let b = buckets
                .entry(key)
                .or_insert((String::new(), f64::NEG_INFINITY, 0.0, None));
            if s.name.ends_with("_bucket") {
                let le = le.ok_or_else(|| at("bucket without le".into()))?;
                let bound = parse_value(&le).map_err(at)?;
                if b.0 == "+Inf" || (!b.0.is_empty() && bound <= parse_value(&b.0).unwrap()) {
                    return Err(at("buckets out of order".into()));
                }
                if s.value < b.2 {
                    return Err(at("buckets not cumulative".into()));
                }
                b.0 = le;
                b.1 = bound;
                b.2 = s.value;
            } else if le.is_some() {
                return Err(at("le on _count or _sum".into()));
            } else if s.name.ends_with("_count") {
                if b.0 != "+Inf" {
                    return Err(at("_count before the +Inf bucket".into()));
                }
                if s.value != b.2 {
                    return Err(at("_count differs from the +Inf bucket".into()));
                }
                b.3 = Some(s.value);
            }
        }
        let mut sorted = s.labels.clone();
        sorted.sort();
        e.family_of.insert(s.name.clone(), fam);
        if e.series.insert((s.name.clone(), sorted), s).is_some() {
            return Err(at("duplicate series".into()));
        }
    }
    for (k, b) in &buckets {
        if b.0 != "+Inf" || b.3.is_none() {
            return Err(format!(
                "histogram series {k:?} lacks its +Inf bucket or _count"
            ));
        }
    }
    Ok(e)
}

/// `promtool check metrics` must parse the text (its naming lint is not about escaping, and
/// LiteLLM's own names are kept as they are, so only parse errors count).
fn promtool(text: &str) -> Result<(), String> {
    let report = promtool_support::check_metrics(text);
    if report.contains("error while linting") || report.contains("parse") {
        return Err(report);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// Characters that break naive writers, plus any other character but NUL (PostgreSQL text
/// cannot hold NUL, so no row ever carries one).
fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::sample::select(vec![
            '"', '\\', '\n', '\r', '\u{2028}', '\u{2029}', '{', '}', '=', ',', '#', ' ', '\t',
            '\u{0301}', '\u{200D}', '\u{FEFF}', '\u{FFFD}', '\u{10FFFF}', 'n', 'e', '+', '.',
        ]),
        2 => any::<char>().prop_filter("NUL-free", |c| *c != '\0'),
        2 => prop::char::range('a', 'c'),
    ]
}

fn label_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "", "None", "other", "True", "False", "\\n", "\\\"", "\\u0000", "\\x41", "\\",
            "\"\"", "a\\", "e\u{0301}", "le", "+Inf", "NaN", "}", "{a=\"b\"}",
        ])
        .prop_map(str::to_string),
        3 => vec(nasty_char(), 0..16).prop_map(String::from_iter),
        2 => "[ab]{1,2}",
    ]
}

/// Any 64-bit value, weighted towards the edges and towards realistic sizes.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => 0..1_000_000i64,
        1 => prop::sample::select(vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1, 1_000_000_000_000_000]),
        1 => any::<i64>(),
    ]
}

fn class_key(extras: usize) -> impl Strategy<Value = ClassKey> {
    (
        vec(label_text(), 20),
        any::<bool>(),
        prop_oneof![
            Just("True".to_string()),
            Just("False".to_string()),
            label_text()
        ],
        label_text(),
        vec(label_text(), extras),
    )
        .prop_map(|(t, failed, cache_hit, stream, extras)| ClassKey {
            api_key: t[0].clone(),
            key_alias: t[1].clone(),
            team_id: t[2].clone(),
            team_alias: t[3].clone(),
            user_id: t[4].clone(),
            user_email: t[5].clone(),
            end_user: t[6].clone(),
            org_id: t[7].clone(),
            model: t[8].clone(),
            model_group: t[9].clone(),
            original_model_group: t[10].clone(),
            model_id: t[11].clone(),
            api_base: t[12].clone(),
            provider: t[13].clone(),
            client_ip: t[14].clone(),
            user_agent: t[15].clone(),
            service_tier: t[16].clone(),
            failed,
            error_code: t[17].clone(),
            error_class: t[18].clone(),
            error_provider: t[19].clone(),
            cache_hit,
            stream,
            extras,
        })
}

fn row_values() -> impl Strategy<Value = RowValues> {
    (
        number(),
        vec(number(), NV),
        number(),
        vec(prop::option::of(number()), 5),
    )
        .prop_map(|(spend, v, bad, hist)| RowValues {
            spend_pico: spend,
            v: v.try_into().expect("NV values"),
            bad_numbers: bad,
            hist: hist.try_into().expect("5 histograms"),
        })
}

/// Strictly increasing, finite, non-negative bounds (what the configuration accepts),
/// subnormal and huge ones included.
fn bounds() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        Just(LATENCY_BUCKETS.to_vec()),
        vec(
            prop_oneof![
                0.0..1e4f64,
                Just(f64::MIN_POSITIVE / 4.0),
                Just(5e-324),
                Just(1e300),
                Just(0.0)
            ],
            1..6
        )
        .prop_map(|mut b| {
            b.sort_by(f64::total_cmp);
            b.dedup();
            b
        }),
    ]
}

/// One row version: (request id, startTime, xmin, class index into the case's key pool, values).
type RowSpec = (u8, i64, u32, usize, RowValues);

fn row_spec() -> impl Strategy<Value = RowSpec> {
    (0u8..10, 0i64..3, 1u32..4, 0usize..6, row_values())
}

const EXTRA_NAMES: [&str; 2] = ["metadata_project", "tag_premium"];

/// Every family with every label, LiteLLM's stream label and two custom labels, so that every
/// field of a class reaches the text.
fn selection(cap: Option<usize>) -> Selection {
    let names: Vec<String> = EXTRA_NAMES.iter().map(|s| s.to_string()).collect();
    let (mut sel, findings) = Selection::build(None, &[], &[], true, &names, "t.yaml", "");
    assert!(findings.errors.is_empty(), "{:?}", findings.errors);
    sel.max_series = cap;
    sel
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn is_counter_like(e: &Exposition, name: &str) -> bool {
    e.family_of
        .get(name)
        .and_then(|f| e.kinds.get(f))
        .is_some_and(|k| k == "counter" || k == "histogram")
}

/// No series goes down from one render to the next; a series may disappear only by folding
/// into its family's `other` series when a cap is set.
fn never_decreases(prev: &Exposition, next: &Exposition, capped: bool) -> Result<(), String> {
    for ((name, labels), s) in &prev.series {
        if !is_counter_like(prev, name) {
            continue;
        }
        match next.series.get(&(name.clone(), labels.clone())) {
            Some(n) if n.value < s.value => {
                return Err(format!(
                    "{name}{labels:?} went down from {} to {}",
                    s.text, n.text
                ))
            }
            Some(_) => {}
            None if capped => {
                let other = next
                    .series
                    .keys()
                    .any(|(n, ls)| n == name && ls.iter().all(|(k, v)| k == "le" || v == "other"));
                if !other {
                    return Err(format!("{name}{labels:?} vanished without an other series"));
                }
            }
            None => return Err(format!("{name}{labels:?} vanished")),
        }
    }
    Ok(())
}

fn total(e: &Exposition, name: &str) -> u128 {
    e.series
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(_, s)| s.text.parse::<u128>().expect("an integer counter"))
        .sum()
}

/// The accounting rules, stated independently: per row, its first version decides the class and
/// counts one request; its additive values count as the largest value of any version whose xmin
/// differs from the version applied just before it.
#[derive(Default)]
struct Model {
    rows: HashMap<(u8, i64), (u32, bool, [i64; NV])>,
}

impl Model {
    fn apply(&mut self, id: u8, start: i64, xmin: u32, failed: bool, v: &[i64; NV]) {
        let clamp = v.map(|x| x.max(0));
        match self.rows.get_mut(&(id, start)) {
            None => {
                self.rows.insert((id, start), (xmin, failed, clamp));
            }
            Some(r) if r.0 != xmin => {
                r.0 = xmin;
                for (a, b) in r.2.iter_mut().zip(clamp) {
                    *a = (*a).max(b);
                }
            }
            Some(_) => {}
        }
    }

    fn tokens(&self) -> u128 {
        self.rows
            .values()
            .filter(|r| !r.1)
            .map(|r| r.2[0] as u128)
            .sum()
    }
}

fn run_case(
    keys: &[ClassKey],
    batches: &[Vec<RowSpec>],
    b: &[f64],
    cap: Option<usize>,
    promtool_too: bool,
) -> Result<(), TestCaseError> {
    let t = Thresholds::new(b, b);
    let sel = selection(cap);
    let mut ledger = Ledger::default();
    let mut renderer = LedgerRenderer::default();
    let aliases: HashMap<String, String> = keys
        .iter()
        .take(1)
        .map(|k| (k.org_id.clone(), format!("{}\"alias\n", k.team_alias)))
        .collect();
    let mut model = Model::default();
    let mut prev: Option<Exposition> = None;
    for batch in batches {
        for (id, start, xmin, k, values) in batch {
            let key = keys[k % keys.len()].clone();
            let failed = key.failed;
            let first_failed = model.rows.get(&(*id, *start)).map_or(failed, |r| r.1);
            model.apply(*id, *start, *xmin, first_failed, &values.v);
            ledger.apply_row(
                RawRow {
                    request_id: format!("r{id}"),
                    start_ms: *start,
                    xmin: *xmin,
                    key,
                    values: values.clone(),
                },
                true,
                &t,
            );
        }
        let (text, _) = renderer.render(&ledger, &aliases, &t, &sel);
        let e = check(&text).map_err(|m| TestCaseError::fail(format!("{m}\n{text}")))?;
        if promtool_too {
            promtool(&text).map_err(|m| TestCaseError::fail(format!("{m}\n{text}")))?;
        }
        for name in [
            "litellm_proxy_total_requests_metric_total",
            "litellm_deployment_total_requests_total",
        ] {
            prop_assert_eq!(total(&e, name), model.rows.len() as u128, "{}", name);
        }
        let tokens = model.tokens();
        if tokens < u128::from(u64::MAX) {
            prop_assert_eq!(total(&e, "litellm_total_tokens_metric_total"), tokens);
        }
        if let Some(cap) = cap {
            for fam in LEDGER_FAMILIES {
                let name = format!("{}_total", fam.name);
                let n = e.series.keys().filter(|(n, _)| *n == name).count();
                prop_assert!(
                    n <= cap + 1,
                    "{} has {} series over a cap of {}",
                    name,
                    n,
                    cap
                );
            }
        }
        if let Some(p) = &prev {
            never_decreases(p, &e, cap.is_some()).map_err(TestCaseError::fail)?;
        }
        prev = Some(e);
    }
    Ok(())
}

proptest! {
    // 256 cases by default; PROPTEST_CASES (read by proptest) overrides every property's count.
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn renders_parse_and_counters_never_decrease(
        keys in vec(class_key(EXTRA_NAMES.len()), 1..6),
        batches in vec(vec(row_spec(), 0..8), 1..5),
        b in bounds(),
        cap in prop::option::of(1usize..4),
    ) {
        run_case(&keys, &batches, &b, cap, false)?;
    }
}

proptest! {
    // promtool is a process per render: fewer cases by default, the same generators.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn promtool_parses_what_is_rendered(
        keys in vec(class_key(EXTRA_NAMES.len()), 1..4),
        batches in vec(vec(row_spec(), 1..6), 1..3),
        b in bounds(),
        cap in prop::option::of(1usize..3),
    ) {
        run_case(&keys, &batches, &b, cap, true)?;
    }
}

/// Megabyte label values: LiteLLM's sanitising and the escaping stay linear and correct. A plain
/// loop rather than a property, so that PROPTEST_CASES (which proptest applies to every property)
/// does not multiply its cost.
#[test]
fn megabyte_label_values() {
    let chars = ['"', '\\', '\n', '\r', '\u{2028}', '\u{0301}'];
    for (i, c) in chars.into_iter().enumerate() {
        let big: String = std::iter::repeat_n(format!("{c}\"\\\n\r"), 1 << 18).collect();
        let mut key = ClassKey {
            extras: vec!["x".into(); EXTRA_NAMES.len()],
            ..Default::default()
        };
        match i % 4 {
            0 => key.end_user = big,
            1 => key.team_alias = big,
            2 => key.user_agent = big,
            _ => key.extras[0] = big,
        }
        let row = (1, 0, 1, 0, RowValues::default());
        run_case(&[key], &[vec![row]], LATENCY_BUCKETS, None, false)
            .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// The checker rejects what it must: otherwise the properties above could not fail.

#[test]
fn checker_rejects_broken_text() {
    let good = "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 1\n";
    assert!(check(good).is_ok(), "{:?}", check(good).err());
    let bad = [
        // An unescaped newline in a label value.
        "# TYPE a_total counter\na_total{x=\"1\n2\"} 1\n",
        // An unescaped quote, an unknown escape, a lone trailing backslash.
        "# TYPE a_total counter\na_total{x=\"a\"b\"} 1\n",
        "# TYPE a_total counter\na_total{x=\"\\x41\"} 1\n",
        "# TYPE a_total counter\na_total{x=\"a\\\"} 1\n",
        // Duplicate label, duplicate series, bad label name, NaN and negative counters.
        "# TYPE a_total counter\na_total{x=\"1\",x=\"2\"} 1\n",
        "# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n",
        "# TYPE a_total counter\na_total{0x=\"1\"} 1\n",
        "# TYPE a_total counter\na_total NaN\n",
        "# TYPE a_total counter\na_total -1\n",
        // A sample of no declared family, a split family, no final newline.
        "b 1\n",
        "# TYPE a_total counter\na_total 1\n# TYPE b_total counter\nb_total 1\n# TYPE a_total counter\n",
        "# TYPE a_total counter\na_total 1",
        // Histograms: not cumulative, _count unlike +Inf, no +Inf, buckets out of order.
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 3\nh_sum 0\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 0\n",
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0\n",
    ];
    for text in bad {
        assert!(check(text).is_err(), "accepted: {text:?}");
    }
    // promtool, too, rejects an unescaped newline, so the promtool property can fail.
    assert!(
        promtool(bad[0]).is_err(),
        "promtool accepted an unescaped newline"
    );
    assert!(promtool(good).is_ok());
}

#[test]
fn properties_catch_a_decrease_and_a_vanished_series() {
    let one = check("# TYPE a_total counter\na_total{x=\"1\"} 2\n").expect("valid");
    let less = check("# TYPE a_total counter\na_total{x=\"1\"} 1\n").expect("valid");
    let gone = check("# TYPE a_total counter\na_total{x=\"2\"} 5\n").expect("valid");
    let folded = check("# TYPE a_total counter\na_total{x=\"other\"} 5\n").expect("valid");
    assert!(never_decreases(&one, &less, false).is_err());
    assert!(never_decreases(&one, &gone, false).is_err());
    assert!(never_decreases(&one, &gone, true).is_err());
    assert!(never_decreases(&one, &folded, true).is_ok());
}

/// A label value that is "other" must not collide with the overflow series of a capped family.
#[test]
fn a_real_other_value_does_not_duplicate_the_overflow_series() {
    let mut sel = selection(Some(1));
    let team = LEDGER_FAMILIES
        .iter()
        .position(|f| f.name == "litellm_proxy_total_requests_metric")
        .expect("family");
    for (i, l) in sel.ledger.iter_mut().enumerate() {
        *l = (i == team).then(|| vec![Label::Team]);
    }
    let t = Thresholds::new(LATENCY_BUCKETS, LATENCY_BUCKETS);
    let mut ledger = Ledger::default();
    let mut renderer = LedgerRenderer::default();
    let mut prev = None;
    // "other" sorts before "z": with a cap of 1 it is the kept series when "z" folds.
    for (i, team) in ["other", "z", "a", "other", "b"].iter().enumerate() {
        let key = ClassKey {
            team_id: team.to_string(),
            ..Default::default()
        };
        let row = RawRow {
            request_id: format!("r{i}"),
            start_ms: 0,
            xmin: 1,
            key,
            values: RowValues::default(),
        };
        ledger.apply_row(row, true, &t);
        let (text, _) = renderer.render(&ledger, &HashMap::new(), &t, &sel);
        let e = check(&text).unwrap_or_else(|m| panic!("{m}\n{text}"));
        assert_eq!(
            total(&e, "litellm_proxy_total_requests_metric_total"),
            i as u128 + 1
        );
        if let Some(p) = &prev {
            never_decreases(p, &e, true).unwrap_or_else(|m| panic!("{m}\n{text}"));
        }
        prev = Some(e);
    }
}

// Keep the label list honest: every ClassKey text field above reaches some family.
#[test]
fn every_label_is_exported_by_the_fuzzed_selection() {
    let sel = selection(None);
    let labels: HashSet<Label> = sel.ledger.iter().flatten().flatten().copied().collect();
    for l in [
        Label::EndUser,
        Label::UserAgent,
        Label::Stream,
        Label::Extra(0),
        Label::Extra(1),
        Label::OrgAlias,
        Label::ExceptionClass,
        Label::ServiceTier,
        Label::ApiBase,
    ] {
        assert!(labels.contains(&l), "{l:?} is not exported");
    }
}

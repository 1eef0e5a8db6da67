//! The baseline for the scrape benchmark (scripts/bench): what a `/metrics` handler costs when it
//! renders its series with the `prometheus` crate's registry and text encoder on every request,
//! as most Rust exporters do. It reads an exposition the exporter served (so that the series,
//! labels and values are the same), loads it into a registry once, then times gather + encode.
//!
//! Usage: cargo bench --bench encoder -- EXPOSITION_FILE [ITERATIONS]
//! Prints one line: `series=N bytes=B encoder_ms_per_request=X`.

use std::collections::HashMap;
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, Registry, TextEncoder};

/// Families parsed from the text, handed out on every collect like a real collector does.
struct Loaded {
    descs: Vec<Desc>,
    families: Vec<MetricFamily>,
}

impl Collector for Loaded {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.families.clone()
    }
}

/// `name{a="x",b="y"} value` into its parts, unescaping label values.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let (head, value) = line.rsplit_once(' ').expect("sample line has a value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().expect("numeric value"),
    };
    let Some(open) = head.find('{') else {
        return (head.to_string(), Vec::new(), value);
    };
    let name = head[..open].to_string();
    let mut labels = Vec::new();
    let mut chars = head[open + 1..].chars().peekable();
    loop {
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() || key == "}" {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label value starts with a quote");
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => val.push('\n'),
                    Some(o) => val.push(o),
                    None => break,
                },
                '"' => break,
                o => val.push(o),
            }
        }
        labels.push((key, val));
        match chars.next() {
            Some(',') => continue,
            _ => break,
        }
    }
    (name, labels, value)
}

fn pairs(labels: &[(String, String)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.clone());
            p.set_value(v.clone());
            p
        })
        .collect()
}

/// One histogram series being assembled: its labels (without `le`), count and sum, buckets.
type HistSeries = (Vec<(String, String)>, Histogram, Vec<Bucket>);

fn load(text: &str) -> (Loaded, usize) {
    let mut types: HashMap<String, (String, String)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut simple: HashMap<String, Vec<Metric>> = HashMap::new();
    // Histogram series keyed by family and label block without `le`.
    let mut hists: HashMap<String, Vec<HistSeries>> = HashMap::new();
    let mut hist_index: HashMap<(String, String), usize> = HashMap::new();
    let mut help: HashMap<String, String> = HashMap::new();
    let mut series = 0usize;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(n.to_string(), h.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').expect("TYPE line");
            types.insert(n.to_string(), (t.to_string(), n.to_string()));
            order.push(n.to_string());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        series += 1;
        let (name, labels, value) = parse_sample(line);
        if types.get(&name).is_some_and(|(t, _)| t != "histogram") {
            let mut m = Metric::default();
            m.set_label(pairs(&labels));
            if types[&name].0 == "counter" {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            } else {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
            simple.entry(name).or_default().push(m);
            continue;
        }
        let (family, part) = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|f| (f.to_string(), *s)))
            .expect("histogram sample");
        let le = labels
            .iter()
            .find(|(k, _)| k == "le")
            .map(|(_, v)| v.clone());
        let rest: Vec<(String, String)> = labels.into_iter().filter(|(k, _)| k != "le").collect();
        let key = (family.clone(), format!("{rest:?}"));
        let list = hists.entry(family).or_default();
        let i = *hist_index.entry(key).or_insert_with(|| {
            list.push((rest, Histogram::default(), Vec::new()));
            list.len() - 1
        });
        let (_, h, buckets) = &mut list[i];
        match part {
            "_bucket" => {
                let le = le.expect("bucket has le");
                if le != "+Inf" {
                    let mut b = Bucket::default();
                    b.set_upper_bound(le.parse().expect("le"));
                    b.set_cumulative_count(value as u64);
                    buckets.push(b);
                }
            }
            "_count" => h.set_sample_count(value as u64),
            _ => h.set_sample_sum(value),
        }
    }
    let mut descs = Vec::new();
    let mut families = Vec::new();
    for name in order {
        let (kind, _) = &types[&name];
        let mut mf = MetricFamily::default();
        mf.set_name(name.clone());
        let h = help.get(&name).cloned().unwrap_or_else(|| name.clone());
        mf.set_help(h.clone());
        let metrics: Vec<Metric> = match kind.as_str() {
            "histogram" => {
                mf.set_field_type(MetricType::HISTOGRAM);
                hists
                    .remove(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(labels, mut h, buckets)| {
                        h.set_bucket(buckets);
                        let mut m = Metric::default();
                        m.set_label(pairs(&labels));
                        m.set_histogram(h);
                        m
                    })
                    .collect()
            }
            "counter" => {
                mf.set_field_type(MetricType::COUNTER);
                simple.remove(&name).unwrap_or_default()
            }
            _ => {
                mf.set_field_type(MetricType::GAUGE);
                simple.remove(&name).unwrap_or_default()
            }
        };
        if metrics.is_empty() {
            continue;
        }
        let label_names: Vec<String> = metrics[0]
            .get_label()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        descs.push(Desc::new(name, h, label_names, HashMap::new()).expect("valid descriptor"));
        mf.set_metric(metrics);
        families.push(mf);
    }
    (Loaded { descs, families }, series)
}

/// Loads a small exposition with counters, gauges and a histogram, encodes it, and checks that
/// every sample comes back (the loader and the encoder agree on the series).
fn smoke_check() {
    let mut text = String::from("# HELP c_total a counter\n# TYPE c_total counter\n");
    for i in 0..50 {
        text.push_str(&format!("c_total{{team=\"t{i}\",q=\"a\\\"b\"}} {i}\n"));
    }
    text.push_str("# HELP g a gauge\n# TYPE g gauge\ng 1.5\n");
    text.push_str("# HELP h a histogram\n# TYPE h histogram\n");
    for team in ["x", "y"] {
        text.push_str(&format!("h_bucket{{team=\"{team}\",le=\"0.5\"}} 1\n"));
        text.push_str(&format!("h_bucket{{team=\"{team}\",le=\"+Inf\"}} 2\n"));
        text.push_str(&format!(
            "h_count{{team=\"{team}\"}} 2\nh_sum{{team=\"{team}\"}} 0.9\n"
        ));
    }
    let (loaded, series) = load(&text);
    let registry = Registry::new();
    registry.register(Box::new(loaded)).expect("register");
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("encode");
    let out = String::from_utf8(buf).expect("utf-8");
    let samples = out.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(series, 59, "parsed samples");
    assert_eq!(samples, series, "encoded samples:\n{out}");
    assert!(out.contains("q=\"a\\\"b\""), "escapes survive:\n{out}");
    println!("encoder smoke check: {samples} samples round-tripped");
}

fn main() {
    // `cargo bench` passes `--bench`; the arguments that matter are the file and a count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(file) = args.first() else {
        // `cargo test --all-targets` runs this without arguments: check the loader instead.
        smoke_check();
        return;
    };
    let iterations: u32 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let text = std::fs::read_to_string(file).expect("read the exposition file");
    let (loaded, series) = load(&text);
    let registry = Registry::new();
    registry
        .register(Box::new(loaded))
        .expect("register the loaded families");
    let encoder = TextEncoder::new();
    let mut bytes = 0usize;
    // One warm-up request, then the timed ones.
    for _ in 0..1 {
        let mut buf = Vec::new();
        encoder
            .encode(&registry.gather(), &mut buf)
            .expect("encode");
        bytes = buf.len();
    }
    let t = Instant::now();
    for _ in 0..iterations {
        let mut buf = Vec::with_capacity(bytes);
        encoder
            .encode(&registry.gather(), &mut buf)
            .expect("encode");
        std::hint::black_box(&buf);
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / f64::from(iterations);
    println!("series={series} bytes={bytes} encoder_ms_per_request={ms:.3}");
}

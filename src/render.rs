//! The Prometheus text exposition (format 0.0.4) of the ledger's families: label escaping,
//! number formatting, and the mapping from label classes to series, cached between refreshes so
//! that a refresh costs one pass over the classes, not one lookup per row.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use ahash::RandomState;

use crate::catalogue::{CounterValue, Kind, Label, LedgerFamily, Rows, LEDGER_FAMILIES};
use crate::ledger::labels::LabelValue;
use crate::ledger::packed::Strings;
use crate::ledger::values::{value_shown, ClassAcc, HistAcc, Thresholds};
use crate::ledger::{ClassEntry, Ledger};
use crate::selection::Selection;

/// LiteLLM's label sanitising (newline to space, CR and Unicode line/paragraph separators
/// removed) followed by the exposition format's escaping of backslash, quote and newline.
pub fn push_label_value(out: &mut String, v: &str) {
    // Almost every value needs nothing: copy it whole. 0xE2 leads U+2028 and U+2029 in UTF-8.
    if !v
        .bytes()
        .any(|b| matches!(b, b'\n' | b'\r' | b'\\' | b'"' | 0xE2))
    {
        out.push_str(v);
        return;
    }
    for ch in v.chars() {
        match ch {
            '\n' => out.push(' '),
            '\r' | '\u{2028}' | '\u{2029}' => {}
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `{a="x",b="y"}`, or the empty string for no labels.
pub fn label_block(names: &[&str], values: &[&str]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(16 * names.len());
    out.push('{');
    for (i, (n, v)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(n);
        out.push_str("=\"");
        push_label_value(&mut out, v);
        out.push('"');
    }
    out.push('}');
    out
}

/// A sample value: `+Inf`, `-Inf`, `NaN`, or the shortest decimal that reads back exactly.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Bucket bounds the way LiteLLM's Python client prints them (`1.0`, `0.005`).
pub fn fmt_le(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{b:.1}")
    } else {
        format!("{b}")
    }
}

pub fn push_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(
        out,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Token-detail and cache families appear only once they have counted something, as in LiteLLM,
/// which increments them only for positive values.
fn only_when_positive(v: CounterValue) -> bool {
    !matches!(
        v,
        CounterValue::Requests
            | CounterValue::Spend
            | CounterValue::TotalTokens
            | CounterValue::PromptTokens
            | CounterValue::CompletionTokens
    )
}

/// Whether a counter series is served: once a row counts in it, and for the families that appear
/// only when positive (`only_when_positive`), once its value is.
pub fn counter_served(v: CounterValue, rows: u64, units: u128) -> bool {
    rows > 0 && !(units == 0 && only_when_positive(v))
}

/// Whether a histogram series is served: once it observed something.
pub fn histogram_served(acc: &HistAcc) -> bool {
    acc.count > 0
}

fn counts_class(f: &LedgerFamily, k: &ClassEntry) -> bool {
    let rows_ok = match f.rows {
        Rows::All => true,
        Rows::Success => !k.failed(),
        Rows::Failure => k.failed(),
    };
    rows_ok
        && match f.kind {
            Kind::Counter(CounterValue::CacheHits | CounterValue::CachedTokens) => k.is_cache_hit(),
            Kind::Counter(CounterValue::CacheMisses) => k.is_cache_miss(),
            _ => true,
        }
}

/// A counter's contribution from one class, in the family's integer unit.
pub fn counter_units(v: CounterValue, acc: &ClassAcc) -> u128 {
    match v {
        CounterValue::Requests | CounterValue::CacheHits | CounterValue::CacheMisses => {
            u128::from(acc.rows)
        }
        CounterValue::Spend => acc.add.spend_pico,
        other => u128::from(acc.add.get(value_shown(other).unwrap_or(0))),
    }
}

/// Integer units to the exposed value. Division by a constant keeps the mapping monotonic, so
/// a counter whose integer grows never shows a smaller float.
pub fn counter_value(v: CounterValue, units: u128) -> String {
    match v {
        CounterValue::Spend => fmt_value(units as f64 / 1e12),
        CounterValue::VideoSeconds => fmt_value(units as f64 / 1e6),
        _ => units.to_string(),
    }
}

/// Which series to emit and which to fold, for LiteLLM's `prometheus_metrics_max_series_per_metric`:
/// the `cap` live series whose label blocks sort first are kept, the rest are summed into one
/// series whose labels are all "other". Choosing by label text, not by arrival, gives the same
/// choice in every exporter and after every restart; a new series can displace a kept one (which
/// then folds) but never shrink one, and the folded set only grows, so no counter decreases.
pub fn split(
    blocks: &(impl BlockList + ?Sized),
    live: &[bool],
    cap: Option<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let live_idx: Vec<usize> = (0..blocks.len()).filter(|i| live[*i]).collect();
    match cap {
        Some(cap) if live_idx.len() > cap => {
            // Each text written out once for the sort (blocks are distinct: no ties).
            let mut by_text: Vec<(String, usize)> =
                live_idx.into_iter().map(|i| (blocks.text(i), i)).collect();
            by_text.sort_unstable();
            let mut kept: Vec<usize> = by_text.into_iter().map(|(_, i)| i).collect();
            let mut folded = kept.split_off(cap);
            kept.sort_unstable();
            folded.sort_unstable();
            (kept, folded)
        }
        _ => (live_idx, Vec::new()),
    }
}

/// The label block of family `f`'s overflow series, every label "other" (LiteLLM's convention);
/// empty when the family is not exported.
pub fn other_block(sel: &Selection, f: usize) -> String {
    sel.ledger[f]
        .as_deref()
        .map(|ls| {
            let names: Vec<&str> = ls.iter().map(|l| sel.name(*l)).collect();
            label_block(&names, &vec!["other"; names.len()])
        })
        .unwrap_or_default()
}

/// Which of a ledger family's live series are written and which fold into its overflow series
/// (label block `other`), for the live render and the backfill alike: the series cap (`split`),
/// and a kept series whose labels are all literally "other" (say, a team named "other"). That one
/// has the overflow series' identity: once anything folds, it joins the fold rather than be
/// written twice with the same labels. Its value continues in the overflow series, which only
/// adds to it, so it never decreases.
pub fn fold(
    blocks: &(impl BlockList + ?Sized),
    live: &[bool],
    cap: Option<usize>,
    other: &str,
) -> (Vec<usize>, Vec<usize>) {
    let (mut kept, mut folded) = split(blocks, live, cap);
    if !folded.is_empty() {
        if let Some(p) = kept.iter().position(|i| blocks.text(*i) == other) {
            folded.push(kept.remove(p));
        }
    }
    (kept, folded)
}

/// `name{labels} value\n`.
fn push_sample(out: &mut String, name: &str, block: &str, value: &str) {
    out.push_str(name);
    out.push_str(block);
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// The lines of one histogram series (each bucket, `_count`, `_sum`), written with plain string
/// pushes: a 14-label histogram is 22 lines per series, the bulk of a default exposition. The
/// same writer serves the backfill, which appends a timestamp to every line.
pub struct HistLines {
    bucket: String,
    count: String,
    sum: String,
    les: Vec<String>,
}

impl HistLines {
    pub fn new(name: &str, bounds: &[f64]) -> Self {
        HistLines {
            bucket: format!("{name}_bucket"),
            count: format!("{name}_count"),
            sum: format!("{name}_sum"),
            les: bounds
                .iter()
                .map(|b| format!("le=\"{}\"}} ", fmt_le(*b)))
                .chain(["le=\"+Inf\"} ".to_string()])
                .collect(),
        }
    }

    /// Lines per series: the buckets, `+Inf`, `_count` and `_sum`.
    pub fn count(&self) -> u64 {
        self.les.len() as u64 + 2
    }

    /// Appends the series with label block `block` (`{...}` or empty); `suffix` goes after each
    /// value (a timestamp in the backfill, or nothing).
    pub fn push(&self, out: &mut String, block: &str, acc: &HistAcc, suffix: &str) {
        // `{a="x",` so that `le` joins the series' own labels.
        let open = block.strip_suffix('}').unwrap_or("{");
        let sep = if block.is_empty() { "" } else { "," };
        let mut num = itoa::Buffer::new();
        let last = self.les.len() - 1;
        for (i, le) in self.les.iter().enumerate() {
            let n = if i == last {
                acc.count
            } else {
                acc.buckets.get(i).copied().unwrap_or(0)
            };
            out.push_str(&self.bucket);
            out.push_str(open);
            out.push_str(sep);
            out.push_str(le);
            out.push_str(num.format(n));
            out.push_str(suffix);
            out.push('\n');
        }
        out.push_str(&self.count);
        out.push_str(block);
        out.push(' ');
        out.push_str(num.format(acc.count));
        out.push_str(suffix);
        out.push('\n');
        out.push_str(&self.sum);
        out.push_str(block);
        out.push(' ');
        out.push_str(&fmt_value(acc.sum as f64 / 1e6));
        out.push_str(suffix);
        out.push('\n');
    }
}

/// What a render wrote of one family, for the self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyCount {
    pub family: &'static str,
    /// Series written, the "other" series included.
    pub series: usize,
    /// Series folded into "other" by the series cap (gauges: dropped).
    pub folded: usize,
    /// Rows counted in the folded series (0 for gauges: rows are a ledger notion).
    pub folded_rows: u64,
}

impl FamilyCount {
    /// A family that wrote nothing.
    pub fn empty(family: &'static str) -> Self {
        FamilyCount {
            family,
            series: 0,
            folded: 0,
            folded_rows: 0,
        }
    }
}
/// Per family, in catalogue order.
pub type FamilyCounts = Vec<FamilyCount>;

/// Label blocks (`{a="x"}`) by series id.
pub trait BlockList {
    fn len(&self) -> usize;

    /// Appends block `i`'s text to `out`.
    fn write(&self, i: usize, out: &mut String);

    fn text(&self, i: usize) -> String {
        let mut s = String::new();
        self.write(i, &mut s);
        s
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BlockList for Vec<String> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn write(&self, i: usize, out: &mut String) {
        out.push_str(&self[i]);
    }
}

/// A label set's blocks, each as the indexes of its (escaped) label values, every distinct value
/// stored once; the text is written out while a family is rendered. A block's text repeats what
/// the exposition already holds: stored as text (a `String` each, later packed end to end) the
/// blocks were 76 MB of a 1M-row benchmark exporter's 350 MB, for an exposition of 141 MB.
#[derive(Default)]
pub struct Blocks {
    /// `{name="` for the first label, `",name="` for each other one.
    opens: Vec<String>,
    values: Strings,
    /// `opens.len()` value indexes per block.
    ids: Vec<u32>,
    /// Blocks (a label set without labels has one, the empty block, and no ids).
    n: usize,
    /// The length of all blocks' text, for sizing a family's string before it is written.
    text_len: usize,
}

impl Blocks {
    fn new(names: &[&str]) -> Blocks {
        let opens = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}{n}=\"", if i == 0 { "{" } else { "\"," }))
            .collect();
        Blocks {
            opens,
            ..Default::default()
        }
    }

    fn ids(&self, i: usize) -> &[u32] {
        let w = self.opens.len();
        &self.ids[i * w..(i + 1) * w]
    }
}

impl BlockList for Blocks {
    fn len(&self) -> usize {
        self.n
    }

    fn write(&self, i: usize, out: &mut String) {
        if self.opens.is_empty() {
            return;
        }
        for (open, id) in self.opens.iter().zip(self.ids(i)) {
            out.push_str(open);
            out.push_str(self.values.get(*id));
        }
        out.push_str("\"}");
    }
}

/// The series of one label list: each distinct label block once, by first appearance. Families
/// with the same label list (the five latency histograms, most counters) share one, so that a
/// class's blocks are built and stored once per label list instead of once per family.
#[derive(Default)]
struct LabelSet {
    labels: Vec<Label>,
    /// Positions in `blocks`, found by the hash of the value indexes stored there.
    index: hashbrown::HashTable<u32>,
    hasher: RandomState,
    blocks: Blocks,
    /// Per `LabelValue::Stored` id: the index of its escaped label value in `blocks.values`
    /// (`u32::MAX`: not seen yet). Most label values are one stored field of the class key, and a
    /// class is mapped once per label list: looking values up by id instead of hashing their
    /// text was most of the mapping's time with millions of series (measured: 39 % of a render
    /// of 32M series in the text interner, 15 % more in its compares).
    by_stored: Vec<u32>,
    scratch: String,
}

impl LabelSet {
    /// The index in `blocks.values` of an unescaped label value, added if new.
    fn value(&mut self, v: &str) -> u32 {
        self.scratch.clear();
        push_label_value(&mut self.scratch, v);
        self.blocks.values.id(&self.scratch)
    }

    /// The same for a class's label value; `stored` bounds the ledger's stored ids.
    fn value_of(&mut self, v: LabelValue<'_>, stored: usize) -> u32 {
        match v {
            LabelValue::Stored(v) => {
                let i = v.id() as usize;
                if i >= self.by_stored.len() {
                    self.by_stored.resize(stored.max(i + 1), u32::MAX);
                }
                if self.by_stored[i] == u32::MAX {
                    self.by_stored[i] = self.value(v.text());
                }
                self.by_stored[i]
            }
            LabelValue::Spelled(text) => self.value(&text),
        }
    }

    /// The id of the block of these value indexes, added if new.
    fn intern(&mut self, ids: &[u32]) -> u32 {
        let hash = self.hasher.hash_one(ids);
        let (blocks, hasher) = (&self.blocks, &self.hasher);
        if let Some(&id) = self.index.find(hash, |&i| blocks.ids(i as usize) == ids) {
            return id;
        }
        let id = blocks.n as u32;
        self.index
            .insert_unique(hash, id, |&i| hasher.hash_one(blocks.ids(i as usize)));
        let b = &mut self.blocks;
        if !b.opens.is_empty() {
            b.text_len += b.opens.iter().map(String::len).sum::<usize>() + 2;
            b.text_len += ids.iter().map(|v| b.values.get(*v).len()).sum::<usize>();
        }
        b.ids.extend_from_slice(ids);
        b.n += 1;
        id
    }
}

/// Renders the ledger families, remembering which series each class belongs to.
#[derive(Default)]
pub struct LedgerRenderer {
    sets: Vec<LabelSet>,
    /// Per `LEDGER_FAMILIES` entry: its label set, None when the family is not exported.
    family_set: Vec<Option<usize>>,
    /// Per class, per label set: the class's block in that set (class `c`'s ids are
    /// `class_series[c * sets.len()..][..sets.len()]`; one allocation, not one per class).
    class_series: Vec<u32>,
    /// Classes mapped so far.
    mapped: usize,
    org_aliases: HashMap<String, String>,
    /// The ledger's `layout` the mapping was made for: a fold renumbers the classes.
    layout: u64,
}

impl LedgerRenderer {
    fn assign(&mut self, ledger: &Ledger, sel: &Selection) {
        if self.family_set.len() != LEDGER_FAMILIES.len() {
            let mut sets: Vec<LabelSet> = Vec::new();
            self.family_set = sel
                .ledger
                .iter()
                .map(|labels| {
                    let labels = labels.as_deref()?;
                    Some(match sets.iter().position(|s| s.labels == labels) {
                        Some(i) => i,
                        None => {
                            let names: Vec<&str> = labels.iter().map(|l| sel.name(*l)).collect();
                            sets.push(LabelSet {
                                labels: labels.to_vec(),
                                blocks: Blocks::new(&names),
                                ..Default::default()
                            });
                            sets.len() - 1
                        }
                    })
                })
                .collect();
            self.sets = sets;
        }
        let stored = ledger.stored_values();
        let mut ids = Vec::new();
        for c in self.mapped..ledger.classes().len() {
            let mut labels = ledger.labels(c, &self.org_aliases);
            for set in &mut self.sets {
                ids.clear();
                for j in 0..set.labels.len() {
                    let v = labels.value(set.labels[j]);
                    ids.push(set.value_of(v, stored));
                }
                let id = set.intern(&ids);
                self.class_series.push(id);
            }
            self.mapped += 1;
        }
    }

    /// Maps every class not yet mapped to its series, exactly as `render` does, for consumers
    /// that keep their own per-series sums (the backfill). Returns false when an organization
    /// rename reset the mapping (every class is then mapped afresh).
    pub fn map_classes(
        &mut self,
        ledger: &Ledger,
        org_aliases: &HashMap<String, String>,
        sel: &Selection,
    ) -> bool {
        let kept = *org_aliases == self.org_aliases && ledger.layout() == self.layout;
        if !kept {
            *self = LedgerRenderer {
                org_aliases: org_aliases.clone(),
                layout: ledger.layout(),
                ..Default::default()
            };
        }
        self.assign(ledger, sel);
        kept
    }

    /// The series of class `c` in family `f`, or None if the family does not count the class
    /// (or is not exported). The class must have been mapped (`map_classes` or `render`).
    pub fn series_of(&self, f: usize, c: usize, class: &ClassEntry) -> Option<usize> {
        let s = self.family_set[f]?;
        counts_class(&LEDGER_FAMILIES[f], class)
            .then(|| self.class_series[c * self.sets.len() + s] as usize)
    }

    /// The label blocks (`{a="x"}`) of family `f`'s series, indexed by series id (empty when the
    /// family is not exported).
    pub fn blocks(&self, f: usize) -> &dyn BlockList {
        match self.family_set.get(f).copied().flatten() {
            Some(s) => &self.sets[s].blocks,
            None => {
                static NONE: Vec<String> = Vec::new();
                &NONE
            }
        }
    }

    /// An upper estimate of family `f`'s text: every series written, each histogram line
    /// carrying its `le` label. Growing a string of gigabytes by doubling would copy it several
    /// times over; untouched capacity costs address space, not memory.
    fn estimate_family(&self, f: usize, t: &Thresholds) -> usize {
        let Some(s) = self.family_set[f] else {
            return 0;
        };
        let fam = &LEDGER_FAMILIES[f];
        let blocks = &self.sets[s].blocks;
        let block_bytes = blocks.text_len;
        let per_line = fam.name.len() + 40;
        512 + match fam.kind {
            Kind::Counter(_) => block_bytes + blocks.len() * per_line,
            Kind::Histogram(h) => {
                let lines = t.bounds_s[h.index()].len() + 3;
                lines * (block_bytes + blocks.len() * (per_line + 16))
            }
        }
    }

    /// Whether the last render used these organization aliases.
    pub fn rendered_with(&self, org_aliases: &HashMap<String, String>) -> bool {
        *org_aliases == self.org_aliases
    }

    /// Renders every ledger family, one text per family in catalogue order (empty for families
    /// with nothing to write), and the number of series per family. Families are rendered in
    /// parallel: a first render of millions of series is seconds of CPU that would otherwise
    /// delay readiness, and the database is idle meanwhile. The texts are served one after the
    /// other, never joined (joining would copy gigabytes and double the peak memory).
    pub fn render_parts(
        &mut self,
        ledger: &Ledger,
        org_aliases: &HashMap<String, String>,
        t: &Thresholds,
        sel: &Selection,
    ) -> (Vec<String>, FamilyCounts) {
        if *org_aliases != self.org_aliases || ledger.layout() != self.layout {
            // An organization was renamed (its series move to the new alias, as in LiteLLM),
            // or the memory guard folded classes (they were renumbered).
            *self = LedgerRenderer {
                org_aliases: org_aliases.clone(),
                layout: ledger.layout(),
                ..Default::default()
            };
        }
        self.assign(ledger, sel);
        let classes = ledger.classes();
        let next = AtomicUsize::new(0);
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let this = &*self;
        let mut done: Vec<(usize, String, FamilyCount)> = std::thread::scope(|scope| {
            let work = || {
                let mut mine = Vec::new();
                loop {
                    let f = next.fetch_add(1, Ordering::Relaxed);
                    if f >= LEDGER_FAMILIES.len() {
                        return mine;
                    }
                    let (text, count) = this.family(f, classes, t, sel);
                    mine.push((f, text, count));
                }
            };
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
            let mut all = work();
            for h in helpers {
                all.extend(h.join().expect("a render thread panicked"));
            }
            all
        });
        done.sort_by_key(|(f, _, _)| *f);
        let mut parts = Vec::with_capacity(done.len());
        let mut counts = Vec::with_capacity(done.len());
        for (_, text, count) in done {
            if !text.is_empty() {
                parts.push(text);
            }
            counts.push(count);
        }
        (parts, counts)
    }

    /// [`render_parts`](Self::render_parts) joined into one text.
    pub fn render(
        &mut self,
        ledger: &Ledger,
        org_aliases: &HashMap<String, String>,
        t: &Thresholds,
        sel: &Selection,
    ) -> (String, FamilyCounts) {
        let (parts, counts) = self.render_parts(ledger, org_aliases, t, sel);
        (parts.concat(), counts)
    }

    /// One family's text and counts.
    fn family(
        &self,
        f: usize,
        classes: &[ClassEntry],
        t: &Thresholds,
        sel: &Selection,
    ) -> (String, FamilyCount) {
        let fam = &LEDGER_FAMILIES[f];
        let Some(set) = self.family_set[f] else {
            return (String::new(), FamilyCount::empty(fam.name));
        };
        let mut out = String::with_capacity(self.estimate_family(f, t));
        let blocks = &self.sets[set].blocks;
        // Each class's series in this family (None: the family does not count it).
        let series: Vec<Option<usize>> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| self.series_of(f, i, c))
            .collect();
        let mut rows = vec![0u64; blocks.len()];
        for (c, id) in classes.iter().zip(&series) {
            if let Some(id) = id {
                rows[*id] += c.acc.rows;
            }
        }
        let s = FamilySeries {
            fam,
            blocks,
            classes,
            series,
            rows,
            other: other_block(sel, f),
            cap: sel.max_series,
        };
        let count = match fam.kind {
            Kind::Counter(v) => s.counter(&mut out, v),
            Kind::Histogram(h) => s.histogram(&mut out, &t.bounds_s[h.index()], h.index()),
        };
        (out, count)
    }
}

/// One family's series before their text: the blocks of its label list, each class's series
/// (None: the family does not count the class), the rows of each series, and the series cap with
/// its `other` block.
struct FamilySeries<'a> {
    fam: &'static LedgerFamily,
    blocks: &'a Blocks,
    classes: &'a [ClassEntry],
    series: Vec<Option<usize>>,
    rows: Vec<u64>,
    other: String,
    cap: Option<usize>,
}

impl FamilySeries<'_> {
    /// A counter family: each served series' sum, the folded ones summed into `other`.
    fn counter(&self, out: &mut String, v: CounterValue) -> FamilyCount {
        let (fam, blocks) = (self.fam, self.blocks);
        let mut sums = vec![0u128; blocks.len()];
        for (c, id) in self.classes.iter().zip(&self.series) {
            if let Some(id) = id {
                sums[*id] += counter_units(v, &c.acc);
            }
        }
        let name = format!("{}_total", fam.name);
        let mark = out.len();
        push_header(out, &name, fam.help, "counter");
        let live: Vec<bool> = sums
            .iter()
            .zip(&self.rows)
            .map(|(u, r)| counter_served(v, *r, *u))
            .collect();
        let (kept, folded) = fold(blocks, &live, self.cap, &self.other);
        let mut written = 0usize;
        let mut block = String::new();
        for i in kept {
            block.clear();
            blocks.write(i, &mut block);
            push_sample(out, &name, &block, &counter_value(v, sums[i]));
            written += 1;
        }
        if !folded.is_empty() {
            let units: u128 = folded.iter().map(|i| sums[*i]).sum();
            push_sample(out, &name, &self.other, &counter_value(v, units));
            written += 1;
        }
        if written == 0 {
            out.truncate(mark);
        }
        self.count(written, &folded)
    }

    /// A histogram family (`hi`: its histogram's index, `bounds` its buckets in seconds): each
    /// served series' buckets, the folded ones merged into `other`.
    fn histogram(&self, out: &mut String, bounds: &[f64], hi: usize) -> FamilyCount {
        let (fam, blocks) = (self.fam, self.blocks);
        let mut sums: Vec<HistAcc> = vec![HistAcc::default(); blocks.len()];
        for (c, id) in self.classes.iter().zip(&self.series) {
            if let Some(id) = id {
                sums[*id].merge(c.acc.hist(hi));
            }
        }
        let mark = out.len();
        push_header(out, fam.name, fam.help, "histogram");
        let live: Vec<bool> = sums.iter().map(histogram_served).collect();
        let (kept, folded) = fold(blocks, &live, self.cap, &self.other);
        let mut overflow = HistAcc::default();
        for i in &folded {
            overflow.merge(&sums[*i]);
        }
        let lines = HistLines::new(fam.name, bounds);
        let mut written = 0usize;
        let mut block = String::new();
        for i in kept {
            block.clear();
            blocks.write(i, &mut block);
            lines.push(out, &block, &sums[i], "");
            written += 1;
        }
        if !folded.is_empty() {
            lines.push(out, &self.other, &overflow, "");
            written += 1;
        }
        if written == 0 {
            out.truncate(mark);
        }
        self.count(written, &folded)
    }

    fn count(&self, written: usize, folded: &[usize]) -> FamilyCount {
        FamilyCount {
            family: self.fam.name,
            series: written,
            folded: folded.len(),
            folded_rows: folded.iter().map(|i| self.rows[*i]).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_litellm_then_the_format() {
        let mut s = String::new();
        push_label_value(&mut s, "a\"b\\c\nd\re\u{2028}f");
        assert_eq!(s, "a\\\"b\\\\c def");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(fmt_value(f64::INFINITY), "+Inf");
        assert_eq!(fmt_value(0.1), "0.1");
        assert_eq!(fmt_le(1.0), "1.0");
        assert_eq!(fmt_le(0.005), "0.005");
        assert_eq!(counter_value(CounterValue::Spend, 1_500_000_000_000), "1.5");
    }

    #[test]
    fn spend_is_monotonic_in_its_integer() {
        let mut last = 0.0f64;
        for units in (0u128..2_000_000)
            .step_by(7919)
            .chain([u128::MAX / 3, u128::MAX / 2])
        {
            let v: f64 = counter_value(CounterValue::Spend, units)
                .parse()
                .expect("number");
            assert!(v >= last);
            last = v;
        }
    }
}

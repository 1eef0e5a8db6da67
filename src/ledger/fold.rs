//! The memory guard's rule: which label classes keep series of their own and which fold into the
//! "other" series, so that the exporter stays inside its memory budget whatever the database and
//! the label settings (LiteLLM's default label sets on tens of millions of rows need tens of
//! gigabytes otherwise).
//!
//! The kept classes get an estimated cost in bytes (`Footprint`): each class's share of the
//! ledger and the renderer, plus each distinct series they make, its text in every exported
//! family twice over (a render builds the new text while the old one is served) and its gzip
//! copy. A class is kept
//! while the hash of its labels (`stable_hash`, the same in every process and on every machine)
//! has at least `level` leading zero bits. Whenever the kept classes cost more than the budget,
//! the level goes up by one, which keeps about half of them, and the others fold.
//!
//! Why this makes the fold deterministic: the level is always the smallest at which the classes
//! seen so far fit, and the classes seen only ever grow. So after the same rows, two exporters
//! with the same budget, or a restart that rebuilds from the database, keep exactly the same
//! classes, whatever the order rows arrived in. Folding moves a class's totals into the overflow
//! class that has its `failed` and cache flags (what decides which families count it), so every
//! family's sum still equals SQL and no counter decreases.

use super::class::{ClassKey, Dims};
use super::dimension::DIMENSIONS;
use super::packed::{KeyView, FIELDS};
use super::values::Thresholds;
use crate::catalogue::{Kind, Rows, LEDGER_FAMILIES};
use crate::selection::Selection;

/// Every label of an overflow class reads this; its key has it in every string dimension.
pub const OTHER: &str = "other";

/// Bytes of a class outside its exposition text: the packed key, totals and the hash slot in the
/// ledger, and its row in the renderer's class-to-series table. Measured about 150 bytes of
/// ledger with a team, key and model; generous on purpose.
const CLASS_BYTES: u64 = 300;
/// Bytes of a series outside its text: the renderer's block of value ids and its hash slot, the
/// footprint's own entry, the series' sums while a render runs.
const SERIES_BYTES: u64 = 96;
/// A sample line's bytes besides the name and the label text: braces, the value, the newline.
const LINE_BYTES: u64 = 24;
/// A rendered text is held twice while a render replaces it, and once more compressed (gzip of
/// an exposition is about a tenth of it; a fifth here).
const TEXT_COPIES_PER_MILLE: u64 = 2_200;

/// The dimensions whose values a class's labels are made of: the fields hashed for the fold
/// (`Dimension::hashed`: the error fields are left out, so that the failures of a team, key and
/// model fold together with its successes instead of splitting a combination between "other"
/// and its own series).
const HASHED: [bool; FIELDS] = {
    let mut h = [true; FIELDS];
    let mut i = 0;
    while i < FIELDS {
        h[i] = DIMENSIONS[i].hashed;
        i += 1;
    }
    h
};

/// What the series of one label list cost in the families that count the same rows (families
/// with the same labels share their series' identities: `LedgerRenderer` maps classes per label
/// list too; a success-only family has no series for a class of failed rows).
#[derive(Debug, Clone, PartialEq)]
struct SetCost {
    /// Its families' names (for `plan`).
    families: Vec<&'static str>,
    /// Which rows its families count: a class adds series only to families that count it.
    rows: Rows,
    /// The fields its labels read (bit `i`: field `i`), and whether the custom labels and the
    /// outcome (a status code label) are among them: together, a series' identity.
    fields: u32,
    extras: bool,
    outcome: bool,
    /// A series' text in all its families, without its label values.
    text_base: u64,
    /// Bytes of text per byte of field `i`: every line of every family of the list that shows a
    /// label read from it.
    weight: [u64; FIELDS],
    extra_weight: u64,
}

/// The label classes' share of a memory budget, and what each class and each series costs of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldRule {
    /// Bytes the kept classes and their series may cost in all.
    pub budget: u64,
    sets: Vec<SetCost>,
}

impl FoldRule {
    /// The rule for `budget` bytes under the exported families and buckets.
    pub fn new(budget: u64, sel: &Selection, t: &Thresholds) -> Self {
        let mut lists: Vec<(&[crate::catalogue::Label], Rows)> = Vec::new();
        let mut sets: Vec<SetCost> = Vec::new();
        for (fam, labels) in LEDGER_FAMILIES.iter().zip(&sel.ledger) {
            let Some(labels) = labels.as_deref() else {
                continue;
            };
            let i = match lists.iter().position(|l| *l == (labels, fam.rows)) {
                Some(i) => i,
                None => {
                    let d = Dims::of(labels);
                    let fields = (0..FIELDS as u32)
                        .filter(|i| d.has(1 << i))
                        .fold(0u32, |m, i| m | (1 << i));
                    lists.push((labels, fam.rows));
                    sets.push(SetCost {
                        families: Vec::new(),
                        rows: fam.rows,
                        fields,
                        extras: d.has(Dims::EXTRAS),
                        outcome: d.has(Dims::OUTCOME),
                        text_base: 0,
                        weight: [0; FIELDS],
                        extra_weight: 0,
                    });
                    sets.len() - 1
                }
            };
            let set = &mut sets[i];
            set.families.push(fam.name);
            let (lines, name) = match fam.kind {
                Kind::Counter(_) => (1, fam.name.len() as u64 + "_total".len() as u64),
                // Every bucket (with its `le` label), `+Inf`, `_count` and `_sum`.
                Kind::Histogram(h) => (
                    t.bounds_s[h.index()].len() as u64 + 3,
                    fam.name.len() as u64 + "_bucket".len() as u64 + 12,
                ),
            };
            let mut fixed = LINE_BYTES + name;
            for l in labels {
                // `name="value",`: the value's own length is in the weights; "None" and the
                // like for values made of no field.
                fixed += sel.name(*l).len() as u64 + 4 + 4;
                let d = Dims::of([l]);
                for (i, w) in set.weight.iter_mut().enumerate() {
                    if d.has(1 << i) {
                        *w += lines;
                    }
                }
                if d.has(Dims::EXTRAS) {
                    set.extra_weight += lines;
                }
            }
            set.text_base += lines * fixed;
        }
        FoldRule { budget, sets }
    }

    /// How many label lists (with their row filters) the rule tells apart.
    pub fn sets(&self) -> usize {
        self.sets.len()
    }

    /// The families of label list `s`.
    pub fn families(&self, s: usize) -> &[&'static str] {
        &self.sets[s].families
    }

    /// Whether the families of label list `s` count class `k` (by its rows' outcome).
    pub fn counts(&self, s: usize, k: &impl KeyView) -> bool {
        let failed = k.header() & super::packed::FAILED != 0;
        match self.sets[s].rows {
            Rows::All => true,
            Rows::Success => !failed,
            Rows::Failure => failed,
        }
    }

    /// The identity of `k`'s series in label list `s` (FNV-1a over the fields the list reads).
    pub fn series_id(&self, s: usize, k: &impl KeyView) -> u64 {
        let set = &self.sets[s];
        let mut h = Fnv::new();
        for i in 0..FIELDS {
            if set.fields & (1 << i) != 0 {
                h.eat(k.field(i).as_bytes());
            }
        }
        if set.extras {
            for i in 0..k.extras_len() {
                h.eat(k.extra(i).as_bytes());
            }
        }
        if set.outcome {
            h.eat(&[u8::from(k.header() & super::packed::FAILED != 0)]);
        }
        h.finish()
    }

    /// The exposition text of `k`'s series in label list `s`, in all its families: an upper
    /// bound (a counter at zero, or a histogram without observations, is not written).
    pub fn series_text(&self, s: usize, k: &impl KeyView) -> u64 {
        let set = &self.sets[s];
        let mut bytes = set.text_base;
        for (i, w) in set.weight.iter().enumerate() {
            bytes += w * k.field(i).len() as u64;
        }
        for i in 0..k.extras_len() {
            bytes += set.extra_weight * k.extra(i).len() as u64;
        }
        bytes
    }

    /// What a series with `text` bytes of exposition costs in memory.
    pub fn series_cost(text: u64) -> u64 {
        SERIES_BYTES + (text * TEXT_COPIES_PER_MILLE).div_ceil(1000)
    }

    /// What a class costs besides its series.
    pub const CLASS_BYTES: u64 = CLASS_BYTES;
}

/// What a set of kept classes costs: each class, and each distinct series they make in each
/// label list, once. A function of the set alone (not of the order classes came in), growing
/// with it: what makes the fold level the same everywhere.
#[derive(Debug, Clone, Default)]
pub struct Footprint {
    /// Per label list, the series identities seen.
    seen: Vec<hashbrown::HashSet<u64, ahash::RandomState>>,
    /// Estimated bytes in all.
    pub bytes: u64,
}

impl Footprint {
    /// Adds class `k` under `rule` and returns what it added.
    pub fn add(&mut self, rule: &FoldRule, k: &impl KeyView) -> u64 {
        if self.seen.len() != rule.sets.len() {
            self.seen = vec![Default::default(); rule.sets.len()];
        }
        let mut added = CLASS_BYTES;
        for s in 0..rule.sets.len() {
            if rule.counts(s, k) && self.seen[s].insert(rule.series_id(s, k)) {
                added += FoldRule::series_cost(rule.series_text(s, k));
            }
        }
        self.bytes += added;
        added
    }
}

struct Fnv(u64);

impl Fnv {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    /// The bytes, then one no UTF-8 text contains, so that ("ab", "c") and ("a", "bc") differ.
    fn eat(&mut self, bytes: &[u8]) {
        for b in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Mixed (SplitMix64's finaliser), so that the leading bits depend on every byte.
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// FNV-1a over the label fields of `k` (`HASHED`) and its custom labels, each followed by a byte
/// no UTF-8 text contains, then mixed (SplitMix64's finaliser) so that the leading bits, which
/// decide the fold, depend on every byte. Fixed forever: it is what makes two exporters, and a
/// process and its successor, fold the same classes. Not `std`'s hasher (not stable across Rust
/// releases) nor aHash (differs between processors).
pub fn stable_hash(k: &impl KeyView) -> u64 {
    let mut h = Fnv::new();
    for (i, hashed) in HASHED.iter().enumerate() {
        if *hashed {
            h.eat(k.field(i).as_bytes());
        }
    }
    for i in 0..k.extras_len() {
        h.eat(k.extra(i).as_bytes());
    }
    h.finish()
}

/// Whether a class with this hash keeps its own series at `level`.
pub fn kept(hash: u64, level: u32) -> bool {
    hash.leading_zeros() >= level
}

/// The level at which a class with this hash folds (it is kept below it): its overflow bucket.
pub fn bucket(hash: u64) -> u32 {
    hash.leading_zeros() + 1
}

/// What every label of bucket `b`'s overflow series reads: "other" for the first fold level,
/// "other-2", "other-3"... for the later ones. A level that rises after the first render thus
/// starts series of its own, which Prometheus sees appear with their totals, instead of adding
/// those totals at once to a series it already has (a jump that `rate()` would show as traffic).
pub fn overflow_label(b: u32) -> String {
    if b <= 1 {
        OTHER.to_string()
    } else {
        format!("{OTHER}-{b}")
    }
}

/// The overflow class a folded class's rows count in: every string dimension its bucket's label
/// (`overflow_label(bucket(stable_hash(k)))`), the flags that decide which families count a row
/// (failed, cache hit or miss) kept.
pub fn overflow_key(k: &impl KeyView) -> ClassKey {
    let label = overflow_label(bucket(stable_hash(k)));
    let mut key = ClassKey {
        failed: k.header() & super::packed::FAILED != 0,
        ..ClassKey::default()
    };
    key.set_cache_flags(k.header());
    for f in key.fields_mut() {
        f.clone_from(&label);
    }
    key.extras = vec![label; k.extras_len()];
    key
}

/// Whether `k` is an overflow class's key (`overflow_key`'s shape): every field the same bucket
/// label.
pub fn is_overflow(k: &impl KeyView) -> bool {
    let first = k.field(0);
    let is_label = first == OTHER
        || first
            .strip_prefix("other-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    is_label
        && (0..FIELDS).all(|i| k.field(i) == first)
        && (0..k.extras_len()).all(|i| k.extra(i) == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(team: &str, failed: bool) -> ClassKey {
        ClassKey {
            team_id: team.into(),
            api_key: format!("hash-{team}"),
            model: "gpt-4o".into(),
            failed,
            error_code: if failed { "429".into() } else { String::new() },
            cache_hit: "False".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_hash_is_fixed_and_ignores_the_outcome() {
        // A fixed value: a change would make exporters of two versions fold differently.
        assert_eq!(
            stable_hash(&key("team-a", false)),
            stable_hash(&key("team-a", true))
        );
        assert_eq!(stable_hash(&key("team-a", false)), 0xa903_ca5b_292c_0af5);
        assert_ne!(
            stable_hash(&key("team-a", false)),
            stable_hash(&key("team-b", false))
        );
        // ("ab", "c") and ("a", "bc") differ.
        let mut a = key("ab", false);
        a.team_alias = "c".into();
        let mut b = key("a", false);
        b.team_alias = "bc".into();
        assert_ne!(stable_hash(&a), stable_hash(&b));
    }

    #[test]
    fn each_level_keeps_about_half() {
        let hashes: Vec<u64> = (0..100_000)
            .map(|i| stable_hash(&key(&format!("t{i}"), false)))
            .collect();
        for level in 0..6u32 {
            let n = hashes.iter().filter(|h| kept(**h, level)).count() as f64;
            let expected = 100_000.0 / f64::from(1u32 << level);
            assert!((n / expected - 1.0).abs() < 0.05, "level {level}: {n}");
        }
    }

    #[test]
    fn overflow_keys_keep_what_decides_which_families_count_a_row() {
        let o = overflow_key(&key("team-a", true));
        let label = overflow_label(bucket(stable_hash(&key("team-a", true))));
        assert!(o.failed && is_overflow(&o));
        assert_eq!(o.team_id, label);
        assert_eq!(o.error_code, label);
        assert!(label == OTHER || label.starts_with("other-"));
        // Another class of the same bucket shares the overflow class.
        let same_bucket = (0..1000)
            .map(|i| key(&format!("t{i}"), true))
            .find(|k| bucket(stable_hash(k)) == bucket(stable_hash(&key("team-a", true))))
            .expect("a class in the same bucket");
        assert_eq!(overflow_key(&same_bucket), o);
        assert_ne!(overflow_key(&key("team-a", false)), o);
        assert!(!is_overflow(&key("team-a", false)));
        assert_eq!(overflow_label(1), "other");
        assert_eq!(overflow_label(3), "other-3");
        let mut not_quite = overflow_key(&key("team-a", true));
        not_quite.team_id = "other-x".into();
        assert!(!is_overflow(&not_quite));
    }

    #[test]
    fn a_footprint_counts_each_series_once_and_longer_labels_more() {
        let t = Thresholds::new(&[0.1, 1.0], &[0.1]);
        let all = FoldRule::new(1 << 30, &Selection::default(), &t);
        let mut f = Footprint::default();
        let first = f.add(&all, &key("a", false));
        // The same class again adds no series, only its own entry.
        assert_eq!(f.add(&all, &key("a", false)), CLASS_BYTES);
        let mut long = key("b", false);
        long.team_id = "x".repeat(100);
        assert!(f.add(&all, &long) > first + 100);
        // Fewer families, fewer bytes; the order classes come in does not matter.
        let mut one_family = Selection::default();
        for x in one_family.ledger.iter_mut().skip(1) {
            *x = None;
        }
        let one = FoldRule::new(1 << 30, &one_family, &t);
        assert!(Footprint::default().add(&one, &key("a", false)) < first);
        let keys: Vec<ClassKey> = (0..50)
            .map(|i| key(&format!("t{}", i % 7), i % 3 == 0))
            .collect();
        let (mut x, mut y) = (Footprint::default(), Footprint::default());
        for k in &keys {
            x.add(&all, k);
        }
        for k in keys.iter().rev() {
            y.add(&all, k);
        }
        assert_eq!(x.bytes, y.bytes);
    }
}

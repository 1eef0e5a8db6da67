//! The ledger: counters and histograms over `LiteLLM_SpendLogs`, kept so that every row is counted
//! exactly once. This module owns the totals per label class and the memory of recent rows that
//! makes re-reads harmless; `read` owns the SQL, `tail` decides what to read when.
//!
//! Accounting rules (see ARCHITECTURE.md):
//! - A row is identified by (`request_id`, `startTime`). The first version seen adds one request,
//!   its histogram observations and its additive values (spend, tokens) to its class.
//! - A later version of a remembered row adds only the growth of its additive values. A class
//!   change or a shrinking value is ignored and counted in `corrections_ignored`: counters never
//!   decrease.
//! - Rows are remembered while their `startTime` is inside the lateness window; older rows can no
//!   longer change the totals.

pub mod class;
pub mod dimension;
pub mod fold;
pub mod labels;
pub mod memory;
pub mod packed;
pub mod project;
pub mod read;
pub mod tail;
pub mod values;

use std::sync::Arc;

use ahash::RandomState;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use class::ClassKey;
use packed::{KeyView, PackedKey, Strings};
use values::{ClassAcc, RowValues, Thresholds};

/// One row as read by `read::rows`.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub request_id: String,
    pub start_ms: i64,
    pub xmin: u32,
    pub key: ClassKey,
    pub values: RowValues,
}

pub use memory::Memo;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Distinct rows counted since the totals were built.
    pub rows_ingested: u64,
    /// Numbers that were NaN, infinite, negative or absurd and were counted as 0.
    pub bad_numbers: u64,
    /// In-place rewrites whose shrinking values or changed labels were not applied.
    pub corrections_ignored: u64,
    /// Newest `startTime` (ms since the epoch, UTC wall clock) among counted rows.
    pub newest_start_ms: Option<i64>,
    /// Label classes that had series of their own and were folded into the "other" series by
    /// the memory guard (`fold`).
    #[serde(default)]
    pub folded_classes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Grown,
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct ClassEntry {
    /// Resolved through the ledger's `strings` (`Ledger::key`, `Ledger::view`).
    pub key: PackedKey,
    pub acc: ClassAcc,
}

impl ClassEntry {
    /// Whether the class's rows failed (where an exported family tells; else false).
    pub fn failed(&self) -> bool {
        self.key.failed()
    }

    /// Whether the class's rows were cache hits (`cache_hit` "True").
    pub fn is_cache_hit(&self) -> bool {
        self.key.is_cache_hit()
    }

    /// Whether the class's rows were cache misses (`cache_hit` "False").
    pub fn is_cache_miss(&self) -> bool {
        self.key.is_cache_miss()
    }
}

/// The totals, the memory of recent rows, and what the state file keeps of them. Serialised by
/// hand (below) because the file spells class keys out: it stays readable by every version.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    classes: Vec<ClassEntry>,
    /// The dimension values of every class key.
    strings: Strings,
    /// Positions in `classes`, found by the hash of the key stored there.
    index: hashbrown::HashTable<u32>,
    // aHash: hashing the strings of a key per row was the largest single cost of counting.
    hasher: RandomState,
    memo: memory::Memory,
    pub stats: Stats,
    /// Changes to the totals so far in this process: an unchanged ledger is not rendered again.
    generation: u64,
    /// The memory guard (None: no budget): which classes keep series of their own (`fold`).
    fold: Option<Arc<fold::FoldRule>>,
    /// Classes whose label hash has fewer leading zero bits fold (`fold::kept`). Saved: the
    /// folded classes are gone, so the level cannot be found again from the ledger alone.
    fold_level: u32,
    /// What the classes kept under the rule cost (estimated bytes, `fold::Footprint`).
    footprint: fold::Footprint,
    /// Positions of the overflow classes: one per combination of the flags they keep.
    overflow: Vec<u32>,
    /// Moves whenever folding renumbered the classes (the renderer maps them afresh).
    layout: u64,
}

/// A class as the state file spells it.
#[derive(Serialize)]
struct EntryOut<'a> {
    key: ClassKey,
    acc: &'a ClassAcc,
}

#[derive(Deserialize)]
struct EntryIn {
    key: ClassKey,
    acc: ClassAcc,
}

#[derive(Deserialize)]
struct LedgerIn {
    classes: Vec<EntryIn>,
    memo: memory::Memory,
    stats: Stats,
    #[serde(default)]
    fold_level: u32,
}

/// The classes, each key unpacked only while it is written.
struct ClassesOut<'a>(&'a Ledger);

impl Serialize for ClassesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut seq = s.serialize_seq(Some(l.classes.len()))?;
        for c in &l.classes {
            seq.serialize_element(&EntryOut {
                key: c.key.unpack(&l.strings),
                acc: &c.acc,
            })?;
        }
        seq.end()
    }
}

impl Serialize for Ledger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Ledger", 4)?;
        st.serialize_field("classes", &ClassesOut(self))?;
        st.serialize_field("memo", &self.memo)?;
        st.serialize_field("stats", &self.stats)?;
        st.serialize_field("fold_level", &self.fold_level)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Ledger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ledger, D::Error> {
        let file = LedgerIn::deserialize(d)?;
        let mut l = Ledger {
            memo: file.memo,
            stats: file.stats,
            fold_level: file.fold_level,
            ..Ledger::default()
        };
        // In file order: remembered rows refer to classes by position.
        l.classes.reserve_exact(file.classes.len());
        for e in file.classes {
            let key = PackedKey::pack(&e.key, &mut l.strings);
            l.classes.push(ClassEntry { key, acc: e.acc });
        }
        l.reindex();
        Ok(l)
    }
}

impl Ledger {
    /// Rebuilds the lookup index (and which classes are overflow ones) after deserialisation.
    pub fn reindex(&mut self) {
        let (classes, hasher, strings) = (&self.classes, &self.hasher, &self.strings);
        let hash = |j: u32| packed::hash(hasher, &classes[j as usize].key.view(strings));
        self.index = hashbrown::HashTable::with_capacity(classes.len());
        for i in 0..classes.len() as u32 {
            self.index.insert_unique(hash(i), i, |&j| hash(j));
        }
        self.overflow = (0..classes.len() as u32)
            .filter(|c| fold::is_overflow(&classes[*c as usize].key.view(strings)))
            .collect();
    }

    /// Puts the ledger under a memory guard's rule (None: no guard): the classes it holds are
    /// costed, and if they do not fit, folded until they do. A state file's ledger keeps the
    /// level it was saved at.
    pub fn set_fold(&mut self, rule: Option<fold::FoldRule>) {
        self.fold = rule.map(Arc::new);
        self.footprint = fold::Footprint::default();
        if let Some(rule) = self.fold.clone() {
            let (footprint, classes, strings) = (&mut self.footprint, &self.classes, &self.strings);
            for (c, entry) in classes.iter().enumerate() {
                if !self.overflow.contains(&(c as u32)) {
                    footprint.add(&rule, &entry.key.view(strings));
                }
            }
        }
        self.refold(self.fold_level);
    }

    /// An empty ledger under the same rule and level, for a catch-up chunk: it folds what this
    /// ledger would fold, so that a chunk of millions of rows cannot outgrow the budget either.
    pub fn chunk(&self) -> Ledger {
        Ledger {
            fold: self.fold.clone(),
            fold_level: self.fold_level,
            ..Ledger::default()
        }
    }

    /// The memory guard's level (0: nothing folded) and the estimated bytes of the kept classes.
    pub fn fold_state(&self) -> (u32, u64) {
        (self.fold_level, self.footprint.bytes)
    }

    /// Whether class `c` is an overflow class: every label of it reads "other".
    pub fn is_overflow(&self, c: usize) -> bool {
        self.overflow.contains(&(c as u32))
    }

    /// Moves whenever folding renumbered the classes.
    pub fn layout(&self) -> u64 {
        self.layout
    }

    /// Rows counted in overflow classes.
    pub fn overflow_rows(&self) -> u64 {
        self.overflow
            .iter()
            .map(|c| self.classes[*c as usize].acc.rows)
            .sum()
    }

    /// Raises the fold level to at least `min_level`, and further until the kept classes fit
    /// the budget; the classes that no longer qualify move into their overflow classes (totals
    /// merged, remembered rows pointed at them). Nothing happens when the level stays and the
    /// classes fit.
    fn refold(&mut self, min_level: u32) {
        let Some(rule) = self.fold.clone() else {
            return;
        };
        if min_level <= self.fold_level && self.footprint.bytes <= rule.budget {
            return;
        }
        let n = self.classes.len();
        let hashes: Vec<u64> = (0..n).map(|c| fold::stable_hash(&self.view(c))).collect();
        let footprint_at = |level: u32| -> fold::Footprint {
            let mut f = fold::Footprint::default();
            for (c, hash) in hashes.iter().enumerate() {
                if !self.is_overflow(c) && fold::kept(*hash, level) {
                    f.add(&rule, &self.view(c));
                }
            }
            f
        };
        let mut level = self.fold_level.max(min_level);
        let mut footprint = footprint_at(level);
        // 65: not even a hash of all zero bits is kept.
        while footprint.bytes > rule.budget && level < 65 {
            level += 1;
            footprint = footprint_at(level);
        }
        if level == self.fold_level {
            self.footprint = footprint;
            return;
        }
        let old = std::mem::take(&mut self.classes);
        let old_strings = std::mem::take(&mut self.strings);
        self.index = hashbrown::HashTable::with_capacity(n);
        self.overflow.clear();
        self.fold_level = level;
        self.footprint = footprint;
        let mut to = Vec::with_capacity(n);
        for (c, entry) in old.into_iter().enumerate() {
            let view = entry.key.view(&old_strings);
            // An overflow class may already be there: made for a class folded before it.
            let target = if fold::is_overflow(&view) {
                match self.class_index(&entry.key.unpack(&old_strings)) {
                    Some(i) => i,
                    None => self.push_class(&view),
                }
            } else if fold::kept(hashes[c], level) {
                self.push_class(&view)
            } else {
                self.stats.folded_classes += 1;
                let o = fold::overflow_key(&view);
                match self.class_index(&o) {
                    Some(i) => i,
                    None => self.push_class(&o),
                }
            };
            self.classes[target as usize].acc.merge(&entry.acc);
            to.push(target);
        }
        self.memo.remap_classes(|c| to[c as usize]);
        self.layout += 1;
        self.generation += 1;
    }

    pub fn classes(&self) -> &[ClassEntry] {
        &self.classes
    }

    /// The dimensions of class `c`, read in place.
    pub fn view(&self, c: usize) -> packed::Packed<'_> {
        self.classes[c].key.view(&self.strings)
    }

    /// The dimensions of class `c`, spelled out.
    pub fn key(&self, c: usize) -> ClassKey {
        self.classes[c].key.unpack(&self.strings)
    }

    /// The index of a class in `classes()`, if it has been counted.
    pub fn class_index(&self, key: &ClassKey) -> Option<u32> {
        let (classes, strings) = (&self.classes, &self.strings);
        self.index
            .find(packed::hash(&self.hasher, key), |&i| {
                packed::same(key, &classes[i as usize].key.view(strings))
            })
            .copied()
    }

    /// Moves whenever a total changes (not across processes).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn remembered_rows(&self) -> usize {
        self.memo.len()
    }

    fn intern(&mut self, key: &impl KeyView) -> u32 {
        let hash = packed::hash(&self.hasher, key);
        let (classes, strings) = (&self.classes, &self.strings);
        if let Some(&i) = self.index.find(hash, |&i| {
            packed::same(key, &classes[i as usize].key.view(strings))
        }) {
            return i;
        }
        if let Some(rule) = self.fold.clone() {
            if !fold::is_overflow(key) {
                if !fold::kept(fold::stable_hash(key), self.fold_level) {
                    return self.intern(&fold::overflow_key(key));
                }
                self.footprint.add(&rule, key);
                if self.footprint.bytes > rule.budget {
                    // Counted first, so that the fold sees every class there is; the new one
                    // may fold with the others.
                    self.push_class(key);
                    self.refold(self.fold_level + 1);
                    return self.intern(key);
                }
            }
        }
        self.push_class(key)
    }

    /// Adds a class for a key not in the index, with empty totals.
    fn push_class(&mut self, key: &impl KeyView) -> u32 {
        let hash = packed::hash(&self.hasher, key);
        let (classes, hasher, strings) = (&self.classes, &self.hasher, &self.strings);
        let i = classes.len() as u32;
        self.index.insert_unique(hash, i, |&j| {
            packed::hash(hasher, &classes[j as usize].key.view(strings))
        });
        let key = PackedKey::pack(key, &mut self.strings);
        if self.classes.len() == self.classes.capacity() {
            // By an eighth, not by doubling: the classes are most of the ledger, and a doubled
            // vector's unused half was a quarter of the exporter's heap (glibc moves the pages
            // of a large block when it grows, so growing often costs little).
            let more = (self.classes.len() / 8).max(1024);
            self.classes.reserve_exact(more);
        }
        self.classes.push(ClassEntry {
            key,
            acc: ClassAcc::default(),
        });
        if fold::is_overflow(&self.view(i as usize)) {
            self.overflow.push(i);
        }
        i
    }

    fn note_start(&mut self, start_ms: i64) {
        // Rows dated in the far future (or the +infinity sentinel) would pin the lag at zero.
        if start_ms == i64::MAX {
            return;
        }
        self.stats.newest_start_ms = Some(
            self.stats
                .newest_start_ms
                .map_or(start_ms, |n| n.max(start_ms)),
        );
    }

    /// Counts one row version. `remember` keeps it for later re-reads; rows older than the
    /// lateness window are counted without being remembered.
    pub fn apply_row(&mut self, row: RawRow, remember: bool, thresholds: &Thresholds) -> Applied {
        if let Some(m) = self.memo.get_mut(&row.request_id, row.start_ms) {
            if m.xmin == row.xmin {
                return Applied::Unchanged;
            }
            m.xmin = row.xmin;
            let class = m.class as usize;
            let mut shrank = false;
            let mut grew = false;
            let acc = &mut self.classes[class].acc;
            // SQL never yields negative values; clamping anyway keeps the subtraction in range.
            let new_spend = row.values.spend_pico.max(0);
            let d = new_spend - m.spend_pico;
            if d > 0 {
                acc.add.spend_pico += d as u128;
                m.spend_pico = new_spend;
                grew = true;
            } else if d < 0 {
                shrank = true;
            }
            for (j, new) in row.values.v.iter().enumerate() {
                let new = (*new).max(0);
                let d = new - m.v[j];
                if d > 0 {
                    acc.add.add(j, d as u64);
                    m.v[j] = new;
                    grew = true;
                } else if d < 0 {
                    shrank = true;
                }
            }
            let same_class = packed::same(&row.key, &self.view(class))
                || (self.is_overflow(class)
                    && packed::same(&fold::overflow_key(&row.key), &self.view(class)));
            if shrank || !same_class {
                self.stats.corrections_ignored += 1;
            }
            if grew {
                self.generation += 1;
                return Applied::Grown;
            }
            return Applied::Unchanged;
        }

        self.generation += 1;
        let class = self.intern(&row.key);
        let acc = &mut self.classes[class as usize].acc;
        acc.rows += 1;
        acc.add.spend_pico += row.values.spend_pico.max(0) as u128;
        for (j, v) in row.values.v.iter().enumerate() {
            acc.add.add(j, (*v).max(0) as u64);
        }
        for (h, obs) in row.values.hist.iter().enumerate() {
            if let Some(v) = obs {
                acc.hist_mut(h).observe(*v, &thresholds.micros[h]);
            }
        }
        self.stats.rows_ingested += 1;
        self.stats.bad_numbers = self
            .stats
            .bad_numbers
            .saturating_add(row.values.bad_numbers.max(0) as u64);
        self.note_start(row.start_ms);
        if remember {
            let memo = Memo {
                class,
                xmin: row.xmin,
                spend_pico: row.values.spend_pico.max(0),
                v: row.values.v.map(|x| x.max(0)),
            };
            self.memo.insert(row.request_id, row.start_ms, memo);
        }
        Applied::New
    }

    /// Adds everything `chunk` counted (rows it did not remember) to this ledger. The catch-up
    /// counts each chunk into a ledger of its own and absorbs it only once the chunk's read has
    /// completed: a read that fails halfway (a recovery conflict, a killed session) is retried
    /// from its start, and the rows it had already streamed must not count twice.
    pub fn absorb(&mut self, chunk: Ledger) {
        debug_assert!(chunk.memo.is_empty(), "absorbed chunks remember no rows");
        self.generation += 1;
        // The chunk folded more: so does the ledger, which has seen at least the same classes.
        self.refold(chunk.fold_level);
        for entry in &chunk.classes {
            let i = self.intern(&entry.key.view(&chunk.strings)) as usize;
            self.classes[i].acc.merge(&entry.acc);
        }
        let s = chunk.stats;
        self.stats.rows_ingested += s.rows_ingested;
        self.stats.bad_numbers = self.stats.bad_numbers.saturating_add(s.bad_numbers);
        self.stats.corrections_ignored += s.corrections_ignored;
        if let Some(n) = s.newest_start_ms {
            self.note_start(n);
        }
    }

    /// Forgets rows that started before `before_ms`: no read will return them again.
    pub fn forget_before(&mut self, before_ms: i64) {
        self.memo.forget_before(before_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(id: &str, xmin: u32, spend: i64, team: &str) -> RawRow {
        RawRow {
            request_id: id.into(),
            start_ms: 1000,
            xmin,
            key: ClassKey {
                team_id: team.into(),
                ..Default::default()
            },
            values: RowValues {
                spend_pico: spend,
                hist: [Some(5), None, None, None, None],
                ..Default::default()
            },
        }
    }

    fn t() -> Thresholds {
        Thresholds::new(&[0.001], &[0.001])
    }

    #[test]
    fn each_version_counted_once() {
        let mut l = Ledger::default();
        assert_eq!(l.apply_row(row("a", 1, 10, "t"), true, &t()), Applied::New);
        assert_eq!(
            l.apply_row(row("a", 1, 10, "t"), true, &t()),
            Applied::Unchanged
        );
        assert_eq!(
            l.apply_row(row("a", 2, 30, "t"), true, &t()),
            Applied::Grown
        );
        let acc = &l.classes()[0].acc;
        assert_eq!(acc.rows, 1);
        assert_eq!(acc.add.spend_pico, 30);
        assert_eq!(acc.hist(0).count, 1);
    }

    #[test]
    fn an_absorbed_chunk_counts_like_its_rows() {
        let rows = || {
            vec![
                row("a", 1, 10, "t"),
                row("b", 1, 20, "u"),
                row("c", 1, 5, "t"),
            ]
        };
        let mut direct = Ledger::default();
        direct.apply_row(row("z", 1, 1, "u"), false, &t());
        let mut via_chunk = direct.clone();
        for r in rows() {
            direct.apply_row(r, false, &t());
        }
        let mut chunk = Ledger::default();
        for r in rows() {
            chunk.apply_row(r, false, &t());
        }
        via_chunk.absorb(chunk);
        let view = |l: &Ledger| {
            let mut v: Vec<_> = (0..l.classes().len())
                .map(|c| (l.key(c).team_id, l.classes()[c].acc.clone()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(view(&via_chunk), view(&direct));
        assert_eq!(via_chunk.stats.rows_ingested, 4);
        assert_eq!(
            via_chunk.stats.newest_start_ms,
            direct.stats.newest_start_ms
        );
    }

    #[test]
    fn shrinking_and_moving_rows_never_decrease() {
        let mut l = Ledger::default();
        l.apply_row(row("a", 1, 30, "t"), true, &t());
        assert_eq!(
            l.apply_row(row("a", 2, 10, "u"), true, &t()),
            Applied::Unchanged
        );
        assert_eq!(l.classes().len(), 1);
        assert_eq!(l.classes()[0].acc.add.spend_pico, 30);
        assert_eq!(l.stats.corrections_ignored, 1);
    }

    #[test]
    fn the_state_file_spells_keys_out_and_reads_back() {
        let mut l = Ledger::default();
        l.apply_row(row("a", 1, 10, "t"), true, &t());
        l.apply_row(row("b", 1, 5, "u"), true, &t());
        let json = serde_json::to_value(&l).unwrap();
        // The file's shape from before keys were packed: every `ClassKey` field by name.
        let t_key = ClassKey {
            team_id: "t".into(),
            ..Default::default()
        };
        assert_eq!(
            json["classes"][0]["key"],
            serde_json::to_value(&t_key).unwrap()
        );
        // A file from then kept five histograms per class, empty ones included.
        let mut old = json.clone();
        let empty = serde_json::json!({"count": 0, "sum": 0, "buckets": []});
        for c in old["classes"].as_array_mut().unwrap() {
            let first = c["acc"]["hist"][0].clone();
            c["acc"]["hist"] = serde_json::json!([first, empty, empty, empty, empty]);
        }
        for file in [json, old] {
            let mut back: Ledger = serde_json::from_value(file).unwrap();
            assert_eq!(back.classes().len(), 2);
            for c in 0..2 {
                assert_eq!(back.key(c), l.key(c));
                assert_eq!(back.classes()[c].acc, l.classes()[c].acc);
            }
            assert_eq!(back.class_index(&t_key), Some(0));
            // The remembered rows still point at their classes.
            assert_eq!(
                back.apply_row(row("b", 2, 7, "u"), true, &t()),
                Applied::Grown
            );
            assert_eq!(back.classes()[1].acc.add.spend_pico, 7);
            assert_eq!(back.stats.corrections_ignored, 0);
        }
    }

    /// A ledger under a budget a few classes wide: rows of many teams.
    fn guarded(budget: u64) -> Ledger {
        let mut l = Ledger::default();
        let rule = fold::FoldRule::new(
            budget,
            &crate::selection::Selection::default(),
            &Thresholds::new(&[0.001], &[0.001]),
        );
        l.set_fold(Some(rule));
        l
    }

    fn totals(l: &Ledger) -> (u64, u128) {
        l.classes().iter().fold((0, 0), |(r, s), c| {
            (r + c.acc.rows, s + c.acc.add.spend_pico)
        })
    }

    #[test]
    fn folding_keeps_every_total_and_the_order_of_rows_does_not_matter() {
        let rows: Vec<RawRow> = (0..400)
            .map(|i| row(&format!("r{i}"), 1, 10 + i, &format!("team-{}", i % 97)))
            .collect();
        let mut forward = guarded(200_000);
        for r in rows.iter().cloned() {
            forward.apply_row(r, true, &t());
        }
        let (level, cost) = forward.fold_state();
        assert!(level >= 1, "the budget holds a few teams, not 97");
        assert!(cost <= 200_000);
        assert!(forward.stats.folded_classes > 0);
        assert_eq!(
            totals(&forward),
            (400, (0..400).map(|i| 10 + i as u128).sum())
        );
        // Backwards, or absorbed chunk by chunk, the same classes are kept.
        let mut backward = guarded(200_000);
        for r in rows.iter().rev().cloned() {
            backward.apply_row(r, true, &t());
        }
        let mut chunked = guarded(200_000);
        for part in rows.chunks(150) {
            let mut chunk = chunked.chunk();
            for r in part.iter().cloned() {
                chunk.apply_row(r, false, &t());
            }
            chunked.absorb(chunk);
        }
        let kept = |l: &Ledger| {
            let mut k: Vec<(String, bool, u64)> = (0..l.classes().len())
                .map(|c| (l.key(c).team_id, l.is_overflow(c), l.classes()[c].acc.rows))
                .collect();
            k.sort();
            k
        };
        assert_eq!(kept(&forward), kept(&backward));
        assert_eq!(kept(&forward), kept(&chunked));
        assert_eq!(forward.fold_state().0, chunked.fold_state().0);
        assert!(kept(&forward)
            .iter()
            .any(|(team, o, _)| *o && team.starts_with(fold::OTHER)));
        assert!(
            kept(&forward).iter().any(|(_, o, _)| !*o),
            "some teams keep their own class"
        );
    }

    #[test]
    fn a_later_fold_starts_new_overflow_series_instead_of_jumping_the_old_ones() {
        let mut l = guarded(200_000);
        let mut n = 0;
        let team_row = |n: i64| row(&format!("r{n}"), 1, 10, &format!("team-{n}"));
        while l.fold_state().0 < 1 {
            l.apply_row(team_row(n), true, &t());
            n += 1;
        }
        let first = l.fold_state().0;
        let overflow_rows = |l: &Ledger| -> BTreeMap<String, u64> {
            (0..l.classes().len())
                .filter(|c| l.is_overflow(*c))
                .map(|c| (l.key(c).team_id, l.classes()[c].acc.rows))
                .collect()
        };
        let before = overflow_rows(&l);
        // New teams until the level rises again; count the rows of those whose bucket existed.
        let mut into_old = BTreeMap::<String, u64>::new();
        while l.fold_state().0 == first {
            let r = team_row(n);
            let b = fold::bucket(fold::stable_hash(&r.key));
            if b <= first {
                *into_old.entry(fold::overflow_label(b)).or_default() += 1;
            }
            l.apply_row(r, true, &t());
            n += 1;
        }
        let after = overflow_rows(&l);
        // The old buckets grew by their own new rows only: the classes the rise folded went to
        // buckets that did not exist before.
        for (label, rows) in &before {
            assert_eq!(
                after[label],
                rows + into_old.get(label).copied().unwrap_or(0),
                "{label}"
            );
        }
        assert!(after.keys().any(|k| !before.contains_key(k)), "{after:?}");
        assert_eq!(totals(&l).0, n as u64);
    }

    #[test]
    fn a_folded_rows_growth_goes_to_other_and_the_level_survives_the_state_file() {
        let mut l = guarded(200_000);
        for i in 0..300 {
            l.apply_row(
                row(&format!("r{i}"), 1, 10, &format!("team-{}", i % 97)),
                true,
                &t(),
            );
        }
        let level = l.fold_state().0;
        // A remembered row whose class folded: its rewrite grows "other", not a lost class.
        let folded = (0..97)
            .map(|i| format!("team-{i}"))
            .find(|team| {
                l.class_index(&ClassKey {
                    team_id: team.clone(),
                    ..Default::default()
                })
                .is_none()
            })
            .expect("some team folded");
        let i: usize = folded["team-".len()..].parse().unwrap();
        let before = totals(&l).1;
        assert_eq!(
            l.apply_row(row(&format!("r{i}"), 2, 25, &folded), true, &t()),
            Applied::Grown
        );
        assert_eq!(totals(&l).1, before + 15);
        assert_eq!(l.stats.corrections_ignored, 0, "the same class, folded");

        let json = serde_json::to_string(&l).unwrap();
        let mut back: Ledger = serde_json::from_str(&json).unwrap();
        back.set_fold(l.fold.as_deref().cloned());
        assert_eq!(back.fold_state().0, level);
        assert_eq!(totals(&back), totals(&l));
        assert_eq!(
            (0..back.classes().len())
                .filter(|c| back.is_overflow(*c))
                .count(),
            (0..l.classes().len()).filter(|c| l.is_overflow(*c)).count()
        );
    }

    #[test]
    fn forgetting_bounds_memory() {
        let mut l = Ledger::default();
        l.apply_row(row("a", 1, 1, "t"), true, &t());
        let mut b = row("b", 1, 1, "t");
        b.start_ms = 5000;
        l.apply_row(b, true, &t());
        assert_eq!(l.remembered_rows(), 2);
        l.forget_before(2000);
        assert_eq!(l.remembered_rows(), 1);
    }
}

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
pub mod memory;
pub mod project;
pub mod read;
pub mod tail;
pub mod values;

use ahash::RandomState;

use serde::{Deserialize, Serialize};

use class::ClassKey;
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    New,
    Grown,
    Unchanged,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassEntry {
    pub key: ClassKey,
    pub acc: ClassAcc,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    classes: Vec<ClassEntry>,
    /// Positions in `classes`, found by the hash of the key stored there.
    #[serde(skip)]
    index: hashbrown::HashTable<u32>,
    // aHash: hashing the 22 strings of a key per row was the largest single cost of counting.
    #[serde(skip)]
    hasher: RandomState,
    memo: memory::Memory,
    pub stats: Stats,
    /// Changes to the totals so far in this process: an unchanged ledger is not rendered again.
    #[serde(skip)]
    generation: u64,
}

impl Ledger {
    /// Rebuilds the lookup index after deserialisation.
    pub fn reindex(&mut self) {
        let (classes, hasher) = (&self.classes, &self.hasher);
        self.index = hashbrown::HashTable::with_capacity(classes.len());
        for (i, c) in classes.iter().enumerate() {
            self.index
                .insert_unique(hasher.hash_one(&c.key), i as u32, |&j| {
                    hasher.hash_one(&classes[j as usize].key)
                });
        }
    }

    pub fn classes(&self) -> &[ClassEntry] {
        &self.classes
    }

    /// The index of a class in `classes()`, if it has been counted.
    pub fn class_index(&self, key: &ClassKey) -> Option<u32> {
        let classes = &self.classes;
        self.index
            .find(self.hasher.hash_one(key), |&i| {
                classes[i as usize].key == *key
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

    fn intern(&mut self, key: ClassKey) -> u32 {
        let hash = self.hasher.hash_one(&key);
        let (classes, hasher) = (&self.classes, &self.hasher);
        if let Some(&i) = self.index.find(hash, |&i| classes[i as usize].key == key) {
            return i;
        }
        let i = classes.len() as u32;
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&classes[j as usize].key));
        self.classes.push(ClassEntry {
            key,
            acc: ClassAcc::default(),
        });
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
                    acc.add.v[j] = acc.add.v[j].saturating_add(d as u64);
                    m.v[j] = new;
                    grew = true;
                } else if d < 0 {
                    shrank = true;
                }
            }
            if shrank || self.classes[class].key != row.key {
                self.stats.corrections_ignored += 1;
            }
            if grew {
                self.generation += 1;
                return Applied::Grown;
            }
            return Applied::Unchanged;
        }

        self.generation += 1;
        let class = self.intern(row.key);
        let acc = &mut self.classes[class as usize].acc;
        acc.rows += 1;
        acc.add.spend_pico += row.values.spend_pico.max(0) as u128;
        for (a, v) in acc.add.v.iter_mut().zip(row.values.v) {
            // Saturating: absurd values (up to 1e15 per row from SQL) must not wrap to a smaller
            // total; a saturated counter stays flat, which never reads as a reset.
            *a = a.saturating_add(v.max(0) as u64);
        }
        for (h, obs) in row.values.hist.iter().enumerate() {
            if let Some(v) = obs {
                acc.hist[h].observe(*v, &thresholds.micros[h]);
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
        for entry in chunk.classes {
            let i = self.intern(entry.key) as usize;
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
        assert_eq!(acc.hist[0].count, 1);
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
            let mut v: Vec<_> = l
                .classes()
                .iter()
                .map(|c| (c.key.team_id.clone(), c.acc.clone()))
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

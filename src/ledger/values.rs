//! What one row, or one group of rows, adds to a label class: exact integer sums (spend in
//! pico-dollars, durations in microseconds) and cumulative histogram buckets. Integers make every
//! sum independent of the order rows are added in, so a rebuild reproduces a value bit for bit.

use serde::{Deserialize, Serialize};

use crate::catalogue::{CounterValue, HistValue};

/// Additive per-row numbers after spend, in the projection's column order.
pub const NV: usize = 12;

/// Index into `Additive::v` for each additive counter value.
pub fn additive_index(v: CounterValue) -> Option<usize> {
    use CounterValue::*;
    Some(match v {
        TotalTokens => 0,
        PromptTokens => 1,
        CompletionTokens => 2,
        CachedInputTokens => 3,
        CacheCreationInputTokens => 4,
        InputAudioTokens => 5,
        OutputReasoningTokens => 6,
        OutputAudioTokens => 7,
        ImagesGenerated => 8,
        VideoSeconds => 9,
        ProviderCacheReadTokens => 10,
        ProviderCacheCreationTokens => 11,
        Requests | Spend | CacheHits | CacheMisses | CachedTokens => return None,
    })
}

/// The additive value a counter shows, if it shows one: cached tokens are the total tokens of
/// cache hits.
pub fn value_shown(v: CounterValue) -> Option<usize> {
    match v {
        CounterValue::CachedTokens => Some(0),
        other => additive_index(other),
    }
}

/// Values that can grow when LiteLLM rewrites a row in place (a $0 cost row taken over later).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Additive {
    pub spend_pico: u128,
    /// By `additive_index`, up to the last value that counted something: rows carry only the
    /// values an exported counter shows (`Dims::value`), and the others are never stored.
    v: Box<[u64]>,
}

impl Additive {
    pub fn get(&self, j: usize) -> u64 {
        self.v.get(j).copied().unwrap_or(0)
    }

    /// Adds `d` to value `j`. Saturating: absurd values (up to 1e15 per row from SQL) must not
    /// wrap to a smaller total; a saturated counter stays flat, which never reads as a reset.
    pub fn add(&mut self, j: usize, d: u64) {
        if d == 0 {
            return;
        }
        if self.v.len() <= j {
            let mut v = std::mem::take(&mut self.v).into_vec();
            v.resize(j + 1, 0);
            self.v = v.into_boxed_slice();
        }
        self.v[j] = self.v[j].saturating_add(d);
    }
}

/// Equal values, however many zeros either side stores.
impl PartialEq for Additive {
    fn eq(&self, other: &Additive) -> bool {
        self.spend_pico == other.spend_pico
            && (0..self.v.len().max(other.v.len())).all(|j| self.get(j) == other.get(j))
    }
}

impl Eq for Additive {}

/// One histogram of one class: observation count, sum in the histogram's integer unit, and a
/// cumulative count per finite bucket bound (the +Inf bucket is `count`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistAcc {
    pub count: u64,
    pub sum: u64,
    pub buckets: Vec<u64>,
}

impl HistAcc {
    pub fn observe(&mut self, value: i64, thresholds: &[i64]) {
        if self.buckets.len() != thresholds.len() {
            self.buckets.resize(thresholds.len(), 0);
        }
        self.count += 1;
        // Saturating, like every value sum: a wrapped sum would read as a counter reset.
        self.sum = self.sum.saturating_add(value.max(0) as u64);
        for (b, t) in self.buckets.iter_mut().zip(thresholds) {
            if value <= *t {
                *b += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &HistAcc) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

/// Everything counted for one label class.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClassAcc {
    pub rows: u64,
    pub add: Additive,
    /// Per `HistValue` index, up to the last histogram observed: classes keep only the
    /// histograms an exported family shows (`Dims::hist`), and five empty ones inline were 200
    /// bytes of every class.
    hist: Vec<HistAcc>,
}

/// The histogram of a class that observed nothing.
static NO_OBSERVATIONS: HistAcc = HistAcc {
    count: 0,
    sum: 0,
    buckets: Vec::new(),
};

impl ClassAcc {
    /// Histogram `h` (a `HistValue` index).
    pub fn hist(&self, h: usize) -> &HistAcc {
        self.hist.get(h).unwrap_or(&NO_OBSERVATIONS)
    }

    pub fn hist_mut(&mut self, h: usize) -> &mut HistAcc {
        if self.hist.len() <= h {
            self.hist.resize(h + 1, HistAcc::default());
        }
        &mut self.hist[h]
    }

    pub fn merge(&mut self, other: &ClassAcc) {
        self.rows += other.rows;
        self.add.spend_pico += other.add.spend_pico;
        for (j, b) in other.add.v.iter().enumerate() {
            self.add.add(j, *b);
        }
        for (h, b) in other.hist.iter().enumerate() {
            if b.count > 0 {
                self.hist_mut(h).merge(b);
            }
        }
    }
}

/// Equal counts, however many empty histograms either side holds.
impl PartialEq for ClassAcc {
    fn eq(&self, other: &ClassAcc) -> bool {
        self.rows == other.rows
            && self.add == other.add
            && (0..self.hist.len().max(other.hist.len())).all(|h| self.hist(h) == other.hist(h))
    }
}

impl Eq for ClassAcc {}

/// The per-row numbers of one spend-log row (`ledger::project`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowValues {
    pub spend_pico: i64,
    pub v: [i64; NV],
    pub bad_numbers: i64,
    /// One optional observation per `HistValue`, in `HistValue::ALL` order.
    pub hist: [Option<i64>; 5],
}

/// Histogram bounds converted once to the integer unit of the observations (microseconds), so
/// every row is bucketed by comparing exact integers.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub bounds_s: [Vec<f64>; 5],
    pub micros: [Vec<i64>; 5],
}

impl Thresholds {
    pub fn new(latency: &[f64], per_token: &[f64]) -> Self {
        let to_us = |b: &[f64]| {
            b.iter()
                .map(|s| (s * 1e6).round() as i64)
                .collect::<Vec<_>>()
        };
        let bounds_s = HistValue::ALL.map(|h| match h {
            HistValue::LatencyPerOutputToken => per_token.to_vec(),
            _ => latency.to_vec(),
        });
        let micros = [
            to_us(&bounds_s[0]),
            to_us(&bounds_s[1]),
            to_us(&bounds_s[2]),
            to_us(&bounds_s[3]),
            to_us(&bounds_s[4]),
        ];
        Thresholds { bounds_s, micros }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let t = [10, 100, 1000];
        let mut h = HistAcc::default();
        for v in [5, 10, 11, 5000] {
            h.observe(v, &t);
        }
        assert_eq!(h.count, 4);
        assert_eq!(h.sum, 5026);
        assert_eq!(h.buckets, vec![2, 3, 3]);
    }

    #[test]
    fn thresholds_in_micros() {
        let t = Thresholds::new(&[0.005, 1.0, 600.0], &[0.075]);
        assert_eq!(t.micros[0], vec![5_000, 1_000_000, 600_000_000]);
        assert_eq!(t.micros[4], vec![75_000]);
    }
}

//! The ledger's memory of recent rows: for every row version counted inside the lateness window,
//! its class, the transaction that wrote it and its additive values so far, keyed by
//! `(request_id, startTime)` (partitioned LiteLLM tables key rows by both).
//!
//! One flat map: a map per request id (each with its own table for the one or two start times a
//! request has) cost about 700 bytes per remembered row, the largest part of the exporter's
//! memory at a busy hour. The state file keeps the nested JSON shape it always had.

use std::collections::HashMap;

use ahash::RandomState;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::values::NV;

/// What the ledger remembers of a recent row: its class, the tuple version counted, and its
/// additive values as counted so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memo {
    pub class: u32,
    pub xmin: u32,
    pub spend_pico: i64,
    pub v: [i64; NV],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RowId {
    request_id: Box<str>,
    start_ms: i64,
}

/// A borrowed `RowId` for lookups: hashes like it (field by field, `str` for both ids), so a read
/// row is found without copying its id.
#[derive(Hash)]
struct RowIdRef<'a> {
    request_id: &'a str,
    start_ms: i64,
}

impl hashbrown::Equivalent<RowId> for RowIdRef<'_> {
    fn equivalent(&self, k: &RowId) -> bool {
        self.start_ms == k.start_ms && self.request_id == &*k.request_id
    }
}

#[derive(Debug, Clone, Default)]
pub struct Memory {
    rows: hashbrown::HashMap<RowId, Memo, RandomState>,
}

impl Memory {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get_mut(&mut self, request_id: &str, start_ms: i64) -> Option<&mut Memo> {
        self.rows.get_mut(&RowIdRef {
            request_id,
            start_ms,
        })
    }

    pub fn insert(&mut self, request_id: String, start_ms: i64, memo: Memo) {
        let id = RowId {
            request_id: request_id.into_boxed_str(),
            start_ms,
        };
        self.rows.insert(id, memo);
    }

    /// Points every remembered row at its class's new position (after a fold renumbered them).
    pub fn remap_classes(&mut self, to: impl Fn(u32) -> u32) {
        for m in self.rows.values_mut() {
            m.class = to(m.class);
        }
    }

    /// Forgets rows that started before `before_ms`.
    pub fn forget_before(&mut self, before_ms: i64) {
        self.rows.retain(|id, _| id.start_ms >= before_ms);
        // A burst's table stays allocated after its rows are forgotten; give most of it back.
        if self.rows.capacity() > 4 * self.rows.len().max(1024) {
            self.rows.shrink_to_fit();
        }
    }
}

/// `{request_id: {startTime: memo}}`, as state files have always held it.
impl Serialize for Memory {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut by_id: HashMap<&str, Vec<(i64, &Memo)>, RandomState> = HashMap::default();
        for (id, m) in &self.rows {
            by_id
                .entry(&id.request_id)
                .or_default()
                .push((id.start_ms, m));
        }
        struct Starts<'a>(Vec<(i64, &'a Memo)>);
        impl Serialize for Starts<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        s.collect_map(by_id.into_iter().map(|(id, v)| (id, Starts(v))))
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let nested: HashMap<String, HashMap<i64, Memo>> = HashMap::deserialize(d)?;
        let mut m = Memory::default();
        for (id, starts) in nested {
            for (start_ms, memo) in starts {
                m.insert(id.clone(), start_ms, memo);
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memo(class: u32) -> Memo {
        Memo {
            class,
            xmin: 7,
            spend_pico: 5,
            v: [1; NV],
        }
    }

    #[test]
    fn rows_are_keyed_by_id_and_start() {
        let mut m = Memory::default();
        m.insert("a".into(), 10, memo(1));
        m.insert("a".into(), 20, memo(2));
        m.insert("b".into(), 10, memo(3));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get_mut("a", 20).map(|x| x.class), Some(2));
        assert!(m.get_mut("a", 30).is_none());
        m.forget_before(15);
        assert_eq!(m.len(), 1);
        assert!(m.get_mut("a", 10).is_none());
    }

    #[test]
    fn the_state_file_shape_is_unchanged() {
        let mut m = Memory::default();
        m.insert("req-1".into(), 10, memo(1));
        m.insert("req-1".into(), 20, memo(2));
        let json = serde_json::to_value(&m).expect("serialize");
        assert_eq!(json["req-1"]["20"]["class"], 2);
        assert_eq!(json["req-1"].as_object().map(|o| o.len()), Some(2));
        let back: Memory = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back.len(), 2);
        // A file written by the nested map of earlier versions.
        let old =
            r#"{"x":{"5":{"class":3,"xmin":9,"spend_pico":1,"v":[0,0,0,0,0,0,0,0,0,0,0,0]}}}"#;
        let mut back: Memory = serde_json::from_str(old).expect("old shape");
        assert_eq!(
            back.get_mut("x", 5).map(|m| (m.class, m.xmin)),
            Some((3, 9))
        );
    }
}

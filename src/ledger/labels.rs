//! A class's label values, as the ledger gives them to the renderer: the one way out of the
//! ledger's storage for labels. A value that is one stored dimension comes with its string-table
//! index, so that a renderer escapes and interns each distinct value once instead of once per
//! class; a value made from several dimensions, or from outside the key (the organization's
//! alias), is spelled out. The memory guard's overflow classes read their bucket's label
//! ("other", "other-2", ...) in every label.

use std::collections::HashMap;

use super::class::{self, Dim, LabelRead};
use super::packed::{KeyView, PackedKey, Strings};
use super::Ledger;
use crate::catalogue::Label;

/// One label's value for one class.
#[derive(Debug, Clone)]
pub enum LabelValue<'a> {
    /// A value the ledger stores once for every class that has it.
    Stored(Stored<'a>),
    /// A value made for this class: from several dimensions (`model` without its provider,
    /// `exception_class`, a successful row's status code), the organization table, or a custom
    /// label.
    Spelled(String),
}

/// A stored label value: its id, and its text read only when asked for (a renderer that has seen
/// the id before does not touch the text again).
#[derive(Clone, Copy)]
pub struct Stored<'a> {
    id: u32,
    strings: &'a Strings,
}

impl<'a> Stored<'a> {
    /// Below `Ledger::stored_values`; the same id is always the same text.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The label's text ("None" for an empty value, as LiteLLM writes it).
    pub fn text(&self) -> &'a str {
        class::or_none(self.strings.get(self.id))
    }
}

impl std::fmt::Debug for Stored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stored({}, {:?})", self.id, self.text())
    }
}

/// The label values of one class (`Ledger::labels`), read from the packed key (`class::read`).
pub struct ClassLabels<'a> {
    key: &'a PackedKey,
    strings: &'a Strings,
    org_aliases: &'a HashMap<String, String>,
    overflow: bool,
}

impl<'a> ClassLabels<'a> {
    /// The value of `label`, following LiteLLM's conventions (`ClassKey::label_value`).
    pub fn value(&mut self, label: Label) -> LabelValue<'a> {
        let stored = |id: u32| {
            LabelValue::Stored(Stored {
                id,
                strings: self.strings,
            })
        };
        if self.overflow {
            // Every field of an overflow key holds the bucket's label.
            return stored(self.key.field_id(0));
        }
        let view = self.key.view(self.strings);
        match class::read(label, &view) {
            LabelRead::Field(d) => stored(self.key.field_id(d.index())),
            LabelRead::Made(text) => LabelValue::Spelled(text),
            LabelRead::OrgAlias => {
                let org = view.field(Dim::OrgId.index());
                let alias = self.org_aliases.get(org).map_or("", String::as_str);
                LabelValue::Spelled(class::or_none(alias).to_string())
            }
        }
    }
}

impl Ledger {
    /// The label values of class `c`; `org_aliases` names organizations by id (LiteLLM does not
    /// store the alias per request).
    pub fn labels<'a>(
        &'a self,
        c: usize,
        org_aliases: &'a HashMap<String, String>,
    ) -> ClassLabels<'a> {
        ClassLabels {
            key: &self.classes[c].key,
            strings: &self.strings,
            org_aliases,
            overflow: self.is_overflow(c),
        }
    }

    /// An upper bound of `LabelValue::Stored` ids.
    pub fn stored_values(&self) -> usize {
        self.strings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::class::ClassKey;
    use crate::ledger::values::{RowValues, Thresholds};
    use crate::ledger::RawRow;

    fn row(id: &str, key: ClassKey) -> RawRow {
        RawRow {
            request_id: id.into(),
            start_ms: 0,
            xmin: 1,
            key,
            values: RowValues::default(),
        }
    }

    /// Every label of every class reads what `ClassKey::label_value` says, stored or spelled,
    /// and a stored id always names the same text.
    #[test]
    fn label_values_are_the_keys_and_stored_ids_name_one_text() {
        let t = Thresholds::new(&[1.0], &[1.0]);
        let keys = [
            ClassKey {
                api_key: "hash-1".into(),
                team_id: "team-a".into(),
                org_id: "org-1".into(),
                model: "openai/gpt-4o".into(),
                provider: "openai".into(),
                failed: true,
                error_code: "429".into(),
                error_class: "RateLimitError".into(),
                error_provider: "openai".into(),
                extras: vec!["prod".into()],
                ..Default::default()
            },
            ClassKey {
                team_id: "team-a".into(),
                org_id: "org-2".into(),
                model: "gpt-4o".into(),
                extras: vec![String::new()],
                ..Default::default()
            },
        ];
        let mut ledger = Ledger::default();
        for (i, k) in keys.iter().enumerate() {
            ledger.apply_row(row(&format!("r{i}"), k.clone()), false, &t);
        }
        let aliases: HashMap<String, String> =
            [("org-1".to_string(), "Org One".to_string())].into();
        let mut by_id: HashMap<u32, String> = HashMap::new();
        let mut stored = 0;
        for (c, k) in keys.iter().enumerate() {
            let mut labels = ledger.labels(c, &aliases);
            for l in crate::catalogue::every_label() {
                let want = k.label_value(l, aliases.get(&k.org_id).map(String::as_str));
                let got = match labels.value(l) {
                    LabelValue::Stored(v) => {
                        let (id, text) = (v.id(), v.text());
                        stored += 1;
                        assert!((id as usize) < ledger.stored_values());
                        let first = by_id.entry(id).or_insert_with(|| text.to_string());
                        assert_eq!(first, text, "id {id}");
                        text.to_string()
                    }
                    LabelValue::Spelled(s) => s,
                };
                assert_eq!(got, want, "{l:?} of class {c}");
            }
        }
        assert!(stored > 20, "{stored}");
    }

    /// An overflow class of the memory guard reads its bucket's label in every label, even where
    /// a label would make something else of its fields (`model`, `status_code`, the alias).
    #[test]
    fn an_overflow_class_reads_its_bucket_label_everywhere() {
        let t = Thresholds::new(&[1.0], &[1.0]);
        let key = ClassKey {
            team_id: "team-a".into(),
            extras: vec!["prod".into()],
            ..Default::default()
        };
        let overflow = crate::ledger::fold::overflow_key(&key);
        let bucket = overflow.team_id.clone();
        let mut ledger = Ledger::default();
        ledger.apply_row(row("r", overflow), false, &t);
        assert!(ledger.is_overflow(0));
        let aliases = HashMap::new();
        let mut labels = ledger.labels(0, &aliases);
        for l in crate::catalogue::every_label() {
            match labels.value(l) {
                LabelValue::Stored(v) => assert_eq!(v.text(), bucket, "{l:?}"),
                other => panic!("{l:?}: {other:?}"),
            }
        }
    }
}

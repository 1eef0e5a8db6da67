//! How the ledger stores its class keys: every distinct dimension value once, in a table of
//! strings, and per class only the table indexes of its non-empty dimensions.
//!
//! A `ClassKey` is a `String` per dimension, a flag and a list: about 560 bytes before any text, most of it
//! empty fields, and each value (a 64-character key hash, a team id) copied into every class that
//! has it. With narrow label sets the classes outnumber the series, and the keys were most of the
//! exporter's memory (measured: about 1 KB per class, 578k classes at 10M rows). A packed key
//! is one header word and one index per present value: 24 bytes for a team, key and model.
//!
//! Rows arrive as `ClassKey`s; `KeyView` lets the ledger hash and compare a row's key and a
//! stored key without unpacking either, so counting a row allocates nothing new.

use std::hash::{BuildHasher, Hasher};

use ahash::RandomState;

use super::dimension::ClassKey;
pub use super::dimension::FIELDS;

// Bit `i` of a packed key's header says whether field `i` (`Dim` index `i`) is non-empty; the
// flags follow.
pub(super) const FAILED: u32 = 1 << FIELDS;
const CACHE_HIT: u32 = FAILED << 1;
const CACHE_MISS: u32 = FAILED << 2;
const PRESENT: u32 = (1 << FIELDS) - 1;
const _: () = assert!(FIELDS + 3 <= 32, "a packed key's header is one u32");

/// Read access to a class key's dimensions, however it is stored.
pub trait KeyView {
    /// Presence bits of the fields and the flag bits.
    fn header(&self) -> u32;
    /// Field `i` (empty when absent).
    fn field(&self, i: usize) -> &str;
    fn extras_len(&self) -> usize;
    fn extra(&self, i: usize) -> &str;
}

impl ClassKey {
    /// `cache_hit` as a header's flags say (what a stored key keeps of it).
    pub(super) fn set_cache_flags(&mut self, header: u32) {
        self.cache_hit = if header & CACHE_HIT != 0 {
            "True".into()
        } else if header & CACHE_MISS != 0 {
            "False".into()
        } else {
            String::new()
        };
    }
}

impl KeyView for ClassKey {
    fn header(&self) -> u32 {
        let mut h = 0;
        for (i, f) in self.fields().iter().enumerate() {
            if !f.is_empty() {
                h |= 1 << i;
            }
        }
        if self.failed {
            h |= FAILED;
        }
        // `ledger::project` writes "True", "False" or "" (unknown); nothing else is kept.
        if self.is_cache_hit() {
            h |= CACHE_HIT;
        } else if self.is_cache_miss() {
            h |= CACHE_MISS;
        }
        h
    }

    fn field(&self, i: usize) -> &str {
        self.fields()[i]
    }

    fn extras_len(&self) -> usize {
        self.extras.len()
    }

    fn extra(&self, i: usize) -> &str {
        &self.extras[i]
    }
}

/// Every distinct dimension value the ledger has stored, each once. Index 0 is the empty string.
/// Values are never removed: neither are the classes that use them.
#[derive(Debug, Clone)]
pub struct Strings {
    text: Vec<Box<str>>,
    /// Positions in `text`, found by the hash of the text stored there.
    index: hashbrown::HashTable<u32>,
    hasher: RandomState,
}

impl Default for Strings {
    fn default() -> Self {
        let mut s = Strings {
            text: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: RandomState::new(),
        };
        s.id("");
        s
    }
}

impl Strings {
    pub fn get(&self, id: u32) -> &str {
        &self.text[id as usize]
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The index of `s`, added if new.
    pub fn id(&mut self, s: &str) -> u32 {
        let (text, hasher) = (&self.text, &self.hasher);
        let hash = hasher.hash_one(s);
        if let Some(&i) = self.index.find(hash, |&i| &*text[i as usize] == s) {
            return i;
        }
        let i = text.len() as u32;
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&*text[j as usize]));
        self.text.push(s.into());
        i
    }
}

/// A stored class key: the header word, then the string index of each present field in field
/// order, then one per extra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedKey(Box<[u32]>);

impl PackedKey {
    pub fn pack(k: &impl KeyView, strings: &mut Strings) -> PackedKey {
        let header = k.header();
        let mut v =
            Vec::with_capacity(1 + (header & PRESENT).count_ones() as usize + k.extras_len());
        v.push(header);
        for i in 0..FIELDS {
            if header & (1 << i) != 0 {
                v.push(strings.id(k.field(i)));
            }
        }
        for i in 0..k.extras_len() {
            v.push(strings.id(k.extra(i)));
        }
        PackedKey(v.into_boxed_slice())
    }

    /// This key read through `strings`, the table it was packed with.
    pub fn view<'a>(&'a self, strings: &'a Strings) -> Packed<'a> {
        Packed { key: self, strings }
    }

    pub fn unpack(&self, strings: &Strings) -> ClassKey {
        let v = self.view(strings);
        let mut k = ClassKey {
            failed: self.failed(),
            cache_hit: if self.is_cache_hit() {
                "True"
            } else if self.is_cache_miss() {
                "False"
            } else {
                ""
            }
            .to_string(),
            extras: (0..v.extras_len())
                .map(|i| v.extra(i).to_string())
                .collect(),
            ..Default::default()
        };
        for (i, f) in k.fields_mut().into_iter().enumerate() {
            f.push_str(v.field(i));
        }
        k
    }

    pub fn failed(&self) -> bool {
        self.0[0] & FAILED != 0
    }

    /// The string-table index of field `i` (0, the empty string, when absent): the renderer finds
    /// a value shown as stored by this index instead of spelling the key out and hashing the text.
    pub(super) fn field_id(&self, i: usize) -> u32 {
        let h = self.0[0];
        if h & (1 << i) == 0 {
            return 0;
        }
        self.0[1 + (h & ((1 << i) - 1)).count_ones() as usize]
    }

    pub fn is_cache_hit(&self) -> bool {
        self.0[0] & CACHE_HIT != 0
    }

    pub fn is_cache_miss(&self) -> bool {
        self.0[0] & CACHE_MISS != 0
    }

    fn present(&self) -> usize {
        (self.0[0] & PRESENT).count_ones() as usize
    }
}

/// A packed key with the table that resolves it.
#[derive(Clone, Copy)]
pub struct Packed<'a> {
    key: &'a PackedKey,
    strings: &'a Strings,
}

impl KeyView for Packed<'_> {
    fn header(&self) -> u32 {
        self.key.0[0]
    }

    fn field(&self, i: usize) -> &str {
        let h = self.key.0[0];
        if h & (1 << i) == 0 {
            return "";
        }
        // The fields present before `i` come first.
        let pos = 1 + (h & ((1 << i) - 1)).count_ones() as usize;
        self.strings.get(self.key.0[pos])
    }

    fn extras_len(&self) -> usize {
        self.key.0.len() - 1 - self.key.present()
    }

    fn extra(&self, i: usize) -> &str {
        self.strings.get(self.key.0[1 + self.key.present() + i])
    }
}

/// The hash of a key's dimensions: equal for a `ClassKey` and its packed form.
pub fn hash(hasher: &RandomState, k: &impl KeyView) -> u64 {
    let mut h = hasher.build_hasher();
    let header = k.header();
    h.write_u32(header);
    for i in 0..FIELDS {
        if header & (1 << i) != 0 {
            h.write(k.field(i).as_bytes());
            // A terminator, so that ("ab", "c") and ("a", "bc") differ.
            h.write_u8(0xff);
        }
    }
    h.write_usize(k.extras_len());
    for i in 0..k.extras_len() {
        h.write(k.extra(i).as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// Whether two keys have the same dimensions.
pub fn same(a: &impl KeyView, b: &impl KeyView) -> bool {
    let header = a.header();
    header == b.header()
        && (0..FIELDS).all(|i| header & (1 << i) == 0 || a.field(i) == b.field(i))
        && a.extras_len() == b.extras_len()
        && (0..a.extras_len()).all(|i| a.extra(i) == b.extra(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClassKey {
        ClassKey {
            api_key: "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b".into(),
            team_id: "team-1".into(),
            model: "openai/gpt-4o".into(),
            provider: "openai".into(),
            stream: "True".into(),
            failed: true,
            cache_hit: "False".into(),
            extras: vec!["".into(), "prod".into()],
            ..Default::default()
        }
    }

    #[test]
    fn labels_read_alike_packed_or_not_and_fields_are_the_texts_label_value_gives() {
        use crate::catalogue::Label::*;
        let mut s = Strings::default();
        // The catalogue's labels, and a second custom label.
        let mut labels = crate::catalogue::every_label();
        labels.push(Extra(1));
        let full = ClassKey {
            key_alias: "alias".into(),
            team_alias: "Team \"A\"".into(),
            user_id: "u1".into(),
            user_email: "a@b.c".into(),
            end_user: "cust".into(),
            org_id: "org".into(),
            model_group: "gpt".into(),
            original_model_group: "gpt-orig".into(),
            model_id: "mid".into(),
            api_base: "https://x".into(),
            client_ip: "10.0.0.1".into(),
            user_agent: "ua".into(),
            service_tier: "flex".into(),
            error_code: "429".into(),
            error_class: "RateLimitError".into(),
            error_provider: "openai".into(),
            ..key()
        };
        let succeeded = ClassKey {
            failed: false,
            ..full.clone()
        };
        let sparse = ClassKey {
            original_model_group: String::new(),
            ..key()
        };
        let mut checked = 0;
        for k in [full, succeeded, sparse, ClassKey::default()] {
            let p = PackedKey::pack(&k, &mut s);
            for &l in &labels {
                let read = crate::ledger::class::read(l, &p.view(&s));
                assert_eq!(read, crate::ledger::class::read(l, &k), "{l:?} of {k:?}");
                if let crate::ledger::class::LabelRead::Field(d) = read {
                    let shown = crate::ledger::class::or_none(s.get(p.field_id(d.index())));
                    assert_eq!(shown, k.label_value(l, None), "{l:?} of {k:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 60, "{checked}");
    }

    #[test]
    fn a_packed_key_unpacks_to_itself_and_hashes_alike() {
        let mut s = Strings::default();
        let k = key();
        let p = PackedKey::pack(&k, &mut s);
        assert_eq!(p.unpack(&s), k);
        let h = RandomState::new();
        assert_eq!(hash(&h, &k), hash(&h, &p.view(&s)));
        assert!(same(&k, &p.view(&s)));
        assert!(p.failed() && p.is_cache_miss() && !p.is_cache_hit());
        // Header, five present fields, two extras.
        assert_eq!(p.0.len(), 8);
        // Each value is stored once, whichever key uses it.
        let mut other = k.clone();
        other.model_group = "gpt4".into();
        let q = PackedKey::pack(&other, &mut s);
        // "", the five values, "prod" (the empty extra is ""), and "gpt4".
        assert_eq!(s.len(), 1 + 5 + 1 + 1);
        assert!(!same(&other, &p.view(&s)));
        assert_eq!(q.unpack(&s), other);
    }

    #[test]
    fn keys_that_differ_anywhere_are_not_the_same() {
        let mut s = Strings::default();
        let k = key();
        let p = PackedKey::pack(&k, &mut s);
        let variants: Vec<ClassKey> = vec![
            ClassKey {
                failed: false,
                ..k.clone()
            },
            ClassKey {
                cache_hit: "".into(),
                ..k.clone()
            },
            ClassKey {
                extras: vec!["prod".into(), "".into()],
                ..k.clone()
            },
            ClassKey {
                extras: vec!["".into()],
                ..k.clone()
            },
            // The same text in a different field.
            ClassKey {
                team_id: String::new(),
                team_alias: "team-1".into(),
                ..k.clone()
            },
            ClassKey {
                stream: "False".into(),
                ..k.clone()
            },
        ];
        for v in &variants {
            assert!(!same(v, &p.view(&s)), "{v:?}");
            let q = PackedKey::pack(v, &mut s);
            assert_ne!(q, p);
            assert_eq!(q.unpack(&s), *v);
        }
    }
}

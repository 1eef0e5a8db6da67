//! One spend-log row, as `sql/ledger/project.sql` ships it, turned into the facts the ledger
//! counts ([`RawRow`]): every label dimension read by its source (`dimension::DIMENSIONS`), and
//! the single definition of every per-row number, used by every read (catch-up, polls,
//! backfill). Columns are found by name, once per statement ([`Reader`]). Pure functions, no I/O.
//!
//! The rules are PostgreSQL's, reproduced exactly so that figures equal what SQL says:
//! `->>` on the metadata JSON (strings unescaped, JSON null as absent, anything else as its JSON
//! text), `numeric` rounding of JSON numbers (half away from zero, on the decimal text, never
//! through a float), `float8` rounding of spend (half to even), and timestamp arithmetic on the
//! stored microseconds. Numbers become integers (spend in pico-dollars, durations in
//! microseconds) so that sums are exact and a rebuild gives the same value bit for bit. Bad
//! numbers (NaN, infinite, negative, absurd) become 0 and are counted in `bad_numbers`.

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Column, Row};

use super::class::{ClassKey, Dims};
use super::dimension::{Dim, Identity, Source, DIMENSIONS, FIELDS};
use super::values::{additive_index, RowValues, NV};
use super::RawRow;
use crate::catalogue::{CounterValue, HistValue};

/// A configured custom label: a JSON path into the row's metadata (LiteLLM's
/// `custom_prometheus_metadata_labels`, read from `metadata.spend_logs_metadata` first, then
/// `metadata`), or a LIKE pattern matched against `request_tags` (`custom_prometheus_tags`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Extra {
    Metadata(Vec<String>),
    Tag(String),
}

/// Label values (and so series keys) are capped at this many characters: a hostile alias of a
/// megabyte costs a kilobyte per series, not a megabyte.
pub const MAX_CHARS: usize = 1024;

/// Every per-row number is capped here (about 31 years in microseconds, a quadrillion tokens):
/// beyond it a value is corrupt, and the cap keeps every sum far from overflowing.
const CAP: i64 = 1_000_000_000_000_000;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_US: i128 = 946_684_800_000_000;

/// A `timestamp` as stored: microseconds since 2000-01-01, `i64::MAX`/`MIN` for +/-infinity.
struct Ts(i64);

impl Ts {
    fn finite(&self) -> Option<i128> {
        (self.0 != i64::MAX && self.0 != i64::MIN).then_some(self.0 as i128)
    }
}

impl<'a> FromSql<'a> for Ts {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Ts(i64::from_be_bytes(raw.try_into()?)))
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }
}

/// A transaction id (`xmin`), 32 bits on the wire.
struct Xid(u32);

impl<'a> FromSql<'a> for Xid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Xid(u32::from_be_bytes(raw.try_into()?)))
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::XID
    }
}

/// A `jsonb` value as its JSON text, borrowed from the row (binary jsonb is a version byte
/// followed by the same text `jsonb_out` writes).
struct JsonText<'a>(&'a str);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }
    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
}

/// The members of a JSON object's text, as (key, raw value text), in order. A small scanner
/// instead of a parser: PostgreSQL wrote the text, so it is well formed, and the scanner skips the
/// members nobody reads without parsing them and without recursion (metadata nests as deep as
/// callers make it; a recursive parser has a depth limit or a stack to overflow). Not an object,
/// or malformed: no members.
fn members(text: &str) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut open = ws(b, 0) < b.len() && b[ws(b, 0)] == b'{';
    if open {
        i = ws(b, 0) + 1;
    }
    std::iter::from_fn(move || {
        if !open {
            return None;
        }
        i = ws(b, i);
        if i < b.len() && b[i] == b',' {
            i = ws(b, i + 1);
        }
        if i >= b.len() || b[i] != b'"' {
            open = false;
            return None;
        }
        let k = i;
        i = skip_value(b, i);
        let key_text = &text[k..i];
        i = ws(b, i);
        if i >= b.len() || b[i] != b':' {
            open = false;
            return None;
        }
        let v = ws(b, i + 1);
        i = skip_value(b, v);
        if i > b.len() || v >= i {
            open = false;
            return None;
        }
        Some((unquote(key_text)?, &text[v..i]))
    })
}

/// The elements of a JSON array's text, as raw value texts (see [`members`]).
fn elements(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = ws(b, 0);
    if i >= b.len() || b[i] != b'[' {
        return out;
    }
    i += 1;
    loop {
        i = ws(b, i);
        if i < b.len() && b[i] == b',' {
            i = ws(b, i + 1);
        }
        if i >= b.len() || b[i] == b']' {
            return out;
        }
        let v = i;
        i = skip_value(b, v);
        if i > b.len() || v >= i {
            return out;
        }
        out.push(&text[v..i]);
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The index just past the JSON value starting at `i`: a string, a nested object or array
/// (brackets counted, strings skipped), or a scalar (up to the next delimiter).
fn skip_value(b: &[u8], mut i: usize) -> usize {
    let skip_string = |mut i: usize| {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        b.len() + 1
    };
    match b.get(i) {
        Some(b'"') => skip_string(i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len() + 1
        }
        Some(_) => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace()
            {
                i += 1;
            }
            i
        }
        None => b.len() + 1,
    }
}

/// A JSON string's text unescaped (borrowed when it has no escapes).
fn unquote(t: &str) -> Option<std::borrow::Cow<'_, str>> {
    let inner = t.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(t)
            .ok()
            .map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(inner))
    }
}

/// Declares a struct of optional raw members and a reader that fills it from an object's text
/// (a member is `Some` whenever its key is present, even for `null`: jsonb's `coalesce` over a
/// JSON null does not fall through, so present-but-null must stay visible). Not an object
/// (PostgreSQL's `jsonb_typeof(x) <> 'object'`): every member absent, as for `{}`.
macro_rules! json_members {
    ($name:ident { $($field:ident),* $(,)? }) => {
        #[derive(Default)]
        struct $name<'a> {
            $($field: Option<&'a str>,)*
        }
        impl<'a> $name<'a> {
            // `Metadata` itself is taken member by member, with the dimensions' members
            // (`Reader::metadata`).
            #[allow(dead_code)]
            fn read(text: Option<&'a str>) -> Self {
                let mut out = Self::default();
                if let Some(t) = text {
                    for (k, v) in members(t) {
                        out.take(&k, v);
                    }
                }
                out
            }

            /// Keeps member `k` if it is one of these.
            fn take(&mut self, k: &str, v: &'a str) {
                match k {
                    $(stringify!($field) => self.$field = Some(v),)*
                    _ => {}
                }
            }
        }
    };
}

// The metadata members the per-row numbers, the outcome and the custom labels read, and the
// members of the nested objects they read (the label dimensions' members are `Reader::heads`).
json_members!(Metadata {
    status,
    litellm_overhead_time_ms,
    usage_object,
    additional_usage_values,
    spend_logs_metadata,
});
json_members!(Usage {
    prompt_tokens_details,
    completion_tokens_details,
    output_image_count,
    duration_seconds,
    cache_read_input_tokens,
    cache_creation_input_tokens,
});
json_members!(PromptDetails {
    cached_tokens,
    cache_write_tokens,
    cache_creation_tokens,
    audio_tokens,
});
json_members!(CompletionDetails {
    reasoning_tokens,
    audio_tokens,
});
json_members!(AdditionalUsage {
    cache_read_input_tokens,
    cache_creation_input_tokens,
});

/// PostgreSQL's `->>`: a string unescaped, JSON null absent, any other value as its JSON text
/// (which is jsonb's own output, as `->>` writes it, since the text came from jsonb).
fn json_text(v: Option<&str>) -> Option<String> {
    match v? {
        "null" => None,
        t if t.starts_with('"') => serde_json::from_str::<String>(t).ok(),
        t => Some(t.to_string()),
    }
}

/// A JSON number rounded like `least(greatest(round(x * 10^shift), 0), 1e15)` in PostgreSQL's
/// `numeric`; None when the value is not a JSON number (`jsonb_typeof(x) <> 'number'`).
fn json_count(v: Option<&str>, shift: i64) -> Option<i64> {
    let t = v?;
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return None;
    }
    Some(decimal_round(t, shift))
}

/// Exact decimal rounding of a JSON number's text times `10^shift`: half away from zero (as
/// `numeric`'s round), then clamped to [0, CAP]. Works on the digits, so no float ever rounds a
/// value twice; handles exponents although jsonb's output never has them.
pub fn decimal_round(text: &str, shift: i64) -> i64 {
    let (negative, t) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return 0;
    }
    // value = digits * 10^(point - digits.len()), with `point` the position of the decimal point.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let first = digits.iter().position(|&d| d != 0);
    let Some(first) = first else { return 0 };
    let point = int.len() as i64 + exp.clamp(-1_000_000, 1_000_000) + shift;
    // Digits of the integer part: those before `point`.
    let int_len = point - first as i64;
    if int_len > 16 {
        return if negative { 0 } else { CAP };
    }
    let mut value: i64 = 0;
    for i in first as i64..point.min(digits.len() as i64) {
        value = value * 10 + i64::from(digits[i as usize]);
    }
    if point > digits.len() as i64 {
        value *= 10i64.pow((point - digits.len() as i64) as u32);
    }
    // Half away from zero: the first dropped digit alone decides.
    if point >= 0 && (point as usize) < digits.len() && digits[point as usize] >= 5 {
        value += 1;
    }
    if negative {
        0
    } else {
        value.min(CAP)
    }
}

/// PostgreSQL's `left(coalesce(x, ''), 1024)`.
fn capped(v: Option<&str>) -> String {
    let s = v.unwrap_or("");
    if s.len() <= MAX_CHARS {
        return s.to_string();
    }
    match s.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

fn capped_owned(v: Option<String>) -> String {
    match v {
        Some(s) if s.len() > MAX_CHARS => capped(Some(&s)),
        Some(s) => s,
        None => String::new(),
    }
}

/// A span in microseconds between two finite timestamps, 0 when not positive, the cap from
/// CAP on (PostgreSQL's timestamp subtraction wraps for spans beyond 292,000 years).
fn span_us(from: i128, to: i128) -> i64 {
    let d = to - from;
    if d <= 0 {
        0
    } else {
        d.min(CAP as i128) as i64
    }
}

/// Integer division rounded half away from zero, for non-negative operands.
fn div_round(a: i64, b: i64) -> i64 {
    ((2 * a as i128 + b as i128) / (2 * b as i128)) as i64
}

/// PostgreSQL's `#>>` on JSON text: walk `path` through objects (by key) and arrays (by index,
/// negative from the end), then `->>` the value found.
fn path_text(text: &str, path: &[String]) -> Option<String> {
    let mut cur: &str = text;
    for step in path {
        cur = if cur.starts_with('{') {
            members(cur).find(|(k, _)| k == step)?.1
        } else if cur.starts_with('[') {
            let items = elements(cur);
            let i: i64 = step.trim_start().parse().ok()?;
            let i = if i < 0 { items.len() as i64 + i } else { i };
            items.get(usize::try_from(i).ok()?)?
        } else {
            return None;
        };
    }
    json_text(Some(cur))
}

/// What a projection turns rows into: the dimensions kept, identity switches, the stream
/// label, custom labels.
pub struct Rules<'a> {
    pub dims: Dims,
    pub identity: Identity,
    pub stream: bool,
    pub extras: &'a [Extra],
}

/// The positions of `project.sql`'s columns other than the dimensions'.
struct Columns {
    request_id: usize,
    start_time: usize,
    end_time: usize,
    completion_start_time: usize,
    xmin: usize,
    status: usize,
    cache_hit: usize,
    spend: usize,
    tokens: [usize; 3],
    metadata: usize,
    /// One per `Extra::Tag`, in configuration order.
    tags: Vec<usize>,
}

/// How a kept dimension is read from a row (its `Source`, resolved against the statement).
#[derive(Debug, Clone, Copy)]
enum Fill {
    Column(usize),
    Metadata,
    ColumnOrMetadata(usize),
    Stream,
}

/// A top-level metadata member that kept dimensions read: the member itself, or members of it
/// (an object). The metadata is scanned once per row, its nested objects once each.
struct Head {
    name: &'static str,
    dim: Option<usize>,
    nested: Vec<(&'static str, usize)>,
}

/// Turns the rows of one `project.sql` statement into the ledger's raw facts: built from the
/// statement's columns (found by name) and the rules, once per statement, then used per row.
pub struct Reader<'a> {
    rules: &'a Rules<'a>,
    col: Columns,
    /// The dimensions the rules keep (exported, and allowed by the identity switches), in `Dim`
    /// order; the others stay empty and are never allocated.
    kept: Vec<(usize, Fill)>,
    heads: Vec<Head>,
}

/// A row's times, from the timestamps (millisecond precision), which every schema has.
struct Times {
    /// Epoch milliseconds, +/-infinity as the extreme integers.
    start_ms: i64,
    total_us: i64,
    /// Time to the first token of a stream.
    ttft_us: Option<i64>,
    /// 1 when the end is missing or before the start.
    bad: i64,
}

impl<'a> Reader<'a> {
    /// Panics when a column is missing: `project.sql` and this reader disagree, a programming
    /// error that every test reading rows catches.
    pub fn new(columns: &[Column], rules: &'a Rules<'a>) -> Reader<'a> {
        let find = |name: &str| {
            columns
                .iter()
                .position(|c| c.name() == name)
                .unwrap_or_else(|| panic!("sql/ledger/project.sql has no column {name}"))
        };
        let tag_count = rules
            .extras
            .iter()
            .filter(|e| matches!(e, Extra::Tag(_)))
            .count();
        let col = Columns {
            request_id: find("request_id"),
            start_time: find("start_time"),
            end_time: find("end_time"),
            completion_start_time: find("completion_start_time"),
            xmin: find("xmin"),
            status: find("status"),
            cache_hit: find("cache_hit"),
            spend: find("spend"),
            tokens: ["total_tokens", "prompt_tokens", "completion_tokens"].map(&find),
            metadata: find("metadata"),
            tags: (0..tag_count).map(|i| find(&format!("tag_{i}"))).collect(),
        };
        let mut heads: Vec<Head> = Vec::new();
        let mut member = |path: &'static [&'static str], d: usize| {
            let h = match heads.iter().position(|h| h.name == path[0]) {
                Some(h) => h,
                None => {
                    heads.push(Head {
                        name: path[0],
                        dim: None,
                        nested: Vec::new(),
                    });
                    heads.len() - 1
                }
            };
            match path {
                [_] => heads[h].dim = Some(d),
                [_, inner] => heads[h].nested.push((*inner, d)),
                _ => unreachable!("metadata paths have one or two keys"),
            }
        };
        let mut kept = Vec::new();
        for (d, (dim, def)) in Dim::ALL.iter().zip(&DIMENSIONS).enumerate() {
            if !rules.dims.has(dim.bit()) || !def.allowed(&rules.identity) {
                continue;
            }
            kept.push((
                d,
                match def.source {
                    Source::Column | Source::OptionalColumn(_) => Fill::Column(find(def.name)),
                    Source::Metadata(path) => {
                        member(path, d);
                        Fill::Metadata
                    }
                    Source::OptionalColumnOrMetadata(_, path) => {
                        member(path, d);
                        Fill::ColumnOrMetadata(find(def.name))
                    }
                    Source::Stream if rules.stream => Fill::Stream,
                    Source::Stream => continue,
                },
            ));
        }
        Reader {
            rules,
            col,
            kept,
            heads,
        }
    }

    /// Turns one row of `project.sql` into the ledger's raw facts.
    pub fn row(&self, r: &Row) -> Result<RawRow, tokio_postgres::Error> {
        let metadata: Option<JsonText> = r.try_get(self.col.metadata)?;
        // PostgreSQL's `jsonb_typeof(metadata) = 'object'`, else `{}`; the same for nested objects.
        let md_obj = metadata
            .as_ref()
            .map(|m| m.0)
            .filter(|t| t.starts_with('{'))
            .unwrap_or("{}");
        let (md, members) = self.metadata(md_obj);
        let times = self.times(r)?;
        let xmin: Xid = r.try_get(self.col.xmin)?;
        Ok(RawRow {
            request_id: r.try_get(self.col.request_id)?,
            start_ms: times.start_ms,
            xmin: xmin.0,
            key: self.key(r, &md, md_obj, &members, &times)?,
            values: self.values(r, &md, &times)?,
        })
    }

    /// The metadata members the numbers read, and the raw value of each kept dimension's member
    /// (by `Dim` index), in one scan of the metadata.
    fn metadata<'r>(&self, md_obj: &'r str) -> (Metadata<'r>, [Option<&'r str>; FIELDS]) {
        let mut md = Metadata::default();
        let mut heads = [None; FIELDS];
        for (k, v) in members(md_obj) {
            md.take(&k, v);
            if let Some(h) = self.heads.iter().position(|h| h.name == k) {
                heads[h] = Some(v);
            }
        }
        let mut found = [None; FIELDS];
        for (head, v) in self.heads.iter().zip(heads) {
            let Some(v) = v else { continue };
            if let Some(d) = head.dim {
                found[d] = Some(v);
            }
            if !head.nested.is_empty() {
                for (k, v) in members(v) {
                    if let Some(&(_, d)) = head.nested.iter().find(|(name, _)| k == *name) {
                        found[d] = Some(v);
                    }
                }
            }
        }
        (md, found)
    }

    fn times(&self, r: &Row) -> Result<Times, tokio_postgres::Error> {
        let start: Option<Ts> = r.try_get(self.col.start_time)?;
        let end: Option<Ts> = r.try_get(self.col.end_time)?;
        let first_token: Option<Ts> = r.try_get(self.col.completion_start_time)?;
        let start_ms = match &start {
            None => i64::MIN,
            Some(t) => match t.finite() {
                Some(us) => {
                    let e = us + PG_EPOCH_US;
                    // numeric -> bigint rounds half away from zero.
                    ((e.abs() + 500) / 1000 * e.signum()) as i64
                }
                None if t.0 > 0 => i64::MAX,
                None => i64::MIN,
            },
        };
        let (s, e) = (
            start.as_ref().and_then(Ts::finite),
            end.as_ref().and_then(Ts::finite),
        );
        let (total_us, bad) = match (s, e) {
            (Some(s), Some(e)) => (span_us(s, e), i64::from(e < s)),
            _ => (0, 1),
        };
        // A stream's first token comes before its end; LiteLLM writes completionStartTime =
        // endTime for everything else.
        let ttft_us = match (s, first_token.as_ref().and_then(Ts::finite), e) {
            (Some(s), Some(f), Some(e)) if f < e && f >= s => Some(span_us(s, f)),
            _ => None,
        };
        Ok(Times {
            start_ms,
            total_us,
            ttft_us,
            bad,
        })
    }

    /// The row's numbers: spend, the additive values and the histogram observations an
    /// exported family shows (`Dims::value`, `Dims::hist`), and how many were bad.
    fn values(
        &self,
        r: &Row,
        md: &Metadata<'_>,
        times: &Times,
    ) -> Result<RowValues, tokio_postgres::Error> {
        let spend: Option<f64> = r.try_get(self.col.spend)?;
        let tokens: [Option<i64>; 3] = [
            r.try_get(self.col.tokens[0])?,
            r.try_get(self.col.tokens[1])?,
            r.try_get(self.col.tokens[2])?,
        ];
        // Spend: NaN compares false here (unlike in PostgreSQL, where it is greater than every
        // number; the explicit upper bound makes both agree). A request costing a million dollars
        // or more is taken as corrupt. float8 `round` is half to even.
        let (spend_pico, spend_bad) = match spend {
            Some(x) if (0.0..1e6).contains(&x) => ((x * 1e12).round_ties_even() as i64, 0),
            Some(_) => (0, 1),
            None => (0, 0),
        };
        let tokens_bad = i64::from(tokens.iter().any(|t| t.is_some_and(|t| t < 0)));
        let tokens = tokens.map(|t| t.unwrap_or(0));
        let v = self.additive(md, tokens);

        let overhead_us = json_count(md.litellm_overhead_time_ms, 3);
        let (total_us, ttft_us, completion_tokens) = (times.total_us, times.ttft_us, tokens[2]);
        let per_token_us = (completion_tokens > 0)
            .then(|| div_round(ttft_us.unwrap_or(total_us), completion_tokens));
        let observations = [
            (HistValue::TotalLatency, Some(total_us)),
            (
                HistValue::LlmApiLatency,
                Some((total_us - overhead_us.unwrap_or(0)).max(0)),
            ),
            (HistValue::TimeToFirstToken, ttft_us),
            (HistValue::Overhead, overhead_us),
            (HistValue::LatencyPerOutputToken, per_token_us),
        ];
        let mut hist = [None; 5];
        for (h, x) in observations {
            if self.rules.dims.has(Dims::hist(h)) {
                hist[h.index()] = x;
            }
        }
        Ok(RowValues {
            spend_pico,
            v,
            bad_numbers: spend_bad + tokens_bad + times.bad,
            hist,
        })
    }

    /// The additive values an exported counter shows (`Dims::value`), each named by its counter
    /// and stored at `values::additive_index`, from the token columns (total, prompt,
    /// completion) and the usage members of the metadata.
    fn additive(&self, md: &Metadata<'_>, tokens: [i64; 3]) -> [i64; NV] {
        let [total, prompt_tokens, completion_tokens] = tokens;
        let usage = Usage::read(md.usage_object);
        let additional = AdditionalUsage::read(md.additional_usage_values);
        let prompt = PromptDetails::read(usage.prompt_tokens_details);
        let completion = CompletionDetails::read(usage.completion_tokens_details);
        let count = |v: Option<&str>| json_count(v, 0);
        let ptd_cached = count(prompt.cached_tokens);
        // jsonb's coalesce: a present JSON null does not fall through to the second spelling.
        let ptd_cache_write = count(prompt.cache_write_tokens.or(prompt.cache_creation_tokens));
        let a_cache_read = count(additional.cache_read_input_tokens);
        let a_cache_creation = count(additional.cache_creation_input_tokens);
        let u_cache_read = count(usage.cache_read_input_tokens);
        let u_cache_creation = count(usage.cache_creation_input_tokens);
        use CounterValue as C;
        let additive = [
            (C::TotalTokens, total.max(0)),
            (C::PromptTokens, prompt_tokens.max(0)),
            (C::CompletionTokens, completion_tokens.max(0)),
            (
                C::CachedInputTokens,
                ptd_cached.or(a_cache_read).unwrap_or(0),
            ),
            (
                C::CacheCreationInputTokens,
                ptd_cache_write.or(a_cache_creation).unwrap_or(0),
            ),
            (C::InputAudioTokens, count(prompt.audio_tokens).unwrap_or(0)),
            (
                C::OutputReasoningTokens,
                count(completion.reasoning_tokens).unwrap_or(0),
            ),
            (
                C::OutputAudioTokens,
                count(completion.audio_tokens).unwrap_or(0),
            ),
            (
                C::ImagesGenerated,
                count(usage.output_image_count).unwrap_or(0),
            ),
            (
                C::VideoSeconds,
                json_count(usage.duration_seconds, 6).unwrap_or(0),
            ),
            (
                C::ProviderCacheReadTokens,
                u_cache_read.or(ptd_cached).unwrap_or(0),
            ),
            (
                C::ProviderCacheCreationTokens,
                u_cache_creation.or(ptd_cache_write).unwrap_or(0),
            ),
        ];
        let mut v = [0; NV];
        for (c, x) in additive {
            if let Some(j) = additive_index(c).filter(|j| self.rules.dims.has(Dims::value(*j))) {
                v[j] = x;
            }
        }
        v
    }

    /// The row's class key: each kept dimension read by its source, the flags an exported family
    /// needs (`Dims::OUTCOME`, `Dims::CACHE`), the custom labels.
    fn key(
        &self,
        r: &Row,
        md: &Metadata<'_>,
        md_obj: &str,
        members: &[Option<&str>; FIELDS],
        times: &Times,
    ) -> Result<ClassKey, tokio_postgres::Error> {
        let dims = self.rules.dims;
        let text = |i: usize| -> Result<Option<&str>, tokio_postgres::Error> { r.try_get(i) };
        let md_text = |d: usize| capped_owned(json_text(members[d]));
        // The status column wins when present and not NULL (even when empty).
        let failed = dims.has(Dims::OUTCOME)
            && match text(self.col.status)? {
                Some(s) => s == "failure",
                None => json_text(md.status).as_deref() == Some("failure"),
            };
        let cache_hit = match text(self.col.cache_hit)?.filter(|_| dims.has(Dims::CACHE)) {
            Some("True") => "True",
            Some("False") => "False",
            _ => "",
        };
        let mut key = ClassKey {
            failed,
            cache_hit: cache_hit.to_string(),
            extras: self.extras(r, md, md_obj)?,
            ..ClassKey::default()
        };
        let fields = key.fields_mut();
        for &(d, fill) in &self.kept {
            *fields[d] = match fill {
                Fill::Column(i) => capped(text(i)?),
                Fill::Metadata => md_text(d),
                Fill::ColumnOrMetadata(i) => match text(i)? {
                    Some(v) if !v.is_empty() => capped(Some(v)),
                    _ => md_text(d),
                },
                Fill::Stream if times.ttft_us.is_some() => "True".to_string(),
                Fill::Stream => String::new(),
            };
        }
        Ok(key)
    }

    /// The custom labels' values, in configuration order (none unless an exported family shows
    /// them).
    fn extras(
        &self,
        r: &Row,
        md: &Metadata<'_>,
        md_obj: &str,
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        let extras = self.rules.extras;
        if !self.rules.dims.has(Dims::EXTRAS) {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(extras.len());
        let mut tags = self.col.tags.iter();
        for x in extras {
            out.push(match x {
                Extra::Metadata(path) => {
                    let nested = md.spend_logs_metadata.and_then(|v| path_text(v, path));
                    capped_owned(nested.or_else(|| path_text(md_obj, path)))
                }
                Extra::Tag(_) => {
                    let col = *tags.next().expect("a column per tag");
                    let hit: bool = r.try_get(col)?;
                    if hit { "true" } else { "false" }.to_string()
                }
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_rounding_is_numeric_rounding() {
        assert_eq!(decimal_round("0", 0), 0);
        assert_eq!(decimal_round("2.5", 0), 3);
        assert_eq!(decimal_round("2.4999999999999999999", 0), 2);
        assert_eq!(decimal_round("-2.5", 0), 0);
        assert_eq!(decimal_round("0.0005", 3), 1);
        assert_eq!(decimal_round("0.00049", 3), 0);
        assert_eq!(decimal_round("1.5", 6), 1_500_000);
        assert_eq!(decimal_round("12", 3), 12_000);
        assert_eq!(decimal_round("1e3", 0), 1000);
        assert_eq!(decimal_round("1E-1", 1), 1);
        assert_eq!(decimal_round("999999999999999.5", 0), CAP);
        assert_eq!(decimal_round("1000000000000000000000", 0), CAP);
        assert_eq!(decimal_round("0.000000000000000000001", 0), 0);
        assert_eq!(decimal_round("1e400", 0), CAP);
        assert_eq!(decimal_round("1e-400", 6), 0);
        assert_eq!(decimal_round("007.50", 0), 8);
    }

    #[test]
    fn arrow_text_semantics() {
        assert_eq!(json_text(Some("\"a\\nb\"")), Some("a\nb".into()));
        assert_eq!(json_text(Some("null")), None);
        assert_eq!(json_text(Some("12.50")), Some("12.50".into()));
        assert_eq!(json_text(Some("{\"a\": 1}")), Some("{\"a\": 1}".into()));
        assert_eq!(json_text(None), None);
    }

    #[test]
    fn paths_walk_objects_and_arrays() {
        let j = r#"{"a": {"b": [10, "x", {"c": null}]}}"#;
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(path_text(j, &p(&["a", "b", "0"])), Some("10".into()));
        assert_eq!(path_text(j, &p(&["a", "b", "-2"])), Some("x".into()));
        assert_eq!(path_text(j, &p(&["a", "b", "2", "c"])), None);
        assert_eq!(path_text(j, &p(&["a", "b", "z"])), None);
        assert_eq!(path_text(j, &p(&["a", "x"])), None);
        assert_eq!(
            path_text(j, &p(&["a"])),
            Some(r#"{"b": [10, "x", {"c": null}]}"#.into())
        );
    }

    #[test]
    fn caps_count_characters() {
        let long = "é".repeat(2000);
        assert_eq!(capped(Some(&long)).chars().count(), MAX_CHARS);
        assert_eq!(capped(None), "");
        assert_eq!(capped_owned(Some(long)).chars().count(), MAX_CHARS);
    }

    #[test]
    fn objects_only() {
        let m = Metadata::read(Some("[1, 2]"));
        assert!(m.spend_logs_metadata.is_none());
        let m = Metadata::read(Some(
            r#"{"spend_logs_metadata": null, "status": "failure", "x": {"spend_logs_metadata": 1}}"#,
        ));
        assert_eq!(m.spend_logs_metadata, Some("null"));
        assert_eq!(json_text(m.status).as_deref(), Some("failure"));
        let m = Metadata::read(Some(
            r#"{"a\"b": "}{", "deep": [[[{"]": "["}]]], "spend_logs_metadata": "ok\"x", "status": 12.5}"#,
        ));
        assert_eq!(json_text(m.spend_logs_metadata).as_deref(), Some("ok\"x"));
        assert_eq!(m.status, Some("12.5"));
        let keys: Vec<String> = members(r#"{"k\u00e9": 1, "b": [1, {"c": 2}], "c": true}"#)
            .map(|(k, _)| k.into_owned())
            .collect();
        assert_eq!(keys, ["ké", "b", "c"]);
        assert_eq!(
            elements(r#"[1, "a,b", {"x": [2]}, null]"#),
            ["1", "\"a,b\"", "{\"x\": [2]}", "null"]
        );
    }

    #[test]
    fn rounding_helpers() {
        assert_eq!(div_round(5, 2), 3);
        assert_eq!(div_round(4, 3), 1);
        assert_eq!(div_round(0, 7), 0);
        assert_eq!(span_us(10, 5), 0);
        assert_eq!(span_us(0, i128::MAX / 2), CAP);
    }
}

//! The label dimensions of the spend-log ledger, each defined once, in the `dimensions!` list
//! below: its `ClassKey` field, where a row's value comes from (a column of
//! `sql/ledger/project.sql`, a metadata member, ...), whether it identifies a person, whether the
//! memory guard hashes it, and the labels that show it as stored. Everything else follows from
//! the list: `Dim` (a dimension's index, and so its bit in `Dims` and in a packed key's header),
//! `DIMENSIONS`, `ClassKey`'s fields and its field arrays, and `Dim::shown_by`. `project` reads
//! each dimension by its source, `class` derives `Dims::of` and the label values, `packed` stores
//! the fields by index.
//!
//! Adding a dimension: one line in the list (at the end: the order is part of the fold's stable
//! hash and of the state fingerprint's `Dims` bits), plus its column in `project.sql` for a column
//! source. A label made from several dimensions (`model` without its provider, ...) is defined in
//! `class::made`.

use serde::{Deserialize, Serialize};

use crate::catalogue::Label;

/// Which person-identifying dimensions are read at all. Off means the label is exported as
/// "None" and the value never leaves the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    pub end_user: bool,
    pub user_email: bool,
    pub client_ip: bool,
}

/// Where a dimension's value comes from in a spend-log row. Values are text, capped at
/// `project::MAX_CHARS` characters; a missing value (SQL NULL, an absent member, JSON null) is "".
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// The column of `project.sql` named like the dimension.
    Column,
    /// The same, for a LiteLLM column that not every supported schema has: `project.sql` holds
    /// the placeholder `{{<dimension>}}`, which `read::Projection` fills with this column of the
    /// table read, or NULL where that table lacks it (or where the identity switch is off).
    OptionalColumn(&'static str),
    /// PostgreSQL's `->>` of the member of the row's metadata at this path (one or two object
    /// keys).
    Metadata(&'static [&'static str]),
    /// `OptionalColumn(.0)` where it holds a non-empty value, else `Metadata(.1)` (LiteLLM wrote
    /// the value to the metadata before it had the column).
    OptionalColumnOrMetadata(&'static str, &'static [&'static str]),
    /// "True" for a streamed request (its first token came before its end) with
    /// `prometheus_emit_stream_label`, else "" (LiteLLM 1.110.2 shows every other request as
    /// "None", even `"stream": false`).
    Stream,
}

/// One label dimension of the ledger (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Dimension {
    /// The `ClassKey` field, the name of its column in `project.sql` (for a column source) and
    /// its key in the state file.
    pub name: &'static str,
    pub source: Source,
    /// The identity switch that lets a person-identifying dimension be read at all.
    pub person: Option<fn(&Identity) -> bool>,
    /// Whether the memory guard's stable hash reads it (`fold::stable_hash`): the error fields
    /// are left out, so that a combination's failures fold together with its successes.
    pub hashed: bool,
}

const fn from(source: Source) -> Dimension {
    Dimension {
        name: "",
        source,
        person: None,
        hashed: true,
    }
}

const fn column() -> Dimension {
    from(Source::Column)
}

const fn optional_column(column: &'static str) -> Dimension {
    from(Source::OptionalColumn(column))
}

const fn metadata(path: &'static [&'static str]) -> Dimension {
    from(Source::Metadata(path))
}

impl Dimension {
    const fn person(self, switch: fn(&Identity) -> bool) -> Dimension {
        Dimension {
            person: Some(switch),
            ..self
        }
    }

    const fn unhashed(self) -> Dimension {
        Dimension {
            hashed: false,
            ..self
        }
    }

    /// Whether `identity` lets this dimension be read.
    pub fn allowed(&self, identity: &Identity) -> bool {
        self.person.is_none_or(|on| on(identity))
    }
}

/// Declares the dimensions: each entry is `field / Variant [labels shown as it] => definition`.
macro_rules! dimensions {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident / $dim:ident [$($label:ident),*] => $def:expr;
    )*) => {
        /// A label dimension: its index in `DIMENSIONS` and in `ClassKey::fields`, and its bit
        /// (`Dim::bit`) in `Dims` and in a packed key's header.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Dim {
            $($dim,)*
        }

        /// How many dimensions there are.
        pub const FIELDS: usize = 0 $(+ { let _ = stringify!($dim); 1 })*;

        /// Every dimension, by `Dim` index.
        pub const DIMENSIONS: [Dimension; FIELDS] = [
            $(Dimension { name: stringify!($field), ..$def },)*
        ];

        impl Dim {
            pub const ALL: [Dim; FIELDS] = [$(Dim::$dim,)*];

            /// The dimension whose stored value `label` shows as it is ("None" when empty), if
            /// one does; the other labels are made in `class::made`.
            pub fn shown_by(label: Label) -> Option<Dim> {
                match label {
                    $($(Label::$label => Some(Dim::$dim),)*)*
                    _ => None,
                }
            }
        }

        /// The raw dimensions of a row, as produced by `ledger::project` (missing values as "",
        /// capped at 1024 characters), and the row's flags. Two rows with equal keys are
        /// indistinguishable to every family, so totals are kept per key. The state file spells
        /// keys out with these field names.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
        pub struct ClassKey {
            $(
                $(#[doc = $doc])*
                #[serde(default)]
                pub $field: String,
            )*
            pub failed: bool,
            /// "True", "False" or "" (unknown), as LiteLLM writes `cache_hit`.
            pub cache_hit: String,
            /// Values of the configured custom labels, in configuration order.
            #[serde(default)]
            pub extras: Vec<String>,
        }

        impl ClassKey {
            /// The string dimensions, by `Dim` index.
            pub fn fields(&self) -> [&String; FIELDS] {
                [$(&self.$field,)*]
            }

            pub fn fields_mut(&mut self) -> [&mut String; FIELDS] {
                [$(&mut self.$field,)*]
            }
        }
    };
}

dimensions! {
    api_key / ApiKey [HashedApiKey] => column();
    key_alias / KeyAlias [ApiKeyAlias] => metadata(&["user_api_key_alias"]);
    team_id / TeamId [Team] => column();
    team_alias / TeamAlias [TeamAlias] => metadata(&["user_api_key_team_alias"]);
    user_id / UserId [User] => column();
    user_email / UserEmail [UserEmail] =>
        metadata(&["user_api_key_user_email"]).person(|i| i.user_email);
    end_user / EndUser [EndUser] => optional_column("end_user").person(|i| i.end_user);
    org_id / OrgId [OrgId] => from(Source::OptionalColumnOrMetadata(
        "organization_id",
        &["user_api_key_org_id"],
    ));
    /// As LiteLLM wrote it (newer versions prefix the provider; the `model` label strips it).
    model / Model [] => column();
    model_group / ModelGroup [RequestedModel, ModelGroup] => column();
    original_model_group / OriginalModelGroup [] => metadata(&["original_model_group"]);
    model_id / ModelId [ModelId] => column();
    /// Shown as it is by `api_base`, even empty (made in `class::made`).
    api_base / ApiBase [] => column();
    provider / Provider [ApiProvider] => column();
    client_ip / ClientIp [ClientIp] =>
        optional_column("requester_ip_address").person(|i| i.client_ip);
    user_agent / UserAgent [UserAgent] => metadata(&["user_agent"]);
    service_tier / ServiceTier [ServiceTier] => metadata(&["usage_object", "service_tier"]);
    error_code / ErrorCode [ExceptionStatus] =>
        metadata(&["error_information", "error_code"]).unhashed();
    error_class / ErrorClass [] => metadata(&["error_information", "error_class"]).unhashed();
    error_provider / ErrorProvider [] =>
        metadata(&["error_information", "llm_provider"]).unhashed();
    /// "True" for a stream with `prometheus_emit_stream_label`, else "" (rendered "None").
    stream / Stream [Stream] => from(Source::Stream);
}

impl Dim {
    /// This dimension's bit in `Dims` and in a packed key's header.
    pub const fn bit(self) -> u64 {
        1 << self as u32
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn def(self) -> &'static Dimension {
        &TABLE[self as usize]
    }
}

/// `DIMENSIONS` at one address, for `Dim::def`.
static TABLE: [Dimension; FIELDS] = DIMENSIONS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_consistent() {
        for (i, d) in Dim::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
            assert_eq!(d.bit(), 1 << i);
        }
        // The field order and names the state file and the fold's stable hash were written with.
        let names: Vec<&str> = DIMENSIONS.iter().map(|d| d.name).collect();
        assert_eq!(
            names[..21],
            [
                "api_key",
                "key_alias",
                "team_id",
                "team_alias",
                "user_id",
                "user_email",
                "end_user",
                "org_id",
                "model",
                "model_group",
                "original_model_group",
                "model_id",
                "api_base",
                "provider",
                "client_ip",
                "user_agent",
                "service_tier",
                "error_code",
                "error_class",
                "error_provider",
                "stream",
            ]
        );
        let key = ClassKey {
            team_id: "t".into(),
            ..Default::default()
        };
        assert_eq!(*key.fields()[Dim::TeamId.index()], "t");
        for d in DIMENSIONS {
            if let Source::Metadata(p) | Source::OptionalColumnOrMetadata(_, p) = d.source {
                assert!(
                    matches!(p.len(), 1 | 2),
                    "{}: paths of one or two keys",
                    d.name
                );
            }
            // A person-identifying column must be a placeholder, so that it can stay in the
            // database.
            assert!(
                d.person.is_none() || !matches!(d.source, Source::Column),
                "{}",
                d.name
            );
        }
    }

    /// Every column source is a column of `project.sql` named like its dimension, and every
    /// optional one a placeholder there.
    #[test]
    fn column_sources_are_columns_of_the_projection() {
        let sql = crate::sql::LEDGER_PROJECT;
        for d in DIMENSIONS {
            let alias = format!(" AS {},", d.name);
            match d.source {
                Source::Column => assert!(sql.contains(&alias), "{}", d.name),
                Source::OptionalColumn(_) | Source::OptionalColumnOrMetadata(..) => {
                    let placeholder = format!("{{{{{}}}}}{alias}", d.name);
                    assert!(sql.contains(&placeholder), "{placeholder}");
                }
                Source::Metadata(_) | Source::Stream => {
                    assert!(!sql.contains(&alias), "{}", d.name)
                }
            }
        }
    }
}

//! Synthetic LiteLLM traffic: the data behind the demo, the benchmarks and the integration tests.
//!
//! This module owns everything that *writes* LiteLLM-shaped data into a LiteLLM database:
//!
//! * [`Universe::generate`] / [`seed_entities`]: budgets, organisations, teams, users, virtual keys
//!   and customers (end users), written with `ON CONFLICT DO NOTHING` so seeding twice is harmless;
//! * [`RowGen`]: a deterministic generator of `LiteLLM_SpendLogs` rows that imitates how LiteLLM
//!   fills the table (metadata keys, failures, cache hits, streams, `''` vs NULL, provider-prefixed
//!   model names, skewed key/team/model popularity, hostile strings);
//! * [`insert_rows`] / [`seed_spend_logs`]: bulk loading through `COPY ... FROM STDIN`
//!   (text format);
//! * [`run_traffic`]: a continuous writer for live demos (including late-arriving rows).
//!
//! The integration tests compare the exporter's counters with SQL over the same rows, so the
//! generator deliberately exercises every branch the exporter has to handle rather than producing
//! "pretty" data. Every table's columns are discovered from `information_schema.columns` and only
//! the existing ones are written, so the same code seeds the oldest supported schema
//! (litellm-proxy-extras 0.1.1) and the newest one.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use chrono::{Datelike, Duration, NaiveDateTime, Timelike, Utc};
use futures_util::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

// ------------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------------

/// What to generate. Same options (with a fixed `end`) => same entities and same rows.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// Spend-log rows to write.
    pub rows: u64,
    /// `startTime` is spread uniformly-ish over the last `days` days before `end`...
    pub days: u32,
    /// ... or over the last `hours` hours, when set (a benchmark's recent traffic).
    pub hours: Option<u32>,
    /// UTC wall clock of the newest row; `None` = now (UTC).
    pub end: Option<NaiveDateTime>,
    pub teams: u32,
    pub keys: u32,
    pub users: u32,
    pub orgs: u32,
    pub customers: u32,
    pub seed: u64,
    /// Share of rows that are failures (`status = 'failure'`).
    pub failure_ratio: f64,
    /// Share of rows that are cache hits (`cache_hit = 'True'`, spend 0).
    pub cache_hit_ratio: f64,
    /// Share of chat rows that are streams (first token before `endTime`).
    pub stream_ratio: f64,
    /// Include hostile strings (quotes, backslashes, newlines, tabs, CR, non-ASCII, empty,
    /// 300 characters) in aliases, ids, models, user agents and tags.
    pub awkward: bool,
    /// Rows per `COPY` statement in [`seed_spend_logs`] (bounds memory; each batch commits).
    pub batch_rows: usize,
}

impl Default for SeedOptions {
    fn default() -> Self {
        SeedOptions {
            rows: 10_000,
            days: 7,
            hours: None,
            end: None,
            teams: 20,
            keys: 200,
            users: 100,
            orgs: 3,
            customers: 50,
            seed: 42,
            failure_ratio: 0.03,
            cache_hit_ratio: 0.05,
            stream_ratio: 0.3,
            awkward: true,
            batch_rows: 5_000,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Universe: the entities rows refer to
// ------------------------------------------------------------------------------------------------

/// A `LiteLLM_BudgetTable` row (org and customer budgets live there, not inline).
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetInfo {
    pub budget_id: String,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub budget_reset_at: Option<NaiveDateTime>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrgInfo {
    pub organization_id: String,
    pub alias: String,
    pub budget_id: String,
    pub spend: f64,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TeamInfo {
    pub team_id: String,
    pub alias: Option<String>,
    /// Alias the team had before a rename: some rows carry it in their metadata because
    /// SpendLogs store aliases as of request time.
    pub previous_alias: Option<String>,
    pub organization_id: Option<String>,
    pub max_budget: Option<f64>,
    pub soft_budget: Option<f64>,
    pub spend: f64,
    pub budget_duration: Option<String>,
    pub budget_reset_at: Option<NaiveDateTime>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    /// `(user_id, role)`; written as a JSON array of `{user_id, role}` objects.
    pub members: Vec<(String, String)>,
    /// Write `members_with_roles` as the column default `{}` instead of an array (seen in the
    /// wild).
    pub members_as_object: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserInfo {
    pub user_id: String,
    pub alias: Option<String>,
    pub email: Option<String>,
    pub role: String,
    pub organization_id: Option<String>,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub budget_duration: Option<String>,
    pub budget_reset_at: Option<NaiveDateTime>,
    pub teams: Vec<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyInfo {
    /// The raw `sk-...` key (never stored by LiteLLM; kept so tests can call the API with it).
    pub raw_key: String,
    /// Lowercase hex SHA-256 of `raw_key`: `LiteLLM_VerificationToken.token` and `SpendLogs.api_key`.
    pub token: String,
    /// `sk-...<last 4>`.
    pub key_name: String,
    pub alias: Option<String>,
    /// Index into [`Universe::teams`] (None for team-less keys and the UI session key).
    pub team: Option<usize>,
    /// Index into [`Universe::users`].
    pub user: Option<usize>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// Effective organisation (the team's), written to the key row and to every spend row.
    pub organization_id: Option<String>,
    pub max_budget: Option<f64>,
    pub spend: f64,
    pub budget_duration: Option<String>,
    pub budget_reset_at: Option<NaiveDateTime>,
    pub rpm_limit: Option<i64>,
    pub tpm_limit: Option<i64>,
    pub expires: Option<NaiveDateTime>,
    pub blocked: bool,
    /// UI login session key (`team_id = 'litellm-dashboard'`).
    pub ui_session: bool,
    /// Not written to `LiteLLM_VerificationToken` (a deleted key whose rows remain in SpendLogs).
    pub deleted: bool,
    pub created_at: NaiveDateTime,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CustomerInfo {
    pub user_id: String,
    pub alias: Option<String>,
    pub spend: f64,
    pub budget_id: Option<String>,
    pub allowed_model_region: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Chat,
    Reasoning,
    Embedding,
}

/// One router deployment. Several deployments can share a `model_group` (public name).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub model_group: String,
    /// Model as written by recent LiteLLM (`<provider>/<name>`).
    pub prefixed_model: String,
    /// Model as written by older LiteLLM (no provider prefix).
    pub plain_model: String,
    /// Deployment id (`model_info.id`).
    pub model_id: String,
    pub provider: String,
    pub api_base: String,
    /// USD per prompt token.
    pub input_cost: f64,
    /// USD per completion token.
    pub output_cost: f64,
    pub kind: ModelKind,
}

/// The generated entities, so that rows can be generated later (and by other processes, given the
/// same options).
#[derive(Clone, Debug, PartialEq)]
pub struct Universe {
    pub budgets: Vec<BudgetInfo>,
    pub orgs: Vec<OrgInfo>,
    pub teams: Vec<TeamInfo>,
    /// The last user is always the proxy admin `default_user_id` (owner of the UI session key);
    /// it is in addition to `SeedOptions::users`.
    pub users: Vec<UserInfo>,
    /// Ordered by popularity (index 0 gets the most traffic); the UI session key is last.
    pub keys: Vec<KeyInfo>,
    pub customers: Vec<CustomerInfo>,
    pub models: Vec<ModelInfo>,
}

/// `team_id` LiteLLM gives UI login session keys.
pub const UI_SESSION_TEAM_ID: &str = "litellm-dashboard";
/// `api_key` LiteLLM 1.110 logs for master-key traffic.
pub const MASTER_KEY_ALIAS: &str = "litellm_proxy_master_key";
/// User id of the built-in proxy admin.
pub const DEFAULT_ADMIN_USER: &str = "default_user_id";
const SEED_ACTOR: &str = "default_user_id";

impl Universe {
    /// Pure, deterministic entity generation (no database).
    pub fn generate(opts: &SeedOptions) -> Universe {
        let now = trunc_ms(opts.end.unwrap_or_else(utc_now));
        let mut rng = SmallRng::seed_from_u64(opts.seed ^ 0x0E17_17E5_5EED_0001);
        let awk = if opts.awkward {
            awkward_strings()
        } else {
            Vec::new()
        };
        // Hostile values go to every other entity from rank 1 on, so they carry real traffic
        // without taking the top spot.
        let awkward_at = |i: usize| -> Option<String> {
            if i % 2 == 1 {
                awk.get(i / 2).cloned()
            } else {
                None
            }
        };
        let past = |rng: &mut SmallRng, max_days: i64| {
            now - Duration::milliseconds(rng.gen_range(3_600_000..max_days * 86_400_000))
        };

        let mut budgets = Vec::new();
        let mut orgs = Vec::new();
        for i in 0..opts.orgs as usize {
            let budget = gen_budget(&mut rng, now, 2_000.0, 50_000.0);
            let spend = budget.max_budget.unwrap_or(10_000.0) * rng.gen_range(0.05..1.1);
            let alias = if opts.awkward && i == 2 {
                "Org \"Ω\" \\ Ltd\tEU".to_string()
            } else {
                ORG_NAMES[i % ORG_NAMES.len()].to_string() + &suffix(i, ORG_NAMES.len())
            };
            orgs.push(OrgInfo {
                organization_id: uuid_from(&mut rng),
                alias,
                budget_id: budget.budget_id.clone(),
                spend: round6(spend),
                created_at: past(&mut rng, 365),
            });
            budgets.push(budget);
        }

        let mut teams = Vec::new();
        for i in 0..opts.teams as usize {
            let alias = match awkward_at(i) {
                Some(a) => Some(a),
                // One team without alias (the column is nullable and the UI allows it).
                None if i == 6 => None,
                None => Some(team_alias(i)),
            };
            let organization_id = if !orgs.is_empty() && rng.gen_bool(0.8) {
                Some(orgs[rng.gen_range(0..orgs.len())].organization_id.clone())
            } else {
                None
            };
            let max_budget = rng
                .gen_bool(0.75)
                .then(|| round2(rng.gen_range(50.0..5_000.0)));
            // Some teams are over budget: the remaining-budget gauge must go negative.
            let spend = match max_budget {
                Some(m) => m * rng.gen_range(0.0..1.25),
                None => rng.gen_range(0.0..800.0),
            };
            let (budget_duration, budget_reset_at) = gen_reset(&mut rng, now, 0.5);
            let (rpm_limit, tpm_limit) = gen_limits(&mut rng, 0.4);
            teams.push(TeamInfo {
                team_id: uuid_from(&mut rng),
                alias: alias.clone(),
                previous_alias: (i == 2)
                    .then(|| format!("{}-before-rename", alias.clone().unwrap_or_default())),
                organization_id,
                max_budget,
                soft_budget: max_budget
                    .filter(|_| rng.gen_bool(0.3))
                    .map(|m| round2(m * 0.8)),
                spend: round6(spend),
                budget_duration,
                budget_reset_at,
                rpm_limit,
                tpm_limit,
                members: Vec::new(),
                members_as_object: i == 4,
                created_at: past(&mut rng, 365),
            });
        }

        let mut users = Vec::new();
        for i in 0..opts.users as usize {
            let first = FIRST_NAMES[i % FIRST_NAMES.len()];
            let last = LAST_NAMES[(i / FIRST_NAMES.len() + i * 7) % LAST_NAMES.len()];
            let local = format!("{first}.{last}{}", suffix(i, FIRST_NAMES.len()));
            let (user_id, email) = if i % 2 == 0 {
                let e = format!("{local}@acme.example");
                (e.clone(), Some(e))
            } else {
                let id = uuid_from(&mut rng);
                let e = rng
                    .gen_bool(0.7)
                    .then(|| format!("{local}@contractors.example"));
                (id, e)
            };
            let alias = match awkward_at(i) {
                Some(a) => Some(a),
                None if rng.gen_bool(0.2) => None,
                None => Some(format!("{} {}", capitalise(first), capitalise(last))),
            };
            let max_budget = rng
                .gen_bool(0.35)
                .then(|| round2(rng.gen_range(10.0..500.0)));
            let spend = match max_budget {
                Some(m) => m * rng.gen_range(0.0..1.2),
                None => rng.gen_range(0.0..200.0),
            };
            let (budget_duration, budget_reset_at) = gen_reset(&mut rng, now, 0.25);
            users.push(UserInfo {
                user_id,
                alias,
                email,
                role: if i % 17 == 0 {
                    "proxy_admin".into()
                } else if i % 11 == 0 {
                    "internal_user_viewer".into()
                } else {
                    "internal_user".into()
                },
                organization_id: None,
                max_budget,
                spend: round6(spend),
                budget_duration,
                budget_reset_at,
                teams: Vec::new(),
                created_at: past(&mut rng, 365),
            });
        }

        // Keys: each one belongs to a (Zipf-popular) team and user.
        let team_pick = Weighted::zipf(teams.len(), 1.0);
        let user_pick = Weighted::zipf(users.len(), 0.8);
        let mut keys = Vec::new();
        for i in 0..opts.keys as usize {
            let raw_key = format!("sk-{}", random_base62(&mut rng, 22));
            let team = if rng.gen_bool(0.95) {
                team_pick.sample(&mut rng)
            } else {
                None
            };
            let user = if rng.gen_bool(0.9) {
                user_pick.sample(&mut rng)
            } else {
                None
            };
            if let (Some(t), Some(u)) = (team, user) {
                let tid = teams[t].team_id.clone();
                if !users[u].teams.contains(&tid) {
                    users[u].teams.push(tid);
                }
                if !teams[t].members.iter().any(|(m, _)| m == &users[u].user_id) {
                    let role = if teams[t].members.is_empty() {
                        "admin"
                    } else {
                        "user"
                    };
                    teams[t]
                        .members
                        .push((users[u].user_id.clone(), role.to_string()));
                }
                if users[u].organization_id.is_none() {
                    users[u].organization_id = teams[t].organization_id.clone();
                }
            }
            let alias = match awkward_at(i) {
                Some(a) => Some(a),
                None if rng.gen_bool(0.15) => None,
                None => Some(key_alias(i, team.and_then(|t| teams[t].alias.as_deref()))),
            };
            let max_budget = rng
                .gen_bool(0.4)
                .then(|| round2(rng.gen_range(5.0..1_000.0)));
            let spend = match max_budget {
                Some(m) => m * rng.gen_range(0.0..1.15),
                None => rng.gen_range(0.0..300.0),
            };
            let (budget_duration, budget_reset_at) = gen_reset(&mut rng, now, 0.3);
            let (rpm_limit, tpm_limit) = gen_limits(&mut rng, 0.3);
            let expires = match rng.gen_range(0..100) {
                0..=2 => Some(now - Duration::days(rng.gen_range(1..30))),
                3..=12 => Some(now + Duration::days(rng.gen_range(1..180))),
                _ => None,
            };
            keys.push(KeyInfo {
                key_name: key_name(&raw_key),
                token: hash_key(&raw_key),
                raw_key,
                alias,
                team,
                user,
                team_id: team.map(|t| teams[t].team_id.clone()),
                user_id: user.map(|u| users[u].user_id.clone()),
                organization_id: team.and_then(|t| teams[t].organization_id.clone()),
                max_budget,
                spend: round6(spend),
                budget_duration,
                budget_reset_at,
                rpm_limit,
                tpm_limit,
                expires,
                blocked: i % 37 == 36,
                ui_session: false,
                // A few keys were deleted: their hashes appear in SpendLogs only.
                deleted: i % 50 == 49,
                created_at: past(&mut rng, 180),
            });
        }

        // The proxy admin and its UI login session key (excluded from LiteLLM's budget gauges).
        users.push(UserInfo {
            user_id: DEFAULT_ADMIN_USER.to_string(),
            alias: None,
            email: None,
            role: "proxy_admin".into(),
            organization_id: None,
            max_budget: None,
            spend: 0.0,
            budget_duration: None,
            budget_reset_at: None,
            teams: Vec::new(),
            created_at: past(&mut rng, 365),
        });
        let ui_raw = format!("sk-{}", random_base62(&mut rng, 22));
        keys.push(KeyInfo {
            key_name: key_name(&ui_raw),
            token: hash_key(&ui_raw),
            raw_key: ui_raw,
            alias: None,
            team: None,
            user: Some(users.len() - 1),
            team_id: Some(UI_SESSION_TEAM_ID.to_string()),
            user_id: Some(DEFAULT_ADMIN_USER.to_string()),
            organization_id: None,
            max_budget: Some(0.25),
            spend: 0.0123,
            budget_duration: None,
            budget_reset_at: None,
            rpm_limit: None,
            tpm_limit: None,
            expires: Some(now + Duration::hours(20)),
            blocked: false,
            ui_session: true,
            deleted: false,
            created_at: now - Duration::hours(4),
        });

        // Customers: own budget, a shared tier budget, or none.
        let tiers: Vec<BudgetInfo> = (0..3)
            .map(|t| gen_budget(&mut rng, now, 5.0 * 10f64.powi(t), 20.0 * 10f64.powi(t)))
            .collect();
        let mut customers = Vec::new();
        for i in 0..opts.customers as usize {
            let user_id = if opts.awkward && i == 3 {
                "cust \"q\" é\\1".to_string()
            } else if i % 3 == 0 {
                format!("shopper-{i}@shop.example")
            } else {
                format!("cust_{:05}", 1000 + i * 7)
            };
            let budget_id = match rng.gen_range(0..10) {
                0..=3 => {
                    let b = gen_budget(&mut rng, now, 1.0, 100.0);
                    let id = b.budget_id.clone();
                    budgets.push(b);
                    Some(id)
                }
                4..=7 if !tiers.is_empty() => {
                    Some(tiers[rng.gen_range(0..tiers.len())].budget_id.clone())
                }
                _ => None,
            };
            let alias = match awkward_at(i) {
                Some(a) => Some(a),
                None if rng.gen_bool(0.3) => None,
                None => Some(format!("Customer {}", 1000 + i * 7)),
            };
            customers.push(CustomerInfo {
                user_id,
                alias,
                spend: round6(rng.gen_range(0.0..60.0)),
                budget_id,
                allowed_model_region: match i % 5 {
                    0 => Some("eu".into()),
                    1 => Some("us".into()),
                    _ => None,
                },
            });
        }
        budgets.extend(tiers);

        let models = model_catalog(opts.seed, opts.awkward);
        Universe {
            budgets,
            orgs,
            teams,
            users,
            keys,
            customers,
            models,
        }
    }

    /// Distinct public model names.
    pub fn model_groups(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for m in &self.models {
            if !v.contains(&m.model_group.as_str()) {
                v.push(&m.model_group);
            }
        }
        v
    }
}

/// Hostile strings used for aliases and ids when `awkward` is on. Order matters: the first ones
/// land on the most popular entities.
pub fn awkward_strings() -> Vec<String> {
    let mut long = String::from("very-long-alias-");
    while long.chars().count() < 300 {
        long.push_str("0123456789abcdefghij");
    }
    let long: String = long.chars().take(300).collect();
    vec![
        "Team \"Quoted\"".to_string(),
        "back\\slash\\alias".to_string(),
        "line one\nline two".to_string(),
        "Équipe ☃ 東京".to_string(),
        String::new(),
        long,
        "tab\there\r\ncrlf".to_string(),
        "{\"json\": 'ish', \"x\": [1,2]}".to_string(),
        "trailing backslash \\".to_string(),
    ]
}

/// SHA-256 (lowercase hex) of a raw key, as LiteLLM stores it.
pub fn hash_key(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

fn key_name(raw: &str) -> String {
    let tail: String = raw
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("sk-...{tail}")
}

fn gen_budget(rng: &mut SmallRng, now: NaiveDateTime, lo: f64, hi: f64) -> BudgetInfo {
    let max_budget = rng.gen_bool(0.9).then(|| round2(rng.gen_range(lo..hi)));
    let (budget_duration, budget_reset_at) = gen_reset(rng, now, 0.7);
    let (rpm_limit, tpm_limit) = gen_limits(rng, 0.3);
    BudgetInfo {
        budget_id: uuid_from(rng),
        max_budget,
        soft_budget: max_budget
            .filter(|_| rng.gen_bool(0.3))
            .map(|m| round2(m * 0.75)),
        budget_duration,
        budget_reset_at,
        rpm_limit,
        tpm_limit,
        created_at: now - Duration::days(rng.gen_range(1..200)),
    }
}

/// `(budget_duration, budget_reset_at)`: mostly a future reset, sometimes an overdue one (the
/// reset job runs only every ~10 minutes, so "reset in the past" is a real state).
fn gen_reset(
    rng: &mut SmallRng,
    now: NaiveDateTime,
    p: f64,
) -> (Option<String>, Option<NaiveDateTime>) {
    if !rng.gen_bool(p) {
        return (None, None);
    }
    let (d, secs) = [
        ("1d", 86_400i64),
        ("7d", 7 * 86_400),
        ("30d", 30 * 86_400),
        ("1h", 3_600),
    ][rng.gen_range(0..4)];
    let at = if rng.gen_bool(0.1) {
        now - Duration::seconds(rng.gen_range(1..600))
    } else {
        now + Duration::seconds(rng.gen_range(60..=secs))
    };
    (Some(d.to_string()), Some(trunc_ms(at)))
}

fn gen_limits(rng: &mut SmallRng, p: f64) -> (Option<i64>, Option<i64>) {
    let rpm = rng
        .gen_bool(p)
        .then(|| [60i64, 100, 500, 1_000, 10_000][rng.gen_range(0..5)]);
    let tpm = rng
        .gen_bool(p)
        .then(|| [10_000i64, 100_000, 1_000_000, 5_000_000][rng.gen_range(0..4)]);
    (rpm, tpm)
}

fn suffix(i: usize, n: usize) -> String {
    if i < n {
        String::new()
    } else {
        format!("-{}", i / n + 1)
    }
}

fn team_alias(i: usize) -> String {
    let d = DEPARTMENTS[i % DEPARTMENTS.len()];
    let p = PURPOSES[(i / DEPARTMENTS.len()) % PURPOSES.len()];
    let n = DEPARTMENTS.len() * PURPOSES.len();
    format!("{d}-{p}{}", suffix(i, n))
}

fn key_alias(i: usize, team_alias: Option<&str>) -> String {
    let env = ["prod", "staging", "dev", "ci"][i % 4];
    let base: String = team_alias
        .filter(|a| !a.is_empty() && a.is_ascii() && a.len() < 40)
        .unwrap_or("svc")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("{base}-{env}-{i:03}")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

const ORG_NAMES: &[&str] = &["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli"];
const DEPARTMENTS: &[&str] = &[
    "search",
    "data-science",
    "support",
    "growth",
    "platform",
    "finance",
    "legal",
    "mobile",
];
const PURPOSES: &[&str] = &["core", "experiments", "batch", "assistant"];
const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yara",
];
const LAST_NAMES: &[&str] = &[
    "smith", "jones", "garcia", "muller", "rossi", "kowalski", "tanaka", "silva", "okafor", "singh",
];

/// 11 deployments over 5 providers (plus one hostile name when `awkward`). Two model groups have
/// two deployments each, so `model_group` and `model_id` differ in cardinality.
fn model_catalog(seed: u64, awkward: bool) -> Vec<ModelInfo> {
    use ModelKind::*;
    const OPENAI: &str = "https://api.openai.com/v1";
    const ANTHROPIC: &str = "https://api.anthropic.com/v1/messages";
    const BEDROCK: &str = "https://bedrock-runtime.us-east-1.amazonaws.com";
    const VERTEX: &str =
        "https://us-central1-aiplatform.googleapis.com/v1/projects/acme-prod/locations/us-central1";
    #[allow(clippy::type_complexity)]
    let mut spec: Vec<(&str, &str, &str, &str, &str, f64, f64, ModelKind)> = vec![
        (
            "gpt-4o-mini",
            "openai",
            "gpt-4o-mini",
            "gpt-4o-mini",
            OPENAI,
            1.5e-7,
            6e-7,
            Chat,
        ),
        (
            "gpt-4o", "openai", "gpt-4o", "gpt-4o", OPENAI, 2.5e-6, 1e-5, Chat,
        ),
        (
            "claude-sonnet",
            "anthropic",
            "claude-3-5-sonnet-20241022",
            "claude-3-5-sonnet-20241022",
            ANTHROPIC,
            3e-6,
            1.5e-5,
            Chat,
        ),
        (
            "gpt-4o",
            "azure",
            "gpt-4o-eastus",
            "gpt-4o",
            "https://acme-eastus.openai.azure.com/",
            2.5e-6,
            1e-5,
            Chat,
        ),
        (
            "text-embedding-3-small",
            "openai",
            "text-embedding-3-small",
            "text-embedding-3-small",
            OPENAI,
            2e-8,
            0.0,
            Embedding,
        ),
        (
            "claude-haiku",
            "anthropic",
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku-20241022",
            ANTHROPIC,
            8e-7,
            4e-6,
            Chat,
        ),
        (
            "gemini-flash",
            "vertex_ai",
            "gemini-2.0-flash-001",
            "gemini-2.0-flash-001",
            VERTEX,
            1e-7,
            4e-7,
            Chat,
        ),
        (
            "claude-sonnet",
            "bedrock",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            BEDROCK,
            3e-6,
            1.5e-5,
            Chat,
        ),
        (
            "o3-mini", "openai", "o3-mini", "o3-mini", OPENAI, 1.1e-6, 4.4e-6, Reasoning,
        ),
        (
            "gemini-pro",
            "vertex_ai",
            "gemini-1.5-pro-002",
            "gemini-1.5-pro-002",
            VERTEX,
            1.25e-6,
            5e-6,
            Chat,
        ),
        (
            "titan-embed",
            "bedrock",
            "amazon.titan-embed-text-v2:0",
            "amazon.titan-embed-text-v2:0",
            BEDROCK,
            2e-8,
            0.0,
            Embedding,
        ),
    ];
    if awkward {
        // Rank 6: frequent enough to show up in every test run.
        spec.insert(
            5,
            (
                "acme \"fast\" chat",
                "openai",
                "ft:gpt-4o-mini:acme:\"fast\"",
                "ft:gpt-4o-mini:acme:\"fast\"",
                OPENAI,
                3e-7,
                1.2e-6,
                Chat,
            ),
        );
    }
    spec.into_iter()
        .map(
            |(group, provider, deployment, plain, api_base, inp, out, kind)| {
                let prefixed = format!("{provider}/{deployment}");
                ModelInfo {
                    model_group: group.to_string(),
                    // LiteLLM derives the id from the deployment parameters when none is given.
                    model_id: hex::encode(Sha256::digest(format!("{seed}:{prefixed}").as_bytes())),
                    prefixed_model: prefixed,
                    plain_model: plain.to_string(),
                    provider: provider.to_string(),
                    api_base: api_base.to_string(),
                    input_cost: inp,
                    output_cost: out,
                    kind,
                }
            },
        )
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Writing entities
// ------------------------------------------------------------------------------------------------

type SqlValue = Box<dyn ToSql + Sync + Send>;

/// One entity row as `(column, value)`; every row of a table lists the same columns so that one
/// prepared statement serves the whole table. Columns missing from the live schema are dropped.
struct EntityRow(Vec<(&'static str, SqlValue)>);

impl EntityRow {
    fn new() -> Self {
        EntityRow(Vec::new())
    }
    fn set<T: ToSql + Sync + Send + 'static>(mut self, column: &'static str, value: T) -> Self {
        self.0.push((column, Box::new(value)));
        self
    }
}

async fn table_columns(client: &Client, table: &str) -> Result<HashSet<String>> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            &[&table],
        )
        .await
        .with_context(|| format!("reading the columns of {table}"))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

async fn insert_entities(client: &Client, table: &str, rows: Vec<EntityRow>) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let existing = table_columns(client, table).await?;
    if existing.is_empty() {
        bail!("table \"{table}\" not found in the current schema (are the LiteLLM migrations applied?)");
    }
    let mut statements = HashMap::new();
    let mut inserted = 0;
    for row in rows {
        let kept: Vec<&(&'static str, SqlValue)> = row
            .0
            .iter()
            .filter(|(c, _)| existing.contains(*c))
            .collect();
        let cols: Vec<String> = kept.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let placeholders: Vec<String> = (1..=kept.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO \"{table}\" ({}) VALUES ({}) ON CONFLICT DO NOTHING",
            cols.join(", "),
            placeholders.join(", ")
        );
        if !statements.contains_key(&sql) {
            let st = client
                .prepare(&sql)
                .await
                .with_context(|| format!("preparing {sql}"))?;
            statements.insert(sql.clone(), st);
        }
        let params: Vec<&(dyn ToSql + Sync)> = kept
            .iter()
            .map(|(_, v)| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        inserted += client
            .execute(&statements[&sql], &params)
            .await
            .with_context(|| format!("inserting into {table}"))?;
    }
    Ok(inserted)
}

/// Generates the entities for `opts` and writes them (budgets, orgs, teams, users, keys,
/// customers, in foreign-key order). Existing rows with the same ids are left untouched.
pub async fn seed_entities(client: &Client, opts: &SeedOptions) -> Result<Universe> {
    let u = Universe::generate(opts);
    let now = trunc_ms(utc_now());

    let budgets = u
        .budgets
        .iter()
        .map(|b| {
            EntityRow::new()
                .set("budget_id", b.budget_id.clone())
                .set("max_budget", b.max_budget)
                .set("soft_budget", b.soft_budget)
                .set("rpm_limit", b.rpm_limit)
                .set("tpm_limit", b.tpm_limit)
                .set("budget_duration", b.budget_duration.clone())
                .set("budget_reset_at", b.budget_reset_at)
                .set("created_at", b.created_at)
                .set("created_by", SEED_ACTOR.to_string())
                .set("updated_at", now)
                .set("updated_by", SEED_ACTOR.to_string())
        })
        .collect();
    let n_budgets = insert_entities(client, "LiteLLM_BudgetTable", budgets).await?;

    let orgs = u
        .orgs
        .iter()
        .map(|o| {
            EntityRow::new()
                .set("organization_id", o.organization_id.clone())
                .set("organization_alias", o.alias.clone())
                .set("budget_id", o.budget_id.clone())
                .set("models", Vec::<String>::new())
                .set("spend", o.spend)
                .set("created_at", o.created_at)
                .set("created_by", SEED_ACTOR.to_string())
                .set("updated_at", now)
                .set("updated_by", SEED_ACTOR.to_string())
        })
        .collect();
    let n_orgs = insert_entities(client, "LiteLLM_OrganizationTable", orgs).await?;

    let teams = u
        .teams
        .iter()
        .map(|t| {
            let members: Vec<String> = t.members.iter().map(|(m, _)| m.clone()).collect();
            let admins: Vec<String> = t
                .members
                .iter()
                .filter(|(_, r)| r == "admin")
                .map(|(m, _)| m.clone())
                .collect();
            let mwr = if t.members_as_object {
                json!({})
            } else {
                Value::Array(
                    t.members
                        .iter()
                        .map(|(m, r)| {
                            let email = u
                                .users
                                .iter()
                                .find(|x| &x.user_id == m)
                                .and_then(|x| x.email.clone());
                            json!({"user_id": m, "role": r, "user_email": email})
                        })
                        .collect(),
                )
            };
            EntityRow::new()
                .set("team_id", t.team_id.clone())
                .set("team_alias", t.alias.clone())
                .set("organization_id", t.organization_id.clone())
                .set("admins", admins)
                .set("members", members)
                .set("members_with_roles", mwr)
                .set("max_budget", t.max_budget)
                .set("soft_budget", t.soft_budget)
                .set("spend", t.spend)
                .set("models", Vec::<String>::new())
                .set("tpm_limit", t.tpm_limit)
                .set("rpm_limit", t.rpm_limit)
                .set("budget_duration", t.budget_duration.clone())
                .set("budget_reset_at", t.budget_reset_at)
                .set("created_at", t.created_at)
                .set("updated_at", now)
        })
        .collect();
    let n_teams = insert_entities(client, "LiteLLM_TeamTable", teams).await?;

    let users = u
        .users
        .iter()
        .map(|x| {
            EntityRow::new()
                .set("user_id", x.user_id.clone())
                .set("user_alias", x.alias.clone())
                .set("user_email", x.email.clone())
                .set("user_role", x.role.clone())
                .set("teams", x.teams.clone())
                .set("organization_id", x.organization_id.clone())
                .set("max_budget", x.max_budget)
                .set("spend", x.spend)
                .set("models", Vec::<String>::new())
                .set("budget_duration", x.budget_duration.clone())
                .set("budget_reset_at", x.budget_reset_at)
                .set("created_at", x.created_at)
                .set("updated_at", now)
        })
        .collect();
    let n_users = insert_entities(client, "LiteLLM_UserTable", users).await?;

    let keys = u
        .keys
        .iter()
        .filter(|k| !k.deleted)
        .map(|k| {
            let metadata = if k.ui_session {
                json!({"litellm-key-type": "ui-session"})
            } else {
                json!({})
            };
            EntityRow::new()
                .set("token", k.token.clone())
                .set("key_name", k.key_name.clone())
                .set("key_alias", k.alias.clone())
                .set("spend", k.spend)
                // Lifetime spend (newer schemas): never reset, so at least `spend`.
                .set("total_spend", round6(k.spend * 1.4))
                .set("expires", k.expires)
                .set("models", Vec::<String>::new())
                .set("user_id", k.user_id.clone())
                .set("team_id", k.team_id.clone())
                .set("metadata", metadata)
                .set("blocked", Some(k.blocked))
                .set("tpm_limit", k.tpm_limit)
                .set("rpm_limit", k.rpm_limit)
                .set("max_budget", k.max_budget)
                .set("budget_duration", k.budget_duration.clone())
                .set("budget_reset_at", k.budget_reset_at)
                .set("organization_id", k.organization_id.clone())
                .set("created_at", Some(k.created_at))
                .set("created_by", Some(SEED_ACTOR.to_string()))
                .set("updated_at", Some(now))
                .set("updated_by", Some(SEED_ACTOR.to_string()))
        })
        .collect();
    let n_keys = insert_entities(client, "LiteLLM_VerificationToken", keys).await?;

    let customers = u
        .customers
        .iter()
        .map(|c| {
            EntityRow::new()
                .set("user_id", c.user_id.clone())
                .set("alias", c.alias.clone())
                .set("spend", c.spend)
                .set("budget_id", c.budget_id.clone())
                .set("allowed_model_region", c.allowed_model_region.clone())
                .set("blocked", false)
        })
        .collect();
    let n_customers = insert_entities(client, "LiteLLM_EndUserTable", customers).await?;

    tracing::info!(
        budgets = n_budgets,
        orgs = n_orgs,
        teams = n_teams,
        users = n_users,
        keys = n_keys,
        customers = n_customers,
        "seeded LiteLLM entities (new rows only)"
    );
    Ok(u)
}

// ------------------------------------------------------------------------------------------------
// Spend-log rows
// ------------------------------------------------------------------------------------------------

/// One `LiteLLM_SpendLogs` row. `Option` = nullable column (None is written as NULL); columns the
/// live schema lacks are skipped by [`insert_rows`]. All timestamps are UTC with millisecond
/// precision (the columns are `timestamp(3)`), so values read back equal the generated ones.
#[derive(Clone, Debug, PartialEq)]
pub struct SpendRow {
    pub request_id: String,
    pub call_type: String,
    pub api_key: String,
    pub spend: f64,
    pub total_tokens: i32,
    pub prompt_tokens: i32,
    pub completion_tokens: i32,
    pub start_time: NaiveDateTime,
    pub end_time: NaiveDateTime,
    pub completion_start_time: Option<NaiveDateTime>,
    pub model: String,
    pub model_id: Option<String>,
    pub model_group: Option<String>,
    pub custom_llm_provider: Option<String>,
    pub api_base: Option<String>,
    pub user: Option<String>,
    pub metadata: Value,
    pub cache_hit: Option<String>,
    pub cache_key: Option<String>,
    pub request_tags: Value,
    pub team_id: Option<String>,
    pub end_user: Option<String>,
    pub requester_ip_address: Option<String>,
    pub session_id: Option<String>,
    pub status: Option<String>,
    pub mcp_namespaced_tool_name: Option<String>,
    pub organization_id: Option<String>,
    pub agent_id: Option<String>,
    pub request_duration_ms: Option<i32>,
    pub litellm_call_id: Option<String>,
    pub billing_agent_id: Option<String>,
    /// `created_at` / `updated_at`; None = the insert time (what LiteLLM's ledger path writes).
    pub created_at: Option<NaiveDateTime>,
    /// Not a column: whether the generator made this a streamed response.
    pub stream: bool,
}

impl SpendRow {
    // Only the generator's own tests ask.
    #[cfg(test)]
    /// Failure in the sense of LiteLLM: the status column, else `metadata.status`.
    pub fn is_failure(&self) -> bool {
        match &self.status {
            Some(s) => s == "failure",
            None => self.metadata.get("status").and_then(Value::as_str) == Some("failure"),
        }
    }

    // Only the generator's own tests ask.
    #[cfg(test)]
    pub fn is_cache_hit(&self) -> bool {
        self.cache_hit.as_deref() == Some("True")
    }

    /// Moves every timestamp of the row by `by` (the duration stays the same).
    pub fn shift(&mut self, by: Duration) {
        self.start_time += by;
        self.end_time += by;
        if let Some(t) = self.completion_start_time.as_mut() {
            *t += by;
        }
    }
}

/// Cumulative weights for skewed picks (Zipf-like popularity).
#[derive(Clone, Debug)]
struct Weighted {
    cdf: Vec<f64>,
}

impl Weighted {
    fn from_weights(w: impl IntoIterator<Item = f64>) -> Self {
        let mut acc = 0.0;
        let cdf = w
            .into_iter()
            .map(|x| {
                acc += x.max(0.0);
                acc
            })
            .collect();
        Weighted { cdf }
    }

    fn zipf(n: usize, s: f64) -> Self {
        Self::from_weights((0..n).map(|i| 1.0 / ((i + 1) as f64).powf(s)))
    }

    fn sample(&self, rng: &mut SmallRng) -> Option<usize> {
        let total = *self.cdf.last()?;
        if total <= 0.0 {
            return None;
        }
        let x = rng.gen::<f64>() * total;
        Some(
            self.cdf
                .partition_point(|&c| c <= x)
                .min(self.cdf.len() - 1),
        )
    }
}

const USER_AGENTS: &[&str] = &[
    "OpenAI/Python 1.54.4",
    "AsyncOpenAI/Python 1.57.0",
    "OpenAI/JS 4.73.0",
    "Anthropic/Python 0.40.0",
    "litellm/1.55.3",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "langchain-openai/0.2.10",
    "Go-http-client/2.0",
];

const ERROR_KINDS: &[(&str, &str, f64, &str)] = &[
    ("429", "RateLimitError", 0.32, "Rate limit reached for requests. Limit: 500 RPM, Please try again in 2s."),
    ("500", "InternalServerError", 0.18, "The server had an error while processing your request. Sorry about that!"),
    ("400", "BadRequestError", 0.16, "Invalid 'messages[1].content': string too long. Expected a string with maximum length 1048576."),
    ("401", "AuthenticationError", 0.08, "Authentication Error, Invalid proxy server token passed. Unable to find token in cache or `LiteLLM_VerificationTokenTable`"),
    ("404", "NotFoundError", 0.06, "The model `gpt-5-preview` does not exist or you do not have access to it."),
    ("408", "Timeout", 0.12, "Request timed out. Connection timed out after 600.0 seconds."),
    ("400", "BudgetExceededError", 0.08, "Budget has been exceeded! Current cost: 105.27, Max budget: 100.0"),
];

const MCP_TOOLS: &[&str] = &[
    "github-create_issue",
    "github-search_code",
    "jira-get_ticket",
    "filesystem-read_file",
];

/// Deterministic `LiteLLM_SpendLogs` row generator.
#[derive(Clone, Debug)]
pub struct RowGen {
    universe: Arc<Universe>,
    rng: SmallRng,
    /// Namespace of request ids; ids are a bijection of (namespace, counter) so they never repeat.
    id_ns: u64,
    counter: u64,
    failure_ratio: f64,
    cache_hit_ratio: f64,
    stream_ratio: f64,
    key_pick: Weighted,
    model_pick: Weighted,
    customer_pick: Weighted,
    ips: Vec<String>,
    ip_pick: Weighted,
    user_agents: Vec<String>,
    ua_pick: Weighted,
    tag_sets: Vec<Value>,
    tag_pick: Weighted,
    error_pick: Weighted,
    last_session: Option<String>,
}

impl RowGen {
    pub fn new(universe: &Universe, opts: &SeedOptions) -> Self {
        let n_keys = universe.keys.len();
        // The UI session key is last and gets a trickle of traffic; without any regular key all
        // traffic is master-key traffic.
        let regular = universe.keys.iter().any(|k| !k.ui_session);
        let key_pick = Weighted::from_weights((0..n_keys).map(|i| {
            if !regular {
                0.0
            } else if universe.keys[i].ui_session {
                0.002
            } else {
                1.0 / ((i + 1) as f64).powf(1.1)
            }
        }));
        let ips: Vec<String> = (0..40)
            .map(|i| match i % 8 {
                0 => format!("2001:db8:10::{:x}", 0x100 + i),
                1 | 2 => format!("172.16.{}.{}", i / 3, 10 + i),
                _ => format!("10.0.{}.{}", i % 5, 20 + i * 3),
            })
            .collect();
        let mut user_agents: Vec<String> = USER_AGENTS.iter().map(|s| s.to_string()).collect();
        let mut tag_sets = vec![
            json!([]),
            json!(["prod"]),
            json!(["staging"]),
            json!(["app:search", "prod"]),
            json!(["app:chat-widget", "env:prod", "tier:gold"]),
            json!(["batch"]),
        ];
        if opts.awkward {
            let aw = awkward_strings();
            // Interleave so hostile agents are mid-popularity, not the head.
            for (j, a) in [
                "acme-bot/1.0 \"beta\"".to_string(),
                "C:\\Tools\\agent.exe".to_string(),
                "multi\nline-agent".to_string(),
                "Agent-Ωmega/2.0 (東京)".to_string(),
                String::new(),
                aw[5].clone(),
            ]
            .into_iter()
            .enumerate()
            {
                user_agents.insert((2 + 2 * j).min(user_agents.len()), a);
            }
            tag_sets.push(json!(["tag \"quoted\"", "tag\\slash", "東京", ""]));
            tag_sets.push(json!(["line\nbreak"]));
        }
        let ip_pick = Weighted::zipf(ips.len(), 1.0);
        let ua_pick = Weighted::zipf(user_agents.len(), 0.9);
        // Empty tag list dominates, as in most deployments.
        let tag_pick = Weighted::from_weights((0..tag_sets.len()).map(|i| {
            if i == 0 {
                6.0
            } else {
                1.0 / i as f64
            }
        }));
        RowGen {
            key_pick,
            model_pick: Weighted::zipf(universe.models.len(), 1.0),
            customer_pick: Weighted::zipf(universe.customers.len(), 1.0),
            universe: Arc::new(universe.clone()),
            rng: SmallRng::seed_from_u64(opts.seed ^ 0x5BE0_D106_0000_0002),
            id_ns: mix64(opts.seed ^ 0x1D5_0000_0003),
            counter: 0,
            failure_ratio: opts.failure_ratio.clamp(0.0, 1.0),
            cache_hit_ratio: opts.cache_hit_ratio.clamp(0.0, 1.0),
            stream_ratio: opts.stream_ratio.clamp(0.0, 1.0),
            ips,
            ip_pick,
            user_agents,
            ua_pick,
            tag_sets,
            tag_pick,
            error_pick: Weighted::from_weights(ERROR_KINDS.iter().map(|e| e.2)),
            last_session: None,
        }
    }

    /// 128 id bits unique per (namespace, counter): `lo` is a bijection of the counter.
    fn next_id_bits(&mut self) -> (u64, u64) {
        self.counter += 1;
        let lo = mix64(self.counter.wrapping_add(self.id_ns));
        let hi = mix64(lo ^ self.id_ns.rotate_left(17));
        (hi, lo)
    }

    /// Generates the next row starting at `start_time` (truncated to milliseconds).
    pub fn next_row(&mut self, start_time: NaiveDateTime) -> SpendRow {
        let u = Arc::clone(&self.universe);
        let start = trunc_ms(start_time);
        let (hi, lo) = self.next_id_bits();
        let call_uuid = uuid_from_bits(hi, lo);
        let rng = &mut self.rng;

        // --- outcome -------------------------------------------------------------------------
        let roll: f64 = rng.gen();
        let failure = roll < self.failure_ratio;
        let mcp = !failure && rng.gen_bool(0.004);
        let cache_hit = !failure && !mcp && roll < self.failure_ratio + self.cache_hit_ratio;
        let error = failure.then(|| ERROR_KINDS[self.error_pick.sample(rng).unwrap_or(0)]);
        let (err_code, err_class) = error.map(|e| (e.0, e.1)).unwrap_or(("", ""));
        let auth_failure = err_class == "AuthenticationError";
        let pre_routing = auth_failure || err_class == "BudgetExceededError";
        // Rows from LiteLLM versions before the status/organization/duration columns existed:
        // those only ever logged successes and wrote NULL for absent ids.
        let legacy = !failure && rng.gen_bool(0.05);

        // --- identity (all from the key) ------------------------------------------------------
        let key_index = if rng.gen_bool(0.01) {
            None // master key
        } else {
            self.key_pick.sample(rng)
        };
        let key = key_index.map(|i| &u.keys[i]);
        // Real keys are used by one application: mostly the same two models and one client.
        // Drawing them per key (not per row) keeps the label cardinality realistic.
        let habit = key_index.unwrap_or(0);
        let mut api_key = match key {
            Some(k) => k.token.clone(),
            None => MASTER_KEY_ALIAS.to_string(),
        };
        let mut key_alias = key.and_then(|k| k.alias.clone());
        let mut team_id = key.and_then(|k| k.team_id.clone());
        let team = key.and_then(|k| k.team).map(|t| &u.teams[t]);
        let mut team_alias = team.and_then(|t| match &t.previous_alias {
            Some(p) if rng.gen_bool(0.3) => Some(p.clone()),
            _ => t.alias.clone(),
        });
        let mut user_id = match key {
            Some(k) => k.user_id.clone(),
            None => Some(DEFAULT_ADMIN_USER.to_string()),
        };
        let mut user_email = key
            .and_then(|k| k.user)
            .and_then(|i| u.users[i].email.clone())
            .filter(|_| rng.gen_bool(0.7));
        let mut org_id = key.and_then(|k| k.organization_id.clone());
        if auth_failure {
            // The key was not recognised: nothing is known about the caller.
            api_key = if rng.gen_bool(0.5) {
                String::new()
            } else {
                hash_key(&format!("sk-bogus-{}", lo % 5)) // a few bad keys, retried
            };
            key_alias = None;
            team_id = None;
            team_alias = None;
            user_id = None;
            user_email = None;
            org_id = None;
        }

        // --- model ----------------------------------------------------------------------------
        let model = if mcp {
            None
        } else {
            let n = u.models.len().max(1);
            if rng.gen_bool(0.9) {
                let own = (habit * 7 + usize::from(rng.gen_bool(0.3))) % n;
                u.models.get(own)
            } else {
                self.model_pick.sample(rng).map(|i| &u.models[i])
            }
        };
        let kind = model.map(|m| m.kind).unwrap_or(ModelKind::Chat);
        let provider = model.map(|m| m.provider.as_str()).unwrap_or("");
        let call_type = if mcp {
            "call_mcp_tool"
        } else {
            match (kind, provider) {
                (ModelKind::Embedding, _) => "aembedding",
                (_, "openai" | "azure") if rng.gen_bool(0.15) => "aresponses",
                (_, "anthropic") if rng.gen_bool(0.2) => "anthropic_messages",
                _ => "acompletion",
            }
        };
        let stream = kind != ModelKind::Embedding
            && !mcp
            && !cache_hit
            && !pre_routing
            && rng.gen_bool(self.stream_ratio);
        let mut model_name = match model {
            Some(m) if !legacy && rng.gen_bool(0.75) => m.prefixed_model.clone(),
            Some(m) => m.plain_model.clone(),
            None => String::new(),
        };
        let mut model_group = model.map(|m| m.model_group.clone()).unwrap_or_default();
        let mut model_id = model.map(|m| m.model_id.clone()).unwrap_or_default();
        let mut api_base = model.map(|m| m.api_base.clone()).unwrap_or_default();
        let mut provider_col = provider.to_string();
        if pre_routing {
            // Rejected before a deployment was chosen: the requested name only.
            model_name = model.map(|m| m.model_group.clone()).unwrap_or_default();
            if rng.gen_bool(0.5) {
                model_group.clear();
            }
            model_id.clear();
            api_base.clear();
            provider_col.clear();
        } else if err_class == "NotFoundError" && rng.gen_bool(0.5) {
            model_name = "unknown-model".into();
            model_group.clear();
            model_id.clear();
            api_base.clear();
        }

        // --- tokens ---------------------------------------------------------------------------
        let mut prompt: i64 = match kind {
            ModelKind::Embedding => lognormal(rng, 200.0, 1.0).clamp(1.0, 8_000.0) as i64,
            _ => lognormal(rng, 600.0, 1.2).clamp(3.0, 120_000.0) as i64,
        };
        let mut completion: i64 = match kind {
            ModelKind::Embedding => 0,
            ModelKind::Reasoning => lognormal(rng, 900.0, 0.9).clamp(10.0, 30_000.0) as i64,
            ModelKind::Chat => lognormal(rng, 180.0, 1.0).clamp(1.0, 16_000.0) as i64,
        };
        if mcp || (failure && !rng.gen_bool(0.2)) {
            prompt = 0;
            completion = 0;
        } else if failure {
            completion = 0; // estimated prompt tokens at $0
        }
        let reasoning = if kind == ModelKind::Reasoning && completion > 0 {
            (completion as f64 * rng.gen_range(0.3..0.8)) as i64
        } else {
            0
        };
        let (mut cache_read, mut cache_creation, mut cached) = (0i64, 0i64, 0i64);
        if !failure && prompt > 0 {
            if provider == "anthropic" || provider == "bedrock" {
                if rng.gen_bool(0.3) {
                    cache_read = (prompt as f64 * rng.gen_range(0.3..0.9)) as i64;
                }
                if rng.gen_bool(0.1) {
                    cache_creation = (prompt as f64 * rng.gen_range(0.05..0.3)) as i64;
                }
                cached = cache_read;
            } else if kind != ModelKind::Embedding && rng.gen_bool(0.25) {
                cached = (prompt as f64 * rng.gen_range(0.2..0.9)) as i64 / 128 * 128;
            }
        }
        let total = prompt + completion;

        // --- spend ----------------------------------------------------------------------------
        let mut spend = match model {
            Some(m) => prompt as f64 * m.input_cost + completion as f64 * m.output_cost,
            None if mcp && rng.gen_bool(0.2) => 0.001,
            None => 0.0,
        };
        if cache_hit || (failure && !rng.gen_bool(0.03)) || (!failure && rng.gen_bool(0.005)) {
            // Cache hits are free; failures almost always; a few successes lack pricing.
            spend = 0.0;
        }
        let spend = round_sig(spend);

        // --- timing ---------------------------------------------------------------------------
        let overhead_ms = lognormal(rng, 8.0, 0.6).clamp(0.5, 400.0);
        let (duration_ms, ttft_ms) = if cache_hit {
            let d = rng.gen_range(3..60);
            (d, d)
        } else if failure {
            let d = match err_code {
                "429" => rng.gen_range(20..300),
                "500" => rng.gen_range(500..30_000),
                "408" => rng.gen_range(30_000..600_000),
                "401" => rng.gen_range(2..20),
                _ => rng.gen_range(15..600),
            };
            (d, d)
        } else if mcp {
            let d = rng.gen_range(40..4_000);
            (d, d)
        } else {
            let base_ttft = match (provider, kind) {
                (_, ModelKind::Embedding) => 90.0,
                (_, ModelKind::Reasoning) => 2_500.0,
                ("anthropic" | "bedrock", _) => 700.0,
                ("vertex_ai", _) => 450.0,
                _ => 400.0,
            };
            let ttft = lognormal(rng, base_ttft, 0.5) + overhead_ms;
            let tps = rng.gen_range(30.0..150.0);
            let mut d = ttft + completion as f64 / tps * 1000.0;
            if rng.gen_bool(0.01) {
                d *= rng.gen_range(5.0..20.0); // slow tail
            }
            let d = (d as i64).clamp(5, 600_000);
            (d, (ttft as i64).clamp(1, d))
        };
        let end = start + Duration::milliseconds(duration_ms);
        let completion_start = if stream {
            start + Duration::milliseconds(ttft_ms)
        } else {
            end
        };

        // --- request id -----------------------------------------------------------------------
        let mut request_id = if failure || mcp || kind == ModelKind::Embedding {
            call_uuid.clone()
        } else {
            match (call_type, provider) {
                ("aresponses", _) => format!(
                    "resp_{:032x}{:016x}",
                    (hi as u128) << 64 | lo as u128,
                    mix64(hi)
                ),
                (_, "anthropic") => {
                    format!("msg_01{}", base62_u128((hi as u128) << 64 | lo as u128))
                }
                (_, "openai" | "azure") => {
                    format!("chatcmpl-{}", base62_u128((hi as u128) << 64 | lo as u128))
                }
                _ => format!("chatcmpl-{call_uuid}"),
            }
        };
        if cache_hit {
            let ts = end.and_utc();
            request_id = format!(
                "{request_id}_cache_hit{}.{:06}",
                ts.timestamp(),
                ts.timestamp_subsec_micros()
            );
        }

        // --- context --------------------------------------------------------------------------
        let absent = |rng: &mut SmallRng| -> Option<String> {
            if legacy {
                None
            } else {
                // Recent LiteLLM writes '' for absent ids; a few rows still carry NULL.
                (!rng.gen_bool(0.03)).then(String::new)
            }
        };
        let end_user = match self.customer_pick.sample(rng) {
            Some(c) if !auth_failure && rng.gen_bool(0.3) => Some(u.customers[c].user_id.clone()),
            _ => absent(rng),
        };
        let ip =
            (!rng.gen_bool(0.08)).then(|| self.ips[self.ip_pick.sample(rng).unwrap_or(0)].clone());
        let user_agent = (!rng.gen_bool(0.04)).then(|| {
            let i = if rng.gen_bool(0.95) {
                habit % self.user_agents.len().max(1)
            } else {
                self.ua_pick.sample(rng).unwrap_or(0)
            };
            self.user_agents[i].clone()
        });
        let tags = self.tag_sets[self.tag_pick.sample(rng).unwrap_or(0)].clone();
        let session_id = if legacy {
            None
        } else {
            match &self.last_session {
                Some(s) if rng.gen_bool(0.3) => Some(s.clone()),
                _ => Some(uuid_from_bits(mix64(lo ^ 0xA5A5), hi)),
            }
        };
        self.last_session.clone_from(&session_id);
        let agent_id = (!failure && rng.gen_bool(0.01)).then(|| {
            format!(
                "agent-{}",
                ["triage", "coder", "researcher"][rng.gen_range(0..3)]
            )
        });
        let billing_agent_id = agent_id.clone().filter(|_| rng.gen_bool(0.5));
        let mcp_tool = mcp.then(|| MCP_TOOLS[rng.gen_range(0..MCP_TOOLS.len())].to_string());
        let fallback_from = (!failure && !mcp && !cache_hit && rng.gen_bool(0.02))
            .then(|| {
                let groups = u.model_groups();
                groups
                    .iter()
                    .find(|g| **g != model_group && rng.gen_bool(0.4))
                    .or_else(|| groups.iter().find(|g| **g != model_group))
                    .map(|g| g.to_string())
            })
            .flatten();
        let (cache_hit_col, cache_key) = if cache_hit {
            (
                Some("True".to_string()),
                Some(format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    hi,
                    lo,
                    mix64(hi),
                    mix64(lo)
                )),
            )
        } else if failure {
            (
                Some(if rng.gen_bool(0.5) { "None" } else { "" }.to_string()),
                Some(String::new()),
            )
        } else {
            (
                Some(if rng.gen_bool(0.88) { "False" } else { "" }.to_string()),
                Some(if rng.gen_bool(0.4) { "Cache OFF" } else { "" }.to_string()),
            )
        };

        // --- metadata -------------------------------------------------------------------------
        let mut md = Map::new();
        md.insert("user_api_key".into(), json!(api_key));
        md.insert("user_api_key_alias".into(), json!(key_alias));
        md.insert("user_api_key_team_id".into(), json!(team_id));
        md.insert("user_api_key_team_alias".into(), json!(team_alias));
        md.insert("user_api_key_user_id".into(), json!(user_id));
        if let Some(e) = &user_email {
            md.insert("user_api_key_user_email".into(), json!(e));
        }
        md.insert("user_api_key_org_id".into(), json!(org_id));
        md.insert("requester_ip_address".into(), json!(ip));
        if let Some(ua) = &user_agent {
            md.insert("user_agent".into(), json!(ua));
        }
        md.insert("litellm_call_id".into(), json!(call_uuid));
        if !legacy {
            md.insert(
                "status".into(),
                json!(if failure { "failure" } else { "success" }),
            );
        }
        md.insert(
            "litellm_overhead_time_ms".into(),
            json!((overhead_ms * 1000.0).round() / 1000.0),
        );
        // LiteLLM also writes a dozen keys that are null on ordinary requests (guardrails, vector
        // stores, batches, cold storage...). They are left out: jsonb parsing is about half of
        // PostgreSQL's COPY time here, and the exporter must tolerate absent keys anyway.
        if let Some(t) = &mcp_tool {
            md.insert(
                "mcp_tool_call_metadata".into(),
                json!({"name": t, "namespaced_tool_name": t, "mcp_server_name": t.split('-').next()}),
            );
        }
        if failure {
            md.insert("attempted_retries".into(), json!(rng.gen_range(0..3)));
        }
        md.insert(
            "attempted_fallbacks".into(),
            json!(if fallback_from.is_some() { 1 } else { 0 }),
        );
        if let Some(g) = &fallback_from {
            md.insert("original_model_group".into(), json!(g));
        }
        if !failure && !mcp {
            let audio = |rng: &mut SmallRng| {
                if rng.gen_bool(0.3) {
                    Value::Null
                } else {
                    json!(0)
                }
            };
            let mut usage = json!({
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": audio(rng)},
                "completion_tokens_details": {
                    "reasoning_tokens": reasoning,
                    "audio_tokens": audio(rng)
                },
            });
            if cache_read > 0 || cache_creation > 0 {
                usage["cache_read_input_tokens"] = json!(cache_read);
                usage["cache_creation_input_tokens"] = json!(cache_creation);
                md.insert(
                    "additional_usage_values".into(),
                    json!({"cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_creation}),
                );
            }
            if rng.gen_bool(0.15) {
                let tier = match provider {
                    "anthropic" | "bedrock" => "standard",
                    _ => ["default", "flex", "priority"][rng.gen_range(0..3)],
                };
                usage["service_tier"] = json!(tier);
            }
            md.insert("usage_object".into(), usage);
        } else {
            md.insert("usage_object".into(), Value::Null);
        }
        if failure {
            let llm_provider = if pre_routing { "" } else { provider };
            md.insert(
                "error_information".into(),
                json!({
                    "error_code": err_code,
                    "error_class": err_class,
                    "llm_provider": llm_provider,
                    "error_message": format!("litellm.{err_class}: {}", error.map(|e| e.3).unwrap_or("")),
                    "traceback": "",
                }),
            );
        }

        let present_or_absent = |v: Option<String>, rng: &mut SmallRng| match v {
            Some(v) => Some(v),
            None => absent(rng),
        };
        SpendRow {
            request_id,
            call_type: call_type.to_string(),
            api_key,
            spend,
            total_tokens: total as i32,
            prompt_tokens: prompt as i32,
            completion_tokens: completion as i32,
            start_time: start,
            end_time: end,
            completion_start_time: Some(completion_start),
            model: model_name,
            model_id: Some(model_id),
            model_group: Some(model_group),
            custom_llm_provider: Some(provider_col),
            api_base: Some(api_base),
            user: present_or_absent(user_id, rng),
            metadata: Value::Object(md),
            cache_hit: cache_hit_col,
            cache_key,
            request_tags: tags,
            team_id: present_or_absent(team_id, rng),
            end_user,
            requester_ip_address: ip,
            session_id,
            status: if legacy {
                None
            } else {
                Some(if failure { "failure" } else { "success" }.to_string())
            },
            mcp_namespaced_tool_name: mcp_tool,
            organization_id: if legacy {
                None
            } else {
                present_or_absent(org_id, rng)
            },
            agent_id,
            request_duration_ms: (!legacy).then_some(duration_ms as i32),
            litellm_call_id: (!legacy).then_some(call_uuid),
            billing_agent_id,
            created_at: None,
            stream,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// COPY encoding
// ------------------------------------------------------------------------------------------------

type FieldWriter = fn(&SpendRow, NaiveDateTime, &mut Vec<u8>);

/// Every SpendLogs column the generator can fill, in COPY order.
const KNOWN_COLUMNS: &[(&str, FieldWriter)] = &[
    ("request_id", |r, _, o| put_text(o, &r.request_id)),
    ("call_type", |r, _, o| put_text(o, &r.call_type)),
    ("api_key", |r, _, o| put_text(o, &r.api_key)),
    ("spend", |r, _, o| put_f64(o, r.spend)),
    ("total_tokens", |r, _, o| put_int(o, r.total_tokens as i64)),
    ("prompt_tokens", |r, _, o| {
        put_int(o, r.prompt_tokens as i64)
    }),
    ("completion_tokens", |r, _, o| {
        put_int(o, r.completion_tokens as i64)
    }),
    ("startTime", |r, _, o| put_ts(o, r.start_time)),
    ("endTime", |r, _, o| put_ts(o, r.end_time)),
    ("completionStartTime", |r, _, o| {
        match r.completion_start_time {
            Some(t) => put_ts(o, t),
            None => put_null(o),
        }
    }),
    ("model", |r, _, o| put_text(o, &r.model)),
    ("model_id", |r, _, o| put_opt(o, r.model_id.as_deref())),
    ("model_group", |r, _, o| {
        put_opt(o, r.model_group.as_deref())
    }),
    ("custom_llm_provider", |r, _, o| {
        put_opt(o, r.custom_llm_provider.as_deref())
    }),
    ("api_base", |r, _, o| put_opt(o, r.api_base.as_deref())),
    ("user", |r, _, o| put_opt(o, r.user.as_deref())),
    ("metadata", |r, _, o| put_json(o, &r.metadata)),
    ("cache_hit", |r, _, o| put_opt(o, r.cache_hit.as_deref())),
    ("cache_key", |r, _, o| put_opt(o, r.cache_key.as_deref())),
    ("request_tags", |r, _, o| put_json(o, &r.request_tags)),
    ("team_id", |r, _, o| put_opt(o, r.team_id.as_deref())),
    ("end_user", |r, _, o| put_opt(o, r.end_user.as_deref())),
    ("requester_ip_address", |r, _, o| {
        put_opt(o, r.requester_ip_address.as_deref())
    }),
    ("messages", |_, _, o| o.extend_from_slice(b"{}")),
    ("response", |_, _, o| o.extend_from_slice(b"{}")),
    ("proxy_server_request", |_, _, o| o.extend_from_slice(b"{}")),
    ("session_id", |r, _, o| put_opt(o, r.session_id.as_deref())),
    ("status", |r, _, o| put_opt(o, r.status.as_deref())),
    ("mcp_namespaced_tool_name", |r, _, o| {
        put_opt(o, r.mcp_namespaced_tool_name.as_deref())
    }),
    ("organization_id", |r, _, o| {
        put_opt(o, r.organization_id.as_deref())
    }),
    ("agent_id", |r, _, o| put_opt(o, r.agent_id.as_deref())),
    ("request_duration_ms", |r, _, o| {
        match r.request_duration_ms {
            Some(v) => put_int(o, v as i64),
            None => put_null(o),
        }
    }),
    // NOT NULL with a CURRENT_TIMESTAMP default, which is the *server's* local time; LiteLLM
    // writes UTC explicitly, so do we.
    ("created_at", |r, now, o| {
        put_ts(o, r.created_at.unwrap_or(now))
    }),
    ("updated_at", |r, now, o| {
        put_ts(o, r.created_at.unwrap_or(now))
    }),
    ("litellm_call_id", |r, _, o| {
        put_opt(o, r.litellm_call_id.as_deref())
    }),
    ("billing_agent_id", |r, _, o| {
        put_opt(o, r.billing_agent_id.as_deref())
    }),
];

const REQUIRED_COLUMNS: &[&str] = &["request_id", "call_type", "startTime", "endTime"];

/// Which `LiteLLM_SpendLogs` columns exist (the ones added after the oldest supported schema get a
/// flag) and therefore which ones [`insert_rows`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendLogColumns {
    pub status: bool,
    pub created_at: bool,
    pub updated_at: bool,
    pub organization_id: bool,
    pub request_duration_ms: bool,
    pub session_id: bool,
    pub proxy_server_request: bool,
    pub mcp_namespaced_tool_name: bool,
    pub agent_id: bool,
    pub litellm_call_id: bool,
    pub billing_agent_id: bool,
    /// Columns written, in COPY order (known to the generator and present in the table).
    pub written: Vec<&'static str>,
    /// Columns present in the table but unknown to the generator (left to their defaults).
    pub unknown: Vec<String>,
    idx: Vec<usize>,
}

impl SpendLogColumns {
    /// Builds the column set from the names found in the table.
    pub fn from_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: HashSet<String> = names.into_iter().map(|s| s.as_ref().to_string()).collect();
        for r in REQUIRED_COLUMNS {
            if !names.contains(*r) {
                bail!("LiteLLM_SpendLogs has no column {r:?}: not a LiteLLM schema (or table missing)");
            }
        }
        let idx: Vec<usize> = (0..KNOWN_COLUMNS.len())
            .filter(|&i| names.contains(KNOWN_COLUMNS[i].0))
            .collect();
        let written: Vec<&'static str> = idx.iter().map(|&i| KNOWN_COLUMNS[i].0).collect();
        let mut unknown: Vec<String> = names
            .iter()
            .filter(|n| !KNOWN_COLUMNS.iter().any(|(k, _)| k == n))
            .cloned()
            .collect();
        unknown.sort();
        let has = |c: &str| names.contains(c);
        Ok(SpendLogColumns {
            status: has("status"),
            created_at: has("created_at"),
            updated_at: has("updated_at"),
            organization_id: has("organization_id"),
            request_duration_ms: has("request_duration_ms"),
            session_id: has("session_id"),
            proxy_server_request: has("proxy_server_request"),
            mcp_namespaced_tool_name: has("mcp_namespaced_tool_name"),
            agent_id: has("agent_id"),
            litellm_call_id: has("litellm_call_id"),
            billing_agent_id: has("billing_agent_id"),
            written,
            unknown,
            idx,
        })
    }

    // Only the generator's own tests ask.
    #[cfg(test)]
    /// Every column the generator knows (the newest schema).
    pub fn newest() -> Self {
        Self::from_names(KNOWN_COLUMNS.iter().map(|(n, _)| *n)).expect("known columns are complete")
    }

    // Only the generator's own tests ask.
    #[cfg(test)]
    /// The columns of litellm-proxy-extras 0.1.1 (the oldest supported schema).
    pub fn oldest() -> Self {
        const LATER: &[&str] = &[
            "status",
            "created_at",
            "updated_at",
            "organization_id",
            "request_duration_ms",
            "session_id",
            "proxy_server_request",
            "mcp_namespaced_tool_name",
            "agent_id",
            "litellm_call_id",
            "billing_agent_id",
        ];
        Self::from_names(
            KNOWN_COLUMNS
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| !LATER.contains(n)),
        )
        .expect("baseline columns are complete")
    }

    // Only the generator's own tests ask.
    #[cfg(test)]
    pub fn has(&self, column: &str) -> bool {
        self.written.contains(&column)
    }

    /// The `COPY ... FROM STDIN` statement for these columns (text format).
    pub fn copy_statement(&self) -> String {
        let cols: Vec<String> = self.written.iter().map(|c| format!("\"{c}\"")).collect();
        format!(
            "COPY \"LiteLLM_SpendLogs\" ({}) FROM STDIN",
            cols.join(", ")
        )
    }
}

/// Reads the columns of `LiteLLM_SpendLogs` from `information_schema.columns`.
pub async fn spend_log_columns(client: &Client) -> Result<SpendLogColumns> {
    let names = table_columns(client, "LiteLLM_SpendLogs").await?;
    if names.is_empty() {
        bail!("table \"LiteLLM_SpendLogs\" not found in the current schema (are the LiteLLM migrations applied?)");
    }
    SpendLogColumns::from_names(names)
}

/// Appends rows in COPY text format; `insert_time` fills `created_at`/`updated_at`.
fn encode_rows(
    cols: &SpendLogColumns,
    rows: &[SpendRow],
    insert_time: NaiveDateTime,
    out: &mut Vec<u8>,
) {
    for row in rows {
        for (n, &i) in cols.idx.iter().enumerate() {
            if n > 0 {
                out.push(b'\t');
            }
            (KNOWN_COLUMNS[i].1)(row, insert_time, out);
        }
        out.push(b'\n');
    }
}

/// Appends `s` escaped for COPY text format: backslash, newline, CR and tab (the delimiter) are
/// the bytes COPY interprets; everything else (including multi-byte UTF-8) passes through.
fn put_text(out: &mut Vec<u8>, s: &str) {
    put_escaped(out, s.as_bytes());
}

fn put_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(esc);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

fn put_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\\N");
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_text(out, s),
        None => put_null(out),
    }
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    let _ = write!(out, "{v}");
}

fn put_f64(out: &mut Vec<u8>, v: f64) {
    // Display prints the shortest representation that round-trips, so SQL sums see exactly the
    // value the generator produced.
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push(b'0');
    }
}

fn put_ts(out: &mut Vec<u8>, t: NaiveDateTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 1_000_000
    );
}

/// Serialises JSON straight into the COPY buffer (JSON escapes such as `\n` contain backslashes,
/// which COPY would otherwise eat).
fn put_json(out: &mut Vec<u8>, v: &Value) {
    struct Escaper<'a>(&'a mut Vec<u8>);
    impl std::io::Write for Escaper<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            put_escaped(self.0, buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(Escaper(out), v);
}

async fn copy_encoded(client: &Client, cols: &SpendLogColumns, data: Bytes) -> Result<u64> {
    let sink = client
        .copy_in::<_, Bytes>(cols.copy_statement().as_str())
        .await
        .context("starting COPY into LiteLLM_SpendLogs")?;
    futures_util::pin_mut!(sink);
    sink.send(data)
        .await
        .context("sending COPY data for LiteLLM_SpendLogs")?;
    let n = sink.finish().await.context("COPY into LiteLLM_SpendLogs")?;
    Ok(n)
}

/// Writes `rows` with one `COPY "LiteLLM_SpendLogs" (...) FROM STDIN`; `created_at`/`updated_at`
/// (where present and not set on the row) get the current UTC time. Duplicate `request_id`s fail
/// the whole statement (COPY has no ON CONFLICT).
pub async fn insert_rows(client: &Client, cols: &SpendLogColumns, rows: &[SpendRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::with_capacity(rows.len() * 1_600);
    encode_rows(cols, rows, trunc_ms(utc_now()), &mut buf);
    copy_encoded(client, cols, Bytes::from(buf)).await?;
    Ok(())
}

struct EncodedBatch {
    data: Bytes,
    rows: u64,
    /// Request ids of the first batch, used to detect a previous run with the same seed.
    probe_ids: Vec<String>,
}

/// Writes `opts.rows` rows spread over `[end - days (or hours), end)` in batches of `opts.batch_rows`
/// (one COPY each; generation runs on a blocking thread, overlapped with the COPY of the previous
/// batch, with at most two encoded batches in memory). Rows never end after `end`.
///
/// Request ids depend only on the seed, so a second run with the same seed would collide on the
/// primary key: when the first batch's ids are already present the call writes nothing and
/// returns `Ok(0)` (makes re-running the demo seeder harmless).
pub async fn seed_spend_logs(
    client: &Client,
    opts: &SeedOptions,
    universe: &Universe,
) -> Result<u64> {
    let cols = spend_log_columns(client).await?;
    if opts.rows == 0 {
        return Ok(0);
    }
    let end = trunc_ms(opts.end.unwrap_or_else(utc_now));
    let span_ms = match opts.hours {
        Some(h) => i64::from(h) * 3_600_000,
        None => i64::from(opts.days) * 86_400_000,
    };
    let begin = end - Duration::milliseconds(span_ms);
    let batch_rows = opts.batch_rows.max(1);
    let total = opts.rows;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<EncodedBatch>(1);
    let mut gen = RowGen::new(universe, opts);
    let mut jitter = SmallRng::seed_from_u64(opts.seed ^ 0x7177_E500_0000_0004);
    let enc_cols = cols.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(batch_rows);
        let mut first = true;
        for i in 0..total {
            let frac = (i as f64 + jitter.gen::<f64>()) / total as f64;
            let start = begin + Duration::milliseconds((frac * span_ms as f64) as i64);
            let mut row = gen.next_row(start);
            if row.end_time > end {
                // Keep the whole request inside the window: nothing can have ended in the future.
                let over = row.end_time - end;
                row.shift(-over);
            }
            batch.push(row);
            if batch.len() == batch_rows || i + 1 == total {
                let mut buf = Vec::with_capacity(batch.len() * 1_600);
                encode_rows(&enc_cols, &batch, trunc_ms(utc_now()), &mut buf);
                let probe_ids = if first {
                    batch
                        .iter()
                        .take(64)
                        .map(|r| r.request_id.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                first = false;
                let msg = EncodedBatch {
                    data: Bytes::from(buf),
                    rows: batch.len() as u64,
                    probe_ids,
                };
                if tx.blocking_send(msg).is_err() {
                    return; // the writer stopped (error or duplicate run)
                }
                batch.clear();
            }
        }
    });

    let mut written = 0u64;
    let mut first = true;
    while let Some(b) = rx.recv().await {
        if first {
            first = false;
            let existing: i64 = client
                .query_one(
                    "SELECT count(*) FROM \"LiteLLM_SpendLogs\" WHERE request_id = ANY($1)",
                    &[&b.probe_ids],
                )
                .await
                .context("checking for a previous run with the same seed")?
                .get(0);
            if existing > 0 {
                tracing::warn!(
                    seed = opts.seed,
                    "LiteLLM_SpendLogs already holds rows generated with this seed; not seeding again"
                );
                drop(rx);
                let _ = producer.await;
                return Ok(0);
            }
        }
        copy_encoded(client, &cols, b.data).await?;
        written += b.rows;
        tracing::debug!(written, total, "spend logs seeded");
    }
    producer.await.context("spend-log generator thread")?;
    Ok(written)
}

/// Continuous traffic for live demos: every ~250 ms inserts the rows owed at `rate_per_sec`,
/// each ending "now" (so `startTime` = now − request duration); ~2% arrive late, with `startTime`
/// 1–10 minutes in the past. Runs for `duration`, or forever with `None`. Request ids are salted
/// with the wall clock so restarts never collide with earlier rows.
pub async fn run_traffic(
    client: &Client,
    opts: &SeedOptions,
    universe: &Universe,
    rate_per_sec: f64,
    duration: Option<StdDuration>,
) -> Result<u64> {
    let cols = spend_log_columns(client).await?;
    let salt = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let mut live = opts.clone();
    live.seed = opts.seed ^ mix64(salt);
    let mut gen = RowGen::new(universe, &live);
    let mut rng = SmallRng::seed_from_u64(live.seed ^ 0x1A7E);
    let rate = if rate_per_sec.is_finite() {
        rate_per_sec.max(0.0)
    } else {
        0.0
    };

    let started = tokio::time::Instant::now();
    let mut last = started;
    let mut owed = 0.0f64;
    let mut written = 0u64;
    let mut ticker = tokio::time::interval(StdDuration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rows = Vec::new();
    loop {
        ticker.tick().await;
        let t = tokio::time::Instant::now();
        if duration.is_some_and(|d| t.duration_since(started) >= d) {
            break;
        }
        // At most a second owed: a rate the database cannot take then runs at its speed instead
        // of owing (and generating in one go) geometrically more rows every tick.
        owed = (owed + rate * t.duration_since(last).as_secs_f64()).min(rate.max(1.0));
        last = t;
        let n = owed.floor();
        owed -= n;
        let now = trunc_ms(utc_now());
        rows.clear();
        for _ in 0..n as u64 {
            let late = rng.gen_bool(0.02);
            let start = if late {
                now - Duration::milliseconds(rng.gen_range(60_000..=600_000))
            } else {
                now
            };
            let mut row = gen.next_row(start);
            if late {
                if row.end_time > now {
                    let over = row.end_time - now;
                    row.shift(-over);
                }
            } else {
                let d = row.end_time - row.start_time;
                row.shift(-d);
            }
            rows.push(row);
        }
        // Bounded statements: a rate faster than the database takes (a backlog generator) owes
        // more rows every tick, and one COPY of them all outgrew the protocol's 1 GB message.
        for batch in rows.chunks(5_000) {
            insert_rows(client, &cols, batch).await?;
            written += batch.len() as u64;
        }
    }
    Ok(written)
}

// ------------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------------

fn utc_now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// Truncates to milliseconds: the columns are `timestamp(3)` and PostgreSQL would *round*.
fn trunc_ms(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// SplitMix64 finaliser: a bijection on u64 (distinct inputs give distinct outputs).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn uuid_from(rng: &mut SmallRng) -> String {
    let (hi, lo) = (rng.gen::<u64>(), rng.gen::<u64>());
    uuid_from_bits(hi, lo)
}

/// UUIDv4-shaped string that contains all 64 bits of `lo` (so it is unique whenever `lo` is).
fn uuid_from_bits(hi: u64, lo: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:04x}{:08x}",
        lo >> 32,
        (lo >> 16) & 0xffff,
        hi & 0xfff,
        8 | ((hi >> 12) & 0x3),
        (hi >> 14) & 0xfff,
        lo & 0xffff,
        hi >> 32
    )
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fixed-width (22 digit) base62 of a u128: injective.
fn base62_u128(mut v: u128) -> String {
    let mut s = [b'0'; 22];
    for c in s.iter_mut().rev() {
        *c = BASE62[(v % 62) as usize];
        v /= 62;
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn random_base62(rng: &mut SmallRng, n: usize) -> String {
    (0..n)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

fn std_normal(rng: &mut SmallRng) -> f64 {
    // Box-Muller; rand 0.8 without rand_distr has no normal distribution.
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut SmallRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * std_normal(rng)).exp()
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Rounds to 10 significant digits: LiteLLM's costs are products of token counts and prices and
/// carry float noise; rounding keeps COPY text short without changing sums meaningfully.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return 0.0;
    }
    let mag = 10f64.powi(9 - v.abs().log10().floor() as i32);
    (v * mag).round() / mag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SeedOptions {
        SeedOptions {
            end: Some(
                chrono::NaiveDate::from_ymd_opt(2026, 3, 1)
                    .unwrap()
                    .and_hms_milli_opt(12, 0, 0, 0)
                    .unwrap(),
            ),
            ..SeedOptions::default()
        }
    }

    fn rows(o: &SeedOptions, n: usize) -> Vec<SpendRow> {
        let u = Universe::generate(o);
        let mut g = RowGen::new(&u, o);
        let start = o.end.unwrap() - Duration::days(1);
        (0..n)
            .map(|i| g.next_row(start + Duration::milliseconds(i as i64 * 997)))
            .collect()
    }

    /// Inverse of the COPY text encoding, for round-trip checks.
    fn decode_field(f: &str) -> Option<String> {
        if f == "\\N" {
            return None;
        }
        let mut out = String::new();
        let mut it = f.chars();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('\\') => out.push('\\'),
                    other => panic!("unexpected escape {other:?}"),
                }
            } else {
                out.push(c);
            }
        }
        Some(out)
    }

    #[test]
    fn same_seed_same_universe_and_rows() {
        let o = opts();
        assert_eq!(Universe::generate(&o), Universe::generate(&o));
        assert_eq!(rows(&o, 3_000), rows(&o, 3_000));
        let other = SeedOptions {
            seed: 7,
            ..o.clone()
        };
        assert_ne!(rows(&o, 50), rows(&other, 50));
        assert_ne!(Universe::generate(&o).keys, Universe::generate(&other).keys);
    }

    #[test]
    fn copy_escaping() {
        let mut out = Vec::new();
        put_text(&mut out, "a\\b\tc\nd\re \"q\" Équipe ☃");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\\b\\tc\\nd\\re \"q\" Équipe ☃"
        );
        let mut out = Vec::new();
        put_opt(&mut out, None);
        out.push(b'|');
        put_opt(&mut out, Some(""));
        out.push(b'|');
        put_opt(&mut out, Some("\\N"));
        assert_eq!(String::from_utf8(out).unwrap(), "\\N||\\\\N");
        let mut out = Vec::new();
        put_json(&mut out, &json!({"k": "x\ny\\z\t"}));
        // JSON escapes are themselves backslashes, which COPY must receive doubled.
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"k":"x\\ny\\\\z\\t"}"#);
        let mut out = Vec::new();
        put_ts(
            &mut out,
            chrono::NaiveDate::from_ymd_opt(2026, 1, 2)
                .unwrap()
                .and_hms_milli_opt(3, 4, 5, 6)
                .unwrap(),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "2026-01-02 03:04:05.006");
    }

    #[test]
    fn encoded_rows_round_trip() {
        let o = opts();
        let rs = rows(&o, 5_000);
        for cols in [SpendLogColumns::newest(), SpendLogColumns::oldest()] {
            let mut buf = Vec::new();
            let now = o.end.unwrap();
            encode_rows(&cols, &rs, now, &mut buf);
            let text = String::from_utf8(buf).unwrap();
            let lines: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(lines.len(), rs.len(), "one line per row");
            for (line, row) in lines.iter().zip(&rs) {
                let fields: Vec<Option<String>> = line.split('\t').map(decode_field).collect();
                assert_eq!(fields.len(), cols.written.len());
                let get =
                    |c: &str| fields[cols.written.iter().position(|w| *w == c).unwrap()].clone();
                assert_eq!(get("request_id").as_deref(), Some(row.request_id.as_str()));
                assert_eq!(get("model").as_deref(), Some(row.model.as_str()));
                assert_eq!(get("team_id"), row.team_id);
                assert_eq!(get("end_user"), row.end_user);
                let md: Value = serde_json::from_str(&get("metadata").unwrap()).unwrap();
                assert_eq!(md, row.metadata);
                let tags: Value = serde_json::from_str(&get("request_tags").unwrap()).unwrap();
                assert_eq!(tags, row.request_tags);
                let spend: f64 = get("spend").unwrap().parse().unwrap();
                assert_eq!(spend, row.spend);
                if cols.status {
                    assert_eq!(get("status"), row.status);
                    assert!(get("created_at").is_some());
                }
            }
            assert_eq!(cols.status, cols.has("status"));
        }
    }

    #[test]
    fn row_invariants() {
        let o = opts();
        let rs = rows(&o, 20_000);
        let mut ids = HashSet::new();
        let (mut failures, mut hits, mut streams, mut legacy) = (0, 0, 0, 0);
        let (mut end_users, mut prefixed) = (0, 0);
        for r in &rs {
            assert!(
                ids.insert(r.request_id.clone()),
                "duplicate {}",
                r.request_id
            );
            assert_eq!(r.total_tokens, r.prompt_tokens + r.completion_tokens);
            assert!(r.prompt_tokens >= 0 && r.completion_tokens >= 0);
            assert!(r.spend >= 0.0 && r.spend.is_finite());
            assert!(r.start_time <= r.end_time);
            let cst = r.completion_start_time.unwrap();
            assert!(r.start_time <= cst && cst <= r.end_time);
            if !r.stream {
                assert_eq!(cst, r.end_time);
            }
            if let Some(ms) = r.request_duration_ms {
                assert_eq!(ms as i64, (r.end_time - r.start_time).num_milliseconds());
            }
            assert_eq!(trunc_ms(r.start_time), r.start_time);
            let md = r.metadata.as_object().unwrap();
            assert_eq!(md["user_api_key"].as_str(), Some(r.api_key.as_str()));
            if r.is_failure() {
                failures += 1;
                assert_eq!(md["status"], "failure");
                let e = &md["error_information"];
                assert!(e["error_code"].as_str().is_some_and(|c| c.len() == 3));
                assert!(e["error_class"].as_str().is_some_and(|c| !c.is_empty()));
                assert!(e["llm_provider"].is_string() && e["error_message"].is_string());
                assert_eq!(r.completion_tokens, 0);
                assert_eq!(r.status.as_deref(), Some("failure"));
            } else {
                assert!(!md.contains_key("error_information"));
                assert_ne!(r.status.as_deref(), Some("failure"));
            }
            if r.is_cache_hit() {
                hits += 1;
                assert_eq!(r.spend, 0.0);
                assert!(r.request_id.contains("_cache_hit"));
            }
            if r.status.is_none() {
                legacy += 1;
                assert!(!md.contains_key("status"));
            }
            streams += r.stream as u32;
            end_users += r.end_user.as_deref().is_some_and(|e| !e.is_empty()) as u32;
            prefixed += r.model.contains('/') as u32;
            if r.metadata["usage_object"].is_object() {
                assert_eq!(r.metadata["usage_object"]["total_tokens"], r.total_tokens);
            }
        }
        let n = rs.len() as f64;
        let near = |got: u32, want: f64, tol: f64| (got as f64 / n - want).abs() < tol;
        assert!(near(failures, 0.03, 0.01), "failures {failures}");
        assert!(near(hits, 0.05, 0.01), "cache hits {hits}");
        assert!(near(end_users, 0.3, 0.05), "end users {end_users}");
        assert!(streams > 2_000 && legacy > 300 && prefixed > 5_000);
        // Zipf: the top key carries far more than a uniform share.
        let top = &Universe::generate(&o).keys[0].token;
        let top_rows = rs.iter().filter(|r| &r.api_key == top).count();
        assert!(top_rows as f64 > n * 0.08, "top key rows {top_rows}");
        // Absent ids: mostly '' with some NULLs.
        assert!(rs.iter().any(|r| r.team_id.as_deref() == Some("")));
        assert!(rs.iter().any(|r| r.team_id.is_none()));
        assert!(rs
            .iter()
            .any(|r| r.team_id.as_deref() == Some(UI_SESSION_TEAM_ID)));
        assert!(rs.iter().any(|r| r.api_key == MASTER_KEY_ALIAS));
        assert!(rs.iter().any(|r| r.mcp_namespaced_tool_name.is_some()));
        assert!(rs
            .iter()
            .any(|r| r.metadata.get("original_model_group").is_some()));
    }

    #[test]
    fn awkward_values_present() {
        let o = opts();
        let u = Universe::generate(&o);
        let aliases: Vec<&str> = u
            .teams
            .iter()
            .filter_map(|t| t.alias.as_deref())
            .chain(u.keys.iter().filter_map(|k| k.alias.as_deref()))
            .collect();
        for needle in [
            |a: &str| a.contains('"'),
            |a: &str| a.contains('\\'),
            |a: &str| a.contains('\n'),
            |a: &str| a.contains("Équipe ☃ 東京"),
            |a: &str| a.is_empty(),
            |a: &str| a.chars().count() == 300,
        ] {
            assert!(aliases.iter().any(|a| needle(a)));
        }
        assert!(u.models.iter().any(|m| m.model_group.contains('"')));
        assert!((8..=12).contains(&u.models.len()));
        let rs = rows(&o, 20_000);
        assert!(rs.iter().any(|r| r.model.contains('"')));
        assert!(rs.iter().any(|r| r.metadata["user_agent"]
            .as_str()
            .is_some_and(|a| a.contains('\n'))));
        assert!(rs.iter().any(|r| r.metadata["user_api_key_team_alias"]
            .as_str()
            .is_some_and(|a| a.contains('\\'))));

        let plain = SeedOptions {
            awkward: false,
            ..o
        };
        let u = Universe::generate(&plain);
        assert!(u
            .teams
            .iter()
            .filter_map(|t| t.alias.as_deref())
            .all(|a| a.is_ascii() && !a.contains('"')));
        assert!(u.models.iter().all(|m| !m.model_group.contains('"')));
    }

    #[test]
    fn universe_shape() {
        let o = opts();
        let u = Universe::generate(&o);
        assert_eq!(u.orgs.len(), 3);
        assert_eq!(u.teams.len(), 20);
        assert_eq!(u.users.len(), 101); // + default_user_id
        assert_eq!(u.keys.len(), 201); // + UI session key
        assert_eq!(u.customers.len(), 50);
        for k in &u.keys {
            assert_eq!(k.token, hash_key(&k.raw_key));
            assert_eq!(k.token.len(), 64);
            assert!(k.key_name.starts_with("sk-...") && k.raw_key.ends_with(&k.key_name[6..]));
        }
        let ui: Vec<_> = u.keys.iter().filter(|k| k.ui_session).collect();
        assert_eq!(ui.len(), 1);
        assert_eq!(ui[0].team_id.as_deref(), Some(UI_SESSION_TEAM_ID));
        let with_budget = u.teams.iter().filter(|t| t.max_budget.is_some()).count();
        assert!((10..=19).contains(&with_budget));
        let budget_ids: HashSet<&str> = u.budgets.iter().map(|b| b.budget_id.as_str()).collect();
        assert!(u
            .orgs
            .iter()
            .all(|o| budget_ids.contains(o.budget_id.as_str())));
        assert!(u
            .customers
            .iter()
            .filter_map(|c| c.budget_id.as_deref())
            .all(|b| budget_ids.contains(b)));
        let providers: HashSet<&str> = u.models.iter().map(|m| m.provider.as_str()).collect();
        assert_eq!(providers.len(), 5);
    }

    #[test]
    fn columns_detection() {
        let old = SpendLogColumns::oldest();
        assert!(!old.status && !old.created_at && !old.organization_id && !old.litellm_call_id);
        assert_eq!(old.written.len(), 25);
        let new = SpendLogColumns::newest();
        assert!(new.status && new.created_at && new.billing_agent_id);
        assert_eq!(new.written.len(), KNOWN_COLUMNS.len());
        let mut names: Vec<&str> = new.written.clone();
        names.push("some_future_column");
        let cols = SpendLogColumns::from_names(names).unwrap();
        assert_eq!(cols.unknown, vec!["some_future_column".to_string()]);
        assert!(SpendLogColumns::from_names(["call_type", "startTime"]).is_err());
        assert!(new
            .copy_statement()
            .starts_with("COPY \"LiteLLM_SpendLogs\" (\"request_id\""));
    }

    #[test]
    fn tiny_universes_work() {
        let o = SeedOptions {
            keys: 0,
            teams: 0,
            users: 0,
            orgs: 0,
            customers: 0,
            days: 0,
            ..opts()
        };
        let rs = rows(&o, 2_000);
        assert!(rs.iter().all(|r| r.api_key == MASTER_KEY_ALIAS
            || r.api_key.is_empty()
            || r.metadata["error_information"]["error_class"] == "AuthenticationError"));
        assert!(rs
            .iter()
            .all(|r| r.end_user.as_deref().unwrap_or("").is_empty()));
    }

    /// Compile-time check: callers may `tokio::spawn` the async API.
    #[allow(dead_code)]
    fn futures_are_send(c: &Client, o: &SeedOptions, u: &Universe, cols: &SpendLogColumns) {
        fn send<T: Send>(_: T) {}
        send(seed_entities(c, o));
        send(seed_spend_logs(c, o, u));
        send(run_traffic(c, o, u, 1.0, None));
        send(insert_rows(c, cols, &[]));
        send(spend_log_columns(c));
    }

    #[test]
    fn ids_are_unique_by_construction() {
        let mut seen = HashSet::new();
        for c in 0..100_000u64 {
            let lo = mix64(c.wrapping_add(12345));
            assert!(seen.insert(uuid_from_bits(mix64(lo), lo)));
        }
        assert_eq!(base62_u128(0).len(), 22);
        assert_eq!(base62_u128(u128::MAX).len(), 22);
    }
}

//! Gauges rebuilt from LiteLLM's entity tables on every refresh: remaining budget, maximum budget
//! and hours until reset for teams, keys, users, organizations and customers, rate-limit
//! allowances, member and user counts. Nothing is kept between refreshes, so deleted entities
//! disappear and edited budgets show at once. Labels follow LiteLLM's budget code: aliases are ""
//! when missing, ids are raw.

use std::collections::HashMap;
use std::fmt::Write;

use crate::catalogue::{GAUGE_FAMILIES, USER_WITH_EMAIL};
use crate::db::{self, DbError};
use crate::render::{fmt_value, label_block, push_header, FamilyCount};
use crate::schema::Schema;
use crate::selection::Selection;
use crate::sql;

/// Which tables are read at all (`exporter.sources`): the spend log, and each entity table, whose
/// gauges this module reads; everything is on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sources {
    /// The spend log (every counter and histogram).
    pub ledger: bool,
    pub teams: bool,
    pub keys: bool,
    pub users: bool,
    pub organizations: bool,
    pub customers: bool,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            ledger: true,
            teams: true,
            keys: true,
            users: true,
            organizations: true,
            customers: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EntityConfig {
    /// Which entity tables are read (`exporter.sources`).
    pub sources: Sources,
    /// Customer budgets carry the end-user id; LiteLLM emits them only with end-user tracking on.
    pub customers: bool,
    /// `prometheus_user_budget_label_include_email_alias`.
    pub user_email_alias: bool,
}

/// One refresh's gauges.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The gauges' text, shared (not copied) by every exposition published until the next read.
    pub text: bytes::Bytes,
    pub org_aliases: HashMap<String, String>,
    /// Per family: series written, series dropped by the cap, and 0 (rows are a ledger notion).
    pub series: crate::render::FamilyCounts,
    pub bad_numbers: u64,
}

// Positions in GAUGE_FAMILIES (checked by a test).
const TEAM_BUDGET: usize = 0;
const KEY_BUDGET: usize = 3;
const USER_BUDGET: usize = 6;
const ORG_BUDGET: usize = 9;
const CUSTOMER_BUDGET: usize = 12;
const KEY_RATE: usize = 15;
const TEAM_RATE: usize = 16;
const TEAM_MEMBERS: usize = 17;
const TOTAL_USERS: usize = 18;
const ACTIVE_USERS: usize = 19;
const TEAMS_COUNT: usize = 20;

struct Gauges<'a> {
    sel: &'a Selection,
    samples: Vec<Vec<(String, f64)>>,
    bad: u64,
}

impl<'a> Gauges<'a> {
    fn new(sel: &'a Selection) -> Self {
        Gauges {
            sel,
            samples: GAUGE_FAMILIES.iter().map(|_| Vec::new()).collect(),
            bad: 0,
        }
    }

    /// Sets `family` for an entity given by its values in the family's full label order
    /// (`names`); nothing when the family is not selected.
    fn set(&mut self, family: usize, names: &[&str], values: &[&str], v: f64) {
        if v.is_nan() {
            self.bad += 1;
        } else if let Some((names, values)) = self.sel.gauge_labels(family, names, values) {
            self.samples[family].push((label_block(&names, &values), v));
        }
    }

    /// The three budget gauges of one entity, starting at family `base`. LiteLLM reports an
    /// unlimited budget as +Inf remaining and no maximum; an overdue reset as negative hours.
    fn budget(
        &mut self,
        base: usize,
        names: &[&str],
        values: &[&str],
        max: Option<f64>,
        spend: f64,
        hours: Option<f64>,
    ) {
        if !spend.is_finite() {
            self.bad += 1;
        }
        let remaining = match max {
            Some(m) => m - spend,
            None => f64::INFINITY,
        };
        self.set(base, names, values, remaining);
        if let Some(m) = max {
            self.set(base + 1, names, values, m);
        }
        if let Some(h) = hours {
            self.set(base + 2, names, values, h);
        }
    }

    fn render(self) -> (String, crate::render::FamilyCounts) {
        let mut out = String::new();
        let mut counts = Vec::new();
        for (fam, samples) in GAUGE_FAMILIES.iter().zip(&self.samples) {
            if samples.is_empty() {
                counts.push(FamilyCount::empty(fam.name));
                continue;
            }
            push_header(&mut out, fam.name, fam.help, "gauge");
            // With labels removed by the settings two entities can share a series; the last
            // one wins, as when LiteLLM sets a gauge twice.
            let mut last: HashMap<&str, f64> = HashMap::new();
            let mut order = Vec::new();
            for (block, v) in samples {
                if last.insert(block.as_str(), *v).is_none() {
                    order.push(block.as_str());
                }
            }
            // Gauges beyond the series cap are dropped, as in LiteLLM (chosen by label text, like
            // the ledger's folding, so every exporter keeps the same ones).
            let blocks: Vec<String> = order.iter().map(|b| b.to_string()).collect();
            let (kept, dropped) =
                crate::render::split(&blocks, &vec![true; blocks.len()], self.sel.max_series);
            for i in &kept {
                let _ = writeln!(
                    out,
                    "{}{} {}",
                    fam.name,
                    blocks[*i],
                    fmt_value(last[order[*i]])
                );
            }
            counts.push(FamilyCount {
                family: fam.name,
                series: kept.len(),
                folded: dropped.len(),
                folded_rows: 0,
            });
        }
        (out, counts)
    }
}

/// Teams and keys share a row shape (`sql/entities/teams.sql`, `keys.sql`): id, alias,
/// max_budget, spend, hours to reset, rpm_limit, tpm_limit. Returns (id, alias).
fn budget_and_rates(
    g: &mut Gauges,
    r: &tokio_postgres::Row,
    budget: usize,
    rate: usize,
) -> Result<(String, String), tokio_postgres::Error> {
    let (id, alias): (String, String) = (r.try_get(0)?, r.try_get(1)?);
    let names = GAUGE_FAMILIES[budget].labels;
    g.budget(
        budget,
        names,
        &[&id, &alias],
        r.try_get(2)?,
        r.try_get(3)?,
        r.try_get(4)?,
    );
    for (col, kind) in [(5, "requests"), (6, "tokens")] {
        if let Some(limit) = r.try_get::<_, Option<i64>>(col)? {
            let names = GAUGE_FAMILIES[rate].labels;
            g.set(rate, names, &[&id, &alias, kind], limit as f64);
        }
    }
    Ok((id, alias))
}

pub async fn read(
    client: &mut deadpool_postgres::Object,
    schema: &Schema,
    cfg: &EntityConfig,
    sel: &Selection,
) -> Result<Snapshot, DbError> {
    let tx = db::read_tx(client).await?;
    let mut g = Gauges::new(sel);
    let mut org_aliases = HashMap::new();

    let on = cfg.sources;
    if on.teams && schema.has_table("LiteLLM_TeamTable") {
        let rows = tx.query(sql::ENTITY_TEAMS, &[]).await?;
        for r in &rows {
            let (id, alias) = budget_and_rates(&mut g, r, TEAM_BUDGET, TEAM_RATE)?;
            let names = GAUGE_FAMILIES[TEAM_MEMBERS].labels;
            g.set(
                TEAM_MEMBERS,
                names,
                &[&id, &alias],
                r.try_get::<_, i64>(7)? as f64,
            );
        }
        g.set(TEAMS_COUNT, &[], &[], rows.len() as f64);
    }
    if on.keys && schema.has_table("LiteLLM_VerificationToken") {
        for r in tx.query(sql::ENTITY_KEYS, &[]).await? {
            budget_and_rates(&mut g, &r, KEY_BUDGET, KEY_RATE)?;
        }
    }
    if on.users && schema.has_table("LiteLLM_UserTable") {
        for r in tx.query(sql::ENTITY_USERS, &[]).await? {
            let (id, email, alias): (String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let (names, values): (&[&str], Vec<&str>) = if cfg.user_email_alias {
                (USER_WITH_EMAIL, vec![&id, &email, &alias])
            } else {
                (GAUGE_FAMILIES[USER_BUDGET].labels, vec![&id])
            };
            g.budget(
                USER_BUDGET,
                names,
                &values,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
            );
        }
        let r = tx.query_one(sql::ENTITY_USER_COUNTS, &[]).await?;
        g.set(TOTAL_USERS, &[], &[], r.try_get::<_, i64>(0)? as f64);
        g.set(ACTIVE_USERS, &[], &[], r.try_get::<_, i64>(1)? as f64);
    }
    let has_budgets = schema.has_table("LiteLLM_BudgetTable");
    if on.organizations && schema.has_table("LiteLLM_OrganizationTable") && has_budgets {
        for r in tx.query(sql::ENTITY_ORGS, &[]).await? {
            let (id, alias): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let names = GAUGE_FAMILIES[ORG_BUDGET].labels;
            g.budget(
                ORG_BUDGET,
                names,
                &[&id, &alias],
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            );
            org_aliases.insert(id, alias);
        }
    }
    if cfg.customers && schema.has_table("LiteLLM_EndUserTable") && has_budgets {
        for r in tx.query(sql::ENTITY_CUSTOMERS, &[]).await? {
            let id: String = r.try_get(0)?;
            let names = GAUGE_FAMILIES[CUSTOMER_BUDGET].labels;
            g.budget(
                CUSTOMER_BUDGET,
                names,
                &[&id],
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
            );
        }
    }
    tx.commit().await?;
    let bad_numbers = g.bad;
    let (text, series) = g.render();
    Ok(Snapshot {
        text: text.into(),
        org_aliases,
        series,
        bad_numbers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_catalogue() {
        let at = |i: usize| GAUGE_FAMILIES[i].name;
        assert_eq!(at(TEAM_BUDGET), "litellm_remaining_team_budget_metric");
        assert_eq!(at(KEY_BUDGET), "litellm_remaining_api_key_budget_metric");
        assert_eq!(at(USER_BUDGET), "litellm_remaining_user_budget_metric");
        assert_eq!(at(ORG_BUDGET), "litellm_remaining_org_budget_metric");
        assert_eq!(
            at(CUSTOMER_BUDGET),
            "litellm_remaining_customer_budget_metric"
        );
        assert_eq!(at(KEY_RATE), "litellm_api_key_rate_limit_allowed_metric");
        assert_eq!(at(TEAM_RATE), "litellm_team_rate_limit_allowed_metric");
        assert_eq!(at(TEAM_MEMBERS), "litellm_team_members_metric");
        assert_eq!(at(TOTAL_USERS), "litellm_total_users");
        assert_eq!(at(ACTIVE_USERS), "litellm_active_users");
        assert_eq!(at(TEAMS_COUNT), "litellm_teams_count");
        for base in [
            TEAM_BUDGET,
            KEY_BUDGET,
            USER_BUDGET,
            ORG_BUDGET,
            CUSTOMER_BUDGET,
        ] {
            assert!(at(base + 1).ends_with("max_budget_metric"));
            assert!(at(base + 2).ends_with("remaining_hours_metric"));
        }
    }

    #[test]
    fn unlimited_budget_is_inf_and_nan_is_dropped() {
        let sel = Selection::default();
        let mut g = Gauges::new(&sel);
        let names = GAUGE_FAMILIES[TEAM_BUDGET].labels;
        g.budget(TEAM_BUDGET, names, &["t", ""], None, 3.0, None);
        g.budget(
            TEAM_BUDGET,
            names,
            &["u", ""],
            Some(f64::NAN),
            3.0,
            Some(1.0),
        );
        let block = "{team=\"t\",team_alias=\"\"}".to_string();
        assert_eq!(g.samples[TEAM_BUDGET], vec![(block, f64::INFINITY)]);
        assert!(g.samples[TEAM_BUDGET + 1].is_empty());
        assert_eq!(g.bad, 2);
    }
}

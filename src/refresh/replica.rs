//! The database check, first in every refresh: whether the database answers, whether it is a
//! hot-standby replica and how far behind (read every refresh, so that stale data on a lagging
//! replica can be told from quiet traffic), and LiteLLM's stored settings when they are due (at
//! start and after SIGHUP). The other sources are only attempted when it succeeds.

use deadpool_postgres::Object;

use crate::config::db_settings::DbSettings;
use crate::config::Config;
use crate::db::DbError;
use crate::selfmetrics::SelfMetrics;
use crate::sql;

#[derive(Default)]
pub(super) struct ReplicaSource {
    /// LiteLLM's stored settings (`LiteLLM_Config`), read after connecting and on SIGHUP.
    settings: DbSettings,
}

impl ReplicaSource {
    /// SIGHUP: read LiteLLM's stored settings again at the next refresh.
    pub fn reload(&mut self) {
        self.settings.reload();
    }

    pub async fn read(
        &mut self,
        client: &mut Object,
        cfg: &mut Config,
        sm: &SelfMetrics,
    ) -> Result<(), DbError> {
        read_replica_state(client, sm).await?;
        self.settings.refresh(client, cfg).await
    }
}

/// The replica's state (a primary reports "not in recovery"), in its own statement.
async fn read_replica_state(client: &Object, sm: &SelfMetrics) -> Result<(), DbError> {
    let r = client.query_one(sql::REPLICA, &[]).await?;
    let in_recovery: bool = r.try_get("in_recovery")?;
    let gap: Option<f64> = r.try_get("received_minus_replayed_bytes")?;
    let last: Option<f64> = r.try_get("last_replay_unix")?;
    let paused: Option<bool> = r.try_get("replay_paused")?;
    let receiver: Option<bool> = r.try_get("receiver_up")?;
    let now: f64 = r.try_get("now_unix")?;
    let gap = gap.unwrap_or(0.0).max(0.0);
    sm.in_recovery.set(i64::from(in_recovery));
    sm.replay_lag_bytes.set(gap);
    sm.last_replay.set(last.unwrap_or(0.0));
    // Everything received is replayed: the replica is as fresh as what it was sent, however old
    // its last commit is (a quiet primary).
    let lag = match last {
        Some(t) if gap > 0.0 => (now - t).max(0.0),
        _ => 0.0,
    };
    sm.replay_lag_seconds.set(lag);
    sm.replay_paused.set(i64::from(paused.unwrap_or(false)));
    sm.wal_receiver_up
        .set(i64::from(receiver.unwrap_or(!in_recovery)));
    Ok(())
}

//! Gives way to LiteLLM's DDL on the spend log: while a ledger read runs, another session of
//! the pool asks now and then whether anybody waits for a lock the read holds, and if so cancels
//! the read so that its transaction ends and the waiter goes ahead.
//!
//! Why: a read holds ACCESS SHARE on the spend log (and its partitions) until its transaction
//! ends. That never blocks an insert, but LiteLLM's partition maintenance (`CREATE TABLE ...
//! PARTITION OF`, `DROP TABLE` of an expired partition) needs ACCESS EXCLUSIVE, waits for the
//! read, and every insert of the proxy then queues behind the waiting DDL: a catch-up chunk of a
//! few seconds would stall the proxy's spend-log writes for as long. Giving way bounds that wait
//! by the check interval; the read is repeated once the DDL has run (the ledger absorbs a read
//! only once it is complete, so nothing is counted twice).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Pool, Timeouts};
use prometheus::IntCounter;

use super::DbError;
use crate::sql;

/// How often a running read checks for waiters: the longest a DDL (and the inserts queued behind
/// it) waits for the exporter, plus the cancel's round trip.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
/// A read given way to this many times in a row fails as an error; the next refresh tries again.
pub const MAX_TRIES: u32 = 20;
/// The pause before a read given way to starts again: long enough for the DDL it gave way to.
pub const PAUSE: Duration = Duration::from_millis(100);

/// Watches reads from a second session of the pool.
#[derive(Clone)]
pub struct GiveWay {
    pool: Pool,
    every: Duration,
    /// Reads cancelled to let a waiting session go ahead.
    yields: IntCounter,
    /// Said once: the pool had no second session to watch from.
    said_unwatched: std::sync::Arc<AtomicBool>,
}

impl GiveWay {
    pub fn new(pool: Pool, yields: IntCounter) -> Self {
        GiveWay {
            pool,
            every: CHECK_EVERY,
            yields,
            said_unwatched: Default::default(),
        }
    }

    /// The pid of `client`'s session, to pass to [`GiveWay::run`].
    pub async fn pid(client: &deadpool_postgres::Object) -> Result<i32, tokio_postgres::Error> {
        client.query_one(sql::BACKEND_PID, &[]).await?.try_get(0)
    }

    /// Runs `read`, a read on the session `pid`. Each `every` it runs, another session checks
    /// for waiters on that session's locks and, if one waits, cancels the read's statement: then
    /// the read fails with [`DbError::GaveWay`] (or completes, if it was between statements).
    /// Reads shorter than `every` cost nothing more.
    pub async fn run<T>(
        &self,
        pid: i32,
        read: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::pin!(read);
        let mut watcher = None;
        let mut gave_way = false;
        loop {
            tokio::select! {
                r = &mut read => {
                    return match r {
                        Err(_) if gave_way => {
                            self.yields.inc();
                            Err(DbError::GaveWay)
                        }
                        r => r,
                    };
                }
                _ = tokio::time::sleep(self.every) => {
                    if watcher.is_none() {
                        watcher = self.second_session().await;
                    }
                    let Some(w) = &watcher else { continue };
                    match w.query_one(sql::LOCK_WAITERS, &[&pid]).await {
                        Ok(row) if row.try_get::<_, bool>(0).unwrap_or(false) => {
                            tracing::debug!(pid, "A session waits for a lock the spend-log read holds; cancelling the read.");
                            gave_way = true;
                            if let Err(e) = w.query_one(sql::CANCEL_READ, &[&pid]).await {
                                tracing::debug!(error = %super::describe(&e), "Cancelling the read failed.");
                                watcher = None;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            // The read itself says whether the database is gone; a watcher that
                            // failed is replaced at the next check.
                            tracing::debug!(error = %super::describe(&e), "Checking for lock waiters failed.");
                            watcher = None;
                        }
                    }
                }
            }
        }
    }

    /// A second session, if the pool has one free right now (it waits for none: the read must
    /// not wait on its own watcher).
    async fn second_session(&self) -> Option<deadpool_postgres::Object> {
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            ..self.pool.timeouts()
        };
        match self.pool.timeout_get(&now).await {
            Ok(o) => Some(o),
            Err(e) => {
                if !self.said_unwatched.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "No second database session to watch long spend-log reads from (is db.pool-size 1?): a read may then delay LiteLLM's partition maintenance, and its inserts, by up to its duration."
                    );
                }
                None
            }
        }
    }
}

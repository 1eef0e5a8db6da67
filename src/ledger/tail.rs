//! What the ledger reads, and when: the start-up catch-up in bounded chunks, then one cheap poll
//! per refresh. This is where "exactly once" is decided; ARCHITECTURE.md explains it at length.
//!
//! In short: every read runs in a REPEATABLE READ, READ ONLY transaction whose snapshot xmin is
//! kept. A row version the previous read of the same window could not see was created by a
//! transaction whose id is >= that xmin, so the next read asks only for those (a superset of the
//! changes, never a subset, even for transactions that commit late). Re-read row versions are
//! recognised by the ledger's memory of recent rows. Only rows whose `startTime` is inside the
//! lateness window are looked at again; a row committed later than that is too late.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::read::{self, Projection};
use super::Ledger;
use crate::db::{self, DbError};

/// Rows are forgotten this long after they leave the lateness window, so that a database clock
/// stepping backwards cannot make a remembered row look new.
const FORGET_SLACK_MS: i64 = 5 * 60 * 1000;
const MIN_CHUNK_MS: i64 = 60 * 1000;
const MAX_CHUNK_MS: i64 = 31 * 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct TailConfig {
    /// How late (after its `startTime`) a row may be committed or rewritten and still count.
    pub lateness: Duration,
    /// The window every poll re-reads; the whole lateness window is re-read every `late_every`
    /// polls.
    pub recent: Duration,
    pub late_every: u32,
    /// Aim for catch-up statements of about this duration.
    pub chunk_target: Duration,
}

/// The reading position, persisted with the ledger so that a restart resumes exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cursor {
    pub phase: Phase,
    /// Snapshot xmin of the last read of the recent window (0: none yet).
    pub recent_since: i64,
    /// Snapshot xmin of the last read of the whole lateness window (0: none yet).
    pub late_since: i64,
    pub polls: u64,
    pub chunk_ms: i64,
    /// Rows starting before this are no longer remembered (ms, UTC).
    pub remembered_from_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Phase {
    /// Reading [next_ms, end_ms) chunk by chunk, then [end_ms, +inf) in one read. `since` = 0
    /// reads everything (a fresh start); otherwise only row versions from transactions >= since
    /// (a resume from a state file).
    CatchUp {
        next_ms: Option<i64>,
        end_ms: Option<i64>,
        since: i64,
    },
    Tailing,
}

impl Default for Cursor {
    fn default() -> Self {
        Cursor {
            phase: Phase::CatchUp {
                next_ms: None,
                end_ms: None,
                since: 0,
            },
            recent_since: 0,
            late_since: 0,
            polls: 0,
            chunk_ms: 3600 * 1000,
            remembered_from_ms: None,
        }
    }
}

impl Cursor {
    /// After a restart from a state file, everything the previous process may not have seen is
    /// re-read: rows newer than what it remembered, changed since its last full-window read.
    pub fn resume(mut self) -> Self {
        if self.phase == Phase::Tailing {
            self.phase = Phase::CatchUp {
                next_ms: self.remembered_from_ms,
                end_ms: None,
                since: self.late_since,
            };
        }
        self
    }

    pub fn caught_up(&self) -> bool {
        self.phase == Phase::Tailing
    }
}

/// Progress of one catch-up chunk, for logs and self-metrics.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done_ms: i64,
    pub from_ms: Option<i64>,
    pub end_ms: i64,
    pub rows: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct PollResult {
    pub rows_read: usize,
    pub new_rows: usize,
    pub grown_rows: usize,
    pub late_scan: bool,
}

pub struct Tail {
    pub cfg: TailConfig,
    pub cursor: Cursor,
}

impl Tail {
    pub fn new(cfg: TailConfig, cursor: Cursor) -> Self {
        Tail { cfg, cursor }
    }

    fn lateness_ms(&self) -> i64 {
        self.cfg.lateness.as_millis() as i64
    }

    /// Runs the catch-up to its end, calling `progress` after every chunk. On error the cursor
    /// keeps the position of the last completed chunk, and a later call continues from there.
    pub async fn catch_up(
        &mut self,
        client: &mut deadpool_postgres::Object,
        ledger: &mut Ledger,
        p: &Projection,
        mut progress: impl FnMut(Progress),
    ) -> Result<(), DbError> {
        let Phase::CatchUp {
            mut next_ms,
            end_ms,
            since,
        } = self.cursor.phase.clone()
        else {
            return Ok(());
        };
        let mut first_hi = None;
        let mut oldest_ms = None;
        let end_ms = match end_ms {
            Some(e) => e,
            None => {
                let tx = db::read_tx(client).await?;
                let snap = read::snapshot(&tx).await?;
                let oldest = read::oldest_start(&tx).await?;
                tx.commit().await?;
                let end = snap.now_ms - self.lateness_ms();
                // The first chunk reads from -infinity up to one chunk past the oldest row, so
                // that chunk sizes mean something even when the history starts long ago.
                first_hi = oldest.map(|o| o.saturating_add(self.cursor.chunk_ms));
                oldest_ms = oldest;
                self.cursor.phase = Phase::CatchUp {
                    next_ms,
                    end_ms: Some(end),
                    since,
                };
                end
            }
        };
        // Progress is measured in startTime from where this catch-up starts reading.
        let from_ms = next_ms.or(oldest_ms);
        let mut rows_done = 0u64;
        while next_ms.is_none_or(|n| n < end_ms) {
            let lo = next_ms;
            let hi = match next_ms {
                Some(n) => (n.saturating_add(self.cursor.chunk_ms)).min(end_ms),
                None => first_hi.unwrap_or(end_ms).min(end_ms),
            };
            let started = Instant::now();
            // Old rows are streamed and counted one by one in Rust: measured faster than
            // grouping them in SQL (a GROUP BY over ~25 text columns with ~100 aggregates spills
            // to disk), and it is the same path the polls use, so both count the same thing.
            let tx = db::read_tx(client).await?;
            let xmax = if since == 0 {
                0
            } else {
                read::snapshot(&tx).await?.xmax
            };
            // Counted apart, and absorbed only once the whole chunk has been read (see
            // `Ledger::absorb`); the position moves past the chunk before anything else awaits,
            // so that no later failure makes it read again.
            let mut chunk = Ledger::default();
            let n = read::each_row(&tx, p, lo, Some(hi), since, xmax, |r| {
                chunk.apply_row(r, false, &p.thresholds);
            })
            .await?;
            tx.commit().await?;
            ledger.absorb(chunk);
            self.cursor.phase = Phase::CatchUp {
                next_ms: Some(hi),
                end_ms: Some(end_ms),
                since,
            };
            rows_done += n;
            let empty = n == 0;
            let took = started.elapsed();
            if took < self.cfg.chunk_target / 4 {
                self.cursor.chunk_ms = (self.cursor.chunk_ms * 2).min(MAX_CHUNK_MS);
            } else if took > self.cfg.chunk_target {
                self.cursor.chunk_ms = (self.cursor.chunk_ms / 2).max(MIN_CHUNK_MS);
            }
            next_ms = Some(hi);
            if empty && hi < end_ms {
                // Jump over the years without rows (a row dated in 1000 AD would otherwise cost
                // twelve thousand empty chunks). Rows written into the gap from now on are
                // older than the lateness window: too late by definition, like any such row.
                let tx = db::read_tx(client).await?;
                let next = read::next_start(&tx, hi).await?;
                tx.commit().await?;
                next_ms = Some(next.map_or(end_ms, |n| n.clamp(hi, end_ms)));
            }
            self.cursor.phase = Phase::CatchUp {
                next_ms,
                end_ms: Some(end_ms),
                since,
            };
            progress(Progress {
                done_ms: hi,
                from_ms,
                end_ms,
                rows: rows_done,
            });
        }

        // The lateness window: remembered, in one snapshot whose xmin starts the polls.
        let tx = db::read_tx(client).await?;
        let snap = read::snapshot(&tx).await?;
        let rows = read::rows(&tx, p, Some(end_ms), None, since, snap.xmax).await?;
        tx.commit().await?;
        for r in rows {
            ledger.apply_row(r, true, &p.thresholds);
        }
        ledger.forget_before(end_ms);
        self.cursor.remembered_from_ms = Some(end_ms);
        self.cursor.recent_since = snap.xmin;
        self.cursor.late_since = snap.xmin;
        self.cursor.phase = Phase::Tailing;
        Ok(())
    }

    /// One steady-state read: the recent window, or every `late_every` polls the whole lateness
    /// window, restricted to row versions from transactions the previous read could not see.
    pub async fn poll(
        &mut self,
        client: &mut deadpool_postgres::Object,
        ledger: &mut Ledger,
        p: &Projection,
    ) -> Result<PollResult, DbError> {
        debug_assert!(self.cursor.caught_up());
        let late = self.cursor.polls % u64::from(self.cfg.late_every.max(1)) == 0;
        let (window, since) = if late {
            (self.lateness_ms(), self.cursor.late_since)
        } else {
            (self.cfg.recent.as_millis() as i64, self.cursor.recent_since)
        };
        let tx = db::read_tx(client).await?;
        let snap = read::snapshot(&tx).await?;
        let lo = snap.now_ms - window;
        let rows = read::rows(&tx, p, Some(lo), None, since, snap.xmax).await?;
        tx.commit().await?;

        let mut result = PollResult {
            rows_read: rows.len(),
            late_scan: late,
            ..Default::default()
        };
        for r in rows {
            match ledger.apply_row(r, true, &p.thresholds) {
                super::Applied::New => result.new_rows += 1,
                super::Applied::Grown => result.grown_rows += 1,
                super::Applied::Unchanged => {}
            }
        }
        // A full-window read also covered the recent window.
        self.cursor.recent_since = snap.xmin;
        if late {
            self.cursor.late_since = snap.xmin;
        }
        self.cursor.polls += 1;
        let forget = snap.now_ms - self.lateness_ms() - FORGET_SLACK_MS;
        if self.cursor.remembered_from_ms.is_none_or(|r| r < forget) {
            ledger.forget_before(forget);
            self.cursor.remembered_from_ms = Some(forget);
        }
        Ok(result)
    }
}

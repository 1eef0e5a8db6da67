//! What the ledger reads, and when: the start-up catch-up in bounded chunks, then one cheap poll
//! per refresh. This is where "exactly once" is decided; ARCHITECTURE.md explains it at length.
//!
//! In short: every read runs in a REPEATABLE READ, READ ONLY transaction whose snapshot xmin is
//! kept. A row version the previous read of the same window could not see was created by a
//! transaction whose id is >= that xmin, so the next read asks only for those (a superset of the
//! changes, never a subset, even for transactions that commit late). Re-read row versions are
//! recognised by the ledger's memory of recent rows. Only rows whose `startTime` is inside the
//! lateness window are looked at again; a row committed later than that is too late.
//!
//! The xmin restriction cannot use an index, so a read costs every row of its window. The polls
//! therefore read nested windows, each `growth` times wider and read `growth` times less often
//! than the one inside it (the widest is the lateness window): each window costs about the same
//! per poll, and a poll's cost follows the insert rate times the narrowest window, not the
//! lateness window (a row committed late is counted by the next read of a window that reaches it).

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::read::{self, Projection};
use super::Ledger;
use crate::db::give_way::{self, GiveWay};
use crate::db::{self, DbError};

/// Runs `$read` (an expression making a read's future, evaluated again for each try) through
/// `$watch`, on `$client`'s session; a read that gave way to a waiting DDL starts again after a
/// pause, a shorter read (`Tail::gave_way`), up to `give_way::MAX_TRIES` times.
macro_rules! giving_way {
    ($tail:expr, $watch:expr, $client:expr, $read:expr) => {{
        let mut tries = 1;
        loop {
            let pid = GiveWay::pid($client).await?;
            match $watch.run(pid, $read).await {
                Err(DbError::GaveWay) if tries < give_way::MAX_TRIES => {
                    tries += 1;
                    $tail.gave_way();
                    tokio::time::sleep(give_way::PAUSE).await;
                }
                r => break r,
            }
        }
    }};
}

/// Fails a read planned for other tables than the database has now: LiteLLM's partitioning
/// script moved the spend log aside (then `LiteLLM_SpendLogs_legacy` must be read too), or the
/// old table was dropped. The caller plans again and repeats the read.
fn same_tables(p: &Projection, snap: &read::Snap) -> Result<(), DbError> {
    if p.reads_legacy() == snap.has_legacy {
        Ok(())
    } else {
        Err(DbError::SpendLogReplaced)
    }
}

/// Where a window read starts.
#[derive(Debug, Clone, Copy)]
enum From {
    /// At this `startTime` (ms).
    At(i64),
    /// This many ms before the database's clock, as the read's snapshot sees it.
    Back(i64),
}

/// Rows are forgotten this long after they leave the lateness window, so that a database clock
/// stepping backwards cannot make a remembered row look new.
const FORGET_SLACK_MS: i64 = 5 * 60 * 1000;
/// A second of a busy proxy's traffic is a few thousand rows: well inside any statement timeout.
const MIN_CHUNK_MS: i64 = 1000;
const MAX_CHUNK_MS: i64 = 31 * 24 * 3600 * 1000;
/// Rows per catch-up chunk before any chunk was timed: about 1.5 s of reading on the benchmark
/// machine.
const DEFAULT_CHUNK_ROWS: u64 = 100_000;
const MIN_CHUNK_ROWS: u64 = 1000;
const MAX_CHUNK_ROWS: u64 = 2_000_000;
/// Chunks with fewer rows are too short to say how fast rows are read.
const RATE_SAMPLE_ROWS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct TailConfig {
    /// How late (after its `startTime`) a row may be committed or rewritten and still count.
    pub lateness: Duration,
    /// The narrowest window, re-read by every poll.
    pub recent: Duration,
    /// Each wider window is this many times wider, and re-read this many times less often, than
    /// the one inside it (at least 2).
    pub growth: u32,
    /// Aim for catch-up statements of about this duration.
    pub chunk_target: Duration,
}

/// One of the nested windows the polls read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Reaches back this far from the database's clock.
    pub ms: i64,
    /// Read at every poll whose number is a multiple of this.
    pub every: u64,
}

/// The widest of `windows` due at poll number `polls` (poll 0 reads the widest).
fn due_window(windows: &[Window], polls: u64) -> usize {
    (0..windows.len())
        .rev()
        .find(|&i| polls % windows[i].every.max(1) == 0)
        .unwrap_or(0)
}

impl TailConfig {
    /// The polls' windows, narrowest first; the last is the lateness window. A window n times
    /// wider than the narrowest is read every n polls (rounded up), so that each costs about the
    /// same per poll.
    pub fn windows(&self) -> Vec<Window> {
        let lateness = (self.lateness.as_millis() as i64).max(1);
        let recent = (self.recent.as_millis() as i64).clamp(1, lateness);
        let growth = i64::from(self.growth.max(2));
        let mut out = Vec::new();
        let mut ms = recent;
        while ms < lateness {
            out.push(Window {
                ms,
                every: (ms / recent) as u64,
            });
            ms = ms.saturating_mul(growth);
        }
        out.push(Window {
            ms: lateness,
            every: (lateness as u64).div_ceil(recent as u64),
        });
        out
    }
}

/// The reading position, persisted with the ledger so that a restart resumes exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cursor {
    pub phase: Phase,
    /// Snapshot xmin of the last read of each window narrower than the lateness window, narrowest
    /// first (a read of a window also covers every narrower one). Empty, or of another length
    /// after a configuration change: every window starts from `late_since`, which is older.
    #[serde(default)]
    pub since: Vec<i64>,
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
            since: Vec::new(),
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
        self.phase = match self.phase {
            Phase::Tailing => Phase::CatchUp {
                next_ms: self.remembered_from_ms,
                end_ms: None,
                since: self.late_since,
            },
            // A catch-up stopped by a shutdown goes on from its next chunk, towards a lateness
            // window measured from now: the old end could be hours back by now, and everything
            // after it would then be read as one remembered window.
            Phase::CatchUp { next_ms, since, .. } => Phase::CatchUp {
                next_ms,
                end_ms: None,
                since,
            },
        };
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
    /// The window read, in ms back from the database's clock.
    pub window_ms: i64,
}

pub struct Tail {
    pub cfg: TailConfig,
    pub cursor: Cursor,
    /// The most rows a catch-up chunk holds (`read::chunk_end`): as many as are read in
    /// `chunk_target`, measured on the chunks so far.
    pub chunk_rows: u64,
}

impl Tail {
    pub fn new(cfg: TailConfig, cursor: Cursor) -> Self {
        Tail {
            cfg,
            cursor,
            chunk_rows: DEFAULT_CHUNK_ROWS,
        }
    }

    fn lateness_ms(&self) -> i64 {
        self.cfg.lateness.as_millis() as i64
    }

    /// Sizes the next chunk so that a statement takes about `chunk_target`. Only a read of a
    /// whole chunk says it could be wider: the polls' narrow windows (cut at the database's
    /// clock) would otherwise widen it between two reads of the lateness window.
    fn adapt(&mut self, took: Duration, whole_chunk: bool) {
        if whole_chunk && took < self.cfg.chunk_target / 4 {
            self.cursor.chunk_ms = (self.cursor.chunk_ms * 2).min(MAX_CHUNK_MS);
        } else if took > self.cfg.chunk_target {
            self.cursor.chunk_ms = (self.cursor.chunk_ms / 2).max(MIN_CHUNK_MS);
        }
    }

    /// Sizes `chunk_rows` from a chunk of `n` rows read in `took`.
    fn adapt_rows(&mut self, took: Duration, n: u64) {
        if n >= RATE_SAMPLE_ROWS {
            let per_s = n as f64 / took.as_secs_f64().max(1e-3);
            self.chunk_rows = ((per_s * self.cfg.chunk_target.as_secs_f64()) as u64)
                .clamp(MIN_CHUNK_ROWS, MAX_CHUNK_ROWS);
        }
    }

    /// A chunk that hit `statement_timeout` (rows far denser than the chunks before: a backlog,
    /// a busy last hour, a slow database) is retried a quarter as wide and a quarter as many
    /// rows, rather than timing out again forever.
    fn shrink_on_timeout(&mut self, e: tokio_postgres::Error) -> tokio_postgres::Error {
        // A read cancelled to give way (`give_way`) has the same SQLSTATE and another message.
        let timed_out = e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
            && e.as_db_error()
                .is_none_or(|d| d.message().contains("statement timeout"));
        if timed_out {
            self.cursor.chunk_ms = (self.cursor.chunk_ms / 4).max(MIN_CHUNK_MS);
            self.chunk_rows = (self.chunk_rows / 4).max(MIN_CHUNK_ROWS);
        }
        e
    }

    /// After a read gave way to a waiting DDL: the next reads are half as long, so that they fit
    /// between statements of a maintenance job that runs many in a row (a read that always took
    /// longer than the gaps would never finish).
    fn gave_way(&mut self) {
        self.cursor.chunk_ms = (self.cursor.chunk_ms / 2).max(MIN_CHUNK_MS);
        self.chunk_rows = (self.chunk_rows / 2).max(MIN_CHUNK_ROWS);
    }

    /// `[lo, hi)` cut short where it would hold more than `chunk_rows` rows, and whether it was.
    /// Never empty: a single millisecond holding more rows than that is read whole.
    async fn cut(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        p: &Projection,
        lo: Option<i64>,
        hi: Option<i64>,
    ) -> Result<(Option<i64>, bool), tokio_postgres::Error> {
        let end = read::chunk_end(tx, p, lo, hi, self.chunk_rows)
            .await
            .map_err(|e| self.shrink_on_timeout(e))?;
        Ok(match end {
            Some(e) => {
                let e = lo.map_or(e, |l| e.max(l.saturating_add(1)));
                if hi.is_none_or(|h| e < h) {
                    (Some(e), true)
                } else {
                    (hi, false)
                }
            }
            None => (hi, false),
        })
    }

    /// The rows of `[lo_ms, +inf)` from transactions `>= since`, in one transaction (one
    /// snapshot) but in `startTime` chunks: a statement stays short however many rows the window
    /// holds (a busy proxy's hour is millions). Pages are read in page order
    /// (`read::prefer_page_order`). With `by_rows`, chunks are also cut at `chunk_rows` rows:
    /// the catch-up's window follows history of unknown density, while the polls' chunk sizes
    /// follow the traffic poll by poll and save the extra index read.
    async fn read_window(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        p: &Projection,
        lo_ms: i64,
        snap: &read::Snap,
        since: i64,
        by_rows: bool,
    ) -> Result<Vec<super::RawRow>, DbError> {
        read::prefer_page_order(tx).await?;
        let mut rows = Vec::new();
        let mut lo = lo_ms;
        loop {
            // The last chunk is open-ended: rows dated in the future (a skewed clock) count too.
            let whole = lo.saturating_add(self.cursor.chunk_ms);
            let hi = (lo < snap.now_ms).then(|| whole.min(snap.now_ms));
            let (hi, cut) = if by_rows {
                // The cut walks the index in order; the rows are read in page order.
                read::allow_index_order(tx).await?;
                let cut = self.cut(tx, p, Some(lo), hi).await?;
                read::prefer_page_order(tx).await?;
                cut
            } else {
                (hi, false)
            };
            let started = Instant::now();
            let before = rows.len();
            read::each_row(tx, p, Some(lo), hi, since, snap.xmax, |r| rows.push(r))
                .await
                .map_err(|e| self.shrink_on_timeout(e))?;
            self.adapt(started.elapsed(), hi == Some(whole) && !cut);
            if by_rows {
                self.adapt_rows(started.elapsed(), (rows.len() - before) as u64);
            }
            match hi {
                Some(h) => lo = h,
                None => return Ok(rows),
            }
        }
    }

    /// `read_window` in a transaction of its own: the snapshot it was read in, and its rows.
    async fn read_in_one_snapshot(
        &mut self,
        client: &mut deadpool_postgres::Object,
        p: &Projection,
        from: From,
        since: i64,
        by_rows: bool,
    ) -> Result<(read::Snap, Vec<super::RawRow>), DbError> {
        let tx = db::read_tx(client).await?;
        let snap = read::snapshot(&tx).await?;
        same_tables(p, &snap)?;
        let lo = match from {
            From::At(ms) => ms,
            From::Back(ms) => snap.now_ms - ms,
        };
        let rows = self.read_window(&tx, p, lo, &snap, since, by_rows).await?;
        tx.commit().await?;
        Ok((snap, rows))
    }

    /// One catch-up chunk from `lo` towards `hi` (cut short at `chunk_rows` rows) in a
    /// transaction of its own, counted apart from `ledger`: the chunk, where it ended, whether
    /// it was cut, its rows.
    #[allow(clippy::too_many_arguments)]
    async fn read_chunk(
        &mut self,
        client: &mut deadpool_postgres::Object,
        ledger: &Ledger,
        p: &Projection,
        lo: Option<i64>,
        hi: i64,
        since: i64,
    ) -> Result<(Ledger, i64, bool, u64), DbError> {
        let tx = db::read_tx(client).await?;
        let snap = read::snapshot(&tx).await?;
        same_tables(p, &snap)?;
        let xmax = if since == 0 { 0 } else { snap.xmax };
        let (cut_hi, cut) = self.cut(&tx, p, lo, Some(hi)).await?;
        let hi = cut_hi.unwrap_or(hi);
        let mut chunk = ledger.chunk();
        let n = read::each_row(&tx, p, lo, Some(hi), since, xmax, |r| {
            chunk.apply_row(r, false, &p.thresholds);
        })
        .await
        .map_err(|e| self.shrink_on_timeout(e))?;
        tx.commit().await?;
        Ok((chunk, hi, cut, n))
    }

    /// About how many rows the rest of this catch-up reads, for its progress message: the
    /// planner's estimate of the table's rows (`read::row_estimate`) times the share of the
    /// history's time span still ahead of it (history taken as evenly spread: an estimate, and
    /// said as one). None for a resume from a state file (it reads only the rows changed since,
    /// however long the span), where the table was never analysed, or once caught up.
    pub async fn catch_up_estimate(
        &self,
        client: &mut deadpool_postgres::Object,
        p: &Projection,
    ) -> Result<Option<f64>, DbError> {
        let Phase::CatchUp {
            next_ms,
            end_ms,
            since: 0,
        } = self.cursor.phase
        else {
            return Ok(None);
        };
        let tx = db::read_tx(client).await?;
        let snap = read::snapshot(&tx).await?;
        let total = read::row_estimate(&tx).await?;
        let oldest = read::oldest_start(&tx, p).await?;
        tx.commit().await?;
        let (Some(total), Some(oldest)) = (total, oldest) else {
            return Ok(None);
        };
        let end = end_ms.unwrap_or(snap.now_ms - self.lateness_ms());
        let from = next_ms.unwrap_or(oldest).max(oldest);
        let span = snap.now_ms.saturating_sub(oldest);
        if span <= 0 {
            return Ok(Some(total));
        }
        let ahead = end.saturating_sub(from) as f64 / span as f64;
        Ok(Some(total * ahead.clamp(0.0, 1.0)))
    }

    /// Runs the catch-up to its end, calling `progress` after every chunk; Ok(true) once it is
    /// done. `progress` returning `Break` stops it after that chunk (a shutdown), Ok(false). On
    /// either, or on an error, the cursor keeps the position of the last completed chunk, and a
    /// later call (or a process resuming from the state file) continues from there.
    pub async fn catch_up(
        &mut self,
        client: &mut deadpool_postgres::Object,
        watch: &GiveWay,
        ledger: &mut Ledger,
        p: &Projection,
        mut progress: impl FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<bool, DbError> {
        let Phase::CatchUp {
            mut next_ms,
            end_ms,
            since,
        } = self.cursor.phase.clone()
        else {
            return Ok(true);
        };
        let mut first_hi = None;
        let mut oldest_ms = None;
        let end_ms = match end_ms {
            Some(e) => e,
            None => {
                let tx = db::read_tx(client).await?;
                let snap = read::snapshot(&tx).await?;
                same_tables(p, &snap)?;
                let oldest = read::oldest_start(&tx, p).await?;
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
            // Counted apart, and absorbed only once the whole chunk has been read (see
            // `Ledger::absorb`); the position moves past the chunk before anything else awaits,
            // so that no later failure makes it read again.
            let (chunk, hi, cut, n) = giving_way!(
                self,
                watch,
                client,
                self.read_chunk(client, ledger, p, lo, hi, since)
            )?;
            ledger.absorb(chunk);
            self.cursor.phase = Phase::CatchUp {
                next_ms: Some(hi),
                end_ms: Some(end_ms),
                since,
            };
            rows_done += n;
            let empty = n == 0;
            self.adapt(started.elapsed(), hi < end_ms && !cut);
            self.adapt_rows(started.elapsed(), n);
            next_ms = Some(hi);
            if empty && hi < end_ms {
                // Jump over the years without rows (a row dated in 1000 AD would otherwise cost
                // twelve thousand empty chunks). Rows written into the gap from now on are
                // older than the lateness window: too late by definition, like any such row.
                let tx = db::read_tx(client).await?;
                let next = read::next_start(&tx, p, hi).await?;
                tx.commit().await?;
                next_ms = Some(next.map_or(end_ms, |n| n.clamp(hi, end_ms)));
            }
            self.cursor.phase = Phase::CatchUp {
                next_ms,
                end_ms: Some(end_ms),
                since,
            };
            let go_on = progress(Progress {
                done_ms: hi,
                from_ms,
                end_ms,
                rows: rows_done,
            });
            if go_on.is_break() {
                return Ok(false);
            }
        }

        // The lateness window: remembered, in one snapshot whose xmin starts the polls.
        let (snap, rows) = giving_way!(
            self,
            watch,
            client,
            self.read_in_one_snapshot(client, p, From::At(end_ms), since, true)
        )?;
        for r in rows {
            ledger.apply_row(r, true, &p.thresholds);
        }
        ledger.forget_before(end_ms);
        self.cursor.remembered_from_ms = Some(end_ms);
        self.cursor.since = vec![snap.xmin; self.cfg.windows().len() - 1];
        self.cursor.late_since = snap.xmin;
        self.cursor.phase = Phase::Tailing;
        Ok(true)
    }

    /// One steady-state read: the widest window due at this poll, restricted to row versions
    /// from transactions its previous read could not see.
    pub async fn poll(
        &mut self,
        client: &mut deadpool_postgres::Object,
        watch: &GiveWay,
        ledger: &mut Ledger,
        p: &Projection,
    ) -> Result<PollResult, DbError> {
        debug_assert!(self.cursor.caught_up());
        let windows = self.cfg.windows();
        let widest = windows.len() - 1;
        if self.cursor.since.len() != widest {
            // A changed configuration: the lateness window's position is a superset for all.
            self.cursor.since = vec![self.cursor.late_since; widest];
        }
        let due = due_window(&windows, self.cursor.polls);
        let window = windows[due].ms;
        let since = if due == widest {
            self.cursor.late_since
        } else {
            self.cursor.since[due]
        };
        let (snap, rows) = giving_way!(
            self,
            watch,
            client,
            self.read_in_one_snapshot(client, p, From::Back(window), since, false)
        )?;

        let mut result = PollResult {
            rows_read: rows.len(),
            window_ms: window,
            ..Default::default()
        };
        for r in rows {
            match ledger.apply_row(r, true, &p.thresholds) {
                super::Applied::New => result.new_rows += 1,
                super::Applied::Grown => result.grown_rows += 1,
                super::Applied::Unchanged => {}
            }
        }
        // A window's read also covered every narrower window.
        let read_through = if due == widest { widest } else { due + 1 };
        for s in &mut self.cursor.since[..read_through] {
            *s = snap.xmin;
        }
        if due == widest {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lateness_s: u64, recent_s: u64, growth: u32) -> TailConfig {
        TailConfig {
            lateness: Duration::from_secs(lateness_s),
            recent: Duration::from_secs(recent_s),
            growth,
            chunk_target: Duration::from_secs(2),
        }
    }

    fn secs_every(c: &TailConfig) -> Vec<(i64, u64)> {
        c.windows().iter().map(|w| (w.ms / 1000, w.every)).collect()
    }

    #[test]
    fn windows_nest_up_to_the_lateness_window() {
        // The defaults: 2, 8 and 32 minutes, then the hour, read every 1, 4, 16 and 30 polls.
        assert_eq!(
            secs_every(&cfg(3600, 120, 4)),
            vec![(120, 1), (480, 4), (1920, 16), (3600, 30)]
        );
        // A growth that reaches the lateness window exactly.
        assert_eq!(secs_every(&cfg(3600, 900, 4)), vec![(900, 1), (3600, 4)]);
        // The narrowest window is the lateness window: one window, every poll.
        assert_eq!(secs_every(&cfg(3600, 3600, 4)), vec![(3600, 1)]);
        // Wider than the lateness window is capped to it.
        assert_eq!(secs_every(&cfg(60, 600, 2)), vec![(60, 1)]);
        // Each window costs about the same per poll: width over period is the narrowest width.
        for c in [cfg(3600, 120, 4), cfg(7200, 60, 3), cfg(3600, 7, 2)] {
            for w in c.windows() {
                let per_poll = w.ms as f64 / w.every as f64;
                assert!(per_poll <= c.recent.as_millis() as f64, "{c:?}: {w:?}");
                assert!(per_poll > c.recent.as_millis() as f64 / 2.0, "{c:?}: {w:?}");
            }
        }
    }

    #[test]
    fn every_window_is_read_as_often_as_it_says() {
        let windows = cfg(3600, 120, 4).windows();
        let due: Vec<usize> = (0..64).map(|p| due_window(&windows, p)).collect();
        assert_eq!(due[0], 3, "the first poll reads the whole lateness window");
        assert_eq!(&due[1..5], &[0, 0, 0, 1]);
        assert_eq!(due[16], 2);
        assert_eq!(due[30], 3);
        assert_eq!(due[32], 2);
        assert_eq!(due[60], 3);
        // Every window (or a wider one) is read at least once per its period.
        for (i, w) in windows.iter().enumerate() {
            for start in 0..(64 - w.every as usize) {
                assert!(
                    (start..start + w.every as usize).any(|p| due[p] >= i),
                    "window {i} not read within {} polls from poll {start}",
                    w.every
                );
            }
        }
    }
}

//! Table recovery: replay each table partition's changelog from the offset
//! its store last applied up to the changelog's end, before the partition's
//! events are processed. Reads with a partition reader (no group) so the group is
//! never disturbed.
//!
//! Every batch goes to the store together with the offset of its last record,
//! so a recovery can stop between batches (a rebalance cancels it) and the
//! next one resumes exactly after what was applied: nothing twice, nothing
//! skipped. Batches go through `TableStore::apply_replayed` (not durable
//! until the stores are synced, every [`SYNC_EVERY`] records and at the
//! end): a crash in between falls back to an earlier consistent point and
//! replays from there. Progress (records done/remaining, rate, ETA) is
//! logged every [`LOG_EVERY`] per table and kept in the monitor.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::App;
use crate::drivers::store::TableStoreExt;
use crate::drivers::store::WriteBatch;
use crate::drivers::transport::{PartitionReader, PartitionReaderExt, TopicPartition};
use crate::error::{Error, Result};
use crate::lifecycle::ShutdownSignal;
use crate::monitor::{Monitor, RecoveryProgress, RecoveryState};
use crate::table::TableOps;

/// Records per batch applied to a store, at most.
const BATCH: usize = 65_536;
/// Bytes (keys, values and [`OP_OVERHEAD`] per record) per batch, at most.
const BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Bookkeeping bytes counted per record.
const OP_OVERHEAD: usize = 64;
/// Records applied non-durably between two syncs of the stores written
/// (durable stores free space only at durable commits).
const SYNC_EVERY: usize = 4_000_000;
/// Quiet polls (200 ms each) after which missing tail offsets count as read.
const IDLE_POLLS_BEFORE_DONE: u32 = 50;
/// How often progress is logged, per table.
const LOG_EVERY: Duration = Duration::from_secs(3);
/// How often the monitor's figures are refreshed while recovering.
const MONITOR_EVERY: Duration = Duration::from_millis(500);

/// How a recovery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every partition reached the changelog's end.
    Done,
    /// Stopped early on request; what was applied is stored with its offsets.
    Cancelled,
}

/// One table's figures during a recovery.
#[derive(Debug)]
pub(crate) struct TableProgress {
    table: String,
    partitions: BTreeSet<u32>,
    total: u64,
    done: u64,
}

/// The figures of a recovery, per table, on tokio's clock (virtual in tests).
#[derive(Debug)]
pub(crate) struct Progress {
    tables: Vec<TableProgress>,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(names: impl IntoIterator<Item = String>) -> Self {
        Progress {
            tables: names
                .into_iter()
                .map(|table| TableProgress {
                    table,
                    partitions: BTreeSet::new(),
                    total: 0,
                    done: 0,
                })
                .collect(),
            started: Instant::now(),
        }
    }

    /// Table `i` has `records` to replay in `partition`.
    pub(crate) fn plan(&mut self, i: usize, partition: u32, records: u64) {
        if let Some(t) = self.tables.get_mut(i) {
            t.partitions.insert(partition);
            t.total += records;
        }
    }

    /// Table `i` read `records` more (applied with the next stored batch).
    pub(crate) fn advance(&mut self, i: usize, records: u64) {
        if let Some(t) = self.tables.get_mut(i) {
            t.done += records;
        }
    }

    fn total(&self) -> u64 {
        self.tables.iter().map(|t| t.total).sum()
    }

    fn done(&self) -> u64 {
        self.tables.iter().map(|t| t.done).sum()
    }

    /// The figures of every table with something to replay, as of now.
    pub(crate) fn snapshot(&self, state: RecoveryState) -> Vec<RecoveryProgress> {
        let elapsed = self.started.elapsed();
        self.tables
            .iter()
            .filter(|t| t.total > 0)
            .map(|t| {
                let remaining = t.total.saturating_sub(t.done);
                let secs = elapsed.as_secs_f64();
                let rate = if secs > 0.0 {
                    t.done as f64 / secs
                } else {
                    0.0
                };
                let eta = if remaining == 0 {
                    Some(Duration::ZERO)
                } else if rate > 0.0 {
                    // None when it does not fit a Duration (a huge backlog
                    // at a trickle): unknown rather than a panic.
                    Duration::try_from_secs_f64(remaining as f64 / rate).ok()
                } else {
                    None
                };
                RecoveryProgress {
                    table: t.table.clone(),
                    partitions: t.partitions.iter().copied().collect(),
                    total: t.total,
                    done: t.done,
                    remaining,
                    elapsed,
                    rate,
                    eta,
                    state,
                }
            })
            .collect()
    }

    /// Put the figures in the monitor.
    pub(crate) fn publish(&self, monitor: &Monitor, state: RecoveryState) {
        for p in self.snapshot(state) {
            monitor.set_recovery_progress(p);
        }
    }

    /// One log line per table still recovering.
    fn log(&self) {
        for p in self.snapshot(RecoveryState::Running) {
            if p.remaining > 0 {
                tracing::info!(table = %p.table, partitions = ?p.partitions, done = p.done, remaining = p.remaining,
                    rate = format!("{:.0}/s", p.rate), eta = ?p.eta.map(|d| Duration::from_secs(d.as_secs())),
                    "table recovery in progress");
            }
        }
    }
}

/// Recover `partitions` of every table, until done or until `cancel` fires.
pub(crate) async fn recover(
    app: App,
    tables: Vec<Arc<dyn TableOps>>,
    partitions: BTreeSet<u32>,
    cancel: ShutdownSignal,
) -> Result<Outcome> {
    let mut reader = crate::cluster::partition_reader(&app, "recovery").await?;
    let mut progress = Progress::new(tables.iter().map(|t| t.name().to_string()));
    let (parts, starts) = plan(&mut *reader, &tables, &partitions, &mut progress).await?;
    if parts.is_empty() {
        reader.close().await.ok();
        return Ok(Outcome::Done);
    }
    tracing::info!(
        partitions = parts.len(),
        records = progress.total(),
        "recovering tables from their changelogs"
    );
    progress.publish(&app.inner.monitor, RecoveryState::Running);
    reader.assign_at(&starts).await?;
    let mut replay = Replay::new(parts, Writer::new(&tables), progress);
    let (outcome, result) = replay.run(&mut *reader, &app.inner.monitor, &cancel).await;
    // Store what was read (with its offsets) before stopping, even when
    // cancelled, then make it durable.
    let result = match result {
        Ok(()) => replay.flush_all().await,
        e => e,
    };
    let Replay {
        writer, progress, ..
    } = replay;
    let synced = writer.finish().await;
    reader.close().await.ok();
    result?;
    synced?;
    let (state, what) = match outcome {
        Outcome::Done => (RecoveryState::Done, "table recovery done"),
        Outcome::Cancelled => (
            RecoveryState::Cancelled,
            "table recovery cancelled (rebalance or shutdown); the next assignment resumes after what was applied",
        ),
    };
    app.inner.monitor.add_recovered_records(progress.done());
    progress.publish(&app.inner.monitor, state);
    tracing::info!(
        records = progress.done(),
        of = progress.total(),
        elapsed = ?progress.started.elapsed(),
        "{what}"
    );
    Ok(outcome)
}

/// What each table partition must replay: from the offset its store
/// applied last to the changelog's end (a store ahead of its changelog — a
/// topic recreated — is wiped and replayed in full). The partitions to
/// replay, and where the reader starts on each.
async fn plan(
    reader: &mut dyn PartitionReader,
    tables: &[Arc<dyn TableOps>],
    partitions: &BTreeSet<u32>,
    progress: &mut Progress,
) -> Result<(Vec<Part>, Vec<(TopicPartition, i64)>)> {
    let mut parts = Vec::new();
    let mut starts = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let Some(store) = table.table_store() else {
            return Err(Error::State(format!(
                "table {:?} is not open",
                table.name()
            )));
        };
        for &p in partitions.iter().filter(|p| **p < table.partitions()) {
            let tp = TopicPartition::new(table.changelog().name.clone(), p);
            let end = reader.high_watermark(&tp).await?;
            let mut start = store.replay_from(p).await?;
            if start > end {
                tracing::warn!(table = table.name(), partition = p, stored = start - 1, changelog_end = end,
                    "the store has applied changelog offsets the changelog does not have (topic recreated or another broker?): wiping the partition and replaying it in full");
                store.drop_partition(p).await?;
                start = 0;
            }
            if start < end {
                progress.plan(i, p, (end - start) as u64);
                starts.push((tp.clone(), start));
                parts.push(Part {
                    tp,
                    table: i,
                    end,
                    batch: WriteBatch::new(),
                    bytes: 0,
                    open: true,
                });
            }
        }
    }
    Ok((parts, starts))
}

/// The replay of the planned partitions: records read are batched per
/// partition and applied by the writer.
struct Replay<'a> {
    parts: Vec<Part>,
    index: HashMap<TopicPartition, usize>,
    /// Partitions still below their end.
    open: usize,
    writer: Writer<'a>,
    progress: Progress,
}

impl<'a> Replay<'a> {
    fn new(parts: Vec<Part>, writer: Writer<'a>, progress: Progress) -> Self {
        let index = parts
            .iter()
            .enumerate()
            .map(|(i, p)| (p.tp.clone(), i))
            .collect();
        let open = parts.len();
        Replay {
            parts,
            index,
            open,
            writer,
            progress,
        }
    }

    /// Read until every partition reached its end, `cancel` fired, or an error.
    async fn run(
        &mut self,
        reader: &mut dyn PartitionReader,
        monitor: &Monitor,
        cancel: &ShutdownSignal,
    ) -> (Outcome, Result<()>) {
        let mut last_log = Instant::now();
        let mut last_monitor = Instant::now();
        let mut idle = 0u32;
        while self.open > 0 {
            if cancel.is_set() {
                return (Outcome::Cancelled, Ok(()));
            }
            let msgs = match reader.poll(Duration::from_millis(200)).await {
                Ok(msgs) if !msgs.is_empty() => msgs,
                Ok(_) => {
                    // Offsets below the end can be missing (compaction,
                    // transaction markers). After a long quiet spell, treat
                    // what is left as read.
                    idle += 1;
                    if idle >= IDLE_POLLS_BEFORE_DONE {
                        if let Err(e) = self.close_quiet().await {
                            return (Outcome::Done, Err(e));
                        }
                    }
                    continue;
                }
                Err(e) => return (Outcome::Done, Err(e)),
            };
            idle = 0;
            if let Err(e) = self.apply(msgs).await {
                return (Outcome::Done, Err(e));
            }
            if last_log.elapsed() >= LOG_EVERY {
                last_log = Instant::now();
                self.progress.log();
            }
            if last_monitor.elapsed() >= MONITOR_EVERY {
                last_monitor = Instant::now();
                self.progress.publish(monitor, RecoveryState::Running);
            }
        }
        (Outcome::Done, Ok(()))
    }

    /// Batch one poll's records per partition; a partition's batch goes to
    /// the writer when full or when the partition reached its end.
    async fn apply(&mut self, msgs: Vec<crate::drivers::transport::Message>) -> Result<()> {
        // Messages come in runs of one partition: look the partition up
        // once per run.
        let mut last: Option<usize> = None;
        for m in msgs {
            let at = match last {
                Some(at)
                    if self.parts[at].tp.partition == m.partition
                        && *self.parts[at].tp.topic == *m.topic =>
                {
                    at
                }
                _ => match self.index.get(&m.tp()) {
                    Some(&at) => at,
                    None => continue,
                },
            };
            last = Some(at);
            let part = &mut self.parts[at];
            if !part.open || m.offset >= part.end {
                continue;
            }
            let key = m.key.unwrap_or_default();
            part.bytes += key.len() + m.value.as_ref().map_or(0, |v| v.len()) + OP_OVERHEAD;
            part.batch.ops.push((key, m.value));
            part.batch.offset = Some(m.offset);
            self.progress.advance(part.table, 1);
            let finished = m.offset + 1 >= part.end;
            if finished {
                part.open = false;
                self.open -= 1;
            }
            if finished || part.batch.ops.len() >= BATCH || part.bytes >= BATCH_BYTES {
                self.writer.flush(part).await?;
            }
        }
        Ok(())
    }

    /// No more records arrive below the ends: the open partitions are done.
    async fn close_quiet(&mut self) -> Result<()> {
        for part in self.parts.iter_mut().filter(|p| p.open) {
            tracing::warn!(changelog = %part.tp, "no more records arrive below the changelog end; treating the partition as recovered");
            part.open = false;
            self.open -= 1;
            self.writer.flush(part).await?;
        }
        Ok(())
    }

    /// Hand every partition's pending batch to the writer.
    async fn flush_all(&mut self) -> Result<()> {
        for part in &mut self.parts {
            self.writer.flush(part).await?;
        }
        Ok(())
    }
}

/// One changelog partition being replayed.
struct Part {
    tp: TopicPartition,
    /// Index of its table.
    table: usize,
    /// The changelog's end when recovery started.
    end: i64,
    /// Read, not yet applied.
    batch: WriteBatch,
    /// Approximate size of `batch`.
    bytes: usize,
    /// Still below `end`.
    open: bool,
}

/// Applies the batches of a recovery, non-durably
/// ([`TableStore::apply_replayed`](crate::drivers::store::TableStore::apply_replayed)),
/// one at a time in the background while the next batch is read, and
/// syncs each store it wrote to every [`SYNC_EVERY`] records and at the end.
struct Writer<'a> {
    tables: &'a [Arc<dyn TableOps>],
    /// The apply under way, if any.
    in_flight: Option<tokio::task::JoinHandle<Result<()>>>,
    /// Tables written since their last sync.
    dirty: BTreeSet<usize>,
    /// Records applied since the last sync.
    unsynced: usize,
}

impl<'a> Writer<'a> {
    fn new(tables: &'a [Arc<dyn TableOps>]) -> Self {
        Writer {
            tables,
            in_flight: None,
            dirty: BTreeSet::new(),
            unsynced: 0,
        }
    }

    /// Wait for the apply under way.
    async fn settle(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.take() {
            task.await
                .map_err(|e| Error::State(format!("table recovery write task: {e}")))??;
        }
        Ok(())
    }

    /// Start applying `part`'s pending batch (after the previous one, so
    /// batches and offsets reach each store in order).
    async fn flush(&mut self, part: &mut Part) -> Result<()> {
        if part.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut part.batch);
        part.bytes = 0;
        self.settle().await?;
        if self.unsynced >= SYNC_EVERY {
            self.sync().await?;
        }
        let Some(store) = self.tables.get(part.table).and_then(|t| t.table_store()) else {
            return Ok(());
        };
        self.dirty.insert(part.table);
        self.unsynced += batch.ops.len();
        let partition = part.tp.partition;
        self.in_flight = Some(tokio::spawn(async move {
            store.apply_replayed(partition, batch).await
        }));
        Ok(())
    }

    /// Make every table written so far durable.
    async fn sync(&mut self) -> Result<()> {
        self.settle().await?;
        for i in std::mem::take(&mut self.dirty) {
            if let Some(store) = self.tables.get(i).and_then(|t| t.table_store()) {
                store.sync().await?;
            }
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Wait for the last apply and sync.
    async fn finish(mut self) -> Result<()> {
        let settled = self.settle().await;
        let synced = self.sync().await;
        settled.and(synced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn progress_figures_follow_virtual_time() {
        let monitor = Monitor::default();
        let mut p = Progress::new(["counts".to_string(), "totals".to_string()]);
        p.plan(0, 0, 600);
        p.plan(0, 2, 400);
        p.publish(&monitor, RecoveryState::Running);
        let fig = monitor.recovery_progress();
        assert_eq!(fig.len(), 1, "tables with nothing to replay are left out");
        assert_eq!(
            (fig[0].total, fig[0].done, fig[0].remaining),
            (1000, 0, 1000)
        );
        assert_eq!(fig[0].partitions, vec![0, 2]);
        assert_eq!(fig[0].eta, None, "no rate before the first record");

        tokio::time::advance(Duration::from_secs(2)).await;
        p.advance(0, 250);
        p.publish(&monitor, RecoveryState::Running);
        let fig = &monitor.recovery_progress()[0];
        assert_eq!((fig.done, fig.remaining), (250, 750));
        assert_eq!(fig.elapsed, Duration::from_secs(2));
        assert!((fig.rate - 125.0).abs() < 1e-9, "{}", fig.rate);
        assert_eq!(fig.eta, Some(Duration::from_secs(6)));
        assert_eq!(fig.state, RecoveryState::Running);

        tokio::time::advance(Duration::from_secs(6)).await;
        p.advance(0, 750);
        p.publish(&monitor, RecoveryState::Done);
        let fig = &monitor.recovery_progress()[0];
        assert_eq!((fig.done, fig.remaining), (1000, 0));
        assert_eq!(fig.eta, Some(Duration::ZERO));
        assert_eq!(fig.state, RecoveryState::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn an_eta_too_long_for_a_duration_is_unknown_not_a_panic() {
        let monitor = Monitor::default();
        let mut p = Progress::new(["counts".to_string()]);
        p.plan(0, 0, u64::MAX);
        tokio::time::advance(Duration::from_secs(10)).await;
        p.advance(0, 1);
        // 1.8e19 records left at 0.1 records/s: 1.8e20 s, more than a Duration holds.
        p.publish(&monitor, RecoveryState::Running);
        let fig = &monitor.recovery_progress()[0];
        assert_eq!(fig.remaining, u64::MAX - 1);
        assert!(fig.rate > 0.0 && fig.rate.is_finite(), "{}", fig.rate);
        assert_eq!(fig.eta, None);
    }
}

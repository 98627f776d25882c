//! The conductor: one consumer per worker, fanning messages out to every
//! stream subscribed to their topic, counting acks, pausing partitions whose
//! streams are full, committing what is fully processed, and handling
//! rebalances (revoke: finish and commit; assign: recover tables first).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::app::App;
use crate::cluster::ClusterState;
use crate::drivers::transport::{Consumer, ConsumerEvent, Message, TopicPartition};
use crate::error::Result;
use crate::flow::acks::{AckToken, PartitionAcks};
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::lifecycle::ShutdownSignal;
use crate::runtime::recovery;
use crate::table::TableOps;

type Queue = Arc<StreamQueue<Delivered>>;

/// How long a revocation or shutdown waits for events in hand to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Events a full stream buffer refused, in order, waiting for room.
struct Overflow {
    queue: Queue,
    items: VecDeque<Delivered>,
}

struct PartState {
    acks: Arc<PartitionAcks>,
    paused: bool,
    last_committed: Option<i64>,
    last_progress: Instant,
    warned: bool,
    /// Delivered batches not yet fully processed: (last offset, delivered at).
    inflight: VecDeque<(i64, Instant)>,
    /// The topic's `faustus_messages_received_total` counter.
    received: Arc<std::sync::atomic::AtomicU64>,
}

/// Batches remembered per partition for the processing-time figure.
const INFLIGHT_KEEP: usize = 1024;

/// A periodic commit whose flush (producer, then tables) runs while the
/// conductor keeps delivering; its offsets are committed once it is done.
struct PendingCommit {
    /// Offsets fully processed when the flush began.
    offsets: Vec<(TopicPartition, i64)>,
    began: Instant,
    flush: tokio::task::JoinHandle<Result<()>>,
}

/// Flush the producer and settle the sends nobody waited for, then flush
/// every table (tables with changes only when there is no offset to commit).
///
/// A send returns once the producer accepted the record, so this is where
/// the deliveries of the events below `offsets` are waited for: every send
/// tracked until now (a superset of what those events sent, since an event
/// is acked after its sends returned) is complete after the flush. A failed
/// one holds its source partition below the event that sent it
/// (`delivery::Tracker::cap`, applied in `commit_offsets`).
async fn flush_effects(app: App, tables: Vec<Arc<dyn TableOps>>, offsets: bool) -> Result<()> {
    let inner = &app.inner;
    if offsets || !inner.deliveries.is_empty() {
        let taken = inner.deliveries.take();
        let flushed = match inner.producer().await {
            Ok(p) => p.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            // Settled by the next commit's flush (these offsets are not committed).
            inner.deliveries.restore(taken);
            return Err(e);
        }
        inner.deliveries.settle(&inner.monitor, taken).await;
    }
    for t in &tables {
        if offsets || t.has_changes() {
            t.flush().await?;
        }
    }
    Ok(())
}

/// The end of the pending commit's flush; never, without one.
async fn pending_flush(pending: &mut Option<PendingCommit>) -> Result<()> {
    match pending {
        Some(p) => (&mut p.flush)
            .await
            .map_err(|e| crate::Error::State(format!("commit flush task: {e}")))?,
        None => std::future::pending().await,
    }
}

pub(crate) struct Conductor {
    app: App,
    consumer: Box<dyn Consumer>,
    parts: HashMap<TopicPartition, PartState>,
    /// Per stream buffer that was full: what it still has to take. Their
    /// partitions are paused until it is empty.
    overflow: Vec<Overflow>,
    subs: HashMap<Arc<str>, Vec<Queue>>,
    subs_version: u64,
    subscribed: BTreeSet<String>,
    tables: Vec<Arc<dyn TableOps>>,
    next_commit: Instant,
    /// The periodic commit under way, if any.
    pending: Option<PendingCommit>,
    ready: Option<tokio::sync::oneshot::Sender<Result<()>>>,
}

impl Conductor {
    pub(crate) fn new(
        app: App,
        consumer: Box<dyn Consumer>,
        ready: tokio::sync::oneshot::Sender<Result<()>>,
    ) -> Self {
        let tables = app.inner.defs.lock().tables.clone();
        let interval = app.inner.settings().broker_commit_interval;
        Conductor {
            app,
            consumer,
            parts: HashMap::new(),
            overflow: Vec::new(),
            subs: HashMap::new(),
            subs_version: u64::MAX,
            subscribed: BTreeSet::new(),
            tables,
            next_commit: Instant::now() + interval,
            pending: None,
            ready: Some(ready),
        }
    }

    /// Run until `stop`, then stop intake, let events in hand finish, commit and close.
    pub(crate) async fn run(mut self, stop: ShutdownSignal) -> Result<()> {
        let result = self.run_loop(&stop).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "conductor failed");
            if let Some(r) = self.ready.take() {
                let _ = r.send(Err(crate::Error::State(format!(
                    "worker failed to start: {e}"
                ))));
            }
        }
        self.shutdown().await;
        result
    }

    async fn run_loop(&mut self, stop: &ShutdownSignal) -> Result<()> {
        let space = self.app.inner.space.clone();
        loop {
            if stop.is_set() {
                return Ok(());
            }
            self.refresh_subscriptions().await?;
            if self.subscribed.is_empty() {
                // Nothing to consume (an app of tasks, timers or channels
                // only): it is ready as it is.
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            if !self.overflow.is_empty() {
                self.drain_overflow().await?;
            }
            self.commit_if_due().await;
            let timeout = if !self.overflow.is_empty() {
                // Wait for a full stream to drain, then poll without blocking.
                let _ = tokio::time::timeout(Duration::from_millis(50), space.notified()).await;
                Duration::ZERO
            } else {
                self.next_commit
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200))
            };
            // Biased: the same order every time (the simulator replays runs
            // exactly); the loop's `commit_if_due` keeps a busy consumer
            // from starving the flush branch.
            let event = tokio::select! {
                biased;
                flushed = pending_flush(&mut self.pending) => {
                    self.finish_pending(flushed).await;
                    continue;
                }
                ev = self.consumer.poll(timeout) => ev,
                _ = stop.wait() => return Ok(()),
            };
            match event {
                Ok(ConsumerEvent::Messages(batch)) => {
                    // Streams created while we waited see this batch too.
                    self.refresh_subscriptions().await?;
                    self.deliver_batch(batch).await?;
                    self.observe_processing();
                }
                Ok(ConsumerEvent::Revoked(tps)) => self.on_revoked(tps).await,
                Ok(ConsumerEvent::Assigned(tps)) => self.on_assigned(tps, stop).await?,
                Ok(ConsumerEvent::Idle) => self.observe_processing(),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "consumer poll failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn refresh_subscriptions(&mut self) -> Result<()> {
        let version = self.app.inner.subs.version.load(Ordering::Acquire);
        if version == self.subs_version {
            return Ok(());
        }
        self.subs_version = version;
        self.subs = self.app.inner.subs.by_topic.lock().clone();
        let topics: BTreeSet<String> = self.subs.keys().map(|t| t.to_string()).collect();
        if topics != self.subscribed {
            let defs: Vec<_> = {
                let d = self.app.inner.defs.lock();
                topics
                    .iter()
                    .filter_map(|t| d.topics.get(t).cloned())
                    .collect()
            };
            for def in defs {
                def.declare(&self.app.inner).await?;
            }
            let list: Vec<String> = topics.iter().cloned().collect();
            tracing::debug!(topics = ?list, "subscribing");
            self.consumer.subscribe(&list).await?;
            self.subscribed = topics;
        }
        Ok(())
    }

    async fn deliver_batch(&mut self, batch: Vec<Message>) -> Result<()> {
        self.app
            .inner
            .monitor
            .add_messages_received(batch.len() as u64);
        // Group by partition (order kept within each), so each partition's
        // messages go to each stream buffer in one push.
        let mut groups: Vec<(Arc<str>, u32, Vec<Message>)> = Vec::new();
        for msg in batch {
            match groups
                .iter_mut()
                .find(|(t, p, _)| *p == msg.partition && Arc::ptr_eq(t, &msg.topic))
            {
                Some((_, _, v)) => v.push(msg),
                None => groups.push((msg.topic.clone(), msg.partition, vec![msg])),
            }
        }
        let empty = Vec::new();
        for (topic, partition, msgs) in groups {
            let tp = TopicPartition { topic, partition };
            let Some(state) = self.parts.get_mut(&tp) else {
                continue; // not ours (any more)
            };
            if let Some(last) = msgs.last() {
                if state.inflight.len() >= INFLIGHT_KEEP {
                    // Merge into the newest entry (keeps its earlier time).
                    if let Some(back) = state.inflight.back_mut() {
                        back.0 = last.offset;
                    }
                } else {
                    state.inflight.push_back((last.offset, Instant::now()));
                }
            }
            state
                .received
                .fetch_add(msgs.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let subs = self.subs.get(&tp.topic).unwrap_or(&empty);
            deliver_group(&state.acks, msgs, subs, &mut self.overflow);
        }
        self.update_pauses().await
    }

    /// Pause partitions with events waiting in an overflow, resume the others.
    async fn update_pauses(&mut self) -> Result<()> {
        let mut waiting: std::collections::HashSet<(&Arc<str>, u32)> =
            std::collections::HashSet::new();
        for o in &self.overflow {
            // Items come in runs of one partition: one set insert per run.
            let mut last: Option<(&Arc<str>, u32)> = None;
            for d in &o.items {
                let tp = (&d.msg.topic, d.msg.partition);
                if last.is_some_and(|(t, p)| p == tp.1 && Arc::ptr_eq(t, tp.0)) {
                    continue;
                }
                last = Some(tp);
                waiting.insert(tp);
            }
        }
        let mut to_pause = Vec::new();
        let mut to_resume = Vec::new();
        for (tp, st) in self.parts.iter_mut() {
            let wait = waiting.contains(&(&tp.topic, tp.partition));
            if wait && !st.paused {
                st.paused = true;
                to_pause.push(tp.clone());
            } else if !wait && st.paused {
                st.paused = false;
                to_resume.push(tp.clone());
            }
        }
        if !to_pause.is_empty() {
            self.app
                .inner
                .monitor
                .add_partitions_paused(to_pause.len() as u64);
            self.consumer.pause(&to_pause).await?;
        }
        if !to_resume.is_empty() {
            self.consumer.resume(&to_resume).await?;
        }
        Ok(())
    }

    /// Hand waiting events to buffers that have room again, in one push each.
    async fn drain_overflow(&mut self) -> Result<()> {
        for o in self.overflow.iter_mut() {
            let items: Vec<Delivered> = o.items.drain(..).collect();
            let rest = o.queue.push_many(items);
            if o.queue.is_closed() {
                // The stream is gone: nothing more to do for it.
                for d in rest {
                    d.token.ack();
                }
            } else {
                o.items.extend(rest);
            }
        }
        self.overflow.retain(|o| !o.items.is_empty());
        self.update_pauses().await
    }

    /// The periodic commit, when `broker_commit_interval` has passed: its
    /// flush runs in the background while events keep flowing (one at a
    /// time; an interval that finds the last one still running skips).
    async fn commit_if_due(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.flush.is_finished()) {
            let flushed = pending_flush(&mut self.pending).await;
            self.finish_pending(flushed).await;
        }
        let now = Instant::now();
        if now < self.next_commit {
            return;
        }
        self.next_commit = now + self.app.inner.settings().broker_commit_interval;
        if self.pending.is_some() {
            return;
        }
        let offsets = self.committable(now);
        if offsets.is_empty()
            && !self.tables.iter().any(|t| t.has_changes())
            && self.app.inner.deliveries.is_empty()
        {
            return;
        }
        let flush = tokio::spawn(flush_effects(
            self.app.clone(),
            self.tables.clone(),
            !offsets.is_empty(),
        ));
        self.pending = Some(PendingCommit {
            offsets,
            began: now,
            flush,
        });
    }

    /// The pending commit's flush ended: commit its offsets (asynchronously).
    async fn finish_pending(&mut self, flushed: Result<()>) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let result = match flushed {
            Ok(()) => self.commit_offsets(p.offsets, p.began, false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "commit failed; will retry at the next interval");
        }
    }

    /// Every partition's offset that is fully processed and not committed
    /// yet (and the livelock warning for partitions that stay stuck).
    fn committable(&mut self, now: Instant) -> Vec<(TopicPartition, i64)> {
        let soft = self
            .app
            .inner
            .settings()
            .broker_commit_livelock_soft_timeout;
        let mut offsets = Vec::new();
        for (tp, st) in self.parts.iter_mut() {
            match st.acks.committable() {
                Some(c) if Some(c) > st.last_committed => offsets.push((tp.clone(), c)),
                _ => {
                    if st.acks.outstanding() == 0 {
                        st.last_progress = now;
                        st.warned = false;
                    } else if !st.warned && now.duration_since(st.last_progress) > soft {
                        st.warned = true;
                        self.app.inner.monitor.add_livelock_warnings(1);
                        tracing::warn!(partition = %tp, stalled_for = ?now.duration_since(st.last_progress), "committed offset has not advanced while messages are being processed (broker_commit_livelock_soft_timeout): an agent may be stuck");
                    }
                }
            }
        }
        offsets
    }

    /// Commit every partition's fully processed offset, after the effects of
    /// those messages (sends, changelog writes) are acknowledged and stored,
    /// now and synchronously (rebalance, shutdown): after the pending commit,
    /// if any.
    async fn commit(&mut self) -> Result<()> {
        if self.pending.is_some() {
            let flushed = pending_flush(&mut self.pending).await;
            self.finish_pending(flushed).await;
        }
        let now = Instant::now();
        let offsets = self.committable(now);
        flush_effects(self.app.clone(), self.tables.clone(), !offsets.is_empty()).await?;
        self.commit_offsets(offsets, now, true).await
    }

    /// Commit `offsets`, whose effects are flushed (a flush that began at
    /// `began`).
    async fn commit_offsets(
        &mut self,
        offsets: Vec<(TopicPartition, i64)>,
        began: Instant,
        wait: bool,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        // A partition revoked while the flush ran is not ours to commit; one
        // held by a failed delivery stops below the event that sent it.
        let deliveries = &self.app.inner.deliveries;
        let offsets: Vec<_> = offsets
            .into_iter()
            .filter_map(|(tp, c)| {
                let st = self.parts.get(&tp)?;
                let c = deliveries.cap(&tp, c);
                (Some(c) > st.last_committed).then_some((tp, c))
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        if wait {
            self.consumer.commit(&offsets).await?;
        } else {
            self.consumer.commit_async(&offsets).await?;
        }
        let monitor = &self.app.inner.monitor;
        monitor.add_commits(1);
        monitor.time("faustus_commit_seconds", "", began.elapsed());
        for (tp, c) in &offsets {
            monitor.gauge(
                "faustus_committed_offset",
                crate::monitor::tp_labels(tp),
                *c as f64,
            );
        }
        let now = Instant::now();
        for (tp, c) in offsets {
            if let Some(st) = self.parts.get_mut(&tp) {
                st.last_committed = Some(c);
                st.last_progress = now;
                st.warned = false;
            }
            tracing::trace!(partition = %tp, offset = c, "committed");
        }
        Ok(())
    }

    /// Record, per topic, how long delivered batches took until every
    /// stream was done with them (`faustus_processing_seconds`).
    fn observe_processing(&mut self) {
        let monitor = &self.app.inner.monitor;
        for (tp, st) in self.parts.iter_mut() {
            if st.inflight.is_empty() {
                continue;
            }
            let Some(done) = st.acks.committable() else {
                continue;
            };
            while let Some(&(last, at)) = st.inflight.front() {
                if last >= done {
                    break;
                }
                st.inflight.pop_front();
                monitor.time(
                    "faustus_processing_seconds",
                    crate::monitor::topic_labels(&tp.topic),
                    at.elapsed(),
                );
            }
        }
    }

    /// Take partitions away: drop what was not started, let events in hand
    /// finish, commit, and stop serving their table partitions.
    async fn release_partitions(&mut self, tps: &BTreeSet<TopicPartition>) {
        for tp in tps {
            if let Some(st) = self.parts.get(tp) {
                st.acks.revoke();
            }
        }
        for o in self.overflow.iter_mut() {
            // Dropped tokens give the events back unprocessed.
            o.items.retain(|d| {
                !tps.contains(&TopicPartition {
                    topic: d.msg.topic.clone(),
                    partition: d.msg.partition,
                })
            });
        }
        self.overflow.retain(|o| !o.items.is_empty());
        for queues in self.subs.values() {
            for q in queues {
                drop(q.purge(|d| {
                    tps.contains(&TopicPartition {
                        topic: d.msg.topic.clone(),
                        partition: d.msg.partition,
                    })
                }));
            }
        }
        let waits: Vec<_> = tps
            .iter()
            .filter_map(|tp| self.parts.get(tp).map(|s| s.acks.clone()))
            .collect();
        let drained = tokio::time::timeout(
            DRAIN_TIMEOUT,
            futures::future::join_all(waits.iter().map(|a| a.drained())),
        )
        .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "events in hand did not finish in time; committing what is done");
        }
        if let Err(e) = self.commit().await {
            tracing::error!(error = %e, "commit on revocation failed");
        }
        self.app.inner.deliveries.release(tps);
        for tp in tps {
            self.parts.remove(tp);
        }
        let parts = &self.parts;
        // Watchers (isolated agents, the cluster map) see the change below.
        self.app.inner.assignment.send_if_modified(|a| {
            let before = a.len();
            Arc::make_mut(a).retain(|tp, _| parts.contains_key(tp));
            a.len() != before
        });
        let still: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        let gone: BTreeSet<u32> = tps
            .iter()
            .map(|tp| tp.partition)
            .filter(|p| !still.contains(p))
            .collect();
        for t in &self.tables {
            t.deactivate(&gone);
        }
        self.app
            .inner
            .state::<ClusterState>()
            .standby
            .release(&gone);
    }

    async fn on_revoked(&mut self, tps: Vec<TopicPartition>) {
        self.app.inner.monitor.add_rebalances(1);
        tracing::info!(partitions = ?tps, "partitions revoked");
        crate::runtime::signals::partitions(&self.app, true, &tps).await;
        let set: BTreeSet<TopicPartition> = tps.into_iter().collect();
        self.release_partitions(&set).await;
    }

    async fn on_assigned(&mut self, tps: Vec<TopicPartition>, stop: &ShutdownSignal) -> Result<()> {
        tracing::info!(partitions = ?tps, "partitions assigned");
        let new: Vec<TopicPartition> = tps
            .into_iter()
            .filter(|tp| !self.parts.contains_key(tp))
            .collect();
        let active: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        let to_recover: BTreeSet<u32> = new
            .iter()
            .map(|tp| tp.partition)
            .filter(|p| !active.contains(p))
            .collect();
        if !to_recover.is_empty()
            && !self.tables.is_empty()
            && !self.recover_while_polling(&new, to_recover, stop).await?
        {
            // A rebalance (handled) or shutdown cancelled the recovery.
            return Ok(());
        }
        {
            let mut assigned = HashMap::new();
            for tp in &new {
                let acks = PartitionAcks::new(tp.clone());
                assigned.insert(tp.clone(), acks.clone());
                self.parts.insert(
                    tp.clone(),
                    PartState {
                        acks,
                        paused: false,
                        last_committed: None,
                        last_progress: Instant::now(),
                        warned: false,
                        inflight: VecDeque::new(),
                        received: self.app.inner.monitor.counter(
                            "faustus_messages_received_total",
                            crate::monitor::topic_labels(&tp.topic),
                        ),
                    },
                );
            }
            self.app
                .inner
                .assignment
                .send_modify(|a| Arc::make_mut(a).extend(assigned));
        }
        let all: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        for t in &self.tables {
            t.activate(&all);
        }
        crate::runtime::signals::partitions(&self.app, false, &new).await;
        crate::runtime::signals::rebalance_complete(&self.app).await;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        Ok(())
    }

    /// Recover table `partitions` while serving the group: the new topic
    /// partitions stay paused, the others keep flowing, commits go on, and a
    /// revocation cancels the recovery (between two stored batches) and is
    /// handled at once, so a long recovery never gets the member expelled.
    /// Returns false when the recovery was cancelled.
    async fn recover_while_polling(
        &mut self,
        new: &[TopicPartition],
        partitions: BTreeSet<u32>,
        stop: &ShutdownSignal,
    ) -> Result<bool> {
        if !new.is_empty() {
            self.consumer.pause(new).await?;
        }
        // Standby reading of these partitions stops before they are recovered.
        self.app
            .inner
            .state::<ClusterState>()
            .standby
            .claim(&partitions)
            .await;
        let (cancel, fire) = ShutdownSignal::new();
        // Global tables keep themselves current (their own reader).
        let local: Vec<Arc<dyn TableOps>> = self
            .tables
            .iter()
            .filter(|t| !t.is_global())
            .cloned()
            .collect();
        let task = tokio::spawn(recovery::recover(
            self.app.clone(),
            local,
            partitions,
            cancel,
        ));
        // Why the recovery has to stop early, if it does.
        enum Interrupt {
            Stop,
            Revoked(Vec<TopicPartition>),
            Assigned(Vec<TopicPartition>),
            Failed(crate::Error),
        }
        let mut task = task;
        let mut interrupt = None;
        // The recovery's result, once it finished (a join handle is awaited once).
        let mut finished = None;
        while interrupt.is_none() {
            if stop.is_set() {
                interrupt = Some(Interrupt::Stop);
                break;
            }
            self.commit_if_due().await;
            // Poll the group while recovering, but notice the end of the
            // recovery at once, not at the end of a poll.
            let event = tokio::select! {
                biased;
                r = &mut task => {
                    finished = Some(r);
                    break;
                }
                ev = self.consumer.poll(Duration::from_millis(50)) => ev,
            };
            match event {
                Ok(ConsumerEvent::Messages(batch)) => {
                    let delivered = match self.refresh_subscriptions().await {
                        Ok(()) => self.deliver_batch(batch).await,
                        Err(e) => Err(e),
                    };
                    interrupt = delivered.err().map(Interrupt::Failed);
                }
                Ok(ConsumerEvent::Revoked(tps)) => interrupt = Some(Interrupt::Revoked(tps)),
                // Not expected without a revocation first; recover for it.
                Ok(ConsumerEvent::Assigned(tps)) => interrupt = Some(Interrupt::Assigned(tps)),
                Ok(ConsumerEvent::Idle) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "consumer poll failed during table recovery; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => interrupt = Some(Interrupt::Failed(e)),
            }
        }
        if let Some(interrupt) = interrupt {
            // Stop the recovery between two stored batches, then act.
            fire();
            let ended = match finished {
                Some(r) => r,
                None => task.await,
            };
            if let Ok(Err(e)) = ended {
                tracing::warn!(error = %e, "table recovery failed while being cancelled");
            }
            match interrupt {
                Interrupt::Stop => {}
                Interrupt::Revoked(tps) => {
                    tracing::info!("rebalance during table recovery: cancelled it; the next assignment resumes it");
                    self.on_revoked(tps).await;
                }
                Interrupt::Assigned(tps) => Box::pin(self.on_assigned(tps, stop)).await?,
                Interrupt::Failed(e) => return Err(e),
            }
            return Ok(false);
        }
        let ended = match finished {
            Some(r) => r,
            None => task.await,
        };
        match ended {
            Ok(Ok(recovery::Outcome::Done)) => {}
            Ok(Ok(recovery::Outcome::Cancelled)) => return Ok(false),
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(crate::Error::Task {
                    what: "table recovery".into(),
                    message: e.to_string(),
                })
            }
        }
        if !new.is_empty() {
            self.consumer.resume(new).await?;
        }
        Ok(true)
    }

    /// Stop intake: drop undelivered messages, end every stream after the
    /// event in hand, wait for those to finish, commit, leave the group.
    async fn shutdown(&mut self) {
        crate::runtime::signals::lifecycle(&self.app, false);
        let all: BTreeSet<TopicPartition> = self.parts.keys().cloned().collect();
        if !all.is_empty() {
            let tps: Vec<TopicPartition> = all.iter().cloned().collect();
            crate::runtime::signals::partitions(&self.app, true, &tps).await;
        }
        for queues in self.subs.values() {
            for q in queues {
                q.close();
            }
        }
        for a in self.app.inner.defs.lock().agents.iter() {
            a.close();
        }
        self.release_partitions(&all).await;
        if let Err(e) = self.consumer.close().await {
            tracing::warn!(error = %e, "closing the consumer failed");
        }
    }
}

/// Register a partition's messages and hand them to every stream buffer of
/// their topic, one push per buffer. A buffer that is full (or already has
/// events waiting) gets the rest appended to its overflow, in order.
fn deliver_group(
    acks: &Arc<PartitionAcks>,
    msgs: Vec<Message>,
    subs: &[Queue],
    overflow: &mut Vec<Overflow>,
) {
    acks.add_many(msgs.iter().map(|m| m.offset), subs.len() as u32);
    let mut msgs = Some(msgs);
    for (i, q) in subs.iter().enumerate() {
        let batch: Vec<Delivered> = if i + 1 == subs.len() {
            msgs.take().unwrap_or_default()
        } else {
            msgs.as_ref().map(|m| m.to_vec()).unwrap_or_default()
        }
        .into_iter()
        .map(|msg| {
            let offset = msg.offset;
            Delivered {
                msg,
                token: AckToken::new(acks.clone(), offset),
            }
        })
        .collect();
        if let Some(o) = overflow.iter_mut().find(|o| Arc::ptr_eq(&o.queue, q)) {
            o.items.extend(batch);
            continue;
        }
        let rest = q.push_many(batch);
        if rest.is_empty() {
            continue;
        }
        if q.is_closed() {
            // The stream is gone: nothing more to do for it.
            for d in rest {
                d.token.ack();
            }
            continue;
        }
        overflow.push(Overflow {
            queue: q.clone(),
            items: rest.into(),
        });
    }
}

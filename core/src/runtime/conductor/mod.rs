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
use crate::drivers::transport::{
    Consumer, ConsumerEvent, Message, OffsetSequence, Seen, TopicPartition,
};
use crate::error::Result;
use crate::flow::acks::{AckToken, PartitionAcks};
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::lifecycle::ShutdownSignal;
use crate::runtime::recovery;
use crate::table::TableOps;

mod commit;
mod rebalance;

use commit::{pending_flush, PendingCommit};

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
    /// The offsets received so far: where a poll skipped some.
    sequence: OffsetSequence,
}

/// Batches remembered per partition for the processing-time figure.
const INFLIGHT_KEEP: usize = 1024;

/// While a stream buffer is full the conductor stops polling (backpressure
/// without a broker round trip); only an overflow lasting longer than this
/// pauses its partitions, so the others can be polled again. Pausing is
/// costly on Kafka: librdkafka drops the partition's prefetched messages
/// and fetches them again on resume, so it is kept for streams that stall,
/// not for every burst. It also bounds how late a rebalance is seen.
const PAUSE_AFTER: Duration = Duration::from_millis(500);

pub(crate) struct Conductor {
    app: App,
    consumer: Box<dyn Consumer>,
    parts: HashMap<TopicPartition, PartState>,
    /// Per stream buffer that was full: what it still has to take. While
    /// any waits, the conductor does not poll; after [`PAUSE_AFTER`] their
    /// partitions are paused (and polling goes on) until it is empty.
    overflow: Vec<Overflow>,
    /// Since when events have waited in `overflow` without a break.
    overflow_since: Option<Instant>,
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
            overflow_since: None,
            subs: HashMap::new(),
            subs_version: u64::MAX,
            subscribed: BTreeSet::new(),
            tables,
            next_commit: Instant::now() + interval,
            pending: None,
            ready: Some(ready),
        }
    }

    /// Run until `stop`, then stop intake, let events in hand finish, commit
    /// and close. On a failure, give the partitions up and leave the group,
    /// but leave the streams and agents running: the worker may start a new
    /// conductor (see `runtime::worker`), or stop.
    pub(crate) async fn run(mut self, stop: ShutdownSignal) -> Result<()> {
        let result = self.run_loop(&stop).await;
        match &result {
            Err(e) => {
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Err(crate::Error::State(format!(
                        "worker failed to start: {e}"
                    ))));
                }
                self.abandon().await;
            }
            Ok(()) => self.shutdown().await,
        }
        result
    }

    /// After a failure: release every partition (events in hand finish and
    /// what is done is committed, if the broker still lets us), then leave.
    async fn abandon(&mut self) {
        let all: BTreeSet<TopicPartition> = self.parts.keys().cloned().collect();
        if !all.is_empty() {
            let tps: Vec<TopicPartition> = all.iter().cloned().collect();
            crate::runtime::signals::partitions(&self.app, true, &tps).await;
        }
        self.overflow.clear();
        self.release_partitions(&all).await;
        if let Err(e) = self.consumer.close().await {
            tracing::warn!(error = %e, "closing the consumer failed");
        }
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
                // Also clears `overflow_since` once the overflow is empty.
                self.drain_overflow().await?;
            }
            self.commit_if_due().await;
            if !self.overflow.is_empty() && !self.pausing() {
                // A full stream: take nothing more until it has room (or
                // until its partitions are paused), but keep committing.
                tokio::select! {
                    biased;
                    flushed = pending_flush(&mut self.pending) => {
                        self.finish_pending(flushed).await;
                    }
                    _ = tokio::time::timeout(Duration::from_millis(50), space.notified()) => {}
                    _ = stop.wait() => return Ok(()),
                }
                continue;
            }
            let timeout = if !self.overflow.is_empty() {
                // Partitions paused: wait for a full stream to drain, then
                // poll the others without blocking.
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
        for (topic, partition, mut msgs) in groups {
            let tp = TopicPartition { topic, partition };
            let Some(state) = self.parts.get_mut(&tp) else {
                continue; // not ours (any more)
            };
            if let Some((at, from)) = observe(&mut state.sequence, &tp, &msgs) {
                // Fetch the skipped offsets again; what came after them
                // comes again too.
                match self.consumer.seek(&tp, from).await {
                    Ok(()) => {
                        tracing::debug!(partition = %tp, expected = from, got = msgs[at].offset, "a poll skipped offsets; fetching them again");
                        state.sequence.refetching(from);
                        msgs.truncate(at);
                    }
                    Err(e) => {
                        tracing::warn!(partition = %tp, expected = from, got = msgs[at].offset, error = %e, "a poll skipped offsets and the consumer cannot fetch them again: taking the gap as it is");
                        let mut rest = &msgs[at..];
                        while let Some((i, _)) = observe(&mut state.sequence, &tp, rest) {
                            state.sequence.passed(rest[i].offset);
                            rest = &rest[i + 1..];
                        }
                    }
                }
            }
            if msgs.is_empty() {
                continue;
            }
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

    /// Whether events have waited in an overflow for [`PAUSE_AFTER`]: their
    /// partitions are paused then.
    fn pausing(&self) -> bool {
        self.overflow_since
            .is_some_and(|since| since.elapsed() >= PAUSE_AFTER)
    }

    /// Once events have waited in an overflow for [`PAUSE_AFTER`], pause
    /// their partitions; resume the others (all of them once the overflow
    /// is empty).
    async fn update_pauses(&mut self) -> Result<()> {
        if self.overflow.is_empty() {
            self.overflow_since = None;
        } else if self.overflow_since.is_none() {
            self.overflow_since = Some(Instant::now());
        }
        let mut waiting: std::collections::HashSet<(&Arc<str>, u32)> =
            std::collections::HashSet::new();
        let pausing = if self.pausing() {
            self.overflow.as_slice()
        } else {
            &[]
        };
        for o in pausing {
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
/// Take note of `msgs` in `sequence`, up to a jump past the expected offset:
/// its index and the offset to fetch again from.
fn observe(
    sequence: &mut OffsetSequence,
    tp: &TopicPartition,
    msgs: &[Message],
) -> Option<(usize, i64)> {
    for (i, m) in msgs.iter().enumerate() {
        match sequence.observe(m.offset) {
            Seen::InOrder => {}
            Seen::Recovered(offset) => {
                tracing::warn!(partition = %tp, offset, "the broker's fetch answer had skipped offsets; fetched again, nothing missed");
            }
            Seen::Missing(from) => {
                tracing::debug!(partition = %tp, from, to = m.offset - 1, "offsets missing from the partition (compaction or transaction markers)");
            }
            Seen::Jump(from) => return Some((i, from)),
        }
    }
    None
}

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

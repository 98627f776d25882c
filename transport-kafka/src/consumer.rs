//! The consumer: an rdkafka `BaseConsumer` on a dedicated thread.
//!
//! # Why a thread, and how a rebalance is handed to the caller
//!
//! librdkafka runs rebalance callbacks inside `poll`, and with the eager
//! protocol (`range` assignment) the revoked partitions are unassigned as soon
//! as the callback returns. The [`Consumer`] contract wants more: the caller
//! sees [`ConsumerEvent::Revoked`], finishes and commits the revoked
//! partitions, and only its *next* `poll` completes the revocation. So the
//! `BaseConsumer` lives on its own OS thread (none of its blocking calls ever
//! run on the async runtime), driven by commands over a channel; each async
//! method sends one command and awaits its reply.
//!
//! When librdkafka calls the revoke callback (on that thread, inside a
//! `poll`), the callback answers the caller's current poll with `Revoked`
//! (after handing over messages already gathered for that poll, if any), and
//! then *stays in the callback*, serving the caller's commands — `commit`
//! (which works, the partitions are still assigned), `committed`, `pause`,
//! `high_watermark` … — until the caller polls again. That poll ends the
//! callback; librdkafka unassigns, rejoins, and the assign callback queues
//! [`ConsumerEvent::Assigned`], returned by the next poll before any message
//! of the new assignment. While the callback waits, librdkafka keeps
//! heartbeating on its own threads; a caller that never polls again is
//! removed from the group after `max.poll.interval.ms`, as with any client.
//!
//! # Cancel safety
//!
//! `poll` keeps the reply channel of an unanswered poll in the consumer: when
//! the future is dropped (e.g. it lost a `tokio::select!`), the next `poll`
//! awaits that same answer, so no batch and no rebalance event is lost.
//!
//! # Group-less consumers
//!
//! Without a group id the consumer only reads what is [`assign`]ed
//! (recovery, standbys): from the beginning, or from a [`seek`] position,
//! which re-assigns the partitions with explicit start offsets (other
//! partitions keep their position), so a seek right after an assign is never
//! overtaken by librdkafka's offset reset.
//!
//! # High-water marks
//!
//! [`high_watermark`] does not trust ListOffsets(latest) alone: some brokers
//! (tansu 0.6) answer the last batch's base offset + 1. A small group-less
//! probe consumer fetches `tp` from that answer with `enable.partition.eof`;
//! the partition end it reaches (the fetch high-water mark) is the answer,
//! which is also right on Apache Kafka.
//!
//! [`assign`]: Consumer::assign
//! [`seek`]: Consumer::seek
//! [`high_watermark`]: Consumer::high_watermark

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::transport::{Consumer, ConsumerEvent, Message, TopicPartition};
use faustus_core::{Error, Result};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::oneshot;

use crate::context::{self, LogContext};
use crate::error;

/// Longest single wait inside librdkafka's poll, so the thread notices a
/// finished poll deadline promptly.
const SLICE: Duration = Duration::from_millis(100);

type Reply<T> = oneshot::Sender<Result<T>>;

/// What the async side asks of the consumer thread.
enum Cmd {
    Poll {
        timeout: Duration,
        reply: Reply<ConsumerEvent>,
    },
    Subscribe(Vec<String>, Reply<()>),
    Assign(Vec<TopicPartition>, Reply<()>),
    Seek(TopicPartition, i64, Reply<()>),
    Pause(Vec<TopicPartition>, Reply<()>),
    Resume(Vec<TopicPartition>, Reply<()>),
    Commit(Vec<(TopicPartition, i64)>, Reply<()>),
    Committed(Vec<TopicPartition>, Reply<Vec<Option<i64>>>),
    HighWatermark(TopicPartition, Reply<i64>),
    Close(Reply<()>),
}

/// A poll being answered: its reply, what it gathered and until when it may wait.
struct PollJob {
    reply: Reply<ConsumerEvent>,
    batch: Vec<Message>,
    deadline: Instant,
}

impl PollJob {
    fn new(reply: Reply<ConsumerEvent>, timeout: Duration) -> Self {
        let now = Instant::now();
        PollJob {
            reply,
            batch: Vec::new(),
            deadline: now.checked_add(timeout).unwrap_or(now + SLICE),
        }
    }
}

/// How the thread's consumer was configured.
pub(crate) struct Settings {
    pub(crate) client: String,
    pub(crate) url: String,
    pub(crate) group: bool,
    pub(crate) max_poll_records: usize,
    pub(crate) operation_timeout: Duration,
    /// Base configuration for the high-water-mark probe.
    pub(crate) probe_config: ClientConfig,
}

/// State shared between the thread's loop and librdkafka's callbacks (which
/// run on the same thread, inside `poll`). Locks are never held across a
/// librdkafka poll.
pub(crate) struct Ctx {
    settings: Settings,
    rx: Mutex<mpsc::Receiver<Cmd>>,
    job: Mutex<Option<PollJob>>,
    /// Events to return before polling librdkafka again (`Assigned`).
    events: Mutex<VecDeque<ConsumerEvent>>,
    /// Commands received inside a revocation that end it and run after it.
    deferred: Mutex<VecDeque<Cmd>>,
    assignment: Arc<Mutex<Vec<TopicPartition>>>,
    paused: Mutex<BTreeSet<TopicPartition>>,
    /// Group-less: the start offset given to each assigned partition.
    starts: Mutex<BTreeMap<TopicPartition, Offset>>,
    closing: AtomicBool,
    probe: Mutex<Option<BaseConsumer<LogContext>>>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        context::log(&self.settings.client, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        context::client_error(&self.settings.client, &self.settings.url, &error, reason);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = tpl_to_vec(tpl);
                self.assignment.lock().clear();
                self.paused.lock().clear();
                if revoked.is_empty() || self.closing.load(Ordering::SeqCst) {
                    return;
                }
                tracing::info!(client = %self.settings.client, partitions = ?revoked, "partitions revoked; waiting for the caller to commit and poll again");
                self.hold_revocation(consumer, revoked);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(client = %self.settings.client, error = %e, "rebalance error");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned = tpl_to_vec(tpl);
            tracing::info!(client = %self.settings.client, partitions = ?assigned, "partitions assigned");
            *self.assignment.lock() = assigned.clone();
            self.events
                .lock()
                .push_back(ConsumerEvent::Assigned(assigned));
        }
    }
}

impl Ctx {
    /// Inside the revoke callback: tell the caller, serve its commands, and
    /// return (completing the revocation) when it polls again.
    fn hold_revocation(&self, consumer: &BaseConsumer<Self>, revoked: Vec<TopicPartition>) {
        let mut announced = false;
        if let Some(job) = self.job.lock().take() {
            if job.batch.is_empty() {
                let _ = job.reply.send(Ok(ConsumerEvent::Revoked(revoked.clone())));
                announced = true;
            } else {
                let _ = job.reply.send(Ok(ConsumerEvent::Messages(job.batch)));
            }
        }
        loop {
            let cmd = match self.rx.lock().recv() {
                Ok(cmd) => cmd,
                Err(_) => {
                    // The consumer handle was dropped: nothing to wait for.
                    self.closing.store(true, Ordering::SeqCst);
                    return;
                }
            };
            match cmd {
                Cmd::Poll { timeout, reply } => {
                    if announced {
                        *self.job.lock() = Some(PollJob::new(reply, timeout));
                        return;
                    }
                    let _ = reply.send(Ok(ConsumerEvent::Revoked(revoked.clone())));
                    announced = true;
                }
                cmd @ (Cmd::Close(_) | Cmd::Subscribe(..) | Cmd::Assign(..)) => {
                    self.deferred.lock().push_back(cmd);
                    return;
                }
                other => execute(consumer, self, other),
            }
        }
    }
}

/// Run a command that does not poll (the thread loop and the revoke callback share this).
fn execute(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, cmd: Cmd) {
    match cmd {
        Cmd::Subscribe(topics, reply) => {
            let _ = reply.send(subscribe(consumer, ctx, &topics));
        }
        Cmd::Assign(tps, reply) => {
            let _ = reply.send(assign(consumer, ctx, &tps));
        }
        Cmd::Seek(tp, offset, reply) => {
            let _ = reply.send(seek(consumer, ctx, &tp, offset));
        }
        Cmd::Pause(tps, reply) => {
            let r = consumer
                .pause(&tpl_of(&tps))
                .map_err(|e| error::kafka(format!("pause {tps:?}"), e));
            if r.is_ok() {
                ctx.paused.lock().extend(tps);
            }
            let _ = reply.send(r);
        }
        Cmd::Resume(tps, reply) => {
            let r = consumer
                .resume(&tpl_of(&tps))
                .map_err(|e| error::kafka(format!("resume {tps:?}"), e));
            if r.is_ok() {
                let mut paused = ctx.paused.lock();
                for tp in &tps {
                    paused.remove(tp);
                }
            }
            let _ = reply.send(r);
        }
        Cmd::Commit(offsets, reply) => {
            let _ = reply.send(commit(consumer, ctx, &offsets));
        }
        Cmd::Committed(tps, reply) => {
            let _ = reply.send(committed(consumer, ctx, &tps));
        }
        Cmd::HighWatermark(tp, reply) => {
            let _ = reply.send(high_watermark(consumer, ctx, &tp));
        }
        Cmd::Poll { reply, .. } => {
            let _ = reply.send(Err(Error::State("internal: poll routed to execute".into())));
        }
        Cmd::Close(reply) => {
            let _ = reply.send(Err(Error::State(
                "internal: close routed to execute".into(),
            )));
        }
    }
}

fn to_i32(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

fn tpl_of(tps: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(tps.len());
    for tp in tps {
        tpl.add_partition(&tp.topic, to_i32(tp.partition));
    }
    tpl
}

fn tpl_to_vec(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    let mut v: Vec<TopicPartition> = tpl
        .elements()
        .iter()
        .filter_map(|e| {
            u32::try_from(e.partition())
                .ok()
                .map(|p| TopicPartition::new(e.topic(), p))
        })
        .collect();
    v.sort();
    v
}

fn subscribe(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, topics: &[String]) -> Result<()> {
    if !ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} has no group id, so it cannot subscribe to {topics:?}; use assign, or a group consumer",
            ctx.settings.client
        )));
    }
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|e| error::kafka(format!("subscribe to {topics:?}"), e))
}

/// (Re-)assign the group-less consumer's partitions at their start offsets
/// and re-apply pauses.
fn apply_groupless_assignment(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    starts: &BTreeMap<TopicPartition, Offset>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::with_capacity(starts.len());
    for (tp, offset) in starts {
        tpl.add_partition_offset(&tp.topic, to_i32(tp.partition), *offset)
            .map_err(|e| error::kafka(format!("assign {tp}"), e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| error::kafka(format!("assign {:?}", starts.keys()), e))?;
    *ctx.assignment.lock() = starts.keys().cloned().collect();
    let mut paused = ctx.paused.lock();
    paused.retain(|tp| starts.contains_key(tp));
    if !paused.is_empty() {
        let tps: Vec<TopicPartition> = paused.iter().cloned().collect();
        consumer
            .pause(&tpl_of(&tps))
            .map_err(|e| error::kafka(format!("pause {tps:?}"), e))?;
    }
    Ok(())
}

fn assign(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tps: &[TopicPartition]) -> Result<()> {
    if ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} belongs to a group, which decides its partitions; use a group-less consumer (ConsumerConfig::groupless) to assign {tps:?}",
            ctx.settings.client
        )));
    }
    let starts: BTreeMap<TopicPartition, Offset> = tps
        .iter()
        .map(|tp| (tp.clone(), Offset::Beginning))
        .collect();
    apply_groupless_assignment(consumer, ctx, &starts)?;
    *ctx.starts.lock() = starts;
    Ok(())
}

fn seek(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tp: &TopicPartition, offset: i64) -> Result<()> {
    if ctx.settings.group {
        return consumer
            .seek(
                &tp.topic,
                to_i32(tp.partition),
                Offset::Offset(offset),
                ctx.settings.operation_timeout,
            )
            .map_err(|e| error::kafka(format!("seek {tp} to {offset}"), e));
    }
    let mut starts = ctx.starts.lock().clone();
    if !starts.contains_key(tp) {
        return Err(Error::State(format!(
            "cannot seek {tp}: it is not assigned to consumer {:?}",
            ctx.settings.client
        )));
    }
    // Keep every other partition where it is.
    if let Ok(position) = consumer.position() {
        for e in position.elements() {
            if let (Offset::Offset(o), Ok(p)) = (e.offset(), u32::try_from(e.partition())) {
                let key = TopicPartition::new(e.topic(), p);
                if let Some(start) = starts.get_mut(&key) {
                    *start = Offset::Offset(o);
                }
            }
        }
    }
    starts.insert(tp.clone(), Offset::Offset(offset));
    apply_groupless_assignment(consumer, ctx, &starts)?;
    *ctx.starts.lock() = starts;
    Ok(())
}

fn commit(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    offsets: &[(TopicPartition, i64)],
) -> Result<()> {
    if !ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} has no group id, so it cannot commit",
            ctx.settings.client
        )));
    }
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, to_i32(tp.partition), Offset::Offset(*o))
            .map_err(|e| error::kafka(format!("commit {tp} at {o}"), e))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| error::kafka(format!("commit {offsets:?}"), e))
}

fn committed(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    tps: &[TopicPartition],
) -> Result<Vec<Option<i64>>> {
    if !ctx.settings.group || tps.is_empty() {
        return Ok(vec![None; tps.len()]);
    }
    let got = consumer
        .committed_offsets(tpl_of(tps), ctx.settings.operation_timeout)
        .map_err(|e| error::kafka(format!("committed offsets of {tps:?}"), e))?;
    Ok(tps
        .iter()
        .map(|tp| {
            got.find_partition(&tp.topic, to_i32(tp.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
        })
        .collect())
}

/// The end of `tp`: ListOffsets(latest) checked against the fetch high-water
/// mark by reading from there to partition EOF with the probe consumer.
fn high_watermark(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tp: &TopicPartition) -> Result<i64> {
    let timeout = ctx.settings.operation_timeout;
    let partition = to_i32(tp.partition);
    let (low, listed) = consumer
        .fetch_watermarks(&tp.topic, partition, timeout)
        .map_err(|e| error::kafka(format!("list offsets of {tp}"), e))?;
    let start = listed.max(low).max(0);

    let mut guard = ctx.probe.lock();
    if guard.is_none() {
        let mut config = ctx.settings.probe_config.clone();
        config
            .set("client.id", format!("{}-watermark", ctx.settings.client))
            .set("group.id", crate::private_group_id(&ctx.settings.client))
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10");
        let probe: BaseConsumer<LogContext> = config
            .create_with_context(LogContext {
                client: format!("{}-watermark", ctx.settings.client),
                url: ctx.settings.url.clone(),
            })
            .map_err(|e| error::kafka("create the high-water-mark probe consumer", e))?;
        *guard = Some(probe);
    }
    let Some(probe) = guard.as_ref() else {
        return Err(error::message(false, "probe consumer missing"));
    };
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(&tp.topic, partition, Offset::Offset(start))
        .map_err(|e| error::kafka(format!("probe {tp}"), e))?;
    probe
        .assign(&tpl)
        .map_err(|e| error::kafka(format!("probe {tp}"), e))?;
    let deadline = Instant::now() + timeout;
    let mut end = start;
    let result = loop {
        if Instant::now() >= deadline {
            break Err(error::message(
                true,
                format!("no fetch answer for {tp} within {timeout:?} while looking for its high-water mark"),
            ));
        }
        match probe.poll(SLICE) {
            Some(Ok(m)) if m.partition() == partition && m.topic() == &*tp.topic => {
                end = end.max(m.offset() + 1);
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(end),
            Some(Err(e)) => {
                tracing::debug!(partition = %tp, error = %e, "high-water-mark probe");
            }
            None => {}
        }
    };
    if let Err(e) = probe.unassign() {
        tracing::debug!(error = %e, "unassign the high-water-mark probe");
    }
    result
}

/// The consumer thread's loop state.
struct Worker {
    consumer: Option<BaseConsumer<Ctx>>,
    ctx: Arc<Ctx>,
    topics: HashMap<String, Arc<str>>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let deferred = self.ctx.deferred.lock().pop_front();
            let cmd = match deferred {
                Some(cmd) => cmd,
                None => {
                    let received = self.ctx.rx.lock().recv();
                    match received {
                        Ok(cmd) => cmd,
                        Err(_) => break,
                    }
                }
            };
            let Some(consumer) = self.consumer.take() else {
                break;
            };
            match cmd {
                Cmd::Poll { timeout, reply } => {
                    self.poll(&consumer, timeout, reply);
                    self.consumer = Some(consumer);
                }
                Cmd::Close(reply) => {
                    self.shut(consumer);
                    let _ = reply.send(Ok(()));
                    return;
                }
                other => {
                    execute(&consumer, &self.ctx, other);
                    self.consumer = Some(consumer);
                }
            }
        }
        if let Some(consumer) = self.consumer.take() {
            self.shut(consumer);
        }
    }

    fn shut(&self, consumer: BaseConsumer<Ctx>) {
        self.ctx.closing.store(true, Ordering::SeqCst);
        if self.ctx.settings.group {
            consumer.unsubscribe();
        }
        // Dropping a group consumer leaves the group (blocking; we are on
        // our own thread).
        drop(consumer);
        self.ctx.probe.lock().take();
        self.ctx.assignment.lock().clear();
        // Answer whatever is still waiting.
        if let Some(job) = self.ctx.job.lock().take() {
            let _ = job.reply.send(Err(Error::Closed(format!(
                "kafka consumer {:?}",
                self.ctx.settings.client
            ))));
        }
        tracing::debug!(client = %self.ctx.settings.client, "consumer closed");
    }

    fn finish(&self, event: Result<ConsumerEvent>) {
        if let Some(job) = self.ctx.job.lock().take() {
            let _ = job.reply.send(event);
        }
    }

    fn poll(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        timeout: Duration,
        reply: Reply<ConsumerEvent>,
    ) {
        if let Some(ev) = self.ctx.events.lock().pop_front() {
            let _ = reply.send(Ok(ev));
            return;
        }
        *self.ctx.job.lock() = Some(PollJob::new(reply, timeout));
        loop {
            let wait = {
                let job = self.ctx.job.lock();
                let Some(job) = job.as_ref() else {
                    return;
                };
                if job.batch.is_empty() {
                    job.deadline
                        .saturating_duration_since(Instant::now())
                        .min(SLICE)
                } else {
                    Duration::ZERO
                }
            };
            // May run rebalance callbacks, which can answer (and replace) the job.
            let polled = consumer.poll(wait);
            let message = match polled {
                Some(Ok(m)) => Some(self.detach(&m)),
                Some(Err(KafkaError::PartitionEOF(_))) | None => None,
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    tracing::error!(client = %self.ctx.settings.client, error = %e, "fatal consumer error");
                    self.finish(Err(error::kafka("consume", e)));
                    return;
                }
                Some(Err(e)) => {
                    // Broker down, partition moved …: librdkafka recovers by itself.
                    tracing::warn!(client = %self.ctx.settings.client, url = %self.ctx.settings.url, error = %e, "consumer error (librdkafka retries)");
                    None
                }
            };
            let mut guard = self.ctx.job.lock();
            let Some(job) = guard.as_mut() else {
                drop(guard);
                if let Some(m) = message {
                    self.ctx
                        .events
                        .lock()
                        .push_back(ConsumerEvent::Messages(vec![m]));
                }
                return;
            };
            let full = match message {
                Some(m) => {
                    job.batch.push(m);
                    if job.batch.len() < self.ctx.settings.max_poll_records.max(1) {
                        continue;
                    }
                    true
                }
                None => false,
            };
            let event = if full || !job.batch.is_empty() {
                Some(ConsumerEvent::Messages(std::mem::take(&mut job.batch)))
            } else if let Some(ev) = self.ctx.events.lock().pop_front() {
                Some(ev)
            } else if Instant::now() >= job.deadline {
                Some(ConsumerEvent::Idle)
            } else {
                None
            };
            drop(guard);
            if let Some(event) = event {
                self.finish(Ok(event));
                return;
            }
        }
    }

    fn detach(&mut self, m: &BorrowedMessage<'_>) -> Message {
        let topic = match self.topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(m.topic());
                self.topics.insert(m.topic().to_string(), t.clone());
                t
            }
        };
        let headers = match m.headers() {
            Some(h) => h
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        Message {
            topic,
            partition: u32::try_from(m.partition()).unwrap_or(0),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            value: m.payload().map(Bytes::copy_from_slice),
            headers,
        }
    }
}

/// The async handle of a consumer thread.
pub(crate) struct KafkaConsumer {
    tx: mpsc::Sender<Cmd>,
    /// The answer of a poll whose future was dropped before it arrived.
    pending: Option<oneshot::Receiver<Result<ConsumerEvent>>>,
    assignment: Arc<Mutex<Vec<TopicPartition>>>,
    client: String,
    group: Option<String>,
}

impl fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("client", &self.client)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    /// Create the librdkafka consumer from `config` and start its thread.
    pub(crate) fn start(
        config: &ClientConfig,
        settings: Settings,
        group: Option<String>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let assignment = Arc::new(Mutex::new(Vec::new()));
        let client = settings.client.clone();
        let ctx = Ctx {
            settings,
            rx: Mutex::new(rx),
            job: Mutex::new(None),
            events: Mutex::new(VecDeque::new()),
            deferred: Mutex::new(VecDeque::new()),
            assignment: assignment.clone(),
            paused: Mutex::new(BTreeSet::new()),
            starts: Mutex::new(BTreeMap::new()),
            closing: AtomicBool::new(false),
            probe: Mutex::new(None),
        };
        let consumer: BaseConsumer<Ctx> = config
            .create_with_context(ctx)
            .map_err(|e| error::kafka(format!("create consumer {client:?}"), e))?;
        let worker = Worker {
            ctx: consumer.context().clone(),
            consumer: Some(consumer),
            topics: HashMap::new(),
        };
        std::thread::Builder::new()
            .name(format!("kafka-consumer-{client}"))
            .spawn(move || worker.run())
            .map_err(|e| Error::Io {
                context: format!("start the thread of kafka consumer {client:?}"),
                source: e,
            })?;
        Ok(KafkaConsumer {
            tx,
            pending: None,
            assignment,
            client,
            group,
        })
    }

    fn closed(&self) -> Error {
        Error::Closed(format!("kafka consumer {:?}", self.client))
    }

    async fn call<T>(&mut self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).map_err(|_| self.closed())?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(self.closed()),
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        let topics = topics.to_vec();
        self.call(|r| Cmd::Subscribe(topics, r)).await
    }

    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Assign(tps, r)).await
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let tp = tp.clone();
        self.call(|r| Cmd::Seek(tp, offset, r)).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        if self.pending.is_none() {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Cmd::Poll { timeout, reply: tx })
                .map_err(|_| self.closed())?;
            self.pending = Some(rx);
        }
        let Some(rx) = self.pending.as_mut() else {
            return Err(self.closed());
        };
        // Cancel-safe: if this future is dropped here, `pending` keeps the
        // receiver and the next poll picks the answer up.
        let answer = rx.await;
        self.pending = None;
        match answer {
            Ok(r) => r,
            Err(_) => Err(self.closed()),
        }
    }

    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Pause(tps, r)).await
    }

    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Resume(tps, r)).await
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let offsets = offsets.to_vec();
        self.call(|r| Cmd::Commit(offsets, r)).await
    }

    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Committed(tps, r)).await
    }

    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        let tp = tp.clone();
        self.call(|r| Cmd::HighWatermark(tp, r)).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.lock().clone()
    }

    async fn close(&mut self) -> Result<()> {
        if let Some(rx) = self.pending.take() {
            // Let an unanswered poll finish first (bounded by its timeout).
            let _ = rx.await;
        }
        match self.call(Cmd::Close).await {
            Ok(()) => Ok(()),
            // Already closed.
            Err(Error::Closed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

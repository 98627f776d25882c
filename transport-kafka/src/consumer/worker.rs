//! The consumer thread: its loop, its state, and the rebalance callbacks.
//!
//! # Gathering ahead of the caller
//!
//! The thread does not wait for the caller's poll to read librdkafka: while
//! messages are at hand it gathers them into batches of up to
//! `max_poll_records` (at most [`PREFETCH_BATCHES`] of them wait), so the
//! caller's next poll is answered at once and librdkafka's queue is drained
//! while the caller delivers the previous batch. When the batches wait
//! unclaimed, or librdkafka has nothing at hand, the thread stops reading
//! and waits for the caller's next command: backpressure is not reading,
//! and librdkafka stops fetching once its own queue is full
//! (`queued.max.messages.kbytes`).
//!
//! Everything the caller receives goes through one ordered queue
//! ([`Ready`]): message batches, then `Revoked` (messages gathered before a
//! revocation are handed over before it), then `Assigned`. A seek or an
//! assignment drops the gathered messages it makes stale (see
//! [`Ctx::forget`]).
//!
//! # Copies
//!
//! Keys and values are copied out of librdkafka's buffers once, into shared
//! chunks of [`ARENA_CHUNK`] bytes (one allocation per chunk instead of two
//! per message); a message holds its chunk until it is dropped. Larger keys
//! and values get their own allocation.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use faustus_core::transport::{ConsumerEvent, Message, OffsetSequence, Seen, TopicPartition};
use faustus_core::{Error, Result};
use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{ClientConfig, Offset};

use crate::context::{self, LogContext};
use crate::error;

use super::ops::{execute, tpl_to_vec};
use super::{Cmd, Reply, Settings, SLICE};

/// Message batches gathered ahead of the caller's polls, at most.
pub(super) const PREFETCH_BATCHES: usize = 4;
/// Size of the shared chunks keys and values are copied into.
const ARENA_CHUNK: usize = 256 * 1024;
/// Keys and values larger than this get their own allocation.
const ARENA_MAX_ITEM: usize = 16 * 1024;

/// The caller's poll, waiting for an answer until `deadline`.
pub(super) struct Waiter {
    reply: Reply<ConsumerEvent>,
    deadline: Instant,
}

impl Waiter {
    fn new(reply: Reply<ConsumerEvent>, timeout: Duration) -> Self {
        let now = Instant::now();
        Waiter {
            reply,
            deadline: now.checked_add(timeout).unwrap_or(now + SLICE),
        }
    }
}

/// What is ready for the caller, in the order it gets it.
#[derive(Default)]
pub(super) struct Ready {
    events: VecDeque<Result<ConsumerEvent>>,
    /// The caller's poll, when nothing was ready for it.
    waiter: Option<Waiter>,
    /// Messages read from librdkafka for the batch being gathered.
    gathering: Vec<Message>,
}

impl Ready {
    fn push(&mut self, event: Result<ConsumerEvent>) {
        self.events.push_back(event);
    }

    /// How many message batches wait (a handful: counted, not kept).
    fn batches(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Ok(ConsumerEvent::Messages(_))))
            .count()
    }

    /// Queue the batch being gathered (appended to the last queued batch
    /// while that stays within `max` messages).
    fn seal(&mut self, max: usize) {
        if self.gathering.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.gathering);
        if let Some(Ok(ConsumerEvent::Messages(last))) = self.events.back_mut() {
            if last.len() + batch.len() <= max {
                last.extend(batch);
                return;
            }
        }
        self.push(Ok(ConsumerEvent::Messages(batch)));
    }

    fn pop(&mut self) -> Option<Result<ConsumerEvent>> {
        self.events.pop_front()
    }

    /// Hand the waiting poll what is ready; `Idle` once its deadline passed.
    fn answer(&mut self) {
        if self.waiter.is_none() {
            return;
        }
        let event = match self.pop() {
            Some(event) => event,
            None => match &self.waiter {
                Some(w) if Instant::now() >= w.deadline => Ok(ConsumerEvent::Idle),
                _ => return,
            },
        };
        if let Some(w) = self.waiter.take() {
            let _ = w.reply.send(event);
        }
    }

    /// Drop the gathered messages `stale` names.
    fn forget(&mut self, stale: impl Fn(&Message) -> bool) {
        self.gathering.retain(|m| !stale(m));
        for event in self.events.iter_mut() {
            if let Ok(ConsumerEvent::Messages(batch)) = event {
                batch.retain(|m| !stale(m));
            }
        }
        self.events
            .retain(|e| !matches!(e, Ok(ConsumerEvent::Messages(b)) if b.is_empty()));
    }
}

/// State shared between the thread's loop and librdkafka's callbacks (which
/// run on the same thread, inside `poll`). Locks are never held across a
/// librdkafka poll.
pub(super) struct Ctx {
    pub(super) settings: Settings,
    pub(super) rx: Mutex<mpsc::Receiver<Cmd>>,
    pub(super) ready: Mutex<Ready>,
    /// Commands received inside a revocation that end it and run after it.
    pub(super) deferred: Mutex<VecDeque<Cmd>>,
    pub(super) assignment: Arc<Mutex<Vec<TopicPartition>>>,
    pub(super) paused: Mutex<BTreeSet<TopicPartition>>,
    /// Group-less: the start offset given to each assigned partition.
    pub(super) starts: Mutex<BTreeMap<TopicPartition, Offset>>,
    pub(super) closing: AtomicBool,
    pub(super) probe: Mutex<Option<BaseConsumer<LogContext>>>,
    /// Group-less: per partition, the offsets handed out (see
    /// [`Worker::refetch_skipped`]). Emptied by `assign`, per partition by `seek`.
    pub(super) next: Mutex<HashMap<TopicPartition, OffsetSequence>>,
}

impl ClientContext for Ctx {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        context::log(
            &self.settings.shared,
            &self.settings.client,
            level,
            fac,
            message,
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.settings
            .shared
            .client_error(&self.settings.client, &error, reason);
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> std::result::Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.settings.shared.oauth_token(&self.settings.client)
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
            let mut ready = self.ready.lock();
            ready.seal(self.max_batch());
            ready.push(Ok(ConsumerEvent::Assigned(assigned)));
            ready.answer();
        }
    }
}

impl Ctx {
    fn max_batch(&self) -> usize {
        self.settings.max_poll_records.max(1)
    }

    /// Drop gathered messages a seek or an assignment made stale: of `tp`,
    /// or all of them (`None`).
    pub(super) fn forget(&self, tp: Option<&TopicPartition>) {
        let mut ready = self.ready.lock();
        match tp {
            Some(tp) => ready.forget(|m| m.partition == tp.partition && *m.topic == *tp.topic),
            None => ready.forget(|_| true),
        }
    }

    /// A poll of the caller: answered with what is ready, or kept waiting.
    fn take_poll(&self, reply: Reply<ConsumerEvent>, timeout: Duration) {
        let mut ready = self.ready.lock();
        ready.waiter = Some(Waiter::new(reply, timeout));
        if ready.events.is_empty() {
            return;
        }
        ready.answer();
    }

    /// Inside the revoke callback: hand the caller what was gathered, then
    /// `Revoked`; serve its commands, and return (completing the
    /// revocation) when it polls again.
    fn hold_revocation(&self, consumer: &BaseConsumer<Self>, revoked: Vec<TopicPartition>) {
        {
            let mut ready = self.ready.lock();
            ready.seal(self.max_batch());
            ready.push(Ok(ConsumerEvent::Revoked(revoked)));
            ready.answer();
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
                    let mut ready = self.ready.lock();
                    // Nothing is read from librdkafka meanwhile, so the
                    // queue ends with `Revoked`: once it is empty, the
                    // caller had it and this poll ends the revocation.
                    let done = ready.events.is_empty();
                    ready.waiter = Some(Waiter::new(reply, timeout));
                    if done {
                        return;
                    }
                    ready.answer();
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

/// The consumer thread's loop state.
pub(super) struct Worker {
    pub(super) consumer: Option<BaseConsumer<Ctx>>,
    pub(super) ctx: Arc<Ctx>,
    pub(super) topics: HashMap<String, Arc<str>>,
    /// The topic of the last message read (most batches have one topic).
    last_topic: Option<Arc<str>>,
    /// The chunk keys and values are copied into.
    arena: BytesMut,
    /// librdkafka had nothing at hand, or the caller has not claimed what
    /// is ready: wait for the caller's next command before reading more.
    rest: bool,
}

impl Worker {
    pub(super) fn run(mut self) {
        loop {
            let deferred = self.ctx.deferred.lock().pop_front();
            let cmd = match deferred {
                Some(cmd) => Some(cmd),
                None if self.must_wait() => {
                    let received = self.ctx.rx.lock().recv();
                    match received {
                        Ok(cmd) => Some(cmd),
                        Err(_) => break,
                    }
                }
                None => {
                    let received = self.ctx.rx.lock().try_recv();
                    match received {
                        Ok(cmd) => Some(cmd),
                        Err(mpsc::TryRecvError::Empty) => None,
                        Err(mpsc::TryRecvError::Disconnected) => break,
                    }
                }
            };
            let Some(consumer) = self.consumer.take() else {
                break;
            };
            match cmd {
                None => self.gather(&consumer),
                Some(Cmd::Poll { timeout, reply }) => {
                    self.rest = false;
                    self.ctx.take_poll(reply, timeout);
                }
                Some(Cmd::Close(reply)) => {
                    self.shut(consumer);
                    let _ = reply.send(Ok(()));
                    return;
                }
                Some(other) => {
                    self.rest = false;
                    execute(&consumer, &self.ctx, other);
                }
            }
            self.consumer = Some(consumer);
        }
        if let Some(consumer) = self.consumer.take() {
            self.shut(consumer);
        }
    }

    /// Whether to wait for a command rather than read librdkafka: no poll
    /// is waiting, and there is nothing to read or enough unclaimed.
    fn must_wait(&self) -> bool {
        let ready = self.ctx.ready.lock();
        ready.waiter.is_none() && (self.rest || ready.batches() >= PREFETCH_BATCHES)
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
        let mut ready = self.ctx.ready.lock();
        ready.forget(|_| true);
        if let Some(w) = ready.waiter.take() {
            let _ = w.reply.send(Err(Error::Closed(format!(
                "kafka consumer {:?}",
                self.ctx.settings.client
            ))));
        }
        tracing::debug!(client = %self.ctx.settings.client, "consumer closed");
    }

    /// Read one batch from librdkafka (waiting for its first message only
    /// while a poll of the caller waits with nothing ready), queue it, and
    /// answer the waiting poll.
    fn gather(&mut self, consumer: &BaseConsumer<Ctx>) {
        let max = self.ctx.max_batch();
        let mut wait = {
            let ready = self.ctx.ready.lock();
            match &ready.waiter {
                Some(w) if ready.events.is_empty() => w
                    .deadline
                    .saturating_duration_since(Instant::now())
                    .min(SLICE),
                _ => Duration::ZERO,
            }
        };
        let mut full = false;
        loop {
            // May run rebalance callbacks, which queue what was gathered.
            let polled = consumer.poll(wait);
            wait = Duration::ZERO;
            match polled {
                Some(Ok(m)) => {
                    let msg = self.detach(&m);
                    drop(m);
                    if self.refetch_skipped(consumer, &msg) {
                        continue;
                    }
                    let mut ready = self.ctx.ready.lock();
                    ready.gathering.push(msg);
                    if ready.gathering.len() >= max {
                        full = true;
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => break,
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    tracing::error!(client = %self.ctx.settings.client, error = %e, "fatal consumer error");
                    let mut ready = self.ctx.ready.lock();
                    ready.seal(max);
                    ready.push(Err(error::kafka("consume", e)));
                    break;
                }
                Some(Err(e)) => {
                    // Broker down, partition moved …: librdkafka recovers by
                    // itself. A lost broker is said once per outage.
                    let settings = &self.ctx.settings;
                    if crate::context::is_connection_error(e.rdkafka_error_code())
                        && !settings.shared.connection_error_is_news(&settings.client)
                    {
                        tracing::debug!(client = %settings.client, url = %settings.shared.url, error = %e, "consumer error (librdkafka retries)");
                    } else {
                        tracing::warn!(client = %settings.client, url = %settings.shared.url, error = %e, "consumer error (librdkafka retries)");
                    }
                    break;
                }
            }
        }
        let mut ready = self.ctx.ready.lock();
        ready.seal(max);
        // Read on while librdkafka has more; otherwise rest until the
        // caller comes back (a waiting poll keeps reading, up to its
        // deadline).
        self.rest = !full && ready.waiter.is_none();
        ready.answer();
    }

    /// Whether `msg` (read by a partition reader: table recovery, standbys,
    /// global tables, RPC replies, the cluster map) jumped past offsets of
    /// its partition the broker did not return, and the partition was sent
    /// back to fetch them (then `msg` is dropped: it comes again after
    /// them). See [`OffsetSequence`]; group members are covered by the
    /// conductor (`Consumer::seek`).
    fn refetch_skipped(&self, consumer: &BaseConsumer<Ctx>, msg: &Message) -> bool {
        if self.ctx.settings.group {
            return false;
        }
        let tp = TopicPartition {
            topic: msg.topic.clone(),
            partition: msg.partition,
        };
        let mut next = self.ctx.next.lock();
        let entry = next.entry(tp).or_default();
        let client = &self.ctx.settings.client;
        let (topic, partition) = (&msg.topic, msg.partition);
        match entry.observe(msg.offset) {
            Seen::InOrder => false,
            Seen::Recovered(offset) => {
                tracing::warn!(%client, %topic, partition, offset, "the broker's fetch answer had skipped offsets; fetched again, nothing missed");
                false
            }
            Seen::Missing(expected) => {
                tracing::debug!(%client, %topic, partition, expected, got = msg.offset, "offsets missing from the partition (compaction or transaction markers)");
                false
            }
            Seen::Jump(expected) => {
                let p = i32::try_from(partition).unwrap_or(i32::MAX);
                match consumer.seek(
                    topic,
                    p,
                    Offset::Offset(expected),
                    self.ctx.settings.operation_timeout,
                ) {
                    Ok(()) => {
                        tracing::debug!(%client, %topic, partition, expected, got = msg.offset, "a fetch answer skipped offsets; fetching them again");
                        entry.refetching(expected);
                        true
                    }
                    Err(e) => {
                        tracing::warn!(%client, %topic, partition, expected, got = msg.offset, error = %e, "a fetch answer skipped offsets and seeking back failed: taking the gap as it is");
                        entry.passed(msg.offset);
                        false
                    }
                }
            }
        }
    }

    /// Copy `data` into the shared chunk (see the module documentation).
    fn copy(&mut self, data: &[u8]) -> Bytes {
        if data.len() > ARENA_MAX_ITEM {
            return Bytes::copy_from_slice(data);
        }
        if self.arena.capacity() < data.len() {
            self.arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        self.arena.extend_from_slice(data);
        self.arena.split().freeze()
    }

    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.last_topic.as_ref().filter(|t| ***t == *name) {
            return t.clone();
        }
        let t = match self.topics.get(name) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(name);
                self.topics.insert(name.to_string(), t.clone());
                t
            }
        };
        self.last_topic = Some(t.clone());
        t
    }

    fn detach(&mut self, m: &BorrowedMessage<'_>) -> Message {
        let topic = self.topic(m.topic());
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
            key: m.key().map(|k| self.copy(k)),
            value: m.payload().map(|v| self.copy(v)),
            headers,
        }
    }
}

/// Create the librdkafka consumer and start its thread.
pub(super) fn spawn(
    config: &ClientConfig,
    settings: Settings,
    rx: mpsc::Receiver<Cmd>,
    assignment: Arc<Mutex<Vec<TopicPartition>>>,
) -> Result<()> {
    let client = settings.client.clone();
    let ctx = Ctx {
        settings,
        rx: Mutex::new(rx),
        ready: Mutex::new(Ready::default()),
        deferred: Mutex::new(VecDeque::new()),
        assignment,
        paused: Mutex::new(BTreeSet::new()),
        starts: Mutex::new(BTreeMap::new()),
        closing: AtomicBool::new(false),
        probe: Mutex::new(None),
        next: Mutex::new(HashMap::new()),
    };
    let consumer: BaseConsumer<Ctx> = config
        .create_with_context(ctx)
        .map_err(|e| error::kafka(format!("create consumer {client:?}"), e))?;
    let worker = Worker {
        ctx: consumer.context().clone(),
        consumer: Some(consumer),
        topics: HashMap::new(),
        last_topic: None,
        arena: BytesMut::new(),
        rest: false,
    };
    std::thread::Builder::new()
        .name(format!("kafka-consumer-{client}"))
        .spawn(move || worker.run())
        .map_err(|e| Error::Io {
            context: format!("start the thread of kafka consumer {client:?}"),
            source: e,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &Arc<str>, partition: u32, offset: i64) -> Message {
        Message {
            topic: topic.clone(),
            partition,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        }
    }

    fn offsets(event: &Result<ConsumerEvent>) -> Vec<(u32, i64)> {
        match event {
            Ok(ConsumerEvent::Messages(b)) => b.iter().map(|m| (m.partition, m.offset)).collect(),
            _ => panic!("not a batch"),
        }
    }

    #[test]
    fn gathered_messages_join_the_last_batch_up_to_the_limit() {
        let t: Arc<str> = Arc::from("t");
        let mut r = Ready {
            gathering: vec![msg(&t, 0, 0), msg(&t, 0, 1)],
            ..Ready::default()
        };
        r.seal(3);
        r.gathering = vec![msg(&t, 0, 2)];
        r.seal(3);
        // Full: the next ones start a batch.
        r.gathering = vec![msg(&t, 0, 3), msg(&t, 0, 4)];
        r.seal(3);
        r.seal(3); // nothing gathered: nothing queued
        assert_eq!(r.batches(), 2);
        assert_eq!(offsets(&r.pop().unwrap()), [(0, 0), (0, 1), (0, 2)]);
        assert_eq!(offsets(&r.pop().unwrap()), [(0, 3), (0, 4)]);
        assert_eq!(r.batches(), 0);
        assert!(r.pop().is_none());
    }

    #[test]
    fn messages_gathered_before_a_revocation_come_before_it() {
        let t: Arc<str> = Arc::from("t");
        let mut r = Ready {
            gathering: vec![msg(&t, 0, 0)],
            ..Ready::default()
        };
        r.seal(10);
        r.gathering = vec![msg(&t, 1, 0)];
        // What the revoke callback does.
        r.seal(10);
        r.push(Ok(ConsumerEvent::Revoked(vec![TopicPartition::new(
            "t", 0,
        )])));
        r.push(Ok(ConsumerEvent::Assigned(vec![TopicPartition::new(
            "t", 1,
        )])));
        // A batch is never merged across a rebalance event.
        r.gathering = vec![msg(&t, 1, 1)];
        r.seal(10);
        assert_eq!(offsets(&r.pop().unwrap()), [(0, 0), (1, 0)]);
        assert!(matches!(r.pop(), Some(Ok(ConsumerEvent::Revoked(_)))));
        assert!(matches!(r.pop(), Some(Ok(ConsumerEvent::Assigned(_)))));
        assert_eq!(offsets(&r.pop().unwrap()), [(1, 1)]);
    }

    #[test]
    fn a_seek_forgets_what_was_gathered_of_its_partition_only() {
        let t: Arc<str> = Arc::from("t");
        let u: Arc<str> = Arc::from("u");
        let mut r = Ready {
            gathering: vec![msg(&t, 0, 5), msg(&u, 0, 7)],
            ..Ready::default()
        };
        r.seal(2);
        r.gathering = vec![msg(&t, 0, 6)];
        r.seal(2);
        r.gathering = vec![msg(&t, 1, 1), msg(&t, 0, 7)];
        let tp = TopicPartition::new("t", 0);
        r.forget(|m| m.partition == tp.partition && *m.topic == *tp.topic);
        // The second batch is gone with its only message.
        assert_eq!(r.batches(), 1);
        assert_eq!(offsets(&r.pop().unwrap()), [(0, 7)]);
        assert!(r.pop().is_none());
        assert_eq!(r.gathering.len(), 1);
        r.forget(|_| true);
        assert!(r.gathering.is_empty());
    }

    #[test]
    fn a_waiting_poll_gets_the_first_event_or_idle_at_its_deadline() {
        let t: Arc<str> = Arc::from("t");
        let mut r = Ready::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        r.waiter = Some(Waiter::new(tx, Duration::from_secs(3600)));
        // Nothing ready, deadline far: it keeps waiting.
        r.answer();
        assert!(rx.try_recv().is_err());
        assert!(r.waiter.is_some());
        r.gathering = vec![msg(&t, 0, 0)];
        r.seal(10);
        r.answer();
        assert!(r.waiter.is_none());
        let got = rx.try_recv().unwrap();
        assert_eq!(offsets(&got), [(0, 0)]);
        assert_eq!(r.batches(), 0);
        // A poll with no time left is answered Idle.
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        r.waiter = Some(Waiter::new(tx, Duration::ZERO));
        r.answer();
        assert!(matches!(rx.try_recv(), Ok(Ok(ConsumerEvent::Idle))));
    }
}

//! The consumer thread: its loop, its state, and the rebalance callbacks.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
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

/// A poll being answered: its reply, what it gathered and until when it may wait.
pub(super) struct PollJob {
    pub(super) reply: Reply<ConsumerEvent>,
    pub(super) batch: Vec<Message>,
    pub(super) deadline: Instant,
}

impl PollJob {
    pub(super) fn new(reply: Reply<ConsumerEvent>, timeout: Duration) -> Self {
        let now = Instant::now();
        PollJob {
            reply,
            batch: Vec::new(),
            deadline: now.checked_add(timeout).unwrap_or(now + SLICE),
        }
    }
}

/// State shared between the thread's loop and librdkafka's callbacks (which
/// run on the same thread, inside `poll`). Locks are never held across a
/// librdkafka poll.
pub(super) struct Ctx {
    pub(super) settings: Settings,
    pub(super) rx: Mutex<mpsc::Receiver<Cmd>>,
    pub(super) job: Mutex<Option<PollJob>>,
    /// Events to return before polling librdkafka again (`Assigned`).
    pub(super) events: Mutex<VecDeque<ConsumerEvent>>,
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

/// The consumer thread's loop state.
pub(super) struct Worker {
    pub(super) consumer: Option<BaseConsumer<Ctx>>,
    pub(super) ctx: Arc<Ctx>,
    pub(super) topics: HashMap<String, Arc<str>>,
}

impl Worker {
    pub(super) fn run(mut self) {
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
                Some(Ok(m)) => {
                    let msg = self.detach(&m);
                    drop(m);
                    (!self.refetch_skipped(consumer, &msg)).then_some(msg)
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => None,
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    tracing::error!(client = %self.ctx.settings.client, error = %e, "fatal consumer error");
                    self.finish(Err(error::kafka("consume", e)));
                    return;
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
        job: Mutex::new(None),
        events: Mutex::new(VecDeque::new()),
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

//! The `Transport` driver trait: topics, producing and consuming.
//!
//! A transport hands out one [`Producer`], a group [`Consumer`] per worker and
//! [`PartitionReader`]s. The group consumer joins the group named by the app
//! id and reports rebalances as [`ConsumerEvent::Revoked`] then
//! [`ConsumerEvent::Assigned`]; a partition reader reads the partitions it is
//! [`assign`](PartitionReader::assign)ed outside any group (changelog
//! recovery, standbys, global tables, RPC replies).
//! Helpers built on the traits are on the `…Ext` traits ([`TransportExt`],
//! [`ProducerExt`], [`PartitionReaderExt`]), implemented for every driver.
//! Every transport must pass `faustus_testkit::transport_conformance`.

mod ext;
mod promise;
mod sequence;

pub use ext::{PartitionReaderExt, ProducerExt, TransportExt};
pub use promise::DeliveryPromise;
pub(crate) use promise::Watched;
pub use sequence::{OffsetSequence, Seen};

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::drivers::url::DriverUrl;
use crate::error::{Coordinates, Result};

/// A topic name plus a partition number.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition number (0-based).
    pub partition: u32,
}

impl TopicPartition {
    /// A topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Partitions `0..partitions` of `topic`, in order.
    pub fn all(topic: impl Into<Arc<str>>, partitions: u32) -> Vec<TopicPartition> {
        let topic: Arc<str> = topic.into();
        (0..partitions)
            .map(|p| TopicPartition::new(topic.clone(), p))
            .collect()
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Message headers: ordered name/value pairs (names may repeat, as in Kafka).
pub type Headers = Vec<(String, Bytes)>;

/// A message as read from a transport: owned, cheap to clone (`Bytes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Producer or broker timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// Raw key bytes.
    pub key: Option<Bytes>,
    /// Raw value bytes (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Headers,
}

impl Message {
    /// The message's topic, partition and offset.
    pub fn coordinates(&self) -> Coordinates {
        Coordinates {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The message's topic-partition.
    pub fn tp(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }

    /// First header with this name.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// How many broker acknowledgements a produced record waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Acks {
    /// None: delivered once it is sent (fastest, may lose records; the
    /// delivery's offset is -1, unknown).
    None,
    /// The partition leader's.
    Leader,
    /// Every in-sync replica's (Kafka's `acks=all`, the safe default).
    All,
}

impl Acks {
    /// Kafka's `acks` / `request.required.acks` value.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// A record to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Destination topic.
    pub topic: Arc<str>,
    /// Explicit partition; `None` partitions by key (murmur2) or spreads keyless records.
    pub partition: Option<u32>,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Headers,
    /// Timestamp in ms since the epoch; `None` lets the transport stamp it.
    pub timestamp_ms: Option<i64>,
    /// Acknowledgements to wait for; `None`: the transport's setting.
    /// Transports without replication (memory) ignore it.
    pub acks: Option<Acks>,
}

impl Record {
    /// A record with a key and value for `topic`.
    pub fn new(topic: impl Into<Arc<str>>, key: Option<Bytes>, value: Option<Bytes>) -> Self {
        Record {
            topic: topic.into(),
            partition: None,
            key,
            value,
            headers: Vec::new(),
            timestamp_ms: None,
            acks: None,
        }
    }
}

/// Where a produced record landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset assigned by the broker.
    pub offset: i64,
    /// Timestamp stored with the record (ms since the epoch).
    pub timestamp_ms: Option<i64>,
}

/// Resolves when the transport has acknowledged a produced record.
///
/// Returned by [`Producer::send`] (and `Topic::send`) once the record is
/// accepted. Awaiting it gives the [`RecordMetadata`] or the delivery error.
/// Dropping it does not cancel the send: [`Producer::flush`] waits for every
/// outstanding one, and a worker's commit holds the offsets of the event
/// that sent a record whose delivery failed unobserved.
pub struct Delivery {
    inner: DeliveryInner,
}

enum DeliveryInner {
    Ready(Option<Result<RecordMetadata>>),
    Pending(Pin<Box<dyn Future<Output = Result<RecordMetadata>> + Send>>),
    Promised(Arc<DeliveryPromise>),
}

impl Delivery {
    /// An already acknowledged (or failed) delivery.
    pub fn ready(result: Result<RecordMetadata>) -> Self {
        Delivery {
            inner: DeliveryInner::Ready(Some(result)),
        }
    }

    /// A delivery that completes with `fut`.
    pub fn pending(fut: impl Future<Output = Result<RecordMetadata>> + Send + 'static) -> Self {
        Delivery {
            inner: DeliveryInner::Pending(Box::pin(fut)),
        }
    }

    /// The delivery of `promise` (see [`DeliveryPromise::delivery`]).
    pub(crate) fn promised(promise: Arc<DeliveryPromise>) -> Self {
        Delivery {
            inner: DeliveryInner::Promised(promise),
        }
    }

    /// The promise behind this delivery, if a transport made one.
    pub(crate) fn promise(&self) -> Option<&Arc<DeliveryPromise>> {
        match &self.inner {
            DeliveryInner::Promised(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            DeliveryInner::Ready(r) => f.debug_tuple("Delivery::Ready").field(r).finish(),
            DeliveryInner::Pending(_) => f.write_str("Delivery::Pending"),
            DeliveryInner::Promised(p) => f.debug_tuple("Delivery::Promised").field(p).finish(),
        }
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.inner {
            DeliveryInner::Ready(r) => match r.take() {
                Some(r) => Poll::Ready(r),
                None => Poll::Ready(Err(crate::Error::State(
                    "delivery polled after completion".into(),
                ))),
            },
            DeliveryInner::Pending(f) => f.as_mut().poll(cx),
            DeliveryInner::Promised(p) => p.poll_caller(cx.waker()),
        }
    }
}

/// How a topic should be created.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Replication factor.
    pub replicas: u16,
    /// `cleanup.policy=compact`.
    pub compacting: bool,
    /// `cleanup.policy=delete` (both flags: `compact,delete`).
    pub deleting: bool,
    /// `retention.ms`.
    pub retention: Option<Duration>,
    /// Extra topic configuration passed through to the broker.
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    /// A plain topic with `partitions` partitions, replication 1, delete policy.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replicas: 1,
            compacting: false,
            deleting: true,
            retention: None,
            config: BTreeMap::new(),
        }
    }

    /// Set compaction (changelogs).
    pub fn compacted(mut self, yes: bool) -> Self {
        self.compacting = yes;
        if yes {
            self.deleting = false;
        }
        self
    }

    /// The Kafka `cleanup.policy` these flags mean.
    pub fn cleanup_policy(&self) -> &'static str {
        match (self.compacting, self.deleting) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// How a group consumer ([`Consumer`]) should behave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Consumer group to join (the app id for the worker's consumer).
    pub group_id: String,
    /// Client id to report to the broker.
    pub client_id: String,
    /// At most this many messages per [`Consumer::poll`].
    pub max_poll_records: usize,
}

impl ConsumerConfig {
    /// Group consumer config.
    pub fn group(group_id: impl Into<String>, client_id: impl Into<String>) -> Self {
        ConsumerConfig {
            group_id: group_id.into(),
            client_id: client_id.into(),
            max_poll_records: 512,
        }
    }
}

/// How a group-less [`PartitionReader`] should behave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderConfig {
    /// Client id to report to the broker.
    pub client_id: String,
    /// At most this many messages per [`PartitionReader::poll`].
    pub max_poll_records: usize,
}

impl ReaderConfig {
    /// Reader config with a client id.
    pub fn new(client_id: impl Into<String>) -> Self {
        ReaderConfig {
            client_id: client_id.into(),
            max_poll_records: 512,
        }
    }
}

/// How a producer should behave.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Client id.
    pub client_id: String,
}

impl ProducerConfig {
    /// Producer config with a client id.
    pub fn new(client_id: impl Into<String>) -> Self {
        ProducerConfig {
            client_id: client_id.into(),
        }
    }
}

/// What a group consumer's poll returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// Messages, in offset order within each partition.
    Messages(Vec<Message>),
    /// These partitions are being taken away. The caller finishes and commits
    /// them before polling again; the transport completes the revocation on
    /// the next poll.
    Revoked(Vec<TopicPartition>),
    /// These partitions were assigned; reading starts at the group's committed
    /// offset (or the beginning when there is none).
    Assigned(Vec<TopicPartition>),
    /// Nothing arrived within the poll timeout.
    Idle,
}

/// A message transport: admin, a producer, group consumers and partition
/// readers.
///
/// Helpers built on these methods are on [`TransportExt`].
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Driver name for logs and errors, e.g. `"memory"`, `"kafka"`.
    fn name(&self) -> &str;

    /// Create a topic; succeed when it exists with the same partition count,
    /// fail naming the topic and both counts when it exists with another.
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()>;

    /// The partition count of a topic, `None` when it does not exist.
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>>;

    /// A producer. Callers share it (`Arc`).
    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>>;

    /// A member of the consumer group `config.group_id` (the conductor's).
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>>;

    /// A reader of assigned partitions outside any group (table recovery,
    /// standbys, global tables, RPC replies, the cluster map).
    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>>;

    /// Whether the broker answers now: `Ok` when it does, else an error
    /// saying why (no broker reachable, authentication failing …). A
    /// running worker calls it every `broker_check_interval` and reports a
    /// failure on `/ready` (component `broker`) until a check succeeds.
    /// It should return within a few seconds. The default, for transports
    /// without a remote broker, always succeeds.
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Sends records.
///
/// Helpers built on these methods are on [`ProducerExt`].
#[async_trait]
pub trait Producer: Send + Sync + fmt::Debug + 'static {
    /// Enqueue a record. Returns once it is accepted for sending (waiting when
    /// the transport's queue is full); the [`Delivery`] resolves when the
    /// transport has acknowledged it.
    async fn send(&self, record: Record) -> Result<Delivery>;

    /// Enqueue `records` in order, as [`send`](Producer::send) does each:
    /// one delivery per record, in the same order. Transports that can take
    /// several records in one step override it (the memory broker appends a
    /// partition's run under one lock). On an error the records before the
    /// failing one may have been sent; none after it were.
    async fn send_batch(&self, records: Vec<Record>) -> Result<Vec<Delivery>> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            out.push(self.send(r).await?);
        }
        Ok(out)
    }

    /// Wait until every record enqueued before this call is acknowledged or failed.
    async fn flush(&self) -> Result<()>;
}

/// A member of a consumer group: the worker's one consumer, owned by the
/// conductor task (`&mut self`).
///
/// The group decides its partitions: [`subscribe`](Consumer::subscribe),
/// then [`poll`](Consumer::poll) reports rebalances as
/// [`ConsumerEvent::Revoked`] then [`ConsumerEvent::Assigned`] between
/// batches of messages. Reading starts at the group's committed offsets.
#[async_trait]
pub trait Consumer: Send + fmt::Debug + 'static {
    /// Join the group and subscribe to `topics` (replaces an earlier subscription).
    async fn subscribe(&mut self, topics: &[String]) -> Result<()>;

    /// Wait up to `timeout` for messages or a rebalance.
    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent>;

    /// Stop returning messages of these partitions until resumed.
    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()>;

    /// Resume paused partitions.
    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()>;

    /// Commit offsets (the next offset to read) for the group, and wait for
    /// the broker to confirm (used on revocation and shutdown).
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()>;

    /// Commit without waiting for the broker's answer (the periodic commits):
    /// a lost commit only means a later one covers the same offsets. The
    /// default waits, as [`commit`](Consumer::commit).
    async fn commit_async(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.commit(offsets).await
    }

    /// The group's committed offsets for `partitions` (`None`: nothing committed).
    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>>;

    /// The partitions the group assigned to this member.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Move this member's position in an assigned partition: the next
    /// messages of `tp` start at `offset`. The conductor uses it to fetch
    /// again when a poll skipped offsets (a broker answering a fetch with a
    /// later batch while an earlier one is not stored yet). The default
    /// refuses; the conductor then takes the gap as it is, with a warning.
    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        Err(crate::Error::State(format!(
            "this consumer cannot seek {tp} to offset {offset}"
        )))
    }

    /// Leave the group and release resources.
    async fn close(&mut self) -> Result<()>;
}

/// Reads partitions it is told to read, outside any group: no rebalances,
/// no committed offsets, nothing it does is seen by a group. Owned by one
/// task at a time (`&mut self`).
///
/// Helpers built on these methods are on [`PartitionReaderExt`].
#[async_trait]
pub trait PartitionReader: Send + fmt::Debug + 'static {
    /// Read these partitions (replaces an earlier assignment), from their
    /// beginning unless [`seek`](Self::seek) moves them. (Whether a
    /// partition that was assigned before keeps its position is the
    /// driver's choice: seek after assigning.)
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()>;

    /// Next read of the assigned `tp` starts at `offset`.
    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()>;

    /// Wait up to `timeout` for messages (in offset order within each
    /// partition); empty when nothing arrived.
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>>;

    /// The offset the next produced record of `tp` will get (the end). Any
    /// partition, assigned or not.
    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64>;

    /// The current assignment.
    fn assignment(&self) -> Vec<TopicPartition>;

    /// Release resources.
    async fn close(&mut self) -> Result<()>;
}

// Forwarding impls, so `Arc<dyn Transport>`, `Box<dyn Consumer>` … (and
// `Arc<MyTransport>`) can be passed wherever `impl Transport` is asked for.
// Every method forwards, provided ones too, so a driver's override is kept.

/// Builds a transport from its URL.
pub type TransportFactory =
    Arc<dyn Fn(&DriverUrl) -> Result<Arc<dyn Transport>> + Send + Sync + 'static>;

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
//! `poll`), the callback queues `Revoked` after the messages already
//! gathered ahead of the caller (see the `worker` module), and then *stays
//! in the callback*, handing those and `Revoked` to the caller's polls and
//! serving its commands — `commit` (which works, the partitions are still
//! assigned), `committed`, `pause` … — until the caller polls again after
//! `Revoked`. That poll ends the
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
//! # Partition readers
//!
//! The same thread and commands serve a [`PartitionReader`], made without
//! the app's group: it only reads what is [`assign`]ed (recovery, standbys,
//! global tables, RPC replies): from the beginning, or from a [`seek`] position,
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
//! [`assign`]: PartitionReader::assign
//! [`seek`]: PartitionReader::seek
//! [`high_watermark`]: PartitionReader::high_watermark

mod ops;
mod worker;

use std::fmt;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_trait::async_trait;
use faustus_core::transport::{Consumer, ConsumerEvent, Message, PartitionReader, TopicPartition};
use faustus_core::{Error, Result};
use parking_lot::Mutex;
use rdkafka::ClientConfig;
use tokio::sync::oneshot;

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
    Commit(
        Vec<(TopicPartition, i64)>,
        rdkafka::consumer::CommitMode,
        Reply<()>,
    ),
    Committed(Vec<TopicPartition>, Reply<Vec<Option<i64>>>),
    HighWatermark(TopicPartition, Reply<i64>),
    Close(Reply<()>),
}

/// How the thread's consumer was configured.
pub(crate) struct Settings {
    pub(crate) client: String,
    /// The transport's shared client state (URL for logs, token provider).
    pub(crate) shared: Arc<crate::context::Shared>,
    pub(crate) group: bool,
    pub(crate) max_poll_records: usize,
    pub(crate) operation_timeout: Duration,
    /// Base configuration for the high-water-mark probe.
    pub(crate) probe_config: ClientConfig,
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
        worker::spawn(config, settings, rx, assignment.clone())?;
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

impl KafkaConsumer {
    /// A poll whose answer survives the future being dropped.
    async fn poll_event(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
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

    fn current_assignment(&self) -> Vec<TopicPartition> {
        self.assignment.lock().clone()
    }

    async fn shut(&mut self) -> Result<()> {
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

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        let topics = topics.to_vec();
        self.call(|r| Cmd::Subscribe(topics, r)).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        self.poll_event(timeout).await
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
        self.call(|r| Cmd::Commit(offsets, rdkafka::consumer::CommitMode::Sync, r))
            .await
    }

    async fn commit_async(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let offsets = offsets.to_vec();
        self.call(|r| Cmd::Commit(offsets, rdkafka::consumer::CommitMode::Async, r))
            .await
    }

    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Committed(tps, r)).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.current_assignment()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let tp = tp.clone();
        self.call(|r| Cmd::Seek(tp, offset, r)).await
    }

    async fn close(&mut self) -> Result<()> {
        self.shut().await
    }
}

#[async_trait]
impl PartitionReader for KafkaConsumer {
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let tps = partitions.to_vec();
        self.call(|r| Cmd::Assign(tps, r)).await
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        let tp = tp.clone();
        self.call(|r| Cmd::Seek(tp, offset, r)).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        match self.poll_event(timeout).await? {
            ConsumerEvent::Messages(messages) => Ok(messages),
            // Without a group nothing is revoked or assigned.
            _ => Ok(Vec::new()),
        }
    }

    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        let tp = tp.clone();
        self.call(|r| Cmd::HighWatermark(tp, r)).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.current_assignment()
    }

    async fn close(&mut self) -> Result<()> {
        self.shut().await
    }
}

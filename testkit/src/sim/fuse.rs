//! Drivers with a fuse: once it blows, every call that would reach the
//! broker or the store never returns. That is how the simulator crashes a
//! worker: whatever the worker was doing stops having effects at once — no
//! commit, no flush, no changelog write, no store write — and its group
//! membership lapses when its session times out, as a killed process's does.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::store::{Store, TableSpec, TableStore, WriteBatch};
use faustus_core::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, Delivery, Message, PartitionReader, Producer,
    ProducerConfig, ReaderConfig, Record, TopicPartition, TopicSpec, Transport,
};
use faustus_core::Result;
use tokio::sync::watch;

/// Blows once; cheap to clone.
#[derive(Clone)]
pub(crate) struct Fuse {
    tx: Arc<watch::Sender<bool>>,
}

impl fmt::Debug for Fuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fuse(blown: {})", self.is_blown())
    }
}

impl Fuse {
    pub(crate) fn new() -> Self {
        Fuse {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    pub(crate) fn blow(&self) {
        self.tx.send_replace(true);
    }

    pub(crate) fn is_blown(&self) -> bool {
        *self.tx.borrow()
    }

    /// Run `fut` unless the fuse blows first (before or during it); once
    /// blown, never return.
    async fn guard<T>(&self, fut: impl Future<Output = T>) -> T {
        let mut rx = self.tx.subscribe();
        let out = tokio::select! {
            biased;
            _ = rx.wait_for(|b| *b) => None,
            out = fut => Some(out),
        };
        match out {
            Some(out) if !self.is_blown() => out,
            _ => std::future::pending().await,
        }
    }
}

/// A transport whose calls stop when the fuse blows. Group-less consumers
/// (changelog readers) wait `fetch_delay` before each poll, so recovery takes
/// virtual time and rebalances can land in the middle of it.
#[derive(Debug)]
pub(crate) struct FusedTransport {
    pub(crate) inner: Arc<dyn Transport>,
    pub(crate) fuse: Fuse,
    pub(crate) fetch_delay: Duration,
}

#[async_trait]
impl Transport for FusedTransport {
    fn name(&self) -> &str {
        "sim"
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.fuse.guard(self.inner.create_topic(spec)).await
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.fuse.guard(self.inner.partition_count(topic)).await
    }

    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        let inner = self.fuse.guard(self.inner.producer(config)).await?;
        Ok(Arc::new(FusedProducer {
            inner,
            fuse: self.fuse.clone(),
        }))
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let inner = self.fuse.guard(self.inner.consumer(config)).await?;
        Ok(Box::new(FusedConsumer {
            inner,
            fuse: self.fuse.clone(),
        }))
    }

    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        let inner = self.fuse.guard(self.inner.reader(config)).await?;
        Ok(Box::new(FusedReader {
            inner,
            fuse: self.fuse.clone(),
            fetch_delay: self.fetch_delay,
        }))
    }
}

#[derive(Debug)]
struct FusedProducer {
    inner: Arc<dyn Producer>,
    fuse: Fuse,
}

#[async_trait]
impl Producer for FusedProducer {
    async fn send(&self, record: Record) -> Result<Delivery> {
        self.fuse.guard(self.inner.send(record)).await
    }

    async fn flush(&self) -> Result<()> {
        self.fuse.guard(self.inner.flush()).await
    }
}

#[derive(Debug)]
struct FusedConsumer {
    inner: Box<dyn Consumer>,
    fuse: Fuse,
}

#[async_trait]
impl Consumer for FusedConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        self.fuse.guard(self.inner.subscribe(topics)).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        self.fuse.guard(self.inner.poll(timeout)).await
    }

    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.fuse.guard(self.inner.pause(partitions)).await
    }

    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.fuse.guard(self.inner.resume(partitions)).await
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.fuse.guard(self.inner.commit(offsets)).await
    }

    async fn commit_async(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.fuse.guard(self.inner.commit_async(offsets)).await
    }

    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        self.fuse.guard(self.inner.committed(partitions)).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.fuse.guard(self.inner.seek(tp, offset)).await
    }

    async fn close(&mut self) -> Result<()> {
        self.fuse.guard(self.inner.close()).await
    }
}

/// A partition reader whose calls stop when the fuse blows; each poll
/// first takes `fetch_delay` of (virtual) time, so recovery and standby
/// reads take time and joins and crashes land in the middle of them.
#[derive(Debug)]
struct FusedReader {
    inner: Box<dyn PartitionReader>,
    fuse: Fuse,
    fetch_delay: Duration,
}

#[async_trait]
impl PartitionReader for FusedReader {
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.fuse.guard(self.inner.assign(partitions)).await
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.fuse.guard(self.inner.seek(tp, offset)).await
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        if !self.fetch_delay.is_zero() {
            self.fuse.guard(tokio::time::sleep(self.fetch_delay)).await;
        }
        self.fuse.guard(self.inner.poll(timeout)).await
    }

    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        self.fuse.guard(self.inner.high_watermark(tp)).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }

    async fn close(&mut self) -> Result<()> {
        self.fuse.guard(self.inner.close()).await
    }
}

/// A store whose calls stop when the fuse blows.
#[derive(Debug)]
pub(crate) struct FusedStore {
    pub(crate) inner: Arc<dyn Store>,
    pub(crate) fuse: Fuse,
}

#[async_trait]
impl Store for FusedStore {
    fn name(&self) -> &str {
        "sim"
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        let inner = self.fuse.guard(self.inner.open(table)).await?;
        Ok(Arc::new(FusedTableStore {
            inner,
            fuse: self.fuse.clone(),
        }))
    }
}

#[derive(Debug)]
struct FusedTableStore {
    inner: Arc<dyn TableStore>,
    fuse: Fuse,
}

#[async_trait]
impl TableStore for FusedTableStore {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.fuse.guard(self.inner.get(partition, key)).await
    }

    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.fuse.guard(self.inner.apply(partition, batch)).await
    }

    async fn apply_partitions(&self, batches: Vec<(u32, WriteBatch)>) -> Result<()> {
        self.fuse.guard(self.inner.apply_partitions(batches)).await
    }

    async fn apply_replayed(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.fuse
            .guard(self.inner.apply_replayed(partition, batch))
            .await
    }

    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.fuse
            .guard(self.inner.scan(partition, after, limit))
            .await
    }

    async fn len(&self, partition: u32) -> Result<u64> {
        self.fuse.guard(self.inner.len(partition)).await
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        self.fuse
            .guard(self.inner.persisted_offset(partition))
            .await
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        self.fuse.guard(self.inner.drop_partition(partition)).await
    }

    async fn reset(&self) -> Result<()> {
        self.fuse.guard(self.inner.reset()).await
    }

    async fn sync(&self) -> Result<()> {
        self.fuse.guard(self.inner.sync()).await
    }
}

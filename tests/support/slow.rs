//! Test drivers: a memory transport whose partition readers (recovery,
//! standbys) read slowly, and a memory store that records every batch applied
//! (and can hold its writes at a gate).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use faustus::store::{Store, TableSpec, TableStore, WriteBatch};
use faustus::transport::{
    Consumer, ConsumerConfig, Message, PartitionReader, Producer, ProducerConfig, ReaderConfig,
    TopicPartition, TopicSpec, Transport,
};
use faustus::{Registry, Result};
use parking_lot::Mutex;

/// A named memory broker whose partition readers read at most `per_poll`
/// records per poll, each poll taking `delay` (virtual time in tests).
#[derive(Debug)]
pub struct SlowTransport {
    inner: Arc<dyn Transport>,
    per_poll: usize,
    delay: Duration,
}

#[derive(Debug)]
struct SlowReader {
    inner: Box<dyn PartitionReader>,
    delay: Duration,
}

#[async_trait]
impl Transport for SlowTransport {
    fn name(&self) -> &str {
        "slow"
    }
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.inner.create_topic(spec).await
    }
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.inner.partition_count(topic).await
    }
    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        self.inner.producer(config).await
    }
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        self.inner.consumer(config).await
    }
    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        if config.client_id.ends_with("-cluster") {
            return self.inner.reader(config).await;
        }
        let mut config = config.clone();
        config.max_poll_records = self.per_poll;
        Ok(Box::new(SlowReader {
            inner: self.inner.reader(&config).await?,
            delay: self.delay,
        }))
    }
}

#[async_trait]
impl PartitionReader for SlowReader {
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.assign(partitions).await
    }
    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.inner.seek(tp, offset).await
    }
    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        tokio::time::sleep(self.delay).await;
        self.inner.poll(timeout).await
    }
    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        self.inner.high_watermark(tp).await
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

/// One applied batch: partition, number of ops, offset.
pub type Applied = (u32, usize, Option<i64>);

/// A memory store that records every batch applied to each table.
#[derive(Debug, Default)]
pub struct RecordingStore {
    inner: faustus_store_memory::MemoryStore,
    /// (table, partition, ops, offset) in the order applied.
    pub log: Arc<Mutex<Vec<(String, Applied)>>>,
    gate: Gate,
}

/// Holds writes while closed (no gate: always open).
#[derive(Debug, Clone, Default)]
struct Gate {
    open: Option<tokio::sync::watch::Receiver<bool>>,
    /// Writes that reached the gate.
    reached: Arc<AtomicUsize>,
}

impl Gate {
    async fn pass(&self) {
        if let Some(open) = &self.open {
            self.reached.fetch_add(1, Ordering::SeqCst);
            let _ = open.clone().wait_for(|o| *o).await;
        }
    }
}

impl RecordingStore {
    /// A recording store whose writes (`apply`) wait while `open` is false;
    /// `reached` counts the writes that came to the gate.
    pub fn gated(open: tokio::sync::watch::Receiver<bool>, reached: Arc<AtomicUsize>) -> Self {
        RecordingStore {
            gate: Gate {
                open: Some(open),
                reached,
            },
            ..RecordingStore::default()
        }
    }
}

#[derive(Debug)]
struct RecordingTable {
    name: String,
    inner: Arc<dyn TableStore>,
    log: Arc<Mutex<Vec<(String, Applied)>>>,
    gate: Gate,
}

#[async_trait]
impl Store for RecordingStore {
    fn name(&self) -> &str {
        "recording"
    }
    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        Ok(Arc::new(RecordingTable {
            name: table.name.clone(),
            inner: self.inner.open(table).await?,
            log: self.log.clone(),
            gate: self.gate.clone(),
        }))
    }
}

#[async_trait]
impl TableStore for RecordingTable {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(partition, key).await
    }
    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        let entry = (
            self.name.clone(),
            (partition, batch.ops.len(), batch.offset),
        );
        self.gate.pass().await;
        self.inner.apply(partition, batch).await?;
        self.log.lock().push(entry);
        Ok(())
    }
    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.inner.scan(partition, after, limit).await
    }
    async fn len(&self, partition: u32) -> Result<u64> {
        self.inner.len(partition).await
    }
    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        self.inner.persisted_offset(partition).await
    }
    async fn drop_partition(&self, partition: u32) -> Result<()> {
        self.inner.drop_partition(partition).await
    }
    async fn reset(&self) -> Result<()> {
        self.inner.reset().await
    }
}

/// The recording stores created through a registry, in creation order.
pub type Stores = Arc<Mutex<Vec<Arc<Mutex<Vec<(String, Applied)>>>>>>;

/// A registry with the default drivers plus `slow://` (slow group-less
/// consumers on the named memory broker `broker`, members removed after 5 s
/// without polling during a rebalance) and `recording://` (a fresh
/// recording memory store per app; their logs land in the returned list).
pub fn slow_registry(broker: &str, per_poll: usize, delay: Duration) -> (Registry, Stores) {
    let registry = Registry::new();
    faustus::register_default_drivers(&registry);
    let name = broker.to_string();
    registry.register_transport(
        "slow",
        Arc::new(move |_url| {
            Ok(Arc::new(SlowTransport {
                inner: Arc::new(faustus_transport_memory::MemoryTransport::from_url(
                    &faustus::DriverUrl::parse(
                        "broker",
                        &format!("memory://{name}?rebalance_timeout_ms=5000"),
                    )?,
                )?),
                per_poll,
                delay,
            }))
        }),
    );
    let stores: Stores = Default::default();
    let list = stores.clone();
    registry.register_store(
        "recording",
        Arc::new(move |_url, _ctx| {
            let store = RecordingStore::default();
            list.lock().push(store.log.clone());
            Ok(Arc::new(store))
        }),
    );
    (registry, stores)
}

/// Check that the batches applied to `partition` of `table` continue each
/// other exactly from offset `from` (no record applied twice, none skipped,
/// on a changelog without gaps) and end at `to`; returns the records applied.
pub fn assert_contiguous(
    log: &[(String, Applied)],
    table: &str,
    partition: u32,
    from: i64,
    to: i64,
) -> usize {
    let mut next = from;
    let mut n = 0;
    for (t, (p, ops, offset)) in log {
        if t != table || *p != partition {
            continue;
        }
        let Some(offset) = offset else { continue };
        assert_eq!(
            *offset,
            next + *ops as i64 - 1,
            "{table}[{partition}]: a batch of {ops} ops ending at {offset} does not start at {next}"
        );
        next = offset + 1;
        n += ops;
    }
    assert_eq!(
        next,
        to + 1,
        "{table}[{partition}] applied up to {}",
        next - 1
    );
    n
}

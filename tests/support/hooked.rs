//! A named memory broker whose group consumers' polls pass through a hook:
//! fail before polling, or change what a poll returned (faults a real broker
//! shows now and then, made deterministic).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faustus::transport::{
    Consumer, ConsumerConfig, ConsumerEvent, PartitionReader, Producer, ProducerConfig,
    ReaderConfig, TopicSpec, Transport,
};
use faustus::{Error, Result, TopicPartition};
use faustus_transport_memory::MemoryTransport;

/// What happens around each poll of a group consumer.
pub trait PollHook: Send + Sync + std::fmt::Debug + 'static {
    /// An error to fail the poll with instead of polling.
    fn before(&self) -> Option<Error> {
        None
    }
    /// Change what the poll returned.
    fn after(&self, _event: &mut ConsumerEvent) {}
}

/// Takes one from `n` unless it is zero (`usize::MAX` stays): whether it
/// did, i.e. whether a fault planned `n` times happens now.
pub fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
        0 => None,
        usize::MAX => Some(n),
        n => Some(n - 1),
    })
    .is_ok()
}

/// The named memory broker `name`, its group consumers hooked.
#[derive(Debug, Clone)]
pub struct Hooked {
    pub name: String,
    pub hook: Arc<dyn PollHook>,
    /// Group consumers created so far.
    pub consumers: Arc<AtomicUsize>,
}

impl Hooked {
    pub fn new(name: String, hook: Arc<dyn PollHook>) -> Self {
        Hooked {
            name,
            hook,
            consumers: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// An app (`app_with`) on this broker, registered as scheme `scheme`.
    pub fn app(&self, scheme: &str, id: &str) -> faustus::AppBuilder {
        let registry = faustus::Registry::new();
        faustus::register_default_drivers(&registry);
        let me = self.clone();
        registry.register_transport(
            scheme,
            Arc::new(move |_url| Ok(Arc::new(me.clone()) as Arc<dyn Transport>)),
        );
        super::app_with(&registry, id, &format!("{scheme}://"), "memory://")
    }

    fn memory(&self) -> MemoryTransport {
        MemoryTransport::named(&self.name)
    }
}

#[async_trait]
impl Transport for Hooked {
    fn name(&self) -> &str {
        "hooked"
    }
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.memory().create_topic(spec).await
    }
    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.memory().partition_count(topic).await
    }
    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        self.memory().producer(config).await
    }
    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        self.consumers.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(HookedConsumer {
            inner: self.memory().consumer(config).await?,
            hook: self.hook.clone(),
        }))
    }
    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        self.memory().reader(config).await
    }
}

#[derive(Debug)]
struct HookedConsumer {
    inner: Box<dyn Consumer>,
    hook: Arc<dyn PollHook>,
}

#[async_trait]
impl Consumer for HookedConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        self.inner.subscribe(topics).await
    }
    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        if let Some(e) = self.hook.before() {
            return Err(e);
        }
        let mut event = self.inner.poll(timeout).await?;
        self.hook.after(&mut event);
        Ok(event)
    }
    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.pause(partitions).await
    }
    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.inner.resume(partitions).await
    }
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.inner.commit(offsets).await
    }
    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        self.inner.committed(partitions).await
    }
    fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.assignment()
    }
    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.inner.seek(tp, offset).await
    }
    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
mod config;
mod consumer;
mod context;
mod error;
mod producer;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use faustus_core::transport::{
    Consumer, ConsumerConfig, PartitionReader, Producer, ProducerConfig, ReaderConfig, TopicSpec,
    Transport,
};
use faustus_core::{DriverUrl, Registry, Result, TransportContext};
use rdkafka::ClientConfig;

pub use config::{credential_properties, ClientRole, KafkaConfig};

use crate::admin::Admin;
use crate::consumer::{KafkaConsumer, Settings};
use crate::context::{LogContext, Shared};
use crate::producer::KafkaProducer;

/// The URL scheme of this transport: `kafka://host:9092;host2:9092`.
pub const SCHEME: &str = "kafka";

/// Register the `kafka` transport scheme in `registry` (it takes the app's
/// `broker_credentials` from the [`TransportContext`]).
pub fn register(registry: &Registry) {
    registry.register_transport_with_context(
        SCHEME,
        Arc::new(|url, ctx| {
            Ok(Arc::new(KafkaTransport::from_url_with(url, ctx)?) as Arc<dyn Transport>)
        }),
    );
}

/// The Kafka transport: admin, producers and consumers on librdkafka.
///
/// Building one connects to nothing; the first operation waits (with
/// backoff, up to `connect_timeout_ms`) until a broker answers.
#[derive(Clone)]
pub struct KafkaTransport {
    config: Arc<KafkaConfig>,
    admin: Arc<Admin>,
    shared: Arc<Shared>,
}

impl fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl KafkaTransport {
    /// A transport for a parsed configuration.
    pub fn from_config(config: KafkaConfig) -> Self {
        let config = Arc::new(config);
        let tokens = config
            .credentials
            .as_ref()
            .and_then(|c| c.token_provider().cloned());
        let shared = Shared::new(config.url.clone(), tokens);
        KafkaTransport {
            admin: Arc::new(Admin::new(config.clone(), shared.clone())),
            config,
            shared,
        }
    }

    /// A transport for a `kafka://` URL (no credentials).
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        Ok(Self::from_config(KafkaConfig::from_url(url)?))
    }

    /// A transport for a `kafka://` URL with the context's credentials.
    pub fn from_url_with(url: &DriverUrl, ctx: &TransportContext) -> Result<Self> {
        Ok(Self::from_config(KafkaConfig::from_url_with(url, ctx)?))
    }

    /// The configuration this transport was built with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.config.client_config(ClientRole::Producer);
        // Kafka's Java client partitions keyed records by murmur2; keyless
        // records go to a random partition.
        set_default(&mut c, "partitioner", "murmur2_random");
        // The app creates every topic it writes to with the partition count
        // it needs; a broker auto-creating one (with its own default count)
        // for a queued record, e.g. after it lost its topics, would break
        // copartitioning. The record waits for the app's topic instead.
        set_default(&mut c, "allow.auto.create.topics", "false");
        c.set("client.id", client_id);
        c
    }

    /// What group members and partition readers share.
    fn base_consumer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.config.client_config(ClientRole::Consumer);
        c.set("client.id", client_id);
        // The conductor commits what is fully processed; nothing else may.
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        set_default(&mut c, "auto.offset.reset", "earliest");
        for (key, value) in CONSUMER_FETCH_DEFAULTS {
            set_default(&mut c, key, value);
        }
        c
    }

    fn consumer_config(&self, config: &ConsumerConfig) -> ClientConfig {
        let mut c = self.base_consumer_config(&config.client_id);
        c.set("group.id", &config.group_id);
        // Range assignment gives partition N of every subscribed topic
        // with the same partition count to the same member, which keeps
        // a table's source topic and changelog (and repartition topics)
        // copartitioned. It is also an eager protocol, whose
        // revoke-then-assign matches ConsumerEvent.
        c.set("partition.assignment.strategy", "range");
        c
    }

    fn reader_config(&self, config: &ReaderConfig) -> ClientConfig {
        let mut c = self.base_consumer_config(&config.client_id);
        // librdkafka refuses `assign` without a group id. This private,
        // unique id is never subscribed or committed with (a reader has no
        // commit), so the real group is never disturbed.
        c.set("group.id", private_group_id(&config.client_id));
        c
    }

    /// Start a consumer thread: a group member (`group`) or a reader.
    async fn start_consumer(
        &self,
        client_config: &ClientConfig,
        client_id: &str,
        max_poll_records: usize,
        group: Option<String>,
    ) -> Result<KafkaConsumer> {
        self.admin.ready().await?;
        let settings = Settings {
            client: client_id.to_string(),
            shared: self.shared.clone(),
            group: group.is_some(),
            max_poll_records,
            operation_timeout: self.config.operation_timeout,
            probe_config: self.config.client_config(ClientRole::Consumer),
        };
        KafkaConsumer::start(client_config, settings, group)
    }
}

/// A group id no other consumer uses (for assign-only consumers).
pub(crate) fn private_group_id(client_id: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "faustus-assign-only-{client_id}-{}-{nanos}-{n}",
        std::process::id()
    )
}

/// Fetch settings of every consumer (group members and partition readers)
/// unless the URL sets them: throughput with bounded memory.
///
/// * `fetch.queue.backoff.ms=10` (librdkafka: 1000): once a partition's
///   prefetched queue is over its threshold, librdkafka waits this long
///   before it fetches that partition again. The consumer thread drains the
///   queue continuously, so at librdkafka's default a fast consumer emptied
///   it and then starved for the rest of the second: on tansu a pass-through
///   agent ran at 175k events/s with 1000 ms and 790–880k with 10 ms (same
///   run). A check every 10 ms costs a timer, not a request.
/// * `queued.min.messages=10000` (librdkafka: 100000) per partition and
///   `queued.max.messages.kbytes=16384` (librdkafka: 65536) in all: how much
///   librdkafka prefetches. Each prefetched message also costs librdkafka
///   a few hundred bytes of bookkeeping, so the defaults let a worker with
///   small messages hold hundreds of MiB; these keep it to tens, and were
///   as fast in the same measurement (a fetch answer holds up to
///   `max.partition.fetch.bytes`, 1 MiB, per partition).
pub const CONSUMER_FETCH_DEFAULTS: [(&str, &str); 3] = [
    ("fetch.queue.backoff.ms", "10"),
    ("queued.min.messages", "10000"),
    ("queued.max.messages.kbytes", "16384"),
];

fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

#[async_trait]
impl Transport for KafkaTransport {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.admin.create_topic(spec).await
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        self.admin.partition_count(topic).await
    }

    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        self.admin.ready().await?;
        let client_config = self.producer_config(&config.client_id);
        let context =
            producer::DeliveryContext(LogContext::new(config.client_id.clone(), &self.shared));
        let inner = client_config
            .create_with_context(context.clone())
            .map_err(|e| error::kafka(format!("create producer {:?}", config.client_id), e))?;
        Ok(Arc::new(KafkaProducer {
            inner,
            client_id: config.client_id.clone(),
            default_acks: client_config
                .get("acks")
                .or_else(|| client_config.get("request.required.acks"))
                .map(str::to_string),
            client_config,
            context,
            by_acks: std::sync::Mutex::new(std::collections::HashMap::new()),
        }))
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        let consumer = self
            .start_consumer(
                &self.consumer_config(config),
                &config.client_id,
                config.max_poll_records,
                Some(config.group_id.clone()),
            )
            .await?;
        Ok(Box::new(consumer))
    }

    async fn check(&self) -> Result<()> {
        self.admin.check().await
    }

    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        let consumer = self
            .start_consumer(
                &self.reader_config(config),
                &config.client_id,
                config.max_poll_records,
                None,
            )
            .await?;
        Ok(Box::new(consumer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(url: &str) -> KafkaTransport {
        KafkaTransport::from_url(&DriverUrl::parse("broker", url).unwrap()).unwrap()
    }

    #[test]
    fn registry_builds_kafka_transports() {
        let registry = Registry::new();
        register(&registry);
        let t = registry
            .transport(&DriverUrl::parse("broker", "kafka://localhost:9092").unwrap())
            .unwrap();
        assert_eq!(t.name(), "kafka");
        let e = registry
            .transport(&DriverUrl::parse("broker", "kafka://h?bogus.option=1").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("bogus.option"), "{e}");
    }

    #[test]
    fn client_configs() {
        let t = transport(
            "kafka://a:1;b:2?acks=all&auto.offset.reset=latest&linger.ms=5&fetch.min.bytes=2",
        );
        let p = t.producer_config("p1");
        assert_eq!(p.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(p.get("partitioner"), Some("murmur2_random"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("client.id"), Some("p1"));
        // Only its own properties: a consumer option would be a CONFWARN.
        assert_eq!(p.get("linger.ms"), Some("5"));
        assert_eq!(p.get("fetch.min.bytes"), None);
        assert_eq!(p.get("auto.offset.reset"), None);
        let g = t.consumer_config(&ConsumerConfig::group("app-1", "w1"));
        assert_eq!(g.get("group.id"), Some("app-1"));
        assert_eq!(g.get("enable.auto.commit"), Some("false"));
        assert_eq!(g.get("partition.assignment.strategy"), Some("range"));
        assert_eq!(g.get("fetch.min.bytes"), Some("2"));
        assert_eq!(g.get("acks"), None);
        assert_eq!(g.get("linger.ms"), None);
        // An explicit URL option wins over the driver's default.
        assert_eq!(g.get("auto.offset.reset"), Some("latest"));
        let r = t.reader_config(&ReaderConfig::new("r"));
        let private = r.get("group.id").unwrap();
        assert!(private.starts_with("faustus-assign-only-r-"), "{private}");
        assert_eq!(r.get("partition.assignment.strategy"), None);
        let t = transport("kafka://a:1");
        let g = t.consumer_config(&ConsumerConfig::group("app-1", "w1"));
        assert_eq!(g.get("auto.offset.reset"), Some("earliest"));
        // Throughput-oriented fetch defaults, for readers too …
        for c in [&g, &t.reader_config(&ReaderConfig::new("r"))] {
            assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
            assert_eq!(c.get("queued.min.messages"), Some("10000"));
            assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        }
        // … which the URL overrides.
        let t = transport("kafka://a:1?fetch.queue.backoff.ms=500&queued.min.messages=7");
        let g = t.consumer_config(&ConsumerConfig::group("app-1", "w1"));
        assert_eq!(g.get("fetch.queue.backoff.ms"), Some("500"));
        assert_eq!(g.get("queued.min.messages"), Some("7"));
        assert_eq!(g.get("queued.max.messages.kbytes"), Some("16384"));
    }
}

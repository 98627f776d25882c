#![doc = include_str!("../README.md")]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod broker;
mod config;
mod consumer;
mod group;
mod producer;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use faustus_core::transport::{
    Consumer, ConsumerConfig, PartitionReader, Producer, ProducerConfig, ReaderConfig, TopicSpec,
    Transport, TransportFactory,
};
use faustus_core::{DriverUrl, Registry, Result};

pub use broker::MemoryBroker;
pub use config::MemoryConfig;
pub use group::Expulsion;

use crate::broker::Broker;
use crate::consumer::MemoryConsumer;
use crate::producer::MemoryProducer;

/// The URL scheme of this transport: `memory://`.
pub const SCHEME: &str = "memory";

/// Register the `memory` transport scheme in `registry`.
///
/// `memory://` builds a transport on a fresh private broker on every call;
/// `memory://NAME` uses the process-wide broker `NAME`.
pub fn register(registry: &Registry) {
    let factory: TransportFactory =
        Arc::new(|url| Ok(Arc::new(MemoryTransport::from_url(url)?) as Arc<dyn Transport>));
    registry.register_transport(SCHEME, factory);
}

/// The in-process transport: a [`Transport`] over a [`MemoryBroker`].
#[derive(Clone)]
pub struct MemoryTransport {
    broker: Arc<Broker>,
    config: MemoryConfig,
}

impl fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTransport")
            .field("broker", &self.broker.name())
            .field("config", &self.config)
            .finish()
    }
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTransport {
    /// A transport on a new private broker, with default options.
    pub fn new() -> Self {
        Self::from_config(MemoryConfig::default())
    }

    /// A transport on the process-wide broker `name` (as `memory://NAME`).
    ///
    /// A named broker is created on first use and lives until the process
    /// exits, so a worker that is stopped and started again finds its data;
    /// tests should use unique names.
    pub fn named(name: &str) -> Self {
        Self::from_config(MemoryConfig {
            name: Some(name.to_string()),
            ..MemoryConfig::default()
        })
    }

    /// A transport for a parsed configuration.
    pub fn from_config(config: MemoryConfig) -> Self {
        let broker = match &config.name {
            Some(name) => Broker::named(name),
            None => Arc::new(Broker::new(None)),
        };
        MemoryTransport { broker, config }
    }

    /// A transport for a `memory://` URL.
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        Ok(Self::from_config(MemoryConfig::from_url(url)?))
    }

    /// A transport on an existing broker (its `name` in `config` is ignored).
    pub fn with_broker(broker: &MemoryBroker, config: MemoryConfig) -> Self {
        MemoryTransport {
            broker: broker.inner.clone(),
            config,
        }
    }

    /// The broker, for inspection in tests.
    pub fn broker(&self) -> MemoryBroker {
        MemoryBroker {
            inner: self.broker.clone(),
        }
    }

    /// The options this transport was built with.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        self.broker.create_topic(&spec.name, spec.partitions)
    }

    async fn partition_count(&self, topic: &str) -> Result<Option<u32>> {
        Ok(self.broker.topic(topic).map(|t| t.partition_count()))
    }

    async fn producer(&self, config: &ProducerConfig) -> Result<Arc<dyn Producer>> {
        Ok(Arc::new(MemoryProducer {
            broker: self.broker.clone(),
            client_id: config.client_id.clone(),
            default_partitions: self.config.partitions,
        }))
    }

    async fn consumer(&self, config: &ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(Box::new(self.new_consumer(
            Some(config.group_id.clone()),
            &config.client_id,
            config.max_poll_records,
        )))
    }

    async fn reader(&self, config: &ReaderConfig) -> Result<Box<dyn PartitionReader>> {
        Ok(Box::new(self.new_consumer(
            None,
            &config.client_id,
            config.max_poll_records,
        )))
    }
}

impl MemoryTransport {
    /// A group member (`group`) or a partition reader (`None`).
    fn new_consumer(
        &self,
        group: Option<String>,
        client_id: &str,
        max_poll_records: usize,
    ) -> MemoryConsumer {
        MemoryConsumer::new(
            self.broker.clone(),
            group,
            client_id.to_string(),
            max_poll_records,
            self.config.partitions,
            group::Timeouts {
                rebalance: self.config.rebalance_timeout,
                session: self.config.session_timeout,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faustus_core::Error;

    fn url(s: &str) -> DriverUrl {
        DriverUrl::parse("broker", s).unwrap()
    }

    #[tokio::test]
    async fn registry_maps_urls_to_brokers() {
        let registry = Registry::new();
        register(&registry);
        assert!(registry.has_transport(SCHEME));

        // Empty authority: a private broker per factory call.
        let a = registry.transport(&url("memory://")).unwrap();
        let b = registry.transport(&url("memory://")).unwrap();
        assert_eq!(a.name(), "memory");
        a.create_topic(&TopicSpec::new("t", 2)).await.unwrap();
        assert_eq!(a.partition_count("t").await.unwrap(), Some(2));
        assert_eq!(b.partition_count("t").await.unwrap(), None);

        // A name: one process-wide broker.
        let name = format!("lib-test-{}", std::process::id());
        let c = registry
            .transport(&url(&format!("memory://{name}")))
            .unwrap();
        let d = registry
            .transport(&url(&format!("memory://{name}?partitions=3")))
            .unwrap();
        c.create_topic(&TopicSpec::new("shared", 5)).await.unwrap();
        assert_eq!(d.partition_count("shared").await.unwrap(), Some(5));
        assert_eq!(
            MemoryTransport::named(&name).broker().topics(),
            vec!["shared"]
        );
    }

    #[test]
    fn registry_reports_bad_options() {
        let registry = Registry::new();
        register(&registry);
        let e = registry
            .transport(&url("memory://?partitions=x"))
            .unwrap_err();
        assert!(
            matches!(e, Error::Config { ref setting, .. } if setting == "memory.partitions"),
            "{e}"
        );
        let e = registry.transport(&url("memory://?bogus=1")).unwrap_err();
        assert!(
            e.to_string()
                .contains("partitions, rebalance_timeout_ms, session_timeout_ms"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn auto_created_topics_use_the_url_partition_count() {
        let t = MemoryTransport::from_url(&url("memory://?partitions=3")).unwrap();
        let p = t.producer(&ProducerConfig::new("p")).await.unwrap();
        p.send(faustus_core::transport::Record::new(
            "auto",
            None,
            Some("v".into()),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
        assert_eq!(t.broker().partition_count("auto"), Some(3));
        let e = t
            .create_topic(&TopicSpec::new("auto", 4))
            .await
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("auto") && s.contains('3') && s.contains('4'),
            "{s}"
        );
    }
}

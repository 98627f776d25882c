//! A topic as the app defines it, whatever its types: name, partitions,
//! codecs and options ([`TopicDef`]), its creation on the transport, and the
//! raw send every typed handle, agent, table and forwarder goes through
//! (tracking the delivery for the commit). The typed handle, `Topic<K, V>`,
//! is in `stream/topic.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::app::AppInner;
use crate::drivers::codec::CodecChain;
use crate::drivers::transport::{Acks, Delivery, Headers, Record, TopicSpec};
use crate::error::{Error, Result};

/// The untyped description of a topic, shared by every handle to it.
#[derive(Debug)]
pub(crate) struct TopicDef {
    pub(crate) name: Arc<str>,
    pub(crate) partitions: Option<u32>,
    pub(crate) replicas: Option<u16>,
    pub(crate) retention: Option<Duration>,
    pub(crate) compacting: bool,
    pub(crate) deleting: bool,
    pub(crate) internal: bool,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) acks: Option<Acks>,
    pub(crate) key_codec: CodecChain,
    pub(crate) value_codec: CodecChain,
    pub(crate) declared: tokio::sync::OnceCell<()>,
    /// `faustus_messages_sent_total` of this topic (taken on the first send).
    pub(crate) sent: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
}

impl TopicDef {
    pub(crate) fn spec(&self, app: &AppInner) -> TopicSpec {
        let mut spec = TopicSpec::new(
            self.name.to_string(),
            self.partitions.unwrap_or(app.settings().topic_partitions),
        );
        spec.replicas = self
            .replicas
            .unwrap_or(app.settings().topic_replication_factor);
        spec.compacting = self.compacting;
        spec.deleting = self.deleting;
        spec.retention = self.retention;
        spec.config = self.config.clone();
        spec
    }

    /// Send pre-encoded bytes to this topic (declaring it first).
    pub(crate) async fn send_raw(
        &self,
        inner: &AppInner,
        key: Option<Bytes>,
        value: Option<Bytes>,
        options: SendOptions,
    ) -> Result<Delivery> {
        // Declared once per process: after that, no future per send.
        if !self.declared.initialized() {
            self.declare(inner).await?;
        }
        let producer = inner.producer().await?;
        let options_partition = options.partition;
        let record = Record {
            topic: self.name.clone(),
            partition: options.partition,
            key,
            value,
            headers: options.headers,
            timestamp_ms: options.timestamp_ms,
            acks: self.acks,
        };
        let d = producer.send(record).await?;
        let d = inner
            .deliveries
            .track(&inner.monitor, d, &self.name, options_partition)?;
        inner.monitor.add_messages_sent(1);
        self.sent
            .get_or_init(|| {
                inner.monitor.counter(
                    "faustus_messages_sent_total",
                    crate::monitor::topic_labels(&self.name),
                )
            })
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(d)
    }

    fn same_options(&self, other: &TopicDef) -> bool {
        self.partitions == other.partitions
            && self.replicas == other.replicas
            && self.retention == other.retention
            && self.compacting == other.compacting
            && self.deleting == other.deleting
            && self.config == other.config
            && self.acks == other.acks
            && self.key_codec.name() == other.key_codec.name()
            && self.value_codec.name() == other.value_codec.name()
    }

    /// Create the topic on the transport once per process.
    pub(crate) async fn declare(&self, app: &AppInner) -> Result<()> {
        self.declared
            .get_or_try_init(|| self.create(app))
            .await
            .map(|_| ())
    }

    /// Create the topic again if it is missing, even when declared before (a
    /// conductor restarting after a broker that lost its topics).
    pub(crate) async fn redeclare(&self, app: &AppInner) -> Result<()> {
        self.create(app).await?;
        let _ = self.declared.set(());
        Ok(())
    }

    async fn create(&self, app: &AppInner) -> Result<()> {
        let transport = app.transport().await?;
        // A source topic the app does not own and gave no partition
        // count is used as it exists; internal topics must match.
        if !self.internal
            && self.partitions.is_none()
            && transport.partition_count(&self.name).await?.is_some()
        {
            return Ok(());
        }
        transport.create_topic(&self.spec(app)).await
    }
}

impl TopicDef {
    pub(crate) fn check_compatible(&self, other: &TopicDef) -> Result<()> {
        if self.same_options(other) {
            Ok(())
        } else {
            Err(Error::config(
                format!("topic {:?}", self.name),
                "declared twice with different options (partitions, codecs, retention or config)",
            ))
        }
    }
}

/// Options for one send.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// Explicit partition (default: by key, murmur2).
    pub partition: Option<u32>,
    /// Headers.
    pub headers: Headers,
    /// Timestamp in ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl SendOptions {
    /// No options.
    pub fn new() -> Self {
        SendOptions::default()
    }

    /// Send to this partition.
    pub fn partition(mut self, p: u32) -> Self {
        self.partition = Some(p);
        self
    }

    /// Add a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Set the record's timestamp (ms since the epoch; default: the producer's clock).
    pub fn timestamp_ms(mut self, t: i64) -> Self {
        self.timestamp_ms = Some(t);
        self
    }
}

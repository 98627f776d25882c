//! Topics (named, on the transport) and channels (in memory).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::{App, AppInner};
use crate::drivers::codec::CodecChain;
use crate::drivers::transport::{Acks, Delivery, Headers, Record, TopicSpec};
use crate::error::{Error, Field, Result};
use crate::flow::event;
use crate::flow::queue::StreamQueue;
use crate::stream::{ChannelItem, Core, Source, Stream};

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
    sent: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
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
        self.declare(inner).await?;
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
            .get_or_try_init(|| async {
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
            })
            .await
            .map(|_| ())
    }
}

/// Options of a topic, set through [`App::topic`].
#[must_use = "call .build() to get the topic"]
pub struct TopicBuilder<K, V> {
    app: App,
    name: String,
    partitions: Option<u32>,
    replicas: Option<u16>,
    retention: Option<Duration>,
    compacting: bool,
    deleting: bool,
    internal: bool,
    config: BTreeMap<String, String>,
    acks: Option<Acks>,
    key_serializer: Option<String>,
    value_serializer: Option<String>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> TopicBuilder<K, V> {
    pub(crate) fn new(app: App, name: impl Into<String>) -> Self {
        TopicBuilder {
            app,
            name: name.into(),
            partitions: None,
            replicas: None,
            retention: None,
            compacting: false,
            deleting: true,
            internal: false,
            config: BTreeMap::new(),
            acks: None,
            key_serializer: None,
            value_serializer: None,
            _types: PhantomData,
        }
    }

    /// Partition count when the app creates the topic (default `topic_partitions`).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }

    /// Replication factor when the app creates the topic.
    pub fn replicas(mut self, n: u16) -> Self {
        self.replicas = Some(n);
        self
    }

    /// `retention.ms`.
    pub fn retention(mut self, d: Duration) -> Self {
        self.retention = Some(d);
        self
    }

    /// Log compaction (keep the last value per key).
    pub fn compacting(mut self, yes: bool) -> Self {
        self.compacting = yes;
        if yes {
            self.deleting = false;
        }
        self
    }

    /// Time/size based deletion (with compaction: `compact,delete`).
    pub fn deleting(mut self, yes: bool) -> Self {
        self.deleting = yes;
        self
    }

    /// Mark as internal to the app (created and owned by it).
    pub fn internal(mut self, yes: bool) -> Self {
        self.internal = yes;
        self
    }

    /// Extra topic configuration passed to the broker.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Broker acknowledgements sends to this topic wait for (default: the
    /// transport's, `acks=all` unless the broker URL says otherwise).
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = Some(acks);
        self
    }

    /// Key codec (default: the app's `key_serializer`).
    pub fn key_serializer(mut self, codec: impl Into<String>) -> Self {
        self.key_serializer = Some(codec.into());
        self
    }

    /// Value codec (default: the app's `value_serializer`).
    pub fn value_serializer(mut self, codec: impl Into<String>) -> Self {
        self.value_serializer = Some(codec.into());
        self
    }

    /// Register the topic with the app.
    pub fn build(self) -> Result<Topic<K, V>> {
        let inner = &self.app.inner;
        let key_codec = inner.registry.codec(
            self.key_serializer
                .as_deref()
                .unwrap_or(&inner.settings().key_serializer),
        )?;
        let value_codec = inner.registry.codec(
            self.value_serializer
                .as_deref()
                .unwrap_or(&inner.settings().value_serializer),
        )?;
        if self.name.is_empty() {
            return Err(Error::config("topic", "topic names must not be empty"));
        }
        if self.partitions == Some(0) {
            return Err(Error::config(
                format!("topic {:?} partitions", self.name),
                "must be at least 1",
            ));
        }
        let def = TopicDef {
            name: self.name.as_str().into(),
            partitions: self.partitions,
            replicas: self.replicas,
            retention: self.retention,
            compacting: self.compacting,
            deleting: self.deleting,
            internal: self.internal,
            config: self.config,
            acks: self.acks,
            key_codec,
            value_codec,
            declared: tokio::sync::OnceCell::new(),
            sent: std::sync::OnceLock::new(),
        };
        let def = inner.register_topic(def)?;
        Ok(Topic {
            app: self.app.clone(),
            def,
            _types: PhantomData,
        })
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

/// A typed topic: send to it, stream from it.
///
/// ```
/// # use faustus_core::{App, Registry};
/// # async fn demo(app: App) -> faustus_core::Result<()> {
/// let greetings = app.topic::<String, String>("greetings").partitions(4).build()?;
/// greetings.send("alice".to_string(), "hello".to_string()).await?;
/// # Ok(()) }
/// ```
pub struct Topic<K, V> {
    app: App,
    pub(crate) def: Arc<TopicDef>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Topic<K, V> {
    fn clone(&self) -> Self {
        Topic {
            app: self.app.clone(),
            def: self.def.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> Topic<K, V> {
    /// A typed handle over a registered definition.
    pub(crate) fn from_def(app: App, def: Arc<TopicDef>) -> Self {
        Topic {
            app,
            def,
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Topic<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", self.def.name)
    }
}

impl<K, V> Topic<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn app_inner(&self) -> Arc<AppInner> {
        self.app.inner.clone()
    }

    /// The topic name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// The key codec's name.
    pub fn key_serializer(&self) -> &str {
        self.def.key_codec.name()
    }

    /// The value codec's name.
    pub fn value_serializer(&self) -> &str {
        self.def.value_codec.name()
    }

    /// The partition count the app creates it with.
    pub fn partitions(&self) -> u32 {
        self.def
            .partitions
            .unwrap_or(self.app.inner.settings().topic_partitions)
    }

    /// Send a keyed record. Returns once the producer has accepted it —
    /// not when the broker has: the worker's commit waits for delivery.
    ///
    /// When the producer's queue is full, this waits for room
    /// (backpressure; records are never dropped or buffered without bound).
    /// The returned [`Delivery`] resolves with the record's
    /// [`RecordMetadata`] once the broker acknowledged it; await it only
    /// when you need the metadata or the outcome (`send(..).await?.await?`),
    /// otherwise drop it.
    ///
    /// A delivery that fails and that nobody awaited is logged with its
    /// topic, counted (`faustus_send_failures_total`) and holds the commit
    /// of the event being processed when it was sent: that event's partition
    /// is not committed past it, so it is processed (and the record sent)
    /// again after a restart or rebalance.
    ///
    /// ```
    /// # use faustus_core::App;
    /// # async fn demo(app: App) -> faustus_core::Result<()> {
    /// let words = app.topic::<String, u64>("words").build()?;
    /// // Accepted by the producer; the commit waits for the broker.
    /// words.send("hello".to_string(), 1).await?;
    /// // Waits for the broker too, and says where the record landed.
    /// let landed = words.send("world".to_string(), 1).await?.await?;
    /// println!("partition {} offset {}", landed.partition, landed.offset);
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, key: K, value: V) -> Result<Delivery> {
        self.send_soon(Some(&key), &value, SendOptions::default())
            .await
    }

    /// Send a value without a key; returns once the producer accepted it
    /// (see [`send`](Self::send)).
    pub async fn send_value(&self, value: V) -> Result<Delivery> {
        self.send_soon(None, &value, SendOptions::default()).await
    }

    /// Send with options (partition, headers, timestamp); returns once the
    /// producer accepted it (see [`send`](Self::send)).
    pub async fn send_with(
        &self,
        key: Option<K>,
        value: V,
        options: SendOptions,
    ) -> Result<Delivery> {
        self.send_soon(key.as_ref(), &value, options).await
    }

    /// As [`send`](Self::send), taking the key and value by reference: the
    /// key and value are encoded at once, and the returned future holds no
    /// reference to them. It resolves once the producer accepted the record;
    /// the [`Delivery`] resolves when the broker acknowledged it.
    pub fn send_soon(
        &self,
        key: Option<&K>,
        value: &V,
        options: SendOptions,
    ) -> impl std::future::Future<Output = Result<Delivery>> + Send + 'static {
        let encoded = self.encode_record(key, value);
        let def = self.def.clone();
        let app = self.app.inner.clone();
        async move {
            let (key, value) = encoded?;
            def.send_raw(&app, key, Some(value), options).await
        }
    }

    fn encode_record(&self, key: Option<&K>, value: &V) -> Result<(Option<Bytes>, Bytes)> {
        let key = match key {
            Some(k) => Some(
                self.def
                    .key_codec
                    .encode(k)
                    .map_err(|message| Error::Encode {
                        field: Field::Key,
                        topic: self.def.name.to_string(),
                        codec: self.def.key_codec.name().to_string(),
                        message,
                    })?,
            ),
            None => None,
        };
        let value = self
            .def
            .value_codec
            .encode(value)
            .map_err(|message| Error::Encode {
                field: Field::Value,
                topic: self.def.name.to_string(),
                codec: self.def.value_codec.name().to_string(),
                message,
            })?;
        Ok((key, value))
    }

    /// Send pre-encoded bytes; returns once the producer accepted them (see
    /// [`send`](Self::send)).
    pub async fn send_bytes(
        &self,
        key: Option<Bytes>,
        value: Option<Bytes>,
        options: SendOptions,
    ) -> Result<Delivery> {
        self.def
            .send_raw(&self.app.inner, key, value, options)
            .await
    }

    /// A new stream over this topic (subscribes the worker to it).
    pub fn stream(&self) -> Stream<K, V> {
        let inner = &self.app.inner;
        let queue = inner.subscribe(&self.def);
        let cell = event::current().unwrap_or_default();
        Stream::from_core(Core::new(
            inner.clone(),
            Source::Topic {
                queue,
                key_codec: self.def.key_codec.clone(),
                value_codec: self.def.value_codec.clone(),
                owned: true,
                local: VecDeque::new(),
            },
            cell,
        ))
    }
}

/// An in-memory channel: typed values, no serialization, bounded.
///
/// ```
/// # use faustus_core::App;
/// # async fn demo(app: App) -> faustus_core::Result<()> {
/// let numbers = app.channel::<u64>();
/// numbers.send(42).await?;
/// # Ok(()) }
/// ```
pub struct Channel<V> {
    app: App,
    pub(crate) queue: Arc<StreamQueue<ChannelItem<(), V>>>,
}

impl<V> Clone for Channel<V> {
    fn clone(&self) -> Self {
        Channel {
            app: self.app.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<V> fmt::Debug for Channel<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel(buffered {})", self.queue.len())
    }
}

impl<V> Channel<V>
where
    V: DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(app: App, capacity: usize) -> Self {
        Channel {
            app,
            queue: StreamQueue::new(capacity, Arc::new(tokio::sync::Notify::new())),
        }
    }

    /// Send a value, waiting while the channel is full.
    pub async fn send(&self, value: V) -> Result<()> {
        self.queue
            .push(ChannelItem { key: None, value })
            .await
            .map_err(|_| Error::Closed("channel".into()))
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A stream over the channel. Several streams share the values.
    pub fn stream(&self) -> Stream<(), V> {
        let cell = event::current().unwrap_or_default();
        Stream::from_core(Core::new(
            self.app.inner.clone(),
            Source::Channel(self.queue.clone()),
            cell,
        ))
    }
}

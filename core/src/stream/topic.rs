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

pub use crate::app::topic::SendOptions;
use crate::app::topic::TopicDef;
use crate::app::{App, AppInner};
use crate::drivers::transport::{Acks, Delivery};
use crate::error::{Error, Field, Result};
use crate::flow::event;
use crate::flow::queue::ChannelItem;
use crate::flow::queue::StreamQueue;
use crate::stream::{Core, Source, Stream};

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

/// Topics and channels an app defines.
impl App {
    /// Describe a topic; finish with `.build()`.
    pub fn topic<K, V>(&self, name: impl Into<String>) -> TopicBuilder<K, V> {
        TopicBuilder::new(self.clone(), name)
    }

    /// An in-memory channel holding at most `stream_buffer_maxsize` values.
    pub fn channel<V>(&self) -> Channel<V>
    where
        V: DeserializeOwned + Send + 'static,
    {
        Channel::new(self.clone(), self.inner.settings().stream_buffer_maxsize)
    }

    /// An in-memory channel holding at most `capacity` values.
    pub fn channel_with_capacity<V>(&self, capacity: usize) -> Channel<V>
    where
        V: DeserializeOwned + Send + 'static,
    {
        Channel::new(self.clone(), capacity)
    }

    /// A handle to the topic named `name` if the app declared it (a topic,
    /// an agent's topic, a changelog …), with the options and codecs it was
    /// declared with; `K` and `V` are the caller's to choose, as with
    /// [`App::topic`]. Sending through it creates the topic on the broker
    /// first, as the app would.
    ///
    /// ```
    /// use faustus_core::App;
    /// let app = App::builder("declared").broker("memory://").build().unwrap();
    /// app.topic::<String, u64>("counts").partitions(4).build().unwrap();
    /// let counts = app.declared_topic::<String, u64>("counts").unwrap();
    /// assert_eq!(counts.partitions(), 4);
    /// assert!(app.declared_topic::<String, u64>("other").is_none());
    /// ```
    pub fn declared_topic<K, V>(&self, name: &str) -> Option<crate::stream::topic::Topic<K, V>> {
        let def = self.inner.defs.lock().topics.get(name).cloned()?;
        Some(crate::stream::topic::Topic::from_def(self.clone(), def))
    }
}

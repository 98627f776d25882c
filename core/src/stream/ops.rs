//! Stream operators of Faust's streams guide: `filter`, `enumerate`, `take`,
//! `take_events`, `through`, `group_by`, `echo`, and combining streams.
//!
//! `through` and `group_by` forward every event to another topic and return
//! a stream over that topic. The forwarding runs in its own task; the
//! original event is acknowledged only once the transport acknowledged the
//! forwarded copy. Inside an agent, the stream over the new topic keeps its
//! buffer across restarts of the agent (nothing buffered is lost when it
//! fails), and a failure (key function, encoding, send) goes through the
//! agent's error policy with the event's coordinates.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::app::topic::{SendOptions, TopicDef};
use crate::drivers::transport::{Delivery, Message};
use crate::error::{Error, Field, Result};
use crate::flow::acks::AckToken;
use crate::flow::event::{self, CurrentEvent, Event, SharedAck};
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::stream::owner::{handle_failure, AgentCtx, AgentError, Handled};
use crate::stream::topic::{Channel, Topic};
use crate::stream::{Core, Processor, Pulled, Source, Stream};

/// How many forwarded events may wait for their acknowledgement at once.
const FORWARD_WINDOW: usize = 4096;

/// Where [`Stream::through`] forwards to: a topic, or a topic name (created
/// with the app's defaults).
#[derive(Debug)]
pub enum Through<K, V> {
    /// This topic.
    Topic(Topic<K, V>),
    /// The topic of this name.
    Name(String),
}

impl<K, V> From<&Topic<K, V>> for Through<K, V> {
    fn from(t: &Topic<K, V>) -> Self {
        Through::Topic(t.clone())
    }
}

impl<K, V> From<&str> for Through<K, V> {
    fn from(n: &str) -> Self {
        Through::Name(n.to_string())
    }
}

impl<K, V> From<String> for Through<K, V> {
    fn from(n: String) -> Self {
        Through::Name(n)
    }
}

type KeyFn<V, K2> = Arc<dyn Fn(&V) -> Result<K2> + Send + Sync>;

/// The key [`Stream::group_by`] repartitions by: a named closure over the
/// value, or a field (the [`field!`](crate::field) macro).
pub struct GroupBy<V, K2> {
    name: String,
    key: KeyFn<V, K2>,
    partitions: Option<u32>,
}

impl<V, K2> std::fmt::Debug for GroupBy<V, K2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupBy({:?})", self.name)
    }
}

impl<V, K2> GroupBy<V, K2> {
    /// Repartition by `key(value)`; `name` names the repartition topic
    /// (`{agent}-{topic}-{name}-repartition`). An `Err` from `key` is a
    /// failure on that event (reported with its coordinates, then the agent's
    /// error policy applies).
    pub fn new(
        name: impl Into<String>,
        key: impl Fn(&V) -> Result<K2> + Send + Sync + 'static,
    ) -> Self {
        GroupBy {
            name: name.into(),
            key: Arc::new(key),
            partitions: None,
        }
    }

    /// Partition count of the repartition topic (default `topic_partitions`).
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }
}

/// Group by a field of the value: `field!(Order, account_id)` is
/// `GroupBy::new("account_id", |o: &Order| Ok(o.account_id.clone()))`.
#[macro_export]
macro_rules! field {
    ($ty:ty, $field:ident) => {
        $crate::GroupBy::new(stringify!($field), |v: &$ty| Ok(v.$field.clone()))
    };
}

/// Stops a forwarding task when the stream it feeds is dropped.
pub(crate) struct ForwarderGuard(watch::Sender<bool>);

impl Drop for ForwarderGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Encodes an event for the destination topic: key bytes and value bytes.
///
/// When the value went through no processor and the destination uses the
/// source's codecs, the message's own bytes are passed (`raw`) and reused
/// instead of encoding again.
type Encode<K, V> =
    Arc<dyn Fn(&Option<K>, &V, Option<&Message>) -> Result<(Option<Bytes>, Bytes)> + Send + Sync>;

/// The message's value bytes, when it has them.
fn raw_value(raw: Option<&Message>) -> Option<Bytes> {
    raw.and_then(|m| m.value.clone())
}

impl<K, V> Stream<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    /// Keep only values for which `f` is true; the others' events are
    /// acknowledged at once. Applied in order with the processors.
    ///
    /// ```
    /// # use faustus_core::App;
    /// use futures::StreamExt;
    /// # async fn demo(app: App) {
    /// let evens: Vec<u32> = app.stream_iter(1..=6u32).filter(|n| n % 2 == 0).collect().await;
    /// assert_eq!(evens, vec![2, 4, 6]);
    /// # }
    /// ```
    pub fn filter(self, f: impl Fn(&V) -> bool + Send + Sync + 'static) -> Self {
        self.add_step(Processor::Filter(Box::new(f)))
    }

    /// Number the values, starting at `start` (Faust's `enumerate(start)`).
    ///
    /// ```
    /// # use faustus_core::App;
    /// use futures::StreamExt;
    /// # async fn demo(app: App) {
    /// let v: Vec<(u64, char)> = app.stream_iter(['a', 'b']).enumerate(1).collect().await;
    /// assert_eq!(v, vec![(1, 'a'), (2, 'b')]);
    /// # }
    /// ```
    pub fn enumerate(self, start: u64) -> BoxStream<'static, (u64, V)> {
        StreamExt::enumerate(self)
            .map(move |(i, v)| (start + i as u64, v))
            .boxed()
    }

    /// Combine with `other`: one stream of the events of both, in the order
    /// they arrive (Faust's `s1 & s2`; `s1 & s2` works too).
    pub fn merge(mut self, mut other: Stream<K, V>) -> Stream<K, V> {
        let mut a = self.take_core();
        let mut b = other.take_core();
        let agent = a.agent.take().or_else(|| b.agent.take());
        let app = a.app.clone();
        let current = a.current.clone();
        a.current = CurrentEvent::new();
        b.current = CurrentEvent::new();
        let merged = futures::stream::select(pulls(a), pulls(b)).boxed();
        let mut core = Core::new(app, Source::Merged(merged), current);
        core.agent = agent;
        Stream::from_core(core)
    }

    /// Gather up to `max` values, or what arrived within `within` of the
    /// first one (Faust's `take(max, within)`). The events of a batch are
    /// acknowledged when the next batch is asked for (the batch was
    /// processed) or when the stream is dropped.
    ///
    /// (This is not `futures::StreamExt::take(n)`; call that as
    /// `StreamExt::take(stream, n)`.)
    pub fn take(mut self, max: usize, within: Duration) -> BoxStream<'static, Vec<V>> {
        let batcher = Batcher::new(self.take_core(), max.max(1), within);
        futures::stream::unfold(batcher, |mut b| async move {
            b.finish_batch();
            let batch = b.next_batch().await?;
            let mut values = Vec::with_capacity(batch.len());
            for p in batch {
                b.held.push(p.token);
                values.push(p.value);
            }
            Some((values, b))
        })
        .boxed()
    }

    /// [`take`](Stream::take), as [`Event`]s: each is acknowledged when acked
    /// by hand, dropped, or when the next batch is asked for.
    pub fn take_events(
        mut self,
        max: usize,
        within: Duration,
    ) -> BoxStream<'static, Vec<Event<K, V>>> {
        let batcher = Batcher::new(self.take_core(), max.max(1), within);
        futures::stream::unfold(batcher, |mut b| async move {
            b.finish_batch();
            let batch = b.next_batch().await?;
            let mut events = Vec::with_capacity(batch.len());
            for p in batch {
                let ack = SharedAck::new(p.token);
                b.shared.push(ack.clone());
                events.push(Event::new(p.key, p.value, p.message, ack));
            }
            Some((events, b))
        })
        .boxed()
    }

    /// Repeat every value to each of `topics` (waiting for the
    /// acknowledgements) before the stream yields it (Faust's `echo`). A
    /// failed send is a failure on that event: the agent's error policy
    /// applies (by default it is reported with its coordinates and skipped).
    pub fn echo(mut self, topics: &[Topic<K, V>]) -> Stream<K, V>
    where
        K: Serialize,
        V: Serialize + Clone,
    {
        let mut core = self.take_core();
        let agent = core.agent.take();
        let ctx = agent.as_ref().map(|l| l.ctx.clone());
        let app = core.app.clone();
        let current = std::mem::replace(&mut core.current, CurrentEvent::new());
        let topics: Vec<Topic<K, V>> = topics.to_vec();
        let echoed = pulls(core)
            .filter_map(move |p| {
                let topics = topics.clone();
                let ctx = ctx.clone();
                async move { echo_one(ctx.as_deref(), &topics, p).await }
            })
            .boxed();
        let mut out = Core::new(app, Source::Merged(echoed), current);
        out.agent = agent;
        Stream::from_core(out)
    }

    /// Repeat every value to each of `channels` before the stream yields it.
    pub fn echo_channels(mut self, channels: &[Channel<V>]) -> Stream<K, V>
    where
        V: Clone,
    {
        let mut core = self.take_core();
        let agent = core.agent.take();
        let app = core.app.clone();
        let current = std::mem::replace(&mut core.current, CurrentEvent::new());
        let channels: Vec<Channel<V>> = channels.to_vec();
        let echoed = pulls(core)
            .then(move |p| {
                let channels = channels.clone();
                async move {
                    for c in &channels {
                        if let Err(e) = c.send(p.value.clone()).await {
                            tracing::warn!(error = %e, "echo to a closed channel");
                        }
                    }
                    p
                }
            })
            .boxed();
        let mut out = Core::new(app, Source::Merged(echoed), current);
        out.agent = agent;
        Stream::from_core(out)
    }
}

impl<K, V> Stream<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Forward every value to `dest` (a topic, or a topic name) and continue
    /// with a stream over that topic (Faust's `through`). Each event is
    /// acknowledged once its copy is acknowledged by the transport.
    pub fn through(mut self, dest: impl Into<Through<K, V>>) -> Result<Stream<K, V>> {
        let core = self.try_take_core("through")?;
        let app = crate::App {
            inner: core.app.clone(),
        };
        let topic = match dest.into() {
            Through::Topic(t) => t,
            Through::Name(n) => app.topic::<K, V>(n).build()?,
        };
        let def = topic.def.clone();
        let encode: Encode<K, V> =
            Arc::new(move |key: &Option<K>, value: &V, raw: Option<&Message>| {
                let key = match (raw, key) {
                    (Some(m), _) => m.key.clone(),
                    (None, Some(k)) => Some(encode_with(&def, Field::Key, k)?),
                    (None, None) => None,
                };
                let value = match raw_value(raw) {
                    Some(v) => v,
                    None => encode_with(&def, Field::Value, value)?,
                };
                Ok((key, value))
            });
        Ok(Stream::from_core(forward(core, topic.def.clone(), encode)))
    }

    /// Repartition the stream by a new key (Faust's `group_by`): every event
    /// is forwarded to the internal topic `{agent}-{topic}-{name}-repartition`
    /// keyed by `by`, and the returned stream reads that topic — so events
    /// with the same new key are processed by the same worker, in order.
    /// The original event is acknowledged once its forward is.
    ///
    /// Fails in an agent with concurrency > 1 (its instances share one
    /// buffer, so the repartitioned events would be spread over them and lose
    /// their order).
    pub fn group_by<K2>(mut self, by: GroupBy<V, K2>) -> Result<Stream<K2, V>>
    where
        K2: Serialize + DeserializeOwned + Send + 'static,
    {
        let core = self.try_take_core("group_by")?;
        if let Some(link) = &core.agent {
            if link.ctx.concurrency > 1 {
                return Err(Error::config(
                    format!("agent {:?} concurrency", &*link.ctx.name),
                    format!(
                        "group_by cannot be used in an agent with concurrency {} > 1: its instances share one buffer, so events of one key would be processed out of order",
                        link.ctx.concurrency
                    ),
                ));
            }
        }
        let prefix = match &core.agent {
            Some(link) => link.ctx.name.to_string(),
            None => core.app.app_id.clone(),
        };
        let source = match &core.source {
            Source::Topic { .. } => core.source_topic_name().unwrap_or_else(|| "stream".into()),
            _ => "stream".into(),
        };
        let app = crate::App {
            inner: core.app.clone(),
        };
        let mut builder = app
            .topic::<K2, V>(format!("{prefix}-{source}-{}-repartition", by.name))
            .internal(true);
        if let Some(n) = by.partitions {
            builder = builder.partitions(n);
        }
        let topic = builder.build()?;
        let def = topic.def.clone();
        let key = by.key;
        let encode: Encode<K, V> =
            Arc::new(move |_key: &Option<K>, value: &V, raw: Option<&Message>| {
                let k = key(value)?;
                let value = match raw_value(raw) {
                    Some(v) => v,
                    None => encode_with(&def, Field::Value, value)?,
                };
                Ok((Some(encode_with(&def, Field::Key, &k)?), value))
            });
        Ok(Stream::from_core(forward(core, topic.def.clone(), encode)))
    }
}

impl<K, V> std::ops::BitAnd for Stream<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    type Output = Stream<K, V>;

    /// `s1 & s2`: see [`Stream::merge`].
    fn bitand(self, other: Stream<K, V>) -> Stream<K, V> {
        self.merge(other)
    }
}

impl<K, V> Core<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    fn source_topic_name(&self) -> Option<String> {
        let Source::Topic { queue, .. } = &self.source else {
            return None;
        };
        let subs = self.app.subs.by_topic.lock();
        subs.iter()
            .find(|(_, qs)| qs.iter().any(|q| Arc::ptr_eq(q, queue)))
            .map(|(t, _)| t.to_string())
    }
}

fn encode_with<T: Serialize + 'static>(def: &TopicDef, field: Field, v: &T) -> Result<Bytes> {
    let codec = match field {
        Field::Key => &def.key_codec,
        Field::Value => &def.value_codec,
    };
    codec.encode(v).map_err(|message| Error::Encode {
        field,
        topic: def.name.to_string(),
        codec: codec.name().to_string(),
        message,
    })
}

/// The events of a core, each with its claim (the core holds nothing).
fn pulls<K, V>(core: Core<K, V>) -> BoxStream<'static, Pulled<K, V>>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    futures::stream::unfold(core, |mut core| async move {
        let p = core.pull().await?;
        Some((p, core))
    })
    .boxed()
}

fn failure(
    ctx: Option<&AgentCtx>,
    error: &Error,
    msg: Option<&Message>,
    attempts: u32,
) -> AgentError {
    AgentError {
        agent: ctx
            .map(|c| c.name.to_string())
            .unwrap_or_else(|| "(stream)".into()),
        error: error.to_string(),
        at: msg.map(|m| m.coordinates()),
        panicked: false,
        attempts,
    }
}

async fn echo_one<K, V>(
    ctx: Option<&AgentCtx>,
    topics: &[Topic<K, V>],
    p: Pulled<K, V>,
) -> Option<Pulled<K, V>>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let mut attempts = 0;
    let mut token = p.token;
    loop {
        attempts += 1;
        let mut result = Ok(());
        for t in topics {
            let sent = match t
                .send_soon(p.key.as_ref(), &p.value, SendOptions::new())
                .await
            {
                Ok(d) => d.await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                result = Err(e);
                break;
            }
        }
        let Err(e) = result else {
            return Some(Pulled {
                key: p.key,
                value: p.value,
                message: p.message,
                token,
                value_codec: p.value_codec,
            });
        };
        let app = match topics.first() {
            Some(t) => t.app_inner(),
            None => return None,
        };
        let error = failure(ctx, &e, p.message.as_ref(), attempts);
        match handle_failure(ctx, &app, error, p.message.as_ref(), token).await {
            Handled::Retry(t) => {
                token = t;
                tokio::time::sleep(backoff(attempts)).await;
            }
            Handled::Done | Handled::Stop => return None,
        }
    }
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempts.min(7))).min(Duration::from_secs(10))
}

/// Start forwarding `src` to `dest` and return a core over `dest`.
fn forward<K, V, K2>(mut src: Core<K, V>, dest: Arc<TopicDef>, encode: Encode<K, V>) -> Core<K2, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
    K2: DeserializeOwned + Send + 'static,
{
    let app = src.app.clone();
    let agent = src.agent.take();
    let ctx = agent.as_ref().map(|l| l.ctx.clone());
    let (queue, owned) = match &ctx {
        Some(ctx) => (ctx.derived_queue(&app, &dest), false),
        None => (app.subscribe(&dest), true),
    };
    // The agent's tables follow the repartitioned events; the forwarder has its own cell.
    let current = std::mem::replace(&mut src.current, CurrentEvent::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (acks_tx, acks_rx) = mpsc::channel(FORWARD_WINDOW);
    tokio::spawn(ack_forwarded(app.clone(), ctx.clone(), acks_rx));
    let cell = src.current.clone();
    tokio::spawn(event::scope(
        cell,
        run_forwarder(
            src,
            dest.clone(),
            encode,
            ctx,
            stop_rx,
            acks_tx,
            queue.clone(),
        ),
    ));
    let mut core = Core::new(
        app,
        Source::Topic {
            queue,
            key_codec: dest.key_codec.clone(),
            value_codec: dest.value_codec.clone(),
            owned,
            local: VecDeque::new(),
        },
        current,
    );
    core.agent = agent;
    core.forwarder = Some(ForwarderGuard(stop_tx));
    core
}

type Forwarded = (Delivery, AckToken, Option<Message>);

async fn run_forwarder<K, V>(
    mut src: Core<K, V>,
    dest: Arc<TopicDef>,
    encode: Encode<K, V>,
    ctx: Option<Arc<AgentCtx>>,
    stop: watch::Receiver<bool>,
    acks: mpsc::Sender<Forwarded>,
    out: Arc<StreamQueue<Delivered>>,
) where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    let app = src.app.clone();
    // The source's bytes can be forwarded as they are when nothing changed
    // the value and both topics use the same codecs.
    let reuse = src.processors.is_empty()
        && match &src.source {
            Source::Topic {
                key_codec,
                value_codec,
                ..
            } => {
                key_codec.name() == dest.key_codec.name()
                    && value_codec.name() == dest.value_codec.name()
            }
            _ => false,
        };
    let mut producer = None;
    let mut sent_count = SentCount {
        app: app.clone(),
        n: 0,
    };
    // One stop future for the whole run (cheap to poll per event).
    let mut stop = stop;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        let pulled = tokio::select! {
            biased;
            _ = &mut stopped => break,
            p = src.pull() => p,
        };
        let Some(Pulled {
            key,
            value,
            message,
            token,
            ..
        }) = pulled
        else {
            break;
        };
        let mut token = token;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let raw = if reuse { message.as_ref() } else { None };
            let sent = match encode(&key, &value, raw) {
                Ok((k, v)) => send(&app, &dest, &mut producer, &mut sent_count, k, v).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(mut d) => {
                    // Already acknowledged (an in-process transport): ack
                    // here, without a hop to the ack task.
                    if let Some(result) = (&mut d).now_or_never() {
                        if result.is_ok() {
                            token.ack();
                            src.count_ack();
                            break;
                        }
                        d = Delivery::ready(result);
                    }
                    if acks.send((d, token, message)).await.is_err() {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    let error = failure(ctx.as_deref(), &e, message.as_ref(), attempts);
                    match handle_failure(ctx.as_deref(), &app, error, message.as_ref(), token).await
                    {
                        Handled::Done => break,
                        Handled::Retry(t) => {
                            token = t;
                            tokio::time::sleep(backoff(attempts)).await;
                        }
                        Handled::Stop => {
                            // on_error said stop: end the stream fed by this forwarder too.
                            out.close();
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Sends not yet added to the monitor (added when dropped, too).
struct SentCount {
    app: Arc<crate::app::AppInner>,
    n: u64,
}

impl Drop for SentCount {
    fn drop(&mut self) {
        self.app.monitor.add_messages_sent(self.n);
    }
}

/// Send one forwarded record (declaring the topic and getting the producer
/// once; counting sends in batches, as a shared counter per event would
/// bounce between cores).
async fn send(
    app: &crate::app::AppInner,
    dest: &TopicDef,
    producer: &mut Option<Arc<dyn crate::drivers::transport::Producer>>,
    sent: &mut SentCount,
    key: Option<Bytes>,
    value: Bytes,
) -> Result<Delivery> {
    let p = match producer {
        Some(p) => p.clone(),
        None => {
            dest.declare(app).await?;
            let p = app.producer().await?;
            *producer = Some(p.clone());
            p
        }
    };
    let record = crate::drivers::transport::Record {
        topic: dest.name.clone(),
        partition: None,
        key,
        value: Some(value),
        headers: Vec::new(),
        timestamp_ms: None,
        acks: dest.acks,
    };
    let d = p.send(record).await?;
    sent.n += 1;
    if sent.n >= 256 {
        app.monitor.add_messages_sent(sent.n);
        sent.n = 0;
    }
    Ok(d)
}

/// Ack each forwarded event once its copy is acknowledged; a failed delivery
/// is a failure on the event.
async fn ack_forwarded(
    app: Arc<crate::app::AppInner>,
    ctx: Option<Arc<AgentCtx>>,
    mut rx: mpsc::Receiver<Forwarded>,
) {
    while let Some((delivery, token, msg)) = rx.recv().await {
        match delivery.await {
            Ok(_) => token.ack(),
            Err(e) => {
                let error = failure(ctx.as_deref(), &e, msg.as_ref(), 1);
                // A retry here would need the encoded copy: the event is given
                // back instead (processed again after a restart or rebalance).
                if let Handled::Retry(t) =
                    handle_failure(ctx.as_deref(), &app, error, msg.as_ref(), token).await
                {
                    t.release();
                }
            }
        }
    }
}

/// A pull that owns its core (so it can wait across batches).
type PendingPull<K, V> = BoxFuture<'static, (Core<K, V>, Option<Pulled<K, V>>)>;

/// Gathers batches for `take` / `take_events`.
struct Batcher<K, V> {
    core: Option<Core<K, V>>,
    /// A pull still waiting when the last batch's time ran out.
    pending: Option<PendingPull<K, V>>,
    max: usize,
    within: Duration,
    ended: bool,
    /// The current batch's claims (values mode).
    held: Vec<AckToken>,
    /// The current batch's events (events mode).
    shared: Vec<Arc<SharedAck>>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Batcher<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    fn new(core: Core<K, V>, max: usize, within: Duration) -> Self {
        Batcher {
            core: Some(core),
            pending: None,
            max,
            within,
            ended: false,
            held: Vec::new(),
            shared: Vec::new(),
            _types: PhantomData,
        }
    }

    /// The previous batch was processed: ack its events.
    fn finish_batch(&mut self) {
        for t in self.held.drain(..) {
            t.ack();
        }
        for s in self.shared.drain(..) {
            s.ack();
        }
    }

    fn pull(&mut self) -> Option<PendingPull<K, V>> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let mut core = self.core.take()?;
        Some(
            async move {
                let p = core.pull().await;
                (core, p)
            }
            .boxed(),
        )
    }

    async fn next_batch(&mut self) -> Option<Vec<Pulled<K, V>>> {
        let mut batch = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.ended {
                return (!batch.is_empty()).then_some(batch);
            }
            let mut fut = self.pull()?;
            let (core, p) = match deadline {
                None => fut.await,
                Some(d) => {
                    tokio::select! {
                        r = &mut fut => r,
                        _ = tokio::time::sleep_until(d) => {
                            self.pending = Some(fut);
                            return Some(batch);
                        }
                    }
                }
            };
            self.core = Some(core);
            match p {
                None => self.ended = true,
                Some(p) => {
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + self.within);
                    }
                    batch.push(p);
                    if batch.len() >= self.max {
                        return Some(batch);
                    }
                }
            }
        }
    }
}

impl<K, V> Drop for Batcher<K, V> {
    fn drop(&mut self) {
        // The batch in hand is done: processed, or the agent failed on it.
        for t in self.held.drain(..) {
            t.ack();
        }
        for s in self.shared.drain(..) {
            s.ack();
        }
    }
}

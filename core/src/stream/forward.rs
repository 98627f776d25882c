//! `through` and `group_by`: every event is forwarded to another topic by
//! its own task, and the stream continues over that topic. The original
//! event is acknowledged only once the forwarded copy is (up to
//! [`FORWARD_WINDOW`] in flight); a failure (key function, encoding, send)
//! goes through the agent's error policy with the event's coordinates.

use super::ops::{backoff, failure};
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::app::topic::TopicDef;
use crate::drivers::transport::{Delivery, Message};
use crate::error::{Error, Field, Result};
use crate::flow::acks::AckToken;
use crate::flow::event::{self, CurrentEvent};
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::stream::owner::{handle_failure, AgentCtx, Handled};
use crate::stream::topic::Topic;
use crate::stream::{Core, Pulled, Source, Stream};

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

//! Agent RPC: `ask`, `cast`, `map`, `kvmap`, `join`, `kvjoin`.
//!
//! A request is an ordinary message to the agent's topic with two headers:
//! the asker's reply topic ([`REPLY_TO`], the `reply_to` setting, default
//! `{reply_to_prefix}{uuid}`) and a correlation id ([`CORRELATION_ID`]). A
//! yielding agent (see [`AgentBuilder::yields`](crate::AgentBuilder::yields))
//! sends the value it yields for that event to the reply topic with the same
//! correlation id. Each app reads its reply topic with a partition reader (no group)
//! started on the first request (creating the topic when
//! `reply_create_topic`), and hands each reply to the request waiting for it;
//! replies older than `reply_expires` or for no waiting request are dropped.
//! The agent may run on any worker of the app: only the topics are shared.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::agent::{Agent, Target};
use crate::app::topic::SendOptions;
use crate::app::AppInner;
use crate::drivers::codec::CodecChain;
use crate::drivers::transport::{
    Message, PartitionReaderExt, ReaderConfig, TopicSpec, TransportExt,
};
use crate::error::{Error, Field, Result};

use crate::stream::owner::{header, now_ms};
pub use crate::stream::owner::{CORRELATION_ID, REPLY_TO};

type Waiter = (usize, mpsc::UnboundedSender<(usize, Message)>);

/// The app's side of RPC: its reply consumer and the requests waiting.
#[derive(Default)]
pub(crate) struct Replies {
    started: tokio::sync::OnceCell<()>,
    waiting: Mutex<HashMap<Bytes, Waiter>>,
}

/// Removes its requests from the waiting list when dropped (answered, timed out or abandoned).
struct Registration {
    app: Arc<AppInner>,
    ids: Vec<Bytes>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let state = self.app.state::<Replies>();
        let mut w = state.waiting.lock();
        for id in &self.ids {
            w.remove(id);
        }
    }
}

async fn ensure_started(app: &Arc<AppInner>) -> Result<()> {
    app.state::<Replies>()
        .started
        .get_or_try_init(|| async {
            let settings = app.settings();
            let transport = app.transport().await?;
            let topic = settings.reply_to.clone();
            if settings.reply_create_topic {
                let mut spec = TopicSpec::new(topic.clone(), 1);
                spec.replicas = settings.topic_replication_factor;
                transport.create_topic(&spec).await?;
            }
            let tps = transport.topic_partitions(&topic).await?.ok_or_else(|| {
                Error::config(
                    "reply_to",
                    format!("the reply topic {topic:?} does not exist: create it, or set reply_create_topic so the app creates it"),
                )
            })?;
            let mut consumer = transport
                .reader(&ReaderConfig::new(format!(
                    "{}-replies",
                    settings.broker_client_id
                )))
                .await?;
            consumer.assign_at_end(&tps).await?;
            tokio::spawn(read_replies(
                Arc::downgrade(app),
                consumer,
                settings.reply_expires,
            ));
            Ok::<(), Error>(())
        })
        .await
        .map(|_| ())
}

async fn read_replies(
    app: Weak<AppInner>,
    mut consumer: Box<dyn crate::drivers::transport::PartitionReader>,
    expires: Duration,
) {
    loop {
        let polled = consumer.poll(Duration::from_millis(100)).await;
        let Some(app) = app.upgrade() else {
            break;
        };
        match polled {
            Ok(msgs) => {
                for msg in msgs {
                    let Some(id) = header(&msg, CORRELATION_ID).cloned() else {
                        tracing::warn!(at = %msg.coordinates(), "reply without a correlation id; dropped");
                        continue;
                    };
                    if let Some(ts) = msg.timestamp_ms {
                        let age = now_ms().saturating_sub(ts);
                        if age > 0 && age as u128 > expires.as_millis() {
                            tracing::debug!(at = %msg.coordinates(), "reply older than reply_expires; dropped");
                            continue;
                        }
                    }
                    let waiter = app.state::<Replies>().waiting.lock().get(&id).cloned();
                    match waiter {
                        Some((index, tx)) => {
                            let _ = tx.send((index, msg));
                        }
                        None => {
                            tracing::debug!(at = %msg.coordinates(), "reply for no waiting request (timed out or answered); dropped")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading replies failed; retrying");
                drop(app);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = consumer.close().await;
}

fn decode_reply<R: DeserializeOwned + 'static>(codec: &CodecChain, msg: &Message) -> Result<R> {
    let Some(raw) = &msg.value else {
        return Err(Error::Decode {
            field: Field::Value,
            at: msg.coordinates(),
            message: "the reply has no value".into(),
        });
    };
    codec
        .decode::<R>(raw.clone())
        .map_err(|message| Error::Decode {
            field: Field::Value,
            at: msg.coordinates(),
            message: format!("{message} (codec {}; reply)", codec.name()),
        })
}

impl<K, V> Agent<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Send requests and return the receiver of their replies, tagged by index.
    async fn request(
        &self,
        items: Vec<(Option<K>, V)>,
    ) -> Result<(Registration, mpsc::UnboundedReceiver<(usize, Message)>)> {
        let Target::Topic(topic) = &self.target else {
            return Err(Error::State(format!(
                "agent @{} reads a channel: RPC needs an agent that reads a topic",
                self.name
            )));
        };
        let app = self.app.inner.clone();
        ensure_started(&app).await?;
        let reply_to = app.settings().reply_to.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let ids: Vec<Bytes> = (0..items.len())
            .map(|_| Bytes::from(uuid::Uuid::new_v4().to_string()))
            .collect();
        {
            let state = app.state::<Replies>();
            let mut w = state.waiting.lock();
            for (i, id) in ids.iter().enumerate() {
                w.insert(id.clone(), (i, tx.clone()));
            }
        }
        let registration = Registration {
            app: app.clone(),
            ids: ids.clone(),
        };
        let mut deliveries = Vec::with_capacity(items.len());
        for ((key, value), id) in items.into_iter().zip(ids) {
            let options = SendOptions::new()
                .header(REPLY_TO, reply_to.clone())
                .header(CORRELATION_ID, id);
            deliveries.push(topic.send_soon(key.as_ref(), &value, options).await?);
        }
        // A request waits for its delivery (unlike `send`): the caller waits
        // for the reply anyway, which cannot come sooner, and a request that
        // was never delivered is then an error rather than a timeout.
        for d in deliveries {
            d.await?;
        }
        Ok((registration, rx))
    }

    fn reply_codec(&self) -> Result<CodecChain> {
        let inner = &self.app.inner;
        inner.registry.codec(&inner.settings().value_serializer)
    }

    /// Send `value` to the agent and wait for its reply (the value the agent
    /// yields for it), at most `timeout`: then [`Error::Timeout`].
    ///
    /// ```
    /// # use faustus_core::App;
    /// use futures::StreamExt;
    /// use std::time::Duration;
    /// # async fn demo(app: App) -> faustus_core::Result<()> {
    /// let double = app
    ///     .agent::<(), u64>("double")
    ///     .yields::<u64>()
    ///     .build(|numbers| numbers.map(|n| Ok(n * 2)))?;
    /// // with a worker running:
    /// let four: u64 = double.ask(2, Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ask<R: DeserializeOwned + 'static>(
        &self,
        value: V,
        timeout: Duration,
    ) -> Result<R> {
        self.ask_inner(None, value, timeout).await
    }

    /// [`ask`](Agent::ask) with a key (it picks the partition).
    pub async fn ask_key<R: DeserializeOwned + 'static>(
        &self,
        key: K,
        value: V,
        timeout: Duration,
    ) -> Result<R> {
        self.ask_inner(Some(key), value, timeout).await
    }

    async fn ask_inner<R: DeserializeOwned + 'static>(
        &self,
        key: Option<K>,
        value: V,
        timeout: Duration,
    ) -> Result<R> {
        let codec = self.reply_codec()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let (_registration, mut rx) =
            tokio::time::timeout_at(deadline, self.request(vec![(key, value)]))
                .await
                .map_err(|_| self.timeout_error(1, timeout))??;
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((_, msg))) => decode_reply(&codec, &msg),
            Ok(None) => Err(Error::Closed(format!("replies to agent @{}", self.name))),
            Err(_) => Err(self.timeout_error(1, timeout)),
        }
    }

    fn timeout_error(&self, missing: usize, after: Duration) -> Error {
        Error::Timeout {
            what: format!("{missing} reply(ies) from agent @{}", self.name),
            after,
        }
    }

    /// Send a value to the agent without waiting for a reply (Faust's
    /// `cast`): returns once the producer accepted it.
    pub async fn cast(&self, value: V) -> Result<()> {
        self.send_value(value).await.map(|_| ())
    }

    /// Ask for each value; yield the replies as they arrive (decoded, or the
    /// error for a reply that cannot be decoded). After `timeout` the stream
    /// yields one [`Error::Timeout`] for the missing replies and ends.
    pub fn map<R>(
        &self,
        values: impl IntoIterator<Item = V>,
        timeout: Duration,
    ) -> BoxStream<'static, Result<R>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let items: Vec<(Option<K>, V)> = values.into_iter().map(|v| (None, v)).collect();
        self.replies_stream(items, timeout)
            .map(|r| r.map(|(_, v)| v))
            .boxed()
    }

    /// Ask for each `(key, value)`; yield `(key, reply)` as the replies arrive.
    pub fn kvmap<R>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        timeout: Duration,
    ) -> BoxStream<'static, Result<(K, R)>>
    where
        K: Clone,
        R: DeserializeOwned + Send + 'static,
    {
        let items: Vec<(K, V)> = items.into_iter().collect();
        let keys: Vec<K> = items.iter().map(|(k, _)| k.clone()).collect();
        let items = items.into_iter().map(|(k, v)| (Some(k), v)).collect();
        self.replies_stream(items, timeout)
            .map(move |r| r.map(|(i, v)| (keys[i].clone(), v)))
            .boxed()
    }

    /// Ask for each value; return the replies in input order.
    pub async fn join<R>(
        &self,
        values: impl IntoIterator<Item = V>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let items = values.into_iter().map(|v| (None, v)).collect();
        self.join_inner(items, timeout).await
    }

    /// Ask for each `(key, value)`; return the replies in input order.
    pub async fn kvjoin<R>(
        &self,
        items: impl IntoIterator<Item = (K, V)>,
        timeout: Duration,
    ) -> Result<Vec<R>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let items = items.into_iter().map(|(k, v)| (Some(k), v)).collect();
        self.join_inner(items, timeout).await
    }

    async fn join_inner<R>(&self, items: Vec<(Option<K>, V)>, timeout: Duration) -> Result<Vec<R>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let n = items.len();
        let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
        let mut replies = self.replies_stream(items, timeout);
        while let Some(r) = replies.next().await {
            let (i, v) = r?;
            out[i] = Some(v);
        }
        out.into_iter()
            .map(|v| v.ok_or_else(|| self.timeout_error(1, timeout)))
            .collect()
    }

    /// Replies tagged with the index of their request, as they arrive.
    fn replies_stream<R>(
        &self,
        items: Vec<(Option<K>, V)>,
        timeout: Duration,
    ) -> BoxStream<'static, Result<(usize, R)>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        let agent = self.clone();
        let n = items.len();
        let deadline = tokio::time::Instant::now() + timeout;
        let start = async move {
            let codec = agent.reply_codec()?;
            let (registration, rx) = tokio::time::timeout_at(deadline, agent.request(items))
                .await
                .map_err(|_| agent.timeout_error(n, timeout))??;
            Ok::<_, Error>((agent, codec, registration, rx))
        };
        futures::stream::once(start)
            .flat_map(move |started| match started {
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
                Ok((agent, codec, registration, rx)) => futures::stream::unfold(
                    (agent, codec, registration, rx, 0usize),
                    move |(agent, codec, registration, mut rx, got)| async move {
                        if got == n {
                            return None;
                        }
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some((i, msg))) => {
                                let r = decode_reply::<R>(&codec, &msg).map(|v| (i, v));
                                Some((r, (agent, codec, registration, rx, got + 1)))
                            }
                            Ok(None) => None,
                            Err(_) => {
                                let e = agent.timeout_error(n - got, timeout);
                                Some((Err(e), (agent, codec, registration, rx, n)))
                            }
                        }
                    },
                )
                .boxed(),
            })
            .boxed()
    }
}

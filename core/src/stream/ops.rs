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

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::batch::Batcher;
pub use super::forward::{GroupBy, Through};
use crate::app::topic::SendOptions;
use crate::drivers::transport::Message;
use crate::error::Error;
use crate::flow::event::{CurrentEvent, Event, SharedAck};
use crate::stream::owner::{handle_failure, AgentCtx, AgentError, Handled};
use crate::stream::topic::{Channel, Topic};
use crate::stream::{Core, Processor, Pulled, Source, Stream};

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
    pub(super) fn source_topic_name(&self) -> Option<String> {
        let Source::Topic { queue, .. } = &self.source else {
            return None;
        };
        let subs = self.app.subs.by_topic.lock();
        subs.iter()
            .find(|(_, qs)| qs.iter().any(|q| Arc::ptr_eq(q, queue)))
            .map(|(t, _)| t.to_string())
    }
}

/// The events of a core, each with its claim (the core holds nothing).
pub(super) fn pulls<K, V>(core: Core<K, V>) -> BoxStream<'static, Pulled<K, V>>
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

pub(super) fn failure(
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

pub(super) fn backoff(attempts: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempts.min(7))).min(Duration::from_secs(10))
}

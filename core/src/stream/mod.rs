//! Streams: the async sequences agents and tasks iterate over.
//!
//! A [`Stream`] yields decoded values; [`Stream::items`] yields key/value
//! pairs and [`Stream::events`] yields [`Event`]s with the raw message. A
//! stream acknowledges an event when it advances to the next one, when it is
//! dropped (agent error, panic or shutdown) or when the event is acked by hand.
//! Messages that cannot be decoded are reported through the app's decode-error
//! hook with their coordinates, acknowledged, and skipped.
//!
//! Files: this one is the stream's core (pull, decode, processors, the
//! event in hand and its ack) and the [`Stream`] type; `ops` the operators,
//! `forward` `through`/`group_by`, `batch` `take`'s batcher, `topic` typed
//! topics and channels, `owner` the agent run a stream belongs to.

mod batch;
mod forward;
pub(crate) mod ops;
pub(crate) mod owner;
pub mod topic;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::app::AppInner;
use crate::drivers::codec::CodecChain;
use crate::drivers::transport::Message;
use crate::error::{Error, Field};
use crate::flow::acks::AckToken;
use crate::flow::event::{CurrentEvent, Event, EventInfo, SharedAck};
use crate::flow::queue::StreamQueue;
pub(crate) use crate::flow::queue::{ChannelItem, Delivered};
use crate::stream::owner::{AgentLink, Claim, HeldEvent};

/// How many events a stream takes from its buffer at once.
const POP_BATCH: usize = 64;

type SyncProcessor<V> = Box<dyn Fn(V) -> V + Send + Sync>;
type AsyncProcessor<V> = Box<dyn Fn(V) -> BoxFuture<'static, V> + Send + Sync>;
type FilterFn<V> = Box<dyn Fn(&V) -> bool + Send + Sync>;

pub(crate) enum Processor<V> {
    Sync(SyncProcessor<V>),
    Async(AsyncProcessor<V>),
    /// Drop values for which it returns false (their events are acked).
    Filter(FilterFn<V>),
}

pub(crate) enum Source<K, V> {
    Topic {
        queue: Arc<StreamQueue<Delivered>>,
        key_codec: CodecChain,
        value_codec: CodecChain,
        /// The stream owns its subscription (`topic.stream()`): dropping the
        /// stream unsubscribes. Agents' buffers outlive their streams.
        owned: bool,
        /// Popped from the queue in a batch, not yet taken into processing.
        local: VecDeque<Delivered>,
    },
    Channel(Arc<StreamQueue<ChannelItem<K, V>>>),
    Iter(BoxStream<'static, V>),
    /// Several streams combined (`s1 & s2`): whichever has an event first.
    Merged(BoxStream<'static, Pulled<K, V>>),
}

/// What the stream currently holds (acked when it advances or drops).
enum InHand {
    None,
    Token(AckToken),
    Shared(Arc<SharedAck>),
    /// The agent run holds it ([`AgentLink::holds_events`]): the stream
    /// takes it back when it advances; if the run ends first, its
    /// supervisor settles it.
    Held,
}

/// An event taken from the source, with its claim: whoever holds it acks it.
pub(crate) struct Pulled<K, V> {
    pub(crate) key: Option<K>,
    pub(crate) value: V,
    pub(crate) message: Option<Message>,
    pub(crate) token: AckToken,
    /// The value codec of the topic the message came from, when the app
    /// records event values (see [`AppInner::records_event_values`]).
    pub(crate) value_codec: Option<CodecChain>,
}

struct Next<K, V> {
    key: Option<K>,
    value: V,
    message: Option<Message>,
    ack: Option<Arc<SharedAck>>,
}

/// The state behind every stream flavour.
pub(crate) struct Core<K, V> {
    pub(crate) app: Arc<AppInner>,
    pub(crate) source: Source<K, V>,
    pub(crate) processors: Vec<Processor<V>>,
    pub(crate) current: Arc<CurrentEvent>,
    in_hand: InHand,
    events_mode: bool,
    /// `noack()`: advancing does not ack; the events are acked by hand.
    noack: bool,
    /// Acks not yet added to the monitor.
    acked: u64,
    /// The agent run this stream belongs to (failure handling, replies).
    pub(crate) agent: Option<AgentLink>,
    /// Stops the forwarding task feeding this stream (`through`, `group_by`) when dropped.
    pub(crate) forwarder: Option<crate::stream::forward::ForwarderGuard>,
}

/// Add `acked` events to the monitor: the worker's total and, for an
/// agent's stream, the agent's `faustus_agent_events_total`.
fn publish_acks(app: &AppInner, agent: Option<&AgentLink>, acked: &mut u64) {
    if *acked == 0 {
        return;
    }
    app.monitor.add_events_acked(*acked);
    if let Some(link) = agent {
        link.ctx
            .events
            .fetch_add(*acked, std::sync::atomic::Ordering::Relaxed);
    }
    *acked = 0;
}

impl<K, V> Core<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(
        app: Arc<AppInner>,
        source: Source<K, V>,
        current: Arc<CurrentEvent>,
    ) -> Self {
        Core {
            app,
            source,
            processors: Vec::new(),
            current,
            in_hand: InHand::None,
            events_mode: false,
            noack: false,
            acked: 0,
            agent: None,
            forwarder: None,
        }
    }

    fn finish_in_hand(&mut self) {
        match std::mem::replace(&mut self.in_hand, InHand::None) {
            InHand::None => {}
            InHand::Held => {
                let held = self.agent.as_ref().and_then(|l| l.run.take_held());
                if held.is_some_and(HeldEvent::ack) {
                    self.count_ack();
                }
            }
            InHand::Token(t) => {
                t.ack();
                self.count_ack();
            }
            InHand::Shared(s) => {
                s.ack();
                self.count_ack();
            }
        }
    }

    /// Count an ack for the monitor, in batches (a shared counter per event
    /// would bounce its cache line between the agent's and the conductor's cores).
    pub(crate) fn count_ack(&mut self) {
        self.acked += 1;
        if self.acked >= 256 {
            publish_acks(&self.app, self.agent.as_ref(), &mut self.acked);
        }
    }

    /// Take the next event into processing; the caller holds its claim.
    pub(crate) async fn pull(&mut self) -> Option<Pulled<K, V>> {
        // Instances of a concurrent agent take one event at a time, so that
        // none holds events another could process.
        let batch = match &self.agent {
            Some(link) if link.ctx.concurrency > 1 => 1,
            _ => POP_BATCH,
        };
        'events: loop {
            let with_values = self.app.records_event_values();
            let (key, value, message, token, codec) = match &mut self.source {
                Source::Topic {
                    queue,
                    key_codec,
                    value_codec,
                    local,
                    ..
                } => {
                    if queue.is_closed() {
                        // Shutting down: start nothing new; give back what we popped.
                        let n = local.len();
                        local.clear();
                        queue.consumed(n);
                        return None;
                    }
                    let d = match local.pop_front() {
                        Some(d) => d,
                        None => {
                            // Between two pops (at most 64 events): the
                            // counts so far go to the monitor.
                            publish_acks(&self.app, self.agent.as_ref(), &mut self.acked);
                            if queue.pop_many(batch, local).await == 0 {
                                return None;
                            }
                            continue;
                        }
                    };
                    queue.consumed(1);
                    if d.token.is_revoked() {
                        d.token.release();
                        continue;
                    }
                    match decode(&d.msg, key_codec, value_codec) {
                        Ok((k, v)) => (
                            k,
                            v,
                            Some(d.msg),
                            d.token,
                            with_values.then(|| value_codec.clone()),
                        ),
                        Err(e) => {
                            self.app.report_decode_error(&e);
                            d.token.ack();
                            continue;
                        }
                    }
                }
                Source::Channel(q) => {
                    let item = match q.try_pop() {
                        Some(i) => i,
                        None => q.pop().await?,
                    };
                    (item.key, item.value, None, AckToken::none(), None)
                }
                Source::Iter(s) => (None, s.next().await?, None, AckToken::none(), None),
                Source::Merged(s) => {
                    let p = s.next().await?;
                    (p.key, p.value, p.message, p.token, p.value_codec)
                }
            };
            match &message {
                Some(m) => self.current.set_message_with_value(
                    &m.topic,
                    m.partition,
                    m.offset,
                    m.timestamp_ms,
                    codec
                        .as_ref()
                        .and_then(|c| Some((m.value.clone()?, c.clone()))),
                ),
                None => self.current.set_local(),
            }
            let mut value = value;
            for p in &self.processors {
                value = match p {
                    Processor::Sync(f) => f(value),
                    Processor::Async(f) => f(value).await,
                    Processor::Filter(f) => {
                        if f(&value) {
                            value
                        } else {
                            token.ack();
                            self.count_ack();
                            continue 'events;
                        }
                    }
                };
            }
            return Some(Pulled {
                key,
                value,
                message,
                token,
                value_codec: codec,
            });
        }
    }

    async fn next(&mut self) -> Option<Next<K, V>> {
        self.finish_in_hand();
        let p = self.pull().await?;
        if let Some(link) = &self.agent {
            link.on_event(p.message.as_ref());
        }
        let (claim, ack) = if self.events_mode {
            let shared = SharedAck::new(p.token);
            let claim = (!self.noack).then(|| Claim::Shared(shared.clone()));
            (claim, Some(shared))
        } else {
            (Some(Claim::Token(p.token)), None)
        };
        self.in_hand = match (claim, &self.agent, &p.message) {
            (None, _, _) => InHand::None,
            // The run holds the event, so that its supervisor can settle it
            // if the agent fails on it.
            (Some(claim), Some(link), Some(msg)) if link.holds_events() => {
                let queue = match &self.source {
                    Source::Topic { queue, .. } => Some(queue.clone()),
                    _ => None,
                };
                link.run.hold(HeldEvent::new(msg.clone(), claim, queue));
                InHand::Held
            }
            (Some(Claim::Token(t)), _, _) => InHand::Token(t),
            (Some(Claim::Shared(s)), _, _) => InHand::Shared(s),
        };
        Some(Next {
            key: p.key,
            value: p.value,
            message: p.message,
            ack,
        })
    }
}

impl<K, V> Drop for Core<K, V> {
    fn drop(&mut self) {
        // Release what the stream itself holds: the event in hand is done
        // (the agent finished, failed or panicked on it). An event its agent
        // run holds (`InHand::Held`) is the run's supervisor's to settle.
        let token = match std::mem::replace(&mut self.in_hand, InHand::None) {
            InHand::None | InHand::Held => None,
            InHand::Token(t) => Some(t),
            InHand::Shared(s) => s.take(),
        };
        if let Some(token) = token {
            token.ack();
            self.acked += 1;
        }
        publish_acks(&self.app, self.agent.as_ref(), &mut self.acked);
        if let Source::Topic {
            queue,
            owned: false,
            local,
            ..
        } = &mut self.source
        {
            // An agent run ended (error, panic): the next run gets these first.
            queue.unpop(local);
        }
        if let Source::Topic {
            queue,
            owned: true,
            local,
            ..
        } = &mut self.source
        {
            // Nobody will read this buffer again: leave the topic. What was
            // buffered is done as far as this (gone) stream is concerned —
            // unless the worker is shutting down (it closed the buffer first):
            // then it is given back unprocessed.
            let shutting_down = queue.is_closed();
            self.app.unsubscribe(queue);
            queue.close();
            let n = local.len();
            let mut left: Vec<Delivered> = local.drain(..).collect();
            queue.consumed(n);
            left.extend(queue.purge(|_| true));
            for d in left {
                if shutting_down {
                    d.token.release();
                } else {
                    d.token.ack();
                }
            }
        }
    }
}

fn decode<K, V>(
    msg: &Message,
    key_codec: &CodecChain,
    value_codec: &CodecChain,
) -> Result<(Option<K>, V), Error>
where
    K: DeserializeOwned + 'static,
    V: DeserializeOwned + 'static,
{
    let key = match &msg.key {
        Some(k) => Some(
            key_codec
                .decode::<K>(k.clone())
                .map_err(|message| Error::Decode {
                    field: Field::Key,
                    at: msg.coordinates(),
                    message: format!("{message} (codec {})", key_codec.name()),
                })?,
        ),
        None => None,
    };
    let Some(raw) = &msg.value else {
        return Err(Error::Decode {
            field: Field::Value,
            at: msg.coordinates(),
            message: "the message has no value (tombstone)".into(),
        });
    };
    let value = value_codec
        .decode::<V>(raw.clone())
        .map_err(|message| Error::Decode {
            field: Field::Value,
            at: msg.coordinates(),
            message: format!("{message} (codec {})", value_codec.name()),
        })?;
    Ok((key, value))
}

/// An async stream of decoded values (a `futures::Stream<Item = V>`).
///
/// Iterate it with `StreamExt::next`; use [`items`](Stream::items) for keys,
/// [`events`](Stream::events) for messages and manual acks,
/// [`noack`](Stream::noack) to ack by hand, and the operators of Faust's
/// streams guide: [`filter`](Stream::filter), [`enumerate`](Stream::enumerate),
/// [`take`](Stream::take), [`through`](Stream::through),
/// [`group_by`](Stream::group_by), [`echo`](Stream::echo) and
/// [`merge`](Stream::merge) (`s1 & s2`). Operators come before `items()` /
/// `events()`, in the guide's order: `stream.through("foo")?.group_by(..)?.items()`.
#[must_use = "streams do nothing unless iterated"]
pub struct Stream<K, V> {
    pub(crate) core: Option<Core<K, V>>,
    running: Option<BoxStream<'static, V>>,
}

impl<K, V> fmt::Debug for Stream<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stream")
    }
}

impl<K, V> Stream<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    pub(crate) fn from_core(core: Core<K, V>) -> Self {
        Stream {
            core: Some(core),
            running: None,
        }
    }

    pub(crate) fn take_core(&mut self) -> Core<K, V> {
        match self.core.take() {
            Some(c) => c,
            None => panic!("stream operators that change what the stream yields (items, events, noack, take, enumerate, echo, merge) must be applied before iterating the stream"),
        }
    }

    /// The stream's core for operator `op`, or an error naming it once
    /// iteration started (the core then belongs to the running iteration).
    pub(crate) fn try_take_core(&mut self, op: &str) -> Result<Core<K, V>, Error> {
        self.core.take().ok_or_else(|| {
            Error::State(format!(
                "{op}() on a stream that is already being iterated: apply it before the first next()"
            ))
        })
    }

    /// Add a processor step: in the core before iteration, on the running
    /// iteration after (from its next value on, after the steps added before).
    pub(crate) fn add_step(mut self, step: Processor<V>) -> Self
    where
        V: Send,
    {
        match (self.core.as_mut(), self.running.take()) {
            (Some(core), _) => core.processors.push(step),
            // Iteration started: a value a filter drops is acked when the
            // iteration advances past it, as any other.
            (None, Some(running)) => {
                let step = Arc::new(step);
                self.running = Some(
                    running
                        .filter_map(move |v| {
                            let step = step.clone();
                            async move {
                                match &*step {
                                    Processor::Sync(f) => Some(f(v)),
                                    Processor::Async(f) => Some(f(v).await),
                                    Processor::Filter(f) => f(&v).then_some(v),
                                }
                            }
                        })
                        .boxed(),
                );
            }
            (None, None) => {}
        }
        self
    }

    /// Add a processor: a function applied to every value, in the order added
    /// (Faust's `add_processor`). Added after iteration started, it applies
    /// from the next value on.
    pub fn processor(self, f: impl Fn(V) -> V + Send + Sync + 'static) -> Self {
        self.add_step(Processor::Sync(Box::new(f)))
    }

    /// Add an async processor, applied in order with the others.
    pub fn async_processor<F, Fut>(self, f: F) -> Self
    where
        F: Fn(V) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.add_step(Processor::Async(Box::new(move |v| Box::pin(f(v)))))
    }

    /// Iterate over `(key, value)` pairs; the key is `None` when the message had none.
    pub fn items(mut self) -> BoxStream<'static, (Option<K>, V)> {
        let core = self.take_core();
        futures::stream::unfold(core, |mut core| async move {
            let n = core.next().await?;
            Some(((n.key, n.value), core))
        })
        .boxed()
    }

    /// Iterate over [`Event`]s: key, value, the raw message, and manual `ack()`.
    pub fn events(mut self) -> BoxStream<'static, Event<K, V>> {
        let mut core = self.take_core();
        core.events_mode = true;
        Self::event_stream(core)
    }

    /// Iterate over [`Event`]s that the stream does not acknowledge when it
    /// advances: each is acknowledged by [`Event::ack`] or when dropped, so
    /// you decide when its processing is complete (Faust's `stream.noack()`
    /// with manual `event.ack()`). Hold events as long as needed — the
    /// offsets after the oldest unacknowledged one are not committed.
    ///
    /// ```
    /// # use faustus_core::App;
    /// use futures::StreamExt;
    /// # async fn demo(app: App) {
    /// let mut events = app.stream_iter(vec![1u32, 2, 3]).noack();
    /// let mut held = Vec::new();
    /// while let Some(event) = events.next().await {
    ///     held.push(event);
    ///     if held.len() == 2 {
    ///         // both are written somewhere durable: now they are done
    ///         for e in held.drain(..) { e.ack(); }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn noack(mut self) -> BoxStream<'static, Event<K, V>> {
        let mut core = self.take_core();
        core.events_mode = true;
        core.noack = true;
        Self::event_stream(core)
    }

    fn event_stream(core: Core<K, V>) -> BoxStream<'static, Event<K, V>> {
        futures::stream::unfold(core, |mut core| async move {
            let n = core.next().await?;
            let ack = n.ack?;
            Some((Event::new(n.key, n.value, n.message, ack), core))
        })
        .boxed()
    }

    /// The current-event cell this stream updates (tables read it).
    pub fn current_event(&self) -> Option<EventInfo> {
        self.core.as_ref().and_then(|c| c.current.get())
    }
}

impl<K, V> futures::Stream for Stream<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    type Item = V;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<V>> {
        if self.running.is_none() {
            let core = self.take_core();
            self.running = Some(
                futures::stream::unfold(core, |mut core| async move {
                    let n = core.next().await?;
                    Some((n.value, core))
                })
                .boxed(),
            );
        }
        match self.running.as_mut() {
            Some(s) => s.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

/// Streams over values that come from no topic.
impl crate::app::App {
    /// A stream over any async stream of values (or `futures::stream::iter(..)`).
    pub fn stream<V, S>(&self, values: S) -> Stream<(), V>
    where
        V: DeserializeOwned + Send + 'static,
        S: futures::Stream<Item = V> + Send + 'static,
    {
        use futures::StreamExt;
        let cell = crate::flow::event::current().unwrap_or_default();
        Stream::from_core(Core::new(
            self.inner.clone(),
            Source::Iter(values.boxed()),
            cell,
        ))
    }

    /// A stream over the values of any iterator.
    pub fn stream_iter<V, I>(&self, values: I) -> Stream<(), V>
    where
        V: DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = V>,
        I::IntoIter: Send + 'static,
    {
        self.stream(futures::stream::iter(values))
    }
}

//! Agents: named async stream processors, supervised by the worker.

pub(crate) mod isolated;
pub mod rpc;

pub use crate::app::defs::AgentInfo;
use crate::app::defs::AgentOps;

pub use crate::stream::owner::{dead_letter_headers, AgentError, OnError};
pub(crate) use crate::stream::owner::{
    AgentCtx, AgentLink, Handled, HeldEvent, OnErrorFn, RunState,
};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::topic::SendOptions;
use crate::app::{App, AppInner};
use crate::drivers::transport::Delivery;
use crate::error::{Coordinates, Error, Result};
use crate::flow::event::{self, CurrentEvent};
use crate::flow::queue::StreamQueue;
use crate::flow::queue::{ChannelItem, Delivered};
use crate::lifecycle::{panic_message, ShutdownSignal};
use crate::monitor::AgentFailure;
use crate::stream::topic::{Channel, Topic};
use crate::stream::{Core, Source, Stream};

/// One run of the agent's function over a fresh stream on its buffer.
type Launch =
    Arc<dyn Fn(App, Arc<CurrentEvent>, AgentLink) -> BoxFuture<'static, Result<()>> + Send + Sync>;

enum Buffer {
    Topic(Arc<StreamQueue<Delivered>>),
    /// Close and reopen the channel's queue.
    Channel(Box<dyn Fn(bool) + Send + Sync>),
}

/// The untyped agent the worker supervises.
pub(crate) struct AgentDef {
    pub(crate) name: String,
    pub(crate) help: String,
    pub(crate) topic: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) ctx: Arc<AgentCtx>,
    restart_limit: Option<(u32, Duration)>,
    buffer: Buffer,
    launch: Launch,
}

impl AgentOps for AgentDef {
    fn name(&self) -> &str {
        &self.name
    }

    fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn info(&self) -> AgentInfo {
        AgentInfo {
            name: format!("@{}", self.name),
            topic: self.topic.clone().unwrap_or_else(|| "<channel>".into()),
            help: self.help.clone(),
        }
    }

    /// Stop handing it new events: its stream ends after what is buffered is purged.
    fn close(&self) {
        match &self.buffer {
            Buffer::Topic(q) => q.close(),
            Buffer::Channel(close) => close(true),
        }
        for q in self.ctx.derived_queues() {
            q.close();
        }
    }

    fn reopen(&self) {
        match &self.buffer {
            Buffer::Topic(q) => q.reopen(),
            Buffer::Channel(close) => close(false),
        }
        for q in self.ctx.derived_queues() {
            q.reopen();
        }
    }

    /// Run the agent until its stream ends or the worker stops, restarting it
    /// (with backoff) when it fails or panics; failures go through the
    /// agent's policy (on_error, dead letters, restart limit).
    fn supervise(self: Arc<Self>, app: App, stop: ShutdownSignal) -> BoxFuture<'static, ()> {
        Box::pin(self.run_supervised(app, stop))
    }
}

impl AgentDef {
    async fn run_supervised(self: Arc<Self>, app: App, stop: ShutdownSignal) {
        let mut backoff = Duration::from_millis(100);
        let mut restarts: VecDeque<tokio::time::Instant> = VecDeque::new();
        let mut last_failed: Option<(Coordinates, u32)> = None;
        loop {
            let cell = CurrentEvent::for_agent(&self.ctx.name, self.concurrency);
            let run = Arc::new(RunState::default());
            let link = AgentLink {
                ctx: self.ctx.clone(),
                run: run.clone(),
            };
            let fut = (self.launch)(app.clone(), cell.clone(), link);
            let started = tokio::time::Instant::now();
            let outcome = AssertUnwindSafe(event::scope(cell.clone(), fut))
                .catch_unwind()
                .await;
            // The event the run held when it ended: settled here, explicitly.
            let failed = run.take_held().and_then(HeldEvent::settle);
            let (message, panicked) = match outcome {
                Ok(Ok(())) => {
                    if let Some((_, token, _)) = failed {
                        token.ack();
                    }
                    if !stop.is_set() {
                        tracing::warn!(agent = %self.name, "agent returned before shutdown; its stream is no longer processed");
                    }
                    return;
                }
                Ok(Err(e)) => (e.to_string(), false),
                Err(panic) => (panic_message(&panic), true),
            };
            let at = match &failed {
                Some((msg, _, _)) => Some(msg.coordinates()),
                None => cell.get().and_then(|i| i.coordinates()),
            };
            let attempts = match (&last_failed, &at) {
                (Some((c, n)), Some(a)) if c == a => n + 1,
                _ => 1,
            };
            last_failed = at.clone().map(|c| (c, attempts));
            let error = AgentError {
                agent: self.name.clone(),
                error: message,
                at,
                panicked,
                attempts,
            };
            match failed {
                Some((msg, token, queue)) => {
                    match self.ctx.handle(&app.inner, error, Some(&msg), token).await {
                        Handled::Done => {}
                        Handled::Retry(token) => match queue {
                            Some(q) => q.requeue_front(Delivered { msg, token }),
                            None => token.ack(),
                        },
                        Handled::Stop => {
                            tracing::error!(agent = %self.name, "on_error said stop: the agent no longer processes events on this worker");
                            return;
                        }
                    }
                }
                None => {
                    // The event in hand (if any) was acked by its stream.
                    let decision = self.ctx.on_error.as_ref().map(|f| f(&error));
                    handle_report(&app.inner, &error);
                    if decision == Some(OnError::Stop) {
                        tracing::error!(agent = %self.name, "on_error said stop: the agent no longer processes events on this worker");
                        return;
                    }
                }
            }
            if stop.is_set() {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            if let Some((max, within)) = self.restart_limit {
                let now = tokio::time::Instant::now();
                restarts.push_back(now);
                while restarts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > within)
                {
                    restarts.pop_front();
                }
                if restarts.len() > max as usize {
                    app.inner.monitor.record_failure(AgentFailure {
                        agent: self.name.clone(),
                        event: "(restart limit)".into(),
                        message: format!("restarted more than {max} times within {within:?}; the agent is stopped"),
                        panicked: false,
                    });
                    tracing::error!(agent = %self.name, max, ?within, "agent restart limit reached; the agent no longer processes events on this worker");
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Log and record a failure that has no event for the policy to act on.
fn handle_report(app: &AppInner, error: &AgentError) {
    let at = error
        .at
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(no event yet)".into());
    app.monitor.record_failure(AgentFailure {
        agent: error.agent.clone(),
        event: at.clone(),
        message: error.error.clone(),
        panicked: error.panicked,
    });
    tracing::error!(agent = %error.agent, event = %at, error = %error.error, panicked = error.panicked,
        "agent failed; the event is acked and the agent restarts");
}

enum SourceSpec<K, V> {
    None,
    Topic(Topic<K, V>),
    Channel(Channel<V>),
}

/// One run of a typed agent function over its stream.
type RunFn<K, V> =
    Arc<dyn Fn(Stream<K, V>, AgentLink) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Defines an agent; see [`App::agent`].
#[must_use = "call .build(fn) to define the agent"]
pub struct AgentBuilder<K, V> {
    app: App,
    name: String,
    help: String,
    source: SourceSpec<K, V>,
    concurrency: usize,
    on_error: Option<OnErrorFn>,
    dead_letter: bool,
    restart_limit: Option<(u32, Duration)>,
    isolated_partitions: bool,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> AgentBuilder<K, V> {
    pub(crate) fn new(app: App, name: impl Into<String>) -> Self {
        AgentBuilder {
            app,
            name: name.into(),
            help: String::new(),
            source: SourceSpec::None,
            concurrency: 1,
            on_error: None,
            dead_letter: false,
            restart_limit: None,
            isolated_partitions: false,
            _types: PhantomData,
        }
    }

    /// Help text (shown by the `agents` command).
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Read this topic (default: the agent's own topic `{app_id}-{name}`).
    pub fn on(mut self, topic: &Topic<K, V>) -> Self {
        self.source = SourceSpec::Topic(topic.clone());
        self
    }

    /// Run `n` instances of the agent sharing one buffer (Faust's
    /// `concurrency`): events are processed in parallel, so their order is
    /// not kept. Such an agent cannot use `group_by`, and table writes from
    /// it are refused (as in Faust).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Decide what happens to an event the agent fails on (an error returned
    /// or a panic while it was in hand): [`OnError::Skip`] (the default),
    /// [`OnError::Retry`] or [`OnError::Stop`]. The failure is logged and
    /// recorded in the monitor with the event's coordinates either way.
    ///
    /// ```
    /// # use faustus_core::{App, agent::OnError};
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// app.agent::<(), u64>("careful")
    ///     // retry an event twice, then give up on it
    ///     .on_error(|e| if e.attempts < 3 { OnError::Retry } else { OnError::Skip })
    ///     .build(|_stream| async { Ok(()) })?;
    /// # Ok(()) }
    /// ```
    pub fn on_error(mut self, f: impl Fn(&AgentError) -> OnError + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(f));
        self
    }

    /// Write events the agent gives up on to the dead-letter topic
    /// `{app_id}-{agent}-dead-letter` (created with the app's topics), with
    /// their key, value and headers plus the headers of
    /// [`dead_letter_headers`] naming the error, the source
    /// topic/partition/offset and the agent; then acknowledge them.
    pub fn dead_letter(mut self, yes: bool) -> Self {
        self.dead_letter = yes;
        self
    }

    /// Stop restarting the agent when it fails more than `max` times within
    /// `within` (default: restart forever, with backoff from 100 ms to 10 s).
    pub fn restart_limit(mut self, max: u32, within: Duration) -> Self {
        self.restart_limit = Some((max, within));
        self
    }

    /// Run one instance of the agent per assigned partition of its topic
    /// (Faust's `isolated_partitions`): each sees only its partition's events,
    /// in order, and is stopped when the partition is revoked.
    pub fn isolated_partitions(mut self, yes: bool) -> Self {
        self.isolated_partitions = yes;
        self
    }

    /// The agent yields a value of type `R` per event: continue with sinks
    /// and [`YieldingAgentBuilder::build`].
    pub fn yields<R>(self) -> YieldingAgentBuilder<K, V, R> {
        YieldingAgentBuilder {
            agent: self,
            sinks: Vec::new(),
        }
    }
}

impl<V> AgentBuilder<(), V> {
    /// Read this in-memory channel.
    pub fn on_channel(mut self, channel: &Channel<V>) -> Self {
        self.source = SourceSpec::Channel(channel.clone());
        self
    }
}

impl<K, V> AgentBuilder<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// Define the agent with its function: it gets the stream and processes it
    /// until the stream ends. The function is called again (on a fresh stream
    /// over the same buffer) when a run fails or panics.
    ///
    /// ```
    /// # use faustus_core::App;
    /// use futures::StreamExt;
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// let doubler = app.agent::<(), u64>("doubler").build(|mut numbers| async move {
    ///     while let Some(n) = numbers.next().await {
    ///         println!("{}", n * 2);
    ///     }
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn build<F, Fut>(self, f: F) -> Result<Agent<K, V>>
    where
        F: Fn(Stream<K, V>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let run: RunFn<K, V> = Arc::new(move |stream, _link| Box::pin(f(stream)));
        self.define(false, run)
    }

    fn define(self, replies: bool, run: RunFn<K, V>) -> Result<Agent<K, V>> {
        if self.name.is_empty() {
            return Err(Error::config("agent", "agent names must not be empty"));
        }
        if self.concurrency == 0 {
            return Err(Error::config(
                format!("agent {:?} concurrency", self.name),
                "must be at least 1",
            ));
        }
        if self.isolated_partitions && self.concurrency > 1 {
            return Err(Error::config(
                format!("agent {:?} concurrency", self.name),
                "an agent with isolated_partitions runs one instance per partition; it cannot also have concurrency > 1",
            ));
        }
        let app = self.app.clone();
        if app
            .inner
            .defs
            .lock()
            .agents
            .iter()
            .any(|a| a.name() == self.name)
        {
            return Err(Error::config(
                format!("agent {:?}", self.name),
                "an agent with this name is already defined",
            ));
        }
        let dead_letter = if self.dead_letter {
            Some(
                app.topic::<(), Vec<u8>>(format!("{}-{}-dead-letter", app.id(), self.name))
                    .internal(true)
                    .build()?
                    .def,
            )
        } else {
            None
        };
        let ctx = Arc::new(AgentCtx {
            name: self.name.as_str().into(),
            events: self.app.inner.monitor.counter(
                "faustus_agent_events_total",
                format!("agent=\"{}\"", crate::monitor::escape_label(&self.name)),
            ),
            concurrency: self.concurrency,
            on_error: self.on_error.clone(),
            dead_letter,
            replies,
            derived: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
        });
        let (buffer, launch, topic_name, target): (Buffer, Launch, _, _) = match self.source {
            SourceSpec::Channel(channel) => {
                if self.isolated_partitions {
                    return Err(Error::config(
                        format!("agent {:?} isolated_partitions", self.name),
                        "a channel has no partitions: isolated_partitions needs an agent on a topic",
                    ));
                }
                let queue: Arc<StreamQueue<ChannelItem<(), V>>> = channel.queue.clone();
                let q2 = queue.clone();
                let launch: Launch = Arc::new(move |app: App, cell, link: AgentLink| {
                    let mut core =
                        Core::<(), V>::new(app.inner.clone(), Source::Channel(q2.clone()), cell);
                    core.agent = Some(link.clone());
                    // The agent is typed on K = (): channels carry no keys.
                    let stream = retype_unit::<K, V>(Stream::from_core(core));
                    match stream {
                        Some(s) => run(s, link),
                        None => Box::pin(async {
                            Err(Error::State("channel agents have no key type".into()))
                        }),
                    }
                });
                let buffer =
                    Buffer::Channel(Box::new(
                        move |close| {
                            if close {
                                queue.close()
                            } else {
                                queue.reopen()
                            }
                        },
                    ));
                (buffer, launch, None, Target::Channel(channel))
            }
            source => {
                let topic = match source {
                    SourceSpec::Topic(t) => t,
                    _ => app
                        .topic::<K, V>(format!("{}-{}", app.id(), self.name))
                        .internal(true)
                        .build()?,
                };
                let queue = app.inner.subscribe(&topic.def);
                let q2 = queue.clone();
                let def_topic = topic.def.clone();
                let isolated = self.isolated_partitions;
                let launch: Launch = Arc::new(move |app: App, cell, link: AgentLink| {
                    let source_queue = q2.clone();
                    let def_topic = def_topic.clone();
                    let run = run.clone();
                    let make = move |app: &App, queue, cell, link: AgentLink| {
                        let mut core = Core::<K, V>::new(
                            app.inner.clone(),
                            Source::Topic {
                                queue,
                                key_codec: def_topic.key_codec.clone(),
                                value_codec: def_topic.value_codec.clone(),
                                owned: false,
                                local: VecDeque::new(),
                            },
                            cell,
                        );
                        core.agent = Some(link.clone());
                        run(Stream::from_core(core), link)
                    };
                    if isolated {
                        Box::pin(crate::agent::isolated::run_isolated(
                            app,
                            source_queue,
                            link,
                            make,
                        ))
                    } else {
                        make(&app, source_queue, cell, link)
                    }
                });
                let name = topic.name().to_string();
                (
                    Buffer::Topic(queue),
                    launch,
                    Some(name),
                    Target::Topic(topic),
                )
            }
        };
        let def = AgentDef {
            name: self.name.clone(),
            help: self.help.clone(),
            topic: topic_name,
            concurrency: self.concurrency,
            ctx,
            restart_limit: self.restart_limit,
            buffer,
            launch,
        };
        app.inner.defs.lock().agents.push(Arc::new(def));
        Ok(Agent {
            name: self.name.into(),
            app: app.clone(),
            target,
        })
    }
}

type SinkFn<R> = Arc<dyn Fn(R) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Defines an agent that yields values; see [`AgentBuilder::yields`].
///
/// Every value the agent's output stream yields goes to each sink, in the
/// order added, and — when the event it was produced for came from
/// [`Agent::ask`] and friends — back to the asker as the reply. A failing
/// sink is a failure of the agent on that event (its error policy applies).
///
/// ```
/// # use faustus_core::App;
/// use futures::StreamExt;
/// # fn demo(app: App) -> faustus_core::Result<()> {
/// let totals = app.topic::<(), u64>("doubled").build()?;
/// let doubler = app
///     .agent::<(), u64>("doubler")
///     .yields::<u64>()
///     .sink_topic(&totals)
///     .sink(|n| async move { println!("doubled: {n}"); Ok(()) })
///     .build(|numbers| numbers.map(|n| Ok(n * 2)))?;
/// # Ok(()) }
/// ```
#[must_use = "call .build(fn) to define the agent"]
pub struct YieldingAgentBuilder<K, V, R> {
    agent: AgentBuilder<K, V>,
    sinks: Vec<SinkFn<R>>,
}

impl<K, V, R> YieldingAgentBuilder<K, V, R>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + Clone + Send + Sync + 'static,
{
    /// Send every yielded value to `topic` (without a key). The sink returns
    /// once the producer accepted the record; the commit of the event waits
    /// for its delivery (see [`Topic::send`]).
    pub fn sink_topic<K2>(mut self, topic: &Topic<K2, R>) -> Self
    where
        K2: Serialize + DeserializeOwned + Send + 'static,
        R: DeserializeOwned,
    {
        let topic = topic.clone();
        self.sinks.push(Arc::new(move |r| {
            let topic = topic.clone();
            Box::pin(async move { topic.send_value(r).await.map(|_| ()) })
        }));
        self
    }

    /// Send every yielded value to another agent (as
    /// [`sink_topic`](Self::sink_topic): returns once accepted).
    pub fn sink_agent<K2>(mut self, agent: &Agent<K2, R>) -> Self
    where
        K2: Serialize + DeserializeOwned + Send + 'static,
        R: DeserializeOwned,
    {
        let agent = agent.clone();
        self.sinks.push(Arc::new(move |r| {
            let agent = agent.clone();
            Box::pin(async move { agent.send_value(r).await.map(|_| ()) })
        }));
        self
    }

    /// Call `f` with every yielded value.
    pub fn sink<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(R) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.sinks.push(Arc::new(move |r| Box::pin(f(r))));
        self
    }

    /// Define the agent: `f` turns its stream into a stream of results, one
    /// per event it answers (an `Err` is a failure of the agent on the event
    /// in hand).
    pub fn build<F, S>(self, f: F) -> Result<Agent<K, V>>
    where
        F: Fn(Stream<K, V>) -> S + Send + Sync + 'static,
        S: futures::Stream<Item = Result<R>> + Send + 'static,
    {
        let sinks = Arc::new(self.sinks);
        let inner = self.agent.app.inner.clone();
        let codec = inner.registry.codec(&inner.settings().value_serializer)?;
        let run: RunFn<K, V> = Arc::new(move |stream, link: AgentLink| {
            let out = f(stream);
            let sinks = sinks.clone();
            let codec = codec.clone();
            let app = inner.clone();
            Box::pin(async move {
                futures::pin_mut!(out);
                while let Some(r) = futures::StreamExt::next(&mut out).await {
                    let r = r?;
                    let reply = link.run.reply.lock().take();
                    if let Some(reply) = reply {
                        reply.send(&app, &codec, &r).await?;
                    }
                    for sink in sinks.iter() {
                        sink(r.clone()).await?;
                    }
                }
                Ok(())
            })
        });
        self.agent.define(true, run)
    }
}

/// Streams over channels are `Stream<(), V>`; an agent builder on a channel is
/// `AgentBuilder<(), V>`, so this only converts `()` to `()`.
fn retype_unit<K: 'static, V: 'static>(s: Stream<(), V>) -> Option<Stream<K, V>> {
    let boxed: Box<dyn std::any::Any> = Box::new(s);
    boxed.downcast::<Stream<K, V>>().ok().map(|b| *b)
}

pub(crate) enum Target<K, V> {
    Topic(Topic<K, V>),
    Channel(Channel<V>),
}

impl<K, V> Clone for Target<K, V> {
    fn clone(&self) -> Self {
        match self {
            Target::Topic(t) => Target::Topic(t.clone()),
            Target::Channel(c) => Target::Channel(c.clone()),
        }
    }
}

/// A handle to a defined agent: send it values.
pub struct Agent<K, V> {
    pub(crate) name: Arc<str>,
    pub(crate) app: App,
    pub(crate) target: Target<K, V>,
}

impl<K, V> Clone for Agent<K, V> {
    fn clone(&self) -> Self {
        Agent {
            name: self.name.clone(),
            app: self.app.clone(),
            target: self.target.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Agent<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Agent(@{})", self.name)
    }
}

impl<K, V> Agent<K, V>
where
    K: Serialize + DeserializeOwned + Send + 'static,
    V: Serialize + DeserializeOwned + Send + 'static,
{
    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic it reads (`None` for channel agents).
    pub fn topic(&self) -> Option<&Topic<K, V>> {
        match &self.target {
            Target::Topic(t) => Some(t),
            Target::Channel(_) => None,
        }
    }

    /// Send a keyed value to the agent's topic. Returns once the producer
    /// accepted it (see [`Topic::send`]); the [`Delivery`] gives the record's
    /// metadata when awaited. (For channel agents the key is dropped:
    /// channels carry values only, and there is no delivery.)
    pub async fn send(&self, key: K, value: V) -> Result<Option<Delivery>> {
        match &self.target {
            Target::Topic(t) => t.send(key, value).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }

    /// Send a value without a key (see [`send`](Self::send)).
    pub async fn send_value(&self, value: V) -> Result<Option<Delivery>> {
        match &self.target {
            Target::Topic(t) => t.send_value(value).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }

    /// Send with options (partition, headers) to the agent's topic (see
    /// [`send`](Self::send)).
    pub async fn send_with(
        &self,
        key: Option<K>,
        value: V,
        options: SendOptions,
    ) -> Result<Option<Delivery>> {
        match &self.target {
            Target::Topic(t) => t.send_with(key, value, options).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }
}

/// Agents an app defines.
impl App {
    /// Define an agent; finish with `.build(fn)`.
    pub fn agent<K, V>(&self, name: impl Into<String>) -> AgentBuilder<K, V> {
        AgentBuilder::new(self.clone(), name)
    }
}

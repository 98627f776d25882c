//! Agents: named async stream processors, supervised by the worker.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::App;
use crate::error::{Error, Result};
use crate::event::{self, CurrentEvent};
use crate::monitor::AgentFailure;
use crate::queue::StreamQueue;
use crate::stream::{ChannelItem, Core, Delivered, Source, Stream};
use crate::topic::{Channel, SendOptions, Topic};
use crate::transport::RecordMetadata;
use crate::worker::ShutdownSignal;

/// Name, topic and help of an agent (the `agents` command prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentInfo {
    /// Agent name.
    pub name: String,
    /// Topic it reads, or `<channel>`.
    pub topic: String,
    /// Its help text.
    pub help: String,
}

/// One run of the agent's function over a fresh stream on its buffer.
type Launch = Arc<dyn Fn(App, Arc<CurrentEvent>) -> BoxFuture<'static, Result<()>> + Send + Sync>;

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
    buffer: Buffer,
    launch: Launch,
}

impl AgentDef {
    pub(crate) fn info(&self) -> AgentInfo {
        AgentInfo {
            name: format!("@{}", self.name),
            topic: self.topic.clone().unwrap_or_else(|| "<channel>".into()),
            help: self.help.clone(),
        }
    }

    /// Stop handing it new events: its stream ends after what is buffered is purged.
    pub(crate) fn close(&self) {
        match &self.buffer {
            Buffer::Topic(q) => q.close(),
            Buffer::Channel(close) => close(true),
        }
    }

    pub(crate) fn reopen(&self) {
        match &self.buffer {
            Buffer::Topic(q) => q.reopen(),
            Buffer::Channel(close) => close(false),
        }
    }

    /// Run the agent until its stream ends or the worker stops, restarting it
    /// (with backoff) when it fails or panics.
    pub(crate) async fn supervise(self: Arc<Self>, app: App, stop: ShutdownSignal) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let cell = CurrentEvent::new();
            let run = (self.launch)(app.clone(), cell.clone());
            let started = tokio::time::Instant::now();
            let outcome = AssertUnwindSafe(event::scope(cell.clone(), run))
                .catch_unwind()
                .await;
            let at = cell
                .get()
                .map(|i| i.to_string())
                .unwrap_or_else(|| "(no event yet)".into());
            match outcome {
                Ok(Ok(())) => {
                    if !stop.is_set() {
                        tracing::warn!(agent = %self.name, "agent returned before shutdown; its stream is no longer processed");
                    }
                    return;
                }
                Ok(Err(e)) => {
                    app.inner.monitor.record_failure(AgentFailure {
                        agent: self.name.clone(),
                        event: at.clone(),
                        message: e.to_string(),
                        panicked: false,
                    });
                    tracing::error!(agent = %self.name, event = %at, error = %e, "agent failed; the event is acked and the agent restarts");
                }
                Err(panic) => {
                    let msg = panic_message(&panic);
                    app.inner.monitor.record_failure(AgentFailure {
                        agent: self.name.clone(),
                        event: at.clone(),
                        message: msg.clone(),
                        panicked: true,
                    });
                    tracing::error!(agent = %self.name, event = %at, panic = %msg, "agent panicked; the event is acked and the agent restarts");
                }
            }
            if stop.is_set() {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".into()
    }
}

enum SourceSpec<K, V> {
    None,
    Topic(Topic<K, V>),
    Channel(Channel<V>),
}

/// Defines an agent; see [`App::agent`].
#[must_use = "call .build(fn) to define the agent"]
pub struct AgentBuilder<K, V> {
    app: App,
    name: String,
    help: String,
    source: SourceSpec<K, V>,
    concurrency: usize,
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
        if self.name.is_empty() {
            return Err(Error::config("agent", "agent names must not be empty"));
        }
        let app = self.app.clone();
        if app
            .inner
            .defs
            .lock()
            .agents
            .iter()
            .any(|a| a.name == self.name)
        {
            return Err(Error::config(
                format!("agent {:?}", self.name),
                "an agent with this name is already defined",
            ));
        }
        let f = Arc::new(f);
        let (def, target) = match self.source {
            SourceSpec::Channel(channel) => {
                let queue: Arc<StreamQueue<ChannelItem<(), V>>> = channel.queue.clone();
                let q2 = queue.clone();
                let launch_f = f.clone();
                let launch: Launch = Arc::new(move |app: App, cell| {
                    let core =
                        Core::<(), V>::new(app.inner.clone(), Source::Channel(q2.clone()), cell);
                    // The agent is typed on K = (): channels carry no keys.
                    let stream = retype_unit::<K, V>(Stream::from_core(core));
                    match stream {
                        Some(s) => Box::pin(launch_f(s)),
                        None => Box::pin(async {
                            Err(Error::State("channel agents have no key type".into()))
                        }),
                    }
                });
                let def = AgentDef {
                    name: self.name.clone(),
                    help: self.help.clone(),
                    topic: None,
                    concurrency: self.concurrency,
                    buffer: Buffer::Channel(Box::new(move |close| {
                        if close {
                            queue.close()
                        } else {
                            queue.reopen()
                        }
                    })),
                    launch,
                };
                (def, Target::Channel(channel))
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
                let launch_f = f.clone();
                let launch: Launch = Arc::new(move |app: App, cell| {
                    let core = Core::<K, V>::new(
                        app.inner.clone(),
                        Source::Topic {
                            queue: q2.clone(),
                            key_codec: def_topic.key_codec.clone(),
                            value_codec: def_topic.value_codec.clone(),
                            owned: false,
                            local: VecDeque::new(),
                        },
                        cell,
                    );
                    Box::pin(launch_f(Stream::from_core(core)))
                });
                let def = AgentDef {
                    name: self.name.clone(),
                    help: self.help.clone(),
                    topic: Some(topic.name().to_string()),
                    concurrency: self.concurrency,
                    buffer: Buffer::Topic(queue),
                    launch,
                };
                (def, Target::Topic(topic))
            }
        };
        app.inner.defs.lock().agents.push(Arc::new(def));
        Ok(Agent {
            name: self.name.into(),
            target,
        })
    }
}

/// Streams over channels are `Stream<(), V>`; an agent builder on a channel is
/// `AgentBuilder<(), V>`, so this only converts `()` to `()`.
fn retype_unit<K: 'static, V: 'static>(s: Stream<(), V>) -> Option<Stream<K, V>> {
    let boxed: Box<dyn std::any::Any> = Box::new(s);
    boxed.downcast::<Stream<K, V>>().ok().map(|b| *b)
}

enum Target<K, V> {
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
    name: Arc<str>,
    target: Target<K, V>,
}

impl<K, V> Clone for Agent<K, V> {
    fn clone(&self) -> Self {
        Agent {
            name: self.name.clone(),
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

    /// Send a keyed value to the agent's topic and wait for the acknowledgement.
    /// (For channel agents the key is dropped: channels carry values only.)
    pub async fn send(&self, key: K, value: V) -> Result<Option<RecordMetadata>> {
        match &self.target {
            Target::Topic(t) => t.send(key, value).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }

    /// Send a value without a key.
    pub async fn send_value(&self, value: V) -> Result<Option<RecordMetadata>> {
        match &self.target {
            Target::Topic(t) => t.send_value(value).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }

    /// Send with options (partition, headers) to the agent's topic.
    pub async fn send_with(
        &self,
        key: Option<K>,
        value: V,
        options: SendOptions,
    ) -> Result<Option<RecordMetadata>> {
        match &self.target {
            Target::Topic(t) => t.send_with(key, value, options).await.map(Some),
            Target::Channel(c) => c.send(value).await.map(|_| None),
        }
    }
}

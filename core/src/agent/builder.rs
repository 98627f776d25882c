//! [`AgentBuilder`] and [`YieldingAgentBuilder`]: how an agent is defined
//! (its source, concurrency, error policy, dead letters, restart limit,
//! isolated partitions, sinks) before `build` registers it with the app.

use super::*;

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

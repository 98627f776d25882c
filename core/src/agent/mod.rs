//! Agents: named async stream processors, supervised by the worker.

mod builder;
pub(crate) mod isolated;
pub mod rpc;
mod supervise;

pub use builder::{AgentBuilder, YieldingAgentBuilder};

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

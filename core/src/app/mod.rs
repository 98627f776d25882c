//! The [`App`]: settings, drivers, and everything an app defines.

mod builder;
pub(crate) mod defs;
pub(crate) mod topic;

pub use builder::AppBuilder;

pub use defs::AgentInfo;
use defs::{AgentOps, TableOps};
use topic::TopicDef;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::drivers::registry::Registry;
use crate::drivers::store::{Store, StoreContext};
use crate::drivers::transport::{Producer, ProducerConfig, TopicPartition, Transport};
use crate::drivers::url::DriverUrl;
use crate::drivers::web::WebHandler;
use crate::error::{Error, Result};
use crate::flow::acks::PartitionAcks;
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;
use crate::monitor::Monitor;
use crate::settings::Settings;

type DecodeHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// The partitions a worker holds, with their ack trackers.
pub(crate) type Assignment = Arc<HashMap<TopicPartition, Arc<PartitionAcks>>>;

/// Builds the handler a worker's web server serves for an app: its pages
/// and any built-in endpoints (see [`AppBuilder::site`]).
pub type SiteFn = Arc<dyn Fn(&App) -> Arc<dyn WebHandler> + Send + Sync>;
pub(crate) type TaskFn = Arc<dyn Fn(App) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Name, changelog topic and help of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Its changelog topic.
    pub changelog: String,
    /// Help text.
    pub help: String,
    /// Its number of partitions.
    pub partitions: u32,
}

/// Something with start/stop hooks and background work that lives as long as the worker.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// Name for logs.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Called before agents start.
    async fn on_start(&self, _app: &App) -> Result<()> {
        Ok(())
    }

    /// Background work; runs until it returns or `stop` fires.
    async fn run(&self, _app: App, _stop: crate::lifecycle::ShutdownSignal) -> Result<()> {
        Ok(())
    }

    /// Called after agents stopped.
    async fn on_stop(&self, _app: &App) -> Result<()> {
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct Defs {
    pub(crate) topics: BTreeMap<String, Arc<TopicDef>>,
    pub(crate) agents: Vec<Arc<dyn AgentOps>>,
    pub(crate) tables: Vec<Arc<dyn TableOps>>,
    pub(crate) services: Vec<Arc<dyn Service>>,
}

/// A stream buffer fed by the conductor.
pub(crate) type TopicQueue = Arc<StreamQueue<Delivered>>;

/// Streams subscribed to each topic.
#[derive(Default)]
pub(crate) struct Subscriptions {
    pub(crate) by_topic: Mutex<HashMap<Arc<str>, Vec<TopicQueue>>>,
    pub(crate) version: std::sync::atomic::AtomicU64,
    pub(crate) changed: Notify,
}

pub(crate) struct AppInner {
    settings: parking_lot::RwLock<Arc<Settings>>,
    started: std::sync::atomic::AtomicBool,
    pub(crate) app_id: String,
    pub(crate) registry: Registry,
    pub(crate) monitor: Arc<Monitor>,
    pub(crate) subs: Subscriptions,
    /// Notified when a full stream buffer drains (the conductor waits on it).
    pub(crate) space: Arc<Notify>,
    pub(crate) defs: Mutex<Defs>,
    decode_hook: Option<DecodeHook>,
    /// The app's site (`AppBuilder::site`); its pages only when unset.
    pub(crate) site: Option<SiteFn>,
    transport: tokio::sync::OnceCell<Arc<dyn Transport>>,
    producer: tokio::sync::OnceCell<Arc<dyn Producer>>,
    store: tokio::sync::OnceCell<Arc<dyn Store>>,
    /// Partitions this worker holds now, with their ack trackers.
    /// Changed by the conductor on each rebalance; watched by isolated
    /// agents, the cluster map and `App::processed`.
    pub(crate) assignment: tokio::sync::watch::Sender<Assignment>,
    /// State the upper layers keep per app, one value per type (the web
    /// pages' routes and readiness, worker signals, the cluster map, RPC
    /// replies, `App::extension`s): each layer owns its type, so the app
    /// names none of them. See [`AppInner::state`].
    slots: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Set when a windowed table takes its time from a field of the event's
    /// value (`relative_to_field`): streams then record each topic event's
    /// raw value and codec in the current-event cell. Unset, they skip it.
    event_values: std::sync::atomic::AtomicBool,
    /// Deliveries of records sent and not waited for; the commit settles
    /// them (see `delivery`).
    pub(crate) deliveries: crate::flow::delivery::Tracker,
}

impl AppInner {
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    pub(crate) fn mark_started(&self) -> Result<()> {
        if self.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(Error::State(format!(
                "a worker of app {:?} is already running in this process",
                self.app_id
            )));
        }
        Ok(())
    }

    /// Make streams record each topic event's raw value (see `event_values`).
    pub(crate) fn record_event_values(&self) {
        self.event_values
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether streams record each topic event's raw value.
    pub(crate) fn records_event_values(&self) -> bool {
        self.event_values.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn mark_stopped(&self) {
        self.started
            .store(false, std::sync::atomic::Ordering::Release);
    }
    pub(crate) async fn transport(&self) -> Result<Arc<dyn Transport>> {
        self.transport
            .get_or_try_init(|| async {
                let settings = self.settings();
                let url = DriverUrl::parse("broker", &settings.broker)?;
                // The credentials reach the transport beside its URL.
                let ctx = crate::drivers::registry::TransportContext::new()
                    .with_credentials(settings.broker_credentials.clone());
                self.registry.transport_with(&url, &ctx)
            })
            .await
            .cloned()
    }

    pub(crate) async fn producer(&self) -> Result<Arc<dyn Producer>> {
        self.producer
            .get_or_try_init(|| async {
                let t = self.transport().await?;
                t.producer(&ProducerConfig::new(
                    self.settings().broker_client_id.clone(),
                ))
                .await
            })
            .await
            .cloned()
    }

    pub(crate) async fn store(&self) -> Result<Arc<dyn Store>> {
        self.store
            .get_or_try_init(|| async {
                let url = DriverUrl::parse("store", &self.settings().store)?;
                self.registry.store(
                    &url,
                    &StoreContext::new(self.app_id.clone(), self.settings().table_path()),
                )
            })
            .await
            .cloned()
    }

    pub(crate) fn report_decode_error(&self, error: &Error) {
        self.monitor.add_decode_errors(1);
        match &self.decode_hook {
            Some(hook) => hook(error),
            None => tracing::warn!(error = %error, "skipping message that cannot be decoded"),
        }
    }

    pub(crate) fn register_topic(&self, def: TopicDef) -> Result<Arc<TopicDef>> {
        let mut defs = self.defs.lock();
        if let Some(existing) = defs.topics.get(&*def.name) {
            existing.check_compatible(&def)?;
            return Ok(existing.clone());
        }
        let def = Arc::new(def);
        defs.topics.insert(def.name.to_string(), def.clone());
        Ok(def)
    }

    /// A new stream buffer subscribed to `topic`.
    pub(crate) fn subscribe(&self, topic: &TopicDef) -> Arc<StreamQueue<Delivered>> {
        let queue = StreamQueue::new(self.settings().stream_buffer_maxsize, self.space.clone());
        self.subs
            .by_topic
            .lock()
            .entry(topic.name.clone())
            .or_default()
            .push(queue.clone());
        self.subs
            .version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.subs.changed.notify_one();
        queue
    }

    /// Remove a stream buffer from its topic's subscribers.
    pub(crate) fn unsubscribe(&self, queue: &Arc<StreamQueue<Delivered>>) {
        let mut subs = self.subs.by_topic.lock();
        subs.retain(|_, qs| {
            qs.retain(|q| !Arc::ptr_eq(q, queue));
            !qs.is_empty()
        });
        drop(subs);
        self.subs
            .version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The app's value of type `T`, created with `T::default()` on first use
    /// (the slots behind [`App::extension`], and the state of the layers
    /// above the app: web pages, signals, cluster map, RPC replies).
    pub(crate) fn state<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.slots
            .lock()
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone()
            .downcast::<T>()
            .expect("slots are keyed by their TypeId")
    }
}

/// A Faustus application: its settings and everything it defines.
///
/// Cheap to clone; every clone is the same app.
///
/// ```
/// use faustus_core::App;
/// let app = App::builder("word-counts").broker("memory://").build().unwrap();
/// assert_eq!(app.id(), "word-counts");
/// ```
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.inner.app_id)
            .field("broker", &self.inner.settings().broker)
            .field("store", &self.inner.settings().store)
            .finish()
    }
}

impl App {
    /// Start configuring an app with this id.
    pub fn builder(id: impl Into<String>) -> AppBuilder {
        AppBuilder::new(id)
    }

    /// The app id used for the group and internal topics (with version when > 1).
    pub fn id(&self) -> &str {
        &self.inner.app_id
    }

    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings()
    }

    /// Change settings that only matter once a worker starts (data directory,
    /// web host/port, canonical URL …), as the worker's command-line flags do.
    /// Fails while a worker runs.
    pub fn configure(&self, f: impl FnOnce(&mut Settings)) -> Result<()> {
        if self
            .inner
            .started
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Err(Error::State(
                "settings cannot change while the worker runs".into(),
            ));
        }
        let mut guard = self.inner.settings.write();
        let mut s = (**guard).clone();
        f(&mut s);
        s.validate()?;
        *guard = Arc::new(s);
        Ok(())
    }

    /// The registry drivers and codecs are resolved from.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Counters.
    pub fn monitor(&self) -> &Monitor {
        &self.inner.monitor
    }

    /// The value of type `T` kept with this app, created with `T::default()`
    /// on first use; every clone of the app shares it.
    ///
    /// For crates that build on the core and need per-app state of their
    /// own: the `faustus` facade keeps the app's command-line commands
    /// (`app.command(..)`) here. Use a type private to your crate, so no one
    /// else's code shares the slot; put interior mutability inside `T`.
    /// `T::default()` runs under the app's definitions lock, so it must not
    /// call back into the app.
    ///
    /// ```
    /// use faustus_core::App;
    /// #[derive(Default)]
    /// struct Greetings(std::sync::Mutex<Vec<String>>);
    ///
    /// let app = App::builder("ext-demo").broker("memory://").build().unwrap();
    /// app.extension::<Greetings>().0.lock().unwrap().push("hello".into());
    /// assert_eq!(app.clone().extension::<Greetings>().0.lock().unwrap().len(), 1);
    /// ```
    pub fn extension<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.inner.state::<T>()
    }

    /// Start `service` with the worker and stop it with it.
    pub fn service(&self, service: impl Service) {
        self.inner.defs.lock().services.push(Arc::new(service));
    }

    /// Name, topic and help of every agent (for the `agents` command).
    pub fn agents(&self) -> Vec<AgentInfo> {
        self.inner
            .defs
            .lock()
            .agents
            .iter()
            .map(|a| a.info())
            .collect()
    }

    /// Name, changelog topic and help of every table (for the `tables` command).
    pub fn tables(&self) -> Vec<TableInfo> {
        self.inner
            .defs
            .lock()
            .tables
            .iter()
            .map(|t| TableInfo {
                name: t.name().to_string(),
                changelog: t.changelog().name.to_string(),
                help: t.help().to_string(),
                partitions: t.partitions(),
            })
            .collect()
    }

    /// Names of the topics the app declared.
    pub fn topics(&self) -> Vec<String> {
        self.inner.defs.lock().topics.keys().cloned().collect()
    }

    /// Wait until the message at `offset` of `tp` has been processed by every
    /// stream that received it (the worker must hold the partition).
    pub async fn processed(&self, tp: &TopicPartition, offset: i64) {
        let mut assignment = self.inner.assignment.subscribe();
        loop {
            let acks = assignment.borrow_and_update().get(tp).cloned();
            match acks {
                Some(acks) => tokio::select! {
                    _ = acks.processed(offset) => return,
                    _ = assignment.changed() => {}
                },
                // The sender lives as long as the app: `changed` never fails here.
                None => {
                    if assignment.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// For every stream buffer, its topic and the most events it ever held
    /// (never more than `stream_buffer_maxsize`).
    pub fn stream_buffer_peaks(&self) -> Vec<(String, usize)> {
        let subs = self.inner.subs.by_topic.lock();
        let mut v: Vec<(String, usize)> = subs
            .iter()
            .flat_map(|(t, qs)| qs.iter().map(move |q| (t.to_string(), q.peak())))
            .collect();
        v.sort();
        v
    }

    /// Partitions this worker holds now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.inner.assignment.borrow().keys().cloned().collect();
        v.sort();
        v
    }

    /// The transport (created on first use).
    pub async fn transport(&self) -> Result<Arc<dyn Transport>> {
        self.inner.transport().await
    }

    /// The shared producer (created on first use).
    pub async fn producer(&self) -> Result<Arc<dyn Producer>> {
        self.inner.producer().await
    }

    /// Wait until every record sent so far (`send(..).await` returns once
    /// a record is accepted, before its delivery) is delivered or failed.
    /// Fails when a delivery nobody awaited failed (each is also logged
    /// and counted). A worker does this at every commit and when it stops;
    /// call it before a process that sent without a worker ends (the
    /// command line does, after every command). Creates no producer.
    ///
    /// ```
    /// # async fn demo(app: faustus_core::App) -> faustus_core::Result<()> {
    /// let orders = app.topic::<String, String>("orders").build()?;
    /// orders.send("k".into(), "v".into()).await?;
    /// app.flush().await?; // delivered before the process exits
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self) -> Result<()> {
        let Some(producer) = self.inner.producer.get() else {
            return Ok(());
        };
        let taken = self.inner.deliveries.take();
        if let Err(e) = producer.flush().await {
            self.inner.deliveries.restore(taken);
            return Err(e);
        }
        match self
            .inner
            .deliveries
            .settle(&self.inner.monitor, taken)
            .await
        {
            0 => Ok(()),
            n => Err(Error::State(format!(
                "{n} record(s) sent without waiting were not delivered (logged above)"
            ))),
        }
    }

    /// The table store (created on first use).
    pub async fn store(&self) -> Result<Arc<dyn Store>> {
        self.inner.store().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_signals_run_in_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (a, b, c) = (order.clone(), order.clone(), order.clone());
        let app = App::builder("sig")
            .env(BTreeMap::new())
            .on_before_configured(move || a.lock().push("before"))
            .on_configured(move |s| {
                b.lock().push("configured");
                s.topic_partitions = 3;
            })
            .on_after_configured(move |_| c.lock().push("after"))
            .build()
            .unwrap();
        assert_eq!(*order.lock(), vec!["before", "configured", "after"]);
        assert_eq!(app.settings().topic_partitions, 3);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = App::builder("x")
            .env(BTreeMap::new())
            .setting("stream_buffer_maxsize", "lots")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("stream_buffer_maxsize"), "{e}");
        let e = App::builder("x")
            .env(BTreeMap::new())
            .value_serializer("yaml")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("yaml"), "{e}");
        let e = App::builder("x")
            .env(BTreeMap::new())
            .broker("localhost:9092")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("broker"), "{e}");
    }
}

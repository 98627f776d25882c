//! The cluster map's I/O: this worker's record published on the cluster
//! topic (at start, on every assignment change, every heartbeat, a tombstone
//! at stop), the topic read into the fold, and the `App` methods that expose
//! the map (`worker_id`, `cluster_map`, `cluster_watch`, `set_web_url` …).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::map::{ClusterLog, ClusterMap, WorkerRecord, HEARTBEAT};
use crate::app::App;
use crate::drivers::transport::{
    PartitionReader, PartitionReaderExt, ProducerExt, ReaderConfig, Record, TopicPartition,
    TopicSpec,
};
use crate::error::{Error, Result};
use crate::lifecycle::ShutdownSignal;

/// How long publishing this worker's record may wait for its delivery.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster-map state of one app (in `AppInner`).
#[derive(Debug)]
pub(crate) struct ClusterState {
    worker_id: Mutex<Option<String>>,
    web_url: watch::Sender<Option<String>>,
    map: watch::Sender<ClusterMap>,
    /// Keeps the standby reader off the partitions the conductor holds.
    pub(crate) standby: crate::cluster::standby::StandbyGate,
    /// Whether the cluster service runs (its topic exists).
    pub(crate) running: std::sync::atomic::AtomicBool,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            worker_id: Mutex::new(None),
            web_url: watch::Sender::new(None),
            map: watch::Sender::new(ClusterMap::default()),
            standby: Default::default(),
            running: Default::default(),
        }
    }
}

/// A partition reader (no group) of the app's transport, client id `{client_id}-{what}`.
pub(crate) async fn partition_reader(app: &App, what: &str) -> Result<Box<dyn PartitionReader>> {
    let transport = app.inner.transport().await?;
    transport
        .reader(&ReaderConfig::new(format!(
            "{}-{what}",
            app.inner.settings().broker_client_id
        )))
        .await
}

/// The name of the cluster topic of an app.
pub(crate) fn topic_name(app_id: &str) -> String {
    format!("{app_id}-__cluster")
}

impl App {
    /// This worker's id in the cluster map: the id given to
    /// [`set_worker_id`](App::set_worker_id), else a random one chosen on
    /// first use and kept for the life of this `App`.
    pub fn worker_id(&self) -> String {
        self.inner
            .state::<ClusterState>()
            .worker_id
            .lock()
            .get_or_insert_with(|| {
                format!(
                    "{}-{}",
                    self.inner.settings().broker_client_id,
                    uuid::Uuid::new_v4().simple()
                )
            })
            .clone()
    }

    /// Give this worker a stable id (e.g. the same across restarts with the
    /// same local store, so its record replaces the old one). Set it before
    /// the worker starts; fails while it runs.
    ///
    /// ```
    /// # let app = faustus_core::App::builder("demo").build().unwrap();
    /// app.set_worker_id("worker-a").unwrap();
    /// assert_eq!(app.worker_id(), "worker-a");
    /// ```
    pub fn set_worker_id(&self, id: impl Into<String>) -> Result<()> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::config("worker id", "must not be empty"));
        }
        if self.is_running() {
            return Err(Error::State(
                "the worker id cannot change while the worker runs".into(),
            ));
        }
        *self.inner.state::<ClusterState>().worker_id.lock() = Some(id);
        Ok(())
    }

    /// The URL other workers reach this one at: the `canonical_url` setting
    /// when set, else the URL the web server bound (see
    /// [`set_web_url`](App::set_web_url)), else `http://{web_host}:{web_port}`.
    pub fn canonical_url(&self) -> String {
        let settings = self.inner.settings();
        if !settings.canonical_url.is_empty() {
            return settings.canonical_url.clone();
        }
        if let Some(url) = self.inner.state::<ClusterState>().web_url.borrow().clone() {
            return url;
        }
        settings.canonical_url()
    }

    /// Record the URL the web server is reachable at once it has bound (the
    /// web server's startup calls this; with port 0 only then is the port
    /// known). A running worker republishes its cluster-map record.
    ///
    /// ```
    /// # let app = faustus_core::App::builder("demo").build().unwrap();
    /// app.set_web_url("http://127.0.0.1:41234");
    /// assert_eq!(app.canonical_url(), "http://127.0.0.1:41234");
    /// ```
    pub fn set_web_url(&self, url: impl Into<String>) {
        self.inner
            .state::<ClusterState>()
            .web_url
            .send_replace(Some(url.into()));
    }

    /// The latest cluster map this worker has read (empty until its worker
    /// has started and read the cluster topic).
    pub fn cluster_map(&self) -> ClusterMap {
        self.inner.state::<ClusterState>().map.borrow().clone()
    }

    /// A receiver of every new cluster map (`changed().await`, then `borrow()`).
    pub fn cluster_watch(&self) -> watch::Receiver<ClusterMap> {
        self.inner.state::<ClusterState>().map.subscribe()
    }

    /// Wait until the cluster map satisfies `cond`, and return it.
    pub async fn cluster_map_when(&self, mut cond: impl FnMut(&ClusterMap) -> bool) -> ClusterMap {
        let mut rx = self.cluster_watch();
        let map = match rx.wait_for(|m| cond(m)).await {
            Ok(m) => m.clone(),
            // The sender lives as long as the app; unreachable in practice.
            Err(_) => self.cluster_map(),
        };
        map
    }

    fn is_running(&self) -> bool {
        self.inner.is_started()
    }

    /// This worker's record as it stands now.
    fn local_record(&self, beat: u64) -> WorkerRecord {
        let assigned: BTreeSet<TopicPartition> =
            self.inner.assignment.borrow().keys().cloned().collect();
        let active: BTreeSet<u32> = assigned.iter().map(|tp| tp.partition).collect();
        let map = self.cluster_map();
        let replicas = self.inner.settings().table_standby_replicas;
        let id = self.worker_id();
        let mut tables = BTreeMap::new();
        let mut standbys = BTreeMap::new();
        for t in self.inner.defs.lock().tables.iter() {
            let mine: Vec<u32> = active
                .iter()
                .copied()
                .filter(|p| *p < t.partitions())
                .collect();
            let stand: Vec<u32> = map
                .standbys_of(&id, t.name(), t.partitions(), replicas)
                .into_iter()
                .filter(|p| !active.contains(p))
                .collect();
            if !mine.is_empty() {
                tables.insert(t.name().to_string(), mine);
            }
            // A global table is whole on every worker: no standbys.
            if !stand.is_empty() && !t.is_global() {
                standbys.insert(t.name().to_string(), stand);
            }
        }
        WorkerRecord {
            id,
            url: self.canonical_url(),
            assigned: assigned
                .into_iter()
                .map(|tp| (tp.topic.to_string(), tp.partition))
                .collect(),
            tables,
            standbys,
            beat,
        }
    }
}

/// The running cluster-map tasks of a worker.
pub(crate) struct ClusterService {
    state: std::sync::Arc<ClusterState>,
    stop: Box<dyn Fn() + Send + Sync>,
    publisher: JoinHandle<()>,
    reader: JoinHandle<()>,
    standby: JoinHandle<()>,
}

impl ClusterService {
    /// Create the cluster topic and start publishing and reading it. Failing
    /// to do so is logged, not fatal: the worker runs without a map.
    pub(crate) async fn start(app: &App) -> Option<ClusterService> {
        let topic = topic_name(app.id());
        let transport = match app.inner.transport().await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cluster map disabled: no transport");
                return None;
            }
        };
        let mut spec = TopicSpec::new(topic.clone(), 1).compacted(true);
        spec.replicas = app.inner.settings().topic_replication_factor;
        if let Err(e) = transport.create_topic(&spec).await {
            tracing::error!(topic = %topic, error = %e, "cluster map disabled: cannot create its topic");
            return None;
        }
        app.inner
            .state::<ClusterState>()
            .running
            .store(true, std::sync::atomic::Ordering::Release);
        let (signal, stop) = ShutdownSignal::new();
        let reader = tokio::spawn(read_loop(app.clone(), topic.clone(), signal.clone()));
        let standby = tokio::spawn(crate::cluster::standby::run(app.clone(), signal.clone()));
        let publisher = tokio::spawn(publish_loop(app.clone(), topic, signal));
        Some(ClusterService {
            state: app.inner.state::<ClusterState>(),
            stop: Box::new(stop),
            publisher,
            reader,
            standby,
        })
    }

    /// Stop: the publisher writes this worker's tombstone (a graceful leave).
    pub(crate) async fn leave(self) {
        (self.stop)();
        self.state
            .running
            .store(false, std::sync::atomic::Ordering::Release);
        let _ = self.publisher.await;
        let _ = self.reader.await;
        let _ = self.standby.await;
    }
}

async fn read_loop(app: App, topic: String, stop: ShutdownSignal) {
    loop {
        match read_cluster_topic(&app, &topic, &stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "reading the cluster topic failed; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait() => return,
                }
            }
        }
    }
}

async fn read_cluster_topic(app: &App, topic: &str, stop: &ShutdownSignal) -> Result<()> {
    let mut consumer = partition_reader(app, "cluster").await?;
    consumer
        .assign_at(&[(TopicPartition::new(topic, 0), 0)])
        .await?;
    let mut log = ClusterLog::default();
    while !stop.is_set() {
        let msgs = consumer.poll(Duration::from_millis(200)).await?;
        if msgs.is_empty() {
            continue;
        }
        for m in msgs {
            let Some(id) = m.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
                tracing::warn!(at = %m.coordinates(), "cluster record without a UTF-8 worker id key; skipped");
                continue;
            };
            let record = match &m.value {
                None => None,
                Some(v) => match serde_json::from_slice::<WorkerRecord>(v) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(at = %m.coordinates(), error = %e, "undecodable cluster record; skipped");
                        continue;
                    }
                },
            };
            log.apply(m.offset, id, record);
        }
        let map = log.map();
        app.inner
            .state::<ClusterState>()
            .map
            .send_if_modified(|old| {
                if *old == map {
                    false
                } else {
                    tracing::debug!(workers = map.workers().len(), "cluster map changed");
                    *old = map;
                    true
                }
            });
    }
    consumer.close().await.ok();
    Ok(())
}

async fn publish_loop(app: App, topic: String, stop: ShutdownSignal) {
    let mut url_rx = app.inner.state::<ClusterState>().web_url.subscribe();
    let mut map_rx = app.cluster_watch();
    let mut beats = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = 0u64;
    let mut last: Option<String> = None;
    let mut assignment = app.inner.assignment.subscribe();
    loop {
        assignment.borrow_and_update();
        let record = app.local_record(beat);
        // Compare without the beat: republish on a real change only.
        let now = serde_json::to_string(&(
            &record.url,
            &record.assigned,
            &record.tables,
            &record.standbys,
        ))
        .unwrap_or_default();
        if last.as_ref() != Some(&now) && publish(&app, &topic, Some(&record)).await {
            last = Some(now);
        }
        // Biased: when a change and a heartbeat are due at once, the order
        // is fixed (reproducible runs in the cluster simulator).
        tokio::select! {
            biased;
            r = assignment.changed() => { if r.is_err() { return; } }
            r = url_rx.changed() => { if r.is_err() { return; } }
            r = map_rx.changed() => { if r.is_err() { return; } }
            _ = beats.tick() => {
                beat += 1;
                let record = app.local_record(beat);
                publish(&app, &topic, Some(&record)).await;
            }
            _ = stop.wait() => break,
        }
    }
    // A graceful leave: remove this worker from everyone's map.
    publish(&app, &topic, None).await;
}

/// Send this worker's record (or tombstone) and wait for its delivery.
async fn publish(app: &App, topic: &str, record: Option<&WorkerRecord>) -> bool {
    let value = match record.map(serde_json::to_vec).transpose() {
        Ok(v) => v.map(Bytes::from),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode this worker's cluster record");
            return false;
        }
    };
    let mut r = Record::new(topic, Some(Bytes::from(app.worker_id())), value);
    r.partition = Some(0);
    let sent = async {
        let producer = app.inner.producer().await?;
        producer.send_and_wait(r).await
    };
    // Never hold up a shutdown on an unreachable broker.
    let sent = match tokio::time::timeout(PUBLISH_TIMEOUT, sent).await {
        Ok(r) => r,
        Err(_) => Err(Error::State(format!(
            "no delivery within {PUBLISH_TIMEOUT:?}"
        ))),
    };
    match sent {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(topic, error = %e, "publishing this worker's cluster record failed; retried at the next change or heartbeat");
            false
        }
    }
}

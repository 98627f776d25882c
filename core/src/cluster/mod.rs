//! The cluster map: which worker of the app holds which partitions, and
//! where to reach it.
//!
//! Every worker publishes a small record about itself — its id, its
//! canonical web URL, the topic partitions it is assigned, the active
//! partitions of each table and its standby partitions — to the internal
//! compacted topic `{app_id}-__cluster` (one partition, keyed by worker id),
//! after every change of its assignment or URL and every
//! [`HEARTBEAT`]. A graceful stop writes a tombstone. Every worker reads the
//! topic from the start with a partition reader (no group) and folds it into the same
//! [`ClusterMap`] (the fold depends only on the records read, so workers that
//! read the same prefix agree).
//!
//! Why a topic and not the group protocol: with rdkafka there is no custom
//! group assignor, so a member only learns its own assignment (see
//! `DESIGN.md`). The map gives table routing, the `/router` endpoint and
//! standby replicas the view of the whole group.
//!
//! Conflicts and crashes: when two records claim the same partition (a
//! rebalance moved it and the old owner has not republished yet), the later
//! record in the topic wins. A worker that crashed (no tombstone) expires
//! once another live worker has published [`EXPIRE_AFTER_BEATS`] heartbeats
//! after its last record — a logical clock, so every reader decides alike and
//! no wall clocks are compared.

pub(crate) mod standby;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::App;
use crate::drivers::transport::{
    PartitionReader, PartitionReaderExt, ProducerExt, ReaderConfig, Record, TopicPartition,
    TopicSpec,
};
use crate::error::{Error, Result};
use crate::lifecycle::ShutdownSignal;

/// How often a worker republishes its record even when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A worker whose last record is followed by this many heartbeats of another
/// live worker is considered gone (crashed without a tombstone).
pub const EXPIRE_AFTER_BEATS: u64 = 3;

/// How long publishing this worker's record may wait for its delivery.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// One worker as the cluster map knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id (see [`App::worker_id`]).
    pub id: String,
    /// Its canonical web URL (see [`App::canonical_url`]).
    pub url: String,
    /// Topic partitions it is assigned (sorted).
    pub assigned: Vec<TopicPartition>,
    /// Per table: the partitions it serves actively (sorted).
    pub tables: BTreeMap<String, Vec<u32>>,
    /// Per table: the partitions it keeps as a standby replica (sorted).
    pub standbys: BTreeMap<String, Vec<u32>>,
}

/// The record a worker publishes (its [`WorkerInfo`] plus its heartbeat count).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WorkerRecord {
    id: String,
    url: String,
    assigned: Vec<(String, u32)>,
    tables: BTreeMap<String, Vec<u32>>,
    standbys: BTreeMap<String, Vec<u32>>,
    beat: u64,
}

impl WorkerRecord {
    fn info(&self) -> WorkerInfo {
        let mut assigned: Vec<TopicPartition> = self
            .assigned
            .iter()
            .map(|(t, p)| TopicPartition::new(t.as_str(), *p))
            .collect();
        assigned.sort();
        WorkerInfo {
            id: self.id.clone(),
            url: self.url.clone(),
            assigned,
            tables: self.tables.clone(),
            standbys: self.standbys.clone(),
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct MapInner {
    /// Live workers, sorted by id.
    workers: Vec<WorkerInfo>,
    /// (table, partition) -> index in `workers`.
    table_owner: BTreeMap<(String, u32), usize>,
    /// topic partition -> index in `workers`.
    topic_owner: BTreeMap<TopicPartition, usize>,
}

/// Which worker of the app holds what, as derived from the cluster topic.
///
/// A cheap snapshot (`Arc` inside); get the latest with
/// [`App::cluster_map`], wait for changes with [`App::cluster_watch`].
///
/// ```
/// # async fn demo() -> faustus_core::Result<()> {
/// # let app = faustus_core::App::builder("demo").build()?;
/// let map = app.cluster_map();
/// for w in map.workers() {
///     println!("{} at {} serves {:?}", w.id, w.url, w.tables);
/// }
/// if let Some(owner) = map.table_owner("counts", 3) {
///     println!("counts[3] is served by {}", owner.url);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    inner: Arc<MapInner>,
}

impl fmt::Debug for ClusterMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.inner.workers.iter()).finish()
    }
}

impl ClusterMap {
    /// The live workers, sorted by id.
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.inner.workers
    }

    /// The worker with this id.
    pub fn worker(&self, id: &str) -> Option<&WorkerInfo> {
        self.inner
            .workers
            .binary_search_by(|w| w.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.inner.workers[i])
    }

    /// The worker serving `partition` of `table` actively.
    pub fn table_owner(&self, table: &str, partition: u32) -> Option<&WorkerInfo> {
        self.inner
            .table_owner
            .get(&(table.to_string(), partition))
            .map(|i| &self.inner.workers[*i])
    }

    /// The worker assigned `partition` of `topic`.
    pub fn topic_owner(&self, topic: &str, partition: u32) -> Option<&WorkerInfo> {
        self.inner
            .topic_owner
            .get(&TopicPartition::new(topic, partition))
            .map(|i| &self.inner.workers[*i])
    }

    /// No worker is known.
    pub fn is_empty(&self) -> bool {
        self.inner.workers.is_empty()
    }

    /// The standby holders of each partition of a table with `partitions`
    /// partitions, `replicas` per partition: for a partition with an active
    /// owner, the next `replicas` workers after the owner in id order
    /// (wrapping around), never the owner itself. Partitions nobody serves
    /// have no standbys. Every worker derives the same answer from the same map.
    pub fn standby_holders(
        &self,
        table: &str,
        partitions: u32,
        replicas: u32,
    ) -> BTreeMap<u32, Vec<&WorkerInfo>> {
        let workers = &self.inner.workers;
        let mut out = BTreeMap::new();
        if replicas == 0 || workers.len() < 2 {
            return out;
        }
        for p in 0..partitions {
            let Some(&owner) = self.inner.table_owner.get(&(table.to_string(), p)) else {
                continue;
            };
            let holders: Vec<&WorkerInfo> = (1..workers.len())
                .map(|k| &workers[(owner + k) % workers.len()])
                .take(replicas as usize)
                .collect();
            out.insert(p, holders);
        }
        out
    }

    /// The partitions of `table` that worker `id` should keep as standbys.
    pub fn standbys_of(&self, id: &str, table: &str, partitions: u32, replicas: u32) -> Vec<u32> {
        self.standby_holders(table, partitions, replicas)
            .into_iter()
            .filter(|(_, hs)| hs.iter().any(|w| w.id == id))
            .map(|(p, _)| p)
            .collect()
    }
}

/// One worker's latest record in the fold.
#[derive(Debug)]
struct Entry {
    record: WorkerRecord,
    /// Offset of its latest record in the cluster topic.
    offset: i64,
    /// Heartbeat counts of the other workers when this record was read.
    seen: BTreeMap<String, u64>,
}

/// The fold of the cluster topic: the latest record per worker.
#[derive(Debug, Default)]
pub(crate) struct ClusterLog {
    entries: BTreeMap<String, Entry>,
}

impl ClusterLog {
    /// Apply one record of the cluster topic (`None`: a tombstone).
    fn apply(&mut self, offset: i64, id: &str, record: Option<WorkerRecord>) {
        let Some(record) = record else {
            self.entries.remove(id);
            return;
        };
        let beat = record.beat;
        for (other, e) in self.entries.iter_mut() {
            if other != id {
                let seen = e.seen.entry(id.to_string()).or_insert(beat);
                // A restarted worker counts its beats from 0 again.
                if *seen > beat {
                    *seen = beat;
                }
            }
        }
        let seen = self
            .entries
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .map(|(other, e)| (other.clone(), e.record.beat))
            .collect();
        self.entries.insert(
            id.to_string(),
            Entry {
                record,
                offset,
                seen,
            },
        );
    }

    /// Whether a live worker has beaten often enough since `e` was written.
    fn expired(&self, e: &Entry) -> bool {
        e.seen.iter().any(|(other, seen)| {
            self.entries
                .get(other)
                .is_some_and(|o| o.record.beat.saturating_sub(*seen) >= EXPIRE_AFTER_BEATS)
        })
    }

    /// The map: live workers; each partition claimed by several goes to the latest record.
    fn map(&self) -> ClusterMap {
        let live: Vec<&Entry> = self.entries.values().filter(|e| !self.expired(e)).collect();
        // Latest claim wins.
        let mut tables: BTreeMap<(String, u32), (i64, &str)> = BTreeMap::new();
        let mut topics: BTreeMap<TopicPartition, (i64, &str)> = BTreeMap::new();
        for e in &live {
            for (t, ps) in &e.record.tables {
                for p in ps {
                    let slot = tables
                        .entry((t.clone(), *p))
                        .or_insert((e.offset, &e.record.id));
                    if e.offset > slot.0 {
                        *slot = (e.offset, &e.record.id);
                    }
                }
            }
            for (t, p) in &e.record.assigned {
                let slot = topics
                    .entry(TopicPartition::new(t.as_str(), *p))
                    .or_insert((e.offset, &e.record.id));
                if e.offset > slot.0 {
                    *slot = (e.offset, &e.record.id);
                }
            }
        }
        let mut workers: Vec<WorkerInfo> = live.iter().map(|e| e.record.info()).collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        let index: BTreeMap<String, usize> = workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        // Drop claims a later record overrode, so each partition has one owner.
        for w in workers.iter_mut() {
            let id = w.id.clone();
            for (t, ps) in w.tables.iter_mut() {
                ps.retain(|p| tables.get(&(t.clone(), *p)).map(|x| x.1) == Some(id.as_str()));
            }
            w.tables.retain(|_, ps| !ps.is_empty());
            w.assigned
                .retain(|tp| topics.get(tp).map(|x| x.1) == Some(id.as_str()));
        }
        ClusterMap {
            inner: Arc::new(MapInner {
                table_owner: tables
                    .into_iter()
                    .filter_map(|(k, (_, id))| index.get(id).map(|i| (k, *i)))
                    .collect(),
                topic_owner: topics
                    .into_iter()
                    .filter_map(|(k, (_, id))| index.get(id).map(|i| (k, *i)))
                    .collect(),
                workers,
            }),
        }
    }
}

/// The cluster-map state of one app (in `AppInner`).
#[derive(Debug)]
pub(crate) struct ClusterState {
    worker_id: Mutex<Option<String>>,
    web_url: watch::Sender<Option<String>>,
    map: watch::Sender<ClusterMap>,
    /// Keeps the standby reader off the partitions the conductor holds.
    pub(crate) standby: crate::cluster::standby::StandbyGate,
}

impl Default for ClusterState {
    fn default() -> Self {
        ClusterState {
            worker_id: Mutex::new(None),
            web_url: watch::Sender::new(None),
            map: watch::Sender::new(ClusterMap::default()),
            standby: Default::default(),
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
            self.inner.assigned.lock().keys().cloned().collect();
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
        let (signal, stop) = ShutdownSignal::new();
        let reader = tokio::spawn(read_loop(app.clone(), topic.clone(), signal.clone()));
        let standby = tokio::spawn(crate::cluster::standby::run(app.clone(), signal.clone()));
        let publisher = tokio::spawn(publish_loop(app.clone(), topic, signal));
        Some(ClusterService {
            stop: Box::new(stop),
            publisher,
            reader,
            standby,
        })
    }

    /// Stop: the publisher writes this worker's tombstone (a graceful leave).
    pub(crate) async fn leave(self) {
        (self.stop)();
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
    loop {
        let changed = app.inner.assigned_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
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
            _ = &mut changed => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, beat: u64, tables: &[(&str, &[u32])]) -> WorkerRecord {
        WorkerRecord {
            id: id.into(),
            url: format!("http://{id}"),
            assigned: tables
                .iter()
                .flat_map(|(_, ps)| ps.iter().map(|p| ("events".to_string(), *p)))
                .collect(),
            tables: tables
                .iter()
                .map(|(t, ps)| (t.to_string(), ps.to_vec()))
                .collect(),
            standbys: BTreeMap::new(),
            beat,
        }
    }

    #[test]
    fn later_claims_win_and_tombstones_remove() {
        let mut log = ClusterLog::default();
        log.apply(0, "a", Some(rec("a", 0, &[("t", &[0, 1])])));
        log.apply(1, "b", Some(rec("b", 0, &[("t", &[1])])));
        let m = log.map();
        assert_eq!(m.workers().len(), 2);
        assert_eq!(m.table_owner("t", 0).unwrap().id, "a");
        assert_eq!(m.table_owner("t", 1).unwrap().id, "b");
        assert_eq!(m.topic_owner("events", 1).unwrap().id, "b");
        assert_eq!(m.worker("a").unwrap().tables["t"], vec![0]);
        log.apply(2, "b", None);
        let m = log.map();
        assert_eq!(m.workers().len(), 1);
        assert!(m.table_owner("t", 1).is_some_and(|w| w.id == "a"));
    }

    #[test]
    fn a_silent_worker_expires_after_others_beat() {
        let mut log = ClusterLog::default();
        log.apply(0, "ghost", Some(rec("ghost", 5, &[("t", &[0])])));
        log.apply(1, "a", Some(rec("a", 0, &[("t", &[1])])));
        for beat in 1..EXPIRE_AFTER_BEATS {
            log.apply(1 + beat as i64, "a", Some(rec("a", beat, &[("t", &[1])])));
            assert!(log.map().worker("ghost").is_some(), "beat {beat}");
        }
        log.apply(10, "a", Some(rec("a", EXPIRE_AFTER_BEATS, &[("t", &[1])])));
        let m = log.map();
        assert!(m.worker("ghost").is_none());
        assert!(m.table_owner("t", 0).is_none());
        // It comes back when it publishes again.
        log.apply(11, "ghost", Some(rec("ghost", 0, &[("t", &[0])])));
        assert!(log.map().worker("ghost").is_some());
    }

    #[test]
    fn standbys_are_the_next_workers_after_the_owner() {
        let mut log = ClusterLog::default();
        log.apply(0, "a", Some(rec("a", 0, &[("t", &[0, 3])])));
        log.apply(1, "b", Some(rec("b", 0, &[("t", &[1])])));
        log.apply(2, "c", Some(rec("c", 0, &[("t", &[2])])));
        let m = log.map();
        let h = m.standby_holders("t", 4, 1);
        let ids = |p: u32| h[&p].iter().map(|w| w.id.as_str()).collect::<Vec<_>>();
        assert_eq!(ids(0), ["b"]);
        assert_eq!(ids(1), ["c"]);
        assert_eq!(ids(2), ["a"]);
        assert_eq!(m.standbys_of("b", "t", 4, 1), vec![0, 3]);
        let h = m.standby_holders("t", 4, 5);
        assert_eq!(h[&2].len(), 2, "never the owner, at most the others");
        assert!(m.standby_holders("t", 4, 0).is_empty());
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        /// A cluster-topic record: worker (0..4), a tombstone, or claims of
        /// partitions 0..6 of table `t` with a heartbeat count.
        fn step() -> impl Strategy<Value = (usize, Option<(Vec<u32>, u64)>)> {
            (
                0usize..4,
                prop_oneof![
                    1 => Just(None),
                    6 => (proptest::collection::vec(0u32..6, 0..4), 0u64..8).prop_map(Some),
                ],
            )
        }

        proptest! {
            #[test]
            fn every_partition_has_one_owner_the_latest_live_claim(
                steps in proptest::collection::vec(step(), 1..60),
                replicas in 0u32..4,
            ) {
                let mut log = ClusterLog::default();
                // Model: the latest record (offset, beats, claims) per worker.
                let mut latest: BTreeMap<String, (i64, u64, Vec<u32>)> = BTreeMap::new();
                for (offset, (w, r)) in steps.iter().enumerate() {
                    let id = format!("w{w}");
                    let offset = offset as i64;
                    match r {
                        None => {
                            log.apply(offset, &id, None);
                            latest.remove(&id);
                        }
                        Some((ps, beat)) => {
                            log.apply(offset, &id, Some(rec(&id, *beat, &[("t", ps)])));
                            latest.insert(id, (offset, *beat, ps.clone()));
                        }
                    }
                }
                let map = log.map();
                // Workers: a subset of those with a record, sorted, unique.
                let ids: Vec<&str> = map.workers().iter().map(|w| w.id.as_str()).collect();
                prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(ids.iter().all(|id| latest.contains_key(*id)));
                for p in 0..6u32 {
                    let holders: Vec<&str> = map
                        .workers()
                        .iter()
                        .filter(|w| w.tables.get("t").is_some_and(|ps| ps.contains(&p)))
                        .map(|w| w.id.as_str())
                        .collect();
                    prop_assert!(holders.len() <= 1, "partition {} held by {:?}", p, holders);
                    // The owner is the live worker whose latest record claims p last.
                    let expected = latest
                        .iter()
                        .filter(|(id, (_, _, ps))| ids.contains(&id.as_str()) && ps.contains(&p))
                        .max_by_key(|(_, (o, _, _))| *o)
                        .map(|(id, _)| id.as_str());
                    prop_assert_eq!(map.table_owner("t", p).map(|w| w.id.as_str()), expected);
                    prop_assert_eq!(holders.first().copied(), expected);
                    // Standbys: never the owner, distinct, as many as there can be.
                    if let Some(owner) = expected {
                        let hs = map.standby_holders("t", 6, replicas);
                        let hs: Vec<&str> = hs.get(&p).map(|v| v.iter().map(|w| w.id.as_str()).collect()).unwrap_or_default();
                        prop_assert!(!hs.contains(&owner));
                        let unique: BTreeSet<&str> = hs.iter().copied().collect();
                        prop_assert_eq!(unique.len(), hs.len());
                        prop_assert_eq!(hs.len(), (replicas as usize).min(ids.len() - 1));
                    }
                }
                // A worker is gone only when another live worker's heartbeat
                // count rose by 3 since its record: from the count that worker
                // had then (if it had a record) or its lowest count after.
                for (id, (offset, _, _)) in &latest {
                    if ids.contains(&id.as_str()) {
                        continue;
                    }
                    let expired = ids.iter().any(|w| {
                        let w = w.to_string();
                        let before = steps[..*offset as usize]
                            .iter()
                            .rev()
                            .find(|(x, _)| format!("w{x}") == w)
                            .and_then(|(_, r)| r.as_ref().map(|(_, b)| *b));
                        let after = steps[(*offset as usize + 1)..]
                            .iter()
                            .filter(|(x, _)| format!("w{x}") == w)
                            .filter_map(|(_, r)| r.as_ref().map(|(_, b)| *b));
                        let baseline = before.into_iter().chain(after).min();
                        let now = latest.get(&w).map(|l| l.1);
                        matches!((now, baseline), (Some(n), Some(b)) if n >= b + EXPIRE_AFTER_BEATS)
                    });
                    prop_assert!(expired, "{} dropped without three beats of a live worker", id);
                }
            }
        }
    }
}

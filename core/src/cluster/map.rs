//! The cluster map as data: the record each worker publishes, and the fold
//! of the cluster topic into the map every worker derives alike (latest
//! record per worker, expiry by a logical clock, standby placement).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drivers::transport::TopicPartition;

/// How often a worker republishes its record even when nothing changed.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A worker whose last record is followed by this many heartbeats of another
/// live worker is considered gone (crashed without a tombstone).
pub const EXPIRE_AFTER_BEATS: u64 = 3;

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
pub(crate) struct WorkerRecord {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) assigned: Vec<(String, u32)>,
    pub(crate) tables: BTreeMap<String, Vec<u32>>,
    pub(crate) standbys: BTreeMap<String, Vec<u32>>,
    pub(crate) beat: u64,
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
    pub(crate) fn apply(&mut self, offset: i64, id: &str, record: Option<WorkerRecord>) {
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
    pub(crate) fn map(&self) -> ClusterMap {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

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

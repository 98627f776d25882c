//! Standby replicas: table partitions this worker does not serve but keeps
//! warm by reading their changelogs continuously into the local store, so a
//! failover only replays the tail.
//!
//! Which partitions: `table_standby_replicas` per partition, placed by
//! [`ClusterMap::standby_holders`](crate::cluster::ClusterMap::standby_holders)
//! from the cluster map, so every worker agrees without talking. The reader
//! stores each batch with the offset of its last record (the same
//! `TableStore::apply` recovery uses); when the partition becomes active
//! here, recovery starts at that offset + 1.
//!
//! The conductor and the reader never write one partition at the same time:
//! before recovering partitions the conductor [`claims`](StandbyGate::claim)
//! them — which waits for a batch being applied — and the reader drops what
//! it read of a claimed partition; revoked partitions are released.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::app::App;
use crate::cluster::ClusterState;
use crate::drivers::store::{TableStoreExt, WriteBatch};
use crate::drivers::transport::{PartitionReader, TopicPartition};
use crate::error::Result;
use crate::lifecycle::ShutdownSignal;
use crate::table::TableOps;

/// Which partition numbers the conductor holds (or is recovering).
#[derive(Debug)]
pub(crate) struct StandbyGate {
    active: Mutex<BTreeSet<u32>>,
    /// Held by the reader while it applies a batch.
    applying: tokio::sync::Mutex<()>,
    /// Bumped on every claim and release.
    version: watch::Sender<u64>,
}

impl Default for StandbyGate {
    fn default() -> Self {
        StandbyGate {
            active: Mutex::new(BTreeSet::new()),
            applying: tokio::sync::Mutex::new(()),
            version: watch::Sender::new(0),
        }
    }
}

impl StandbyGate {
    /// The conductor takes these partitions: once this returns, the standby
    /// reader writes none of them (a batch in flight has finished).
    pub(crate) async fn claim(&self, partitions: &BTreeSet<u32>) {
        self.active.lock().extend(partitions.iter().copied());
        self.version.send_modify(|v| *v += 1);
        drop(self.applying.lock().await);
    }

    /// The conductor no longer holds these partitions.
    pub(crate) fn release(&self, partitions: &BTreeSet<u32>) {
        let mut active = self.active.lock();
        for p in partitions {
            active.remove(p);
        }
        drop(active);
        self.version.send_modify(|v| *v += 1);
    }

    fn active(&self) -> BTreeSet<u32> {
        self.active.lock().clone()
    }
}

/// Read the standby partitions of every table until `stop`.
pub(crate) async fn run(app: App, stop: ShutdownSignal) {
    // Global tables are read in full by their own reader on every worker.
    let tables: Vec<_> = app
        .inner
        .defs
        .lock()
        .tables
        .iter()
        .filter(|t| !t.is_global())
        .cloned()
        .collect();
    if tables.is_empty() || app.inner.settings().table_standby_replicas == 0 {
        return;
    }
    loop {
        match read(&app, &tables, &stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "standby replica reader failed; restarting in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.wait() => return,
                }
            }
        }
    }
}

/// The standby changelog partitions this worker should read now: table index per tp.
fn wanted(app: &App, tables: &[Arc<dyn TableOps>]) -> BTreeMap<TopicPartition, usize> {
    let map = app.cluster_map();
    let id = app.worker_id();
    let replicas = app.inner.settings().table_standby_replicas;
    let active = app.inner.state::<ClusterState>().standby.active();
    let mut out = BTreeMap::new();
    for (i, t) in tables.iter().enumerate() {
        for p in map.standbys_of(&id, t.name(), t.partitions(), replicas) {
            if !active.contains(&p) {
                out.insert(TopicPartition::new(t.changelog().name.clone(), p), i);
            }
        }
    }
    out
}

async fn read(app: &App, tables: &[Arc<dyn TableOps>], stop: &ShutdownSignal) -> Result<()> {
    let mut consumer = crate::cluster::partition_reader(app, "standby").await?;
    let mut map_rx = app.cluster_watch();
    let mut gate_rx = app
        .inner
        .state::<ClusterState>()
        .standby
        .version
        .subscribe();
    let mut current: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    let mut first = true;
    while !stop.is_set() {
        let changed =
            map_rx.has_changed().unwrap_or(false) || gate_rx.has_changed().unwrap_or(false);
        if changed || first {
            first = false;
            map_rx.mark_unchanged();
            gate_rx.mark_unchanged();
            let want = wanted(app, tables);
            if want != current {
                reassign(&mut consumer, tables, &want).await?;
                tracing::info!(partitions = ?want.keys().collect::<Vec<_>>(), "standby replicas");
                current = want;
            }
        }
        if current.is_empty() {
            tokio::select! {
                _ = map_rx.changed() => {}
                _ = gate_rx.changed() => {}
                _ = stop.wait() => {}
            }
            // Looked at again at the top of the loop.
            map_rx.mark_changed();
            continue;
        }
        let msgs = consumer.poll(Duration::from_millis(200)).await?;
        if msgs.is_empty() {
            continue;
        }
        let mut batches: HashMap<TopicPartition, WriteBatch> = HashMap::new();
        for m in msgs {
            let tp = m.tp();
            if !current.contains_key(&tp) {
                continue;
            }
            let b = batches.entry(tp).or_default();
            b.ops
                .push((m.key.clone().unwrap_or_default(), m.value.clone()));
            b.offset = Some(m.offset);
        }
        let gate = &app.inner.state::<ClusterState>().standby;
        let _applying = gate.applying.lock().await;
        let active = gate.active();
        // One store write per table per poll (redb: one transaction).
        let mut per_table: BTreeMap<usize, Vec<(u32, WriteBatch)>> = BTreeMap::new();
        for (tp, batch) in batches {
            if active.contains(&tp.partition) {
                // The conductor took it over; recovery reads from the stored offset.
                continue;
            }
            if let Some(i) = current.get(&tp) {
                per_table.entry(*i).or_default().push((tp.partition, batch));
            }
        }
        for (i, batches) in per_table {
            let Some(store) = tables[i].table_store() else {
                continue;
            };
            let n: usize = batches.iter().map(|(_, b)| b.ops.len()).sum();
            store.apply_partitions(batches).await?;
            app.inner.monitor.add_standby_records(n as u64);
        }
    }
    consumer.close().await.ok();
    Ok(())
}

/// Read `want`, each partition from its stored offset + 1.
async fn reassign(
    consumer: &mut Box<dyn PartitionReader>,
    tables: &[Arc<dyn TableOps>],
    want: &BTreeMap<TopicPartition, usize>,
) -> Result<()> {
    let tps: Vec<TopicPartition> = want.keys().cloned().collect();
    consumer.assign(&tps).await?;
    for (tp, i) in want {
        let Some(store) = tables[*i].table_store() else {
            continue;
        };
        let start = store.replay_from(tp.partition).await?;
        let end = consumer.high_watermark(tp).await?;
        if start > end {
            tracing::warn!(changelog = %tp, stored = start - 1, changelog_end = end,
                "the store has applied changelog offsets the changelog does not have: wiping the standby partition and reading it in full");
            store.drop_partition(tp.partition).await?;
            consumer.seek(tp, 0).await?;
        } else {
            consumer.seek(tp, start).await?;
        }
    }
    Ok(())
}

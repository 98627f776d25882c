//! Inspecting a run and checking its invariants: partition owners, one
//! owner per partition, tables equal to the fold of their changelogs, and
//! everything the cluster left on the broker ([`Output`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use faustus_core::store::{Store, TableSpec};
use faustus_core::transport::TopicPartition;
use faustus_core::{Error, Result};
use faustus_store_memory::MemoryStore;

use super::cluster::{worker_name, State};
use super::Cluster;

/// Everything the cluster left on the broker: for a run's reproducibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Every record of every topic (timestamps left out: they are wall-clock).
    pub records: Vec<OutputRecord>,
    /// The group's committed offsets.
    pub committed: Vec<(TopicPartition, Option<i64>)>,
}

/// One record on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Option<Bytes>,
}

impl Cluster {
    /// The running workers owning each partition of `topic`.
    pub fn owners(&self, topic: &str) -> BTreeMap<u32, Vec<String>> {
        let count = self.broker.partition_count(topic).unwrap_or(0);
        let mut out: BTreeMap<u32, Vec<String>> = (0..count).map(|p| (p, Vec::new())).collect();
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                for tp in app.assignment() {
                    if &*tp.topic == topic {
                        out.entry(tp.partition).or_default().push(worker_name(*n));
                    }
                }
            }
        }
        out
    }

    /// Every partition of `topic` has exactly one running owner.
    pub fn check_one_owner_per_partition(&self, topic: &str) -> Result<()> {
        let owners = self.owners(topic);
        if owners.is_empty() {
            return Err(Error::State(format!("topic {topic:?} has no partitions")));
        }
        let bad: Vec<_> = owners.iter().filter(|(_, o)| o.len() != 1).collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::State(format!(
                "seed {}: partitions of {topic:?} without exactly one owner: {bad:?}",
                self.config.seed
            )))
        }
    }

    /// The fold of a changelog topic: per partition, each key's last value
    /// (deleted keys absent).
    pub fn changelog_fold(&self, changelog: &str) -> BTreeMap<u32, BTreeMap<Bytes, Bytes>> {
        let count = self.broker.partition_count(changelog).unwrap_or(0);
        let mut out = BTreeMap::new();
        for p in 0..count {
            let mut state: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            for m in self.broker.messages(changelog, p) {
                let Some(key) = m.key.clone() else { continue };
                match m.value.clone() {
                    Some(v) => state.insert(key, v),
                    None => state.remove(&key),
                };
            }
            out.insert(p, state);
        }
        out
    }

    /// What worker `worker` has stored for one partition of `table` (all of
    /// it, in key order), with the stored changelog offset.
    pub async fn stored(
        &self,
        worker: &str,
        table: &str,
        partitions: u32,
        partition: u32,
    ) -> Result<(BTreeMap<Bytes, Bytes>, Option<i64>)> {
        let store = MemoryStore::named(&self.store_name(worker));
        let ts = store.open(&TableSpec::new(table, partitions)).await?;
        let mut out = BTreeMap::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = ts.scan(partition, after.as_deref(), 1024).await?;
            let Some(last) = page.last().map(|(k, _)| k.clone()) else {
                break;
            };
            out.extend(page);
            after = Some(last);
        }
        Ok((out, ts.persisted_offset(partition).await?))
    }

    /// For every table of the app, every partition's owner has stored exactly
    /// the fold of the partition's changelog, up to its last record.
    pub async fn check_tables_match_changelogs(&self) -> Result<()> {
        let Some(app) = self.workers.values().find_map(|s| match &s.state {
            State::Running { app, .. } => Some(app.clone()),
            _ => None,
        }) else {
            return Err(Error::State("no running worker".into()));
        };
        for table in app.tables() {
            let fold = self.changelog_fold(&table.changelog);
            let partitions = fold.len() as u32;
            for (p, expected) in &fold {
                let owners = self.table_owners(&table.name, *p);
                let [owner] = owners.as_slice() else {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} is active on {owners:?}, not on exactly one worker",
                        self.config.seed, table.name
                    )));
                };
                let (stored, offset) = self.stored(owner, &table.name, partitions, *p).await?;
                let end = self
                    .broker
                    .end_offset(&TopicPartition::new(table.changelog.clone(), *p));
                if &stored != expected {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} on {owner}: stored {} keys, the changelog folds to {} keys; \
                         first difference: {:?}",
                        self.config.seed,
                        table.name,
                        stored.len(),
                        expected.len(),
                        first_difference(&stored, expected)
                    )));
                }
                if end > 0 && offset != Some(end - 1) {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} on {owner}: stored offset {offset:?}, changelog ends at {end}",
                        self.config.seed, table.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Running workers serving partition `p` of `table`.
    fn table_owners(&self, table: &str, p: u32) -> Vec<String> {
        let mut out = Vec::new();
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                let serves = app.assignment().iter().any(|tp| tp.partition == p)
                    && app.tables().iter().any(|t| t.name == table);
                if serves {
                    out.push(worker_name(*n));
                }
            }
        }
        out
    }

    /// Every record on the broker and every committed offset of the group.
    pub fn output(&self) -> Output {
        let group = self.group();
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for topic in self.broker.topics() {
            let count = self.broker.partition_count(&topic).unwrap_or(0);
            for p in 0..count {
                for m in self.broker.messages(&topic, p) {
                    records.push(OutputRecord {
                        topic: topic.clone(),
                        partition: p,
                        offset: m.offset,
                        key: m.key.clone(),
                        value: m.value.clone(),
                    });
                }
                let tp = TopicPartition::new(topic.clone(), p);
                committed.push((tp.clone(), self.broker.committed(&group, &tp)));
            }
        }
        Output { records, committed }
    }
}

fn first_difference(
    a: &BTreeMap<Bytes, Bytes>,
    b: &BTreeMap<Bytes, Bytes>,
) -> Option<(Bytes, Option<Bytes>, Option<Bytes>)> {
    let keys: BTreeSet<&Bytes> = a.keys().chain(b.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (x, y) = (a.get(k), b.get(k));
        (x != y).then(|| (k.clone(), x.cloned(), y.cloned()))
    })
}

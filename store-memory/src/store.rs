//! [`MemoryStore`]: tables as ordered maps in process memory.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::store::{Store, TableSpec, TableStore, WriteBatch};
use faustus_core::{Error, Result};
use parking_lot::Mutex;

use crate::config::MemoryConfig;
use crate::SCHEME;

/// The tables of one store, by name.
type Tables = Arc<Mutex<HashMap<String, Arc<MemoryTable>>>>;

/// Process-wide named stores (`memory://NAME`). They live as long as the process.
fn named_stores() -> &'static Mutex<HashMap<String, Tables>> {
    static NAMED: OnceLock<Mutex<HashMap<String, Tables>>> = OnceLock::new();
    NAMED.get_or_init(Default::default)
}

/// The `memory://` store: every table partition is a `BTreeMap` of key and
/// value bytes plus the last changelog offset applied to it.
///
/// Opening a table name that is already open returns the same state. Each
/// partition has its own lock, held only for the duration of one call, so
/// tasks on different partitions never wait for each other.
#[derive(Clone)]
pub struct MemoryStore {
    name: Option<String>,
    tables: Tables,
}

impl MemoryStore {
    /// A fresh store, private to its owner (`memory://`).
    pub fn new() -> Self {
        MemoryStore {
            name: None,
            tables: Tables::default(),
        }
    }

    /// The process-wide store called `name` (`memory://NAME`): every call
    /// with the same name shares the same tables, even after every handle
    /// is dropped, the way a durable store keeps its files across restarts.
    pub fn named(name: &str) -> Self {
        let tables = named_stores()
            .lock()
            .entry(name.to_string())
            .or_default()
            .clone();
        MemoryStore {
            name: Some(name.to_string()),
            tables,
        }
    }

    /// The store a [`MemoryConfig`] describes.
    pub fn from_config(config: &MemoryConfig) -> Self {
        match &config.name {
            Some(name) => MemoryStore::named(name),
            None => MemoryStore::new(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tables: Vec<String> = self.tables.lock().keys().cloned().collect();
        tables.sort();
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .field("tables", &tables)
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        if table.partitions == 0 {
            return Err(Error::config(
                format!("{}.partitions", table.name),
                format!("table {:?} needs at least one partition", table.name),
            ));
        }
        let mut tables = self.tables.lock();
        let state = tables
            .entry(table.name.clone())
            .or_insert_with(|| Arc::new(MemoryTable::new(table)))
            .clone();
        if state.partitions.len() != table.partitions as usize {
            return Err(Error::State(format!(
                "memory store: table {:?} is already open with {} partitions, \
                 cannot open it with {}",
                table.name,
                state.partitions.len(),
                table.partitions
            )));
        }
        Ok(state)
    }
}

/// One partition of a table.
#[derive(Default)]
struct Partition {
    data: BTreeMap<Bytes, Bytes>,
    offset: Option<i64>,
}

impl Partition {
    /// Apply the ops in order, then the offset if the batch has one.
    fn apply(&mut self, batch: WriteBatch) {
        for (key, value) in batch.ops {
            match value {
                Some(value) => {
                    self.data.insert(key, value);
                }
                None => {
                    self.data.remove(&key);
                }
            }
        }
        if let Some(offset) = batch.offset {
            self.offset = Some(offset);
        }
    }
}

/// The state of one table: a [`Partition`] per changelog partition.
struct MemoryTable {
    name: String,
    partitions: Vec<Mutex<Partition>>,
}

impl MemoryTable {
    fn new(spec: &TableSpec) -> Self {
        MemoryTable {
            name: spec.name.clone(),
            partitions: (0..spec.partitions).map(|_| Mutex::default()).collect(),
        }
    }

    fn partition(&self, partition: u32) -> Result<&Mutex<Partition>> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::NotFound {
                what: "table partition",
                name: format!(
                    "{:?} partition {partition} (the table has {} partitions, 0..{})",
                    self.name,
                    self.partitions.len(),
                    self.partitions.len()
                ),
            })
    }
}

impl fmt::Debug for MemoryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTable")
            .field("name", &self.name)
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

#[async_trait]
impl TableStore for MemoryTable {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.partition(partition)?.lock().data.get(key).cloned())
    }

    /// Applies the ops in order under the partition's lock, so readers see
    /// all of the batch or none of it. When the batch carries an offset the
    /// partition's offset becomes exactly that value, even if it is lower
    /// than the current one: the caller (changelog recovery, the table
    /// writer) owns the ordering; a batch without an offset leaves it alone.
    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        let mut part = self.partition(partition)?.lock();
        part.apply(batch);
        Ok(())
    }

    /// As [`apply`](Self::apply) (memory is never durable), but a batch
    /// large against the partition is compacted ([`WriteBatch::compact`])
    /// and merged in bulk: the puts built into a map in one pass (they are
    /// sorted) and appended, instead of one tree insert per key.
    async fn apply_replayed(&self, partition: u32, mut batch: WriteBatch) -> Result<()> {
        let part = self.partition(partition)?;
        batch.compact();
        let mut part = part.lock();
        if batch.ops.len().saturating_mul(8) < part.data.len() {
            part.apply(batch);
            return Ok(());
        }
        // Each key once, in order: the order of the ops no longer matters.
        let mut puts = Vec::with_capacity(batch.ops.len());
        for (key, value) in batch.ops {
            match value {
                Some(value) => puts.push((key, value)),
                None => {
                    part.data.remove(&key);
                }
            }
        }
        let mut puts: BTreeMap<Bytes, Bytes> = puts.into_iter().collect();
        part.data.append(&mut puts);
        if let Some(offset) = batch.offset {
            part.offset = Some(offset);
        }
        Ok(())
    }

    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let part = self.partition(partition)?.lock();
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        Ok(part
            .data
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn len(&self, partition: u32) -> Result<u64> {
        Ok(self.partition(partition)?.lock().data.len() as u64)
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        Ok(self.partition(partition)?.lock().offset)
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        let old = std::mem::take(&mut *self.partition(partition)?.lock());
        tracing::debug!(table = %self.name, partition, keys = old.data.len(), "dropped partition");
        // `old` is freed here, outside the lock.
        Ok(())
    }

    async fn reset(&self) -> Result<()> {
        // Take every partition's lock first so no reader sees a half-reset table.
        let mut guards: Vec<_> = self.partitions.iter().map(|p| p.lock()).collect();
        let old: Vec<Partition> = guards
            .iter_mut()
            .map(|g| std::mem::take(&mut **g))
            .collect();
        drop(guards);
        tracing::debug!(table = %self.name, partitions = old.len(), "reset table");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_name_same_state_and_partition_mismatch() {
        let store = MemoryStore::new();
        let a = store.open(&TableSpec::new("t", 3)).await.unwrap();
        let b = store.open(&TableSpec::new("t", 3)).await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put("k", "v");
        a.apply(2, batch).await.unwrap();
        assert_eq!(b.len(2).await.unwrap(), 1);
        let e = store.open(&TableSpec::new("t", 4)).await.unwrap_err();
        assert!(e.to_string().contains("3 partitions"), "{e}");
        let e = store.open(&TableSpec::new("none", 0)).await.unwrap_err();
        assert!(matches!(e, Error::Config { .. }), "{e}");
    }

    #[tokio::test]
    async fn out_of_range_names_table_and_partition() {
        let store = MemoryStore::new();
        let t = store.open(&TableSpec::new("counts", 2)).await.unwrap();
        let e = t.get(2, b"k").await.unwrap_err();
        let s = e.to_string();
        assert!(s.contains("\"counts\" partition 2"), "{s}");
        assert!(s.contains("2 partitions"), "{s}");
    }

    #[tokio::test]
    async fn offset_follows_batches_even_backwards() {
        let store = MemoryStore::new();
        let t = store.open(&TableSpec::new("t", 1)).await.unwrap();
        let batch = |offset| WriteBatch {
            ops: Vec::new(),
            offset,
        };
        t.apply(0, batch(Some(10))).await.unwrap();
        t.apply(0, batch(None)).await.unwrap();
        assert_eq!(t.persisted_offset(0).await.unwrap(), Some(10));
        t.apply(0, batch(Some(4))).await.unwrap();
        assert_eq!(t.persisted_offset(0).await.unwrap(), Some(4));
    }

    #[test]
    fn debug_does_not_dump_data() {
        let store = MemoryStore::named("faustus-store-memory-debug-test");
        let s = format!("{store:?}");
        assert!(s.contains("faustus-store-memory-debug-test"), "{s}");
    }
}

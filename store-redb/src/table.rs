//! One table: the `TableStore` over its file.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::store::{TableSpec, TableStore, WriteBatch};
use faustus_core::{Error, Result};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::file::{Attempt, DiskFaults, Op, TableFile, DATA, OFFSETS};
use crate::WriteDurability;

/// With `durability=eventual`, the longest a committed batch stays
/// non-durable (the next write after it is made durable).
const EVENTUAL_FLUSH: Duration = Duration::from_secs(1);

/// How a write transaction commits.
#[derive(Debug, Clone, Copy)]
enum Commit {
    /// Durable when it returns (`Durability::Immediate`).
    Durable,
    /// Not durable until a later durable commit (recovery's writes).
    Deferred,
    /// `durability=eventual`: deferred, but durable when the last durable
    /// commit is [`EVENTUAL_FLUSH`] old.
    Eventual,
}

/// One table's file.
pub struct RedbTable {
    partitions: u32,
    file: Arc<TableFile>,
    durability: WriteDurability,
}

impl fmt::Debug for RedbTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbTable")
            .field("name", &self.file.table)
            .field("path", &self.file.path)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

fn prefixed(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(key);
    k
}

impl RedbTable {
    /// Open (or create) the file of `table` at `path` (in `dir`).
    pub(crate) async fn open(
        dir: PathBuf,
        path: PathBuf,
        cache: usize,
        table: &TableSpec,
        durability: WriteDurability,
        faults: Option<Arc<DiskFaults>>,
    ) -> Result<Self> {
        let file = TableFile::open(
            dir,
            path,
            cache,
            table.name.clone(),
            table.partitions,
            faults,
        )
        .await?;
        Ok(RedbTable {
            partitions: table.partitions,
            file,
            durability,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.file.table
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// The number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    fn check(&self, partition: u32) -> Result<()> {
        if partition >= self.partitions {
            return Err(Error::NotFound {
                what: "table partition",
                name: format!(
                    "{} partition {partition} (the table has {})",
                    self.file.table, self.partitions
                ),
            });
        }
        Ok(())
    }

    /// How ordinary writes commit, from the settings.
    fn commit_mode(&self) -> Commit {
        match self.durability {
            WriteDurability::Immediate => Commit::Durable,
            WriteDurability::Eventual => Commit::Eventual,
        }
    }

    /// One write transaction committed as `mode`, on the blocking pool.
    /// If it fails, nothing of it is applied (redb aborts the transaction).
    async fn write(
        &self,
        mode: Commit,
        f: impl FnOnce(&redb::WriteTransaction) -> Attempt<()> + Send + 'static,
    ) -> Result<()> {
        let file = self.file.clone();
        self.file
            .run("write", move |db: &Database| {
                let mut txn = db.begin_write().op("begin a write")?;
                // Only one write transaction runs at a time, so reading and
                // resetting `last_durable` around it does not race.
                let durable = match mode {
                    Commit::Durable => true,
                    Commit::Deferred => false,
                    Commit::Eventual => file.last_durable.lock().elapsed() >= EVENTUAL_FLUSH,
                };
                let durability = if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                };
                txn.set_durability(durability).op("set the durability")?;
                f(&txn)?;
                txn.commit().op("commit")?;
                file.committed(db, durable);
                Ok(())
            })
            .await
    }

    /// Write every batch (each compacted first if `compact`) and its
    /// partition's offset in one transaction committed as `mode`.
    async fn apply_all(
        &self,
        mode: Commit,
        mut batches: Vec<(u32, WriteBatch)>,
        compact: bool,
    ) -> Result<()> {
        for (partition, _) in &batches {
            self.check(*partition)?;
        }
        self.write(mode, move |txn| {
            let mut data = txn.open_table(DATA).op("open the data table")?;
            let mut offsets = txn.open_table(OFFSETS).op("open the offsets table")?;
            let mut k = Vec::new();
            for (partition, batch) in &mut batches {
                if compact {
                    batch.compact();
                }
                for (key, v) in &batch.ops {
                    k.clear();
                    k.extend_from_slice(&partition.to_be_bytes());
                    k.extend_from_slice(key);
                    match v {
                        Some(v) => {
                            data.insert(&k[..], &v[..]).op("insert")?;
                        }
                        None => {
                            data.remove(&k[..]).op("remove")?;
                        }
                    }
                }
                if let Some(o) = batch.offset {
                    offsets.insert(*partition, o).op("store the offset")?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Remove every key of `partition` and its offset, in `txn`.
    fn clear(txn: &redb::WriteTransaction, partition: u32) -> Attempt<()> {
        let mut data = txn.open_table(DATA).op("open the data table")?;
        let start = partition.to_be_bytes();
        let keys: Vec<Vec<u8>> = {
            let range = match partition.checked_add(1) {
                Some(next) => {
                    let end = next.to_be_bytes();
                    data.range::<&[u8]>(&start[..]..&end[..])
                }
                None => data.range::<&[u8]>(&start[..]..),
            }
            .op("scan")?;
            let mut keys = Vec::new();
            for item in range {
                let (k, _) = item.op("scan")?;
                keys.push(k.value().to_vec());
            }
            keys
        };
        for k in keys {
            data.remove(&k[..]).op("remove")?;
        }
        let mut offsets = txn.open_table(OFFSETS).op("open the offsets table")?;
        offsets.remove(partition).op("remove the offset")?;
        Ok(())
    }
}

#[async_trait]
impl TableStore for RedbTable {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.check(partition)?;
        let k = prefixed(partition, key);
        self.file
            .run("read", move |db: &Database| {
                let txn = db.begin_read().op("begin a read")?;
                let t = txn.open_table(DATA).op("open the data table")?;
                Ok(t.get(&k[..])
                    .op("get")?
                    .map(|v| Bytes::copy_from_slice(v.value())))
            })
            .await
    }

    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.apply_all(self.commit_mode(), vec![(partition, batch)], false)
            .await
    }

    /// Every partition's batch and offset in one transaction (one fsync).
    async fn apply_partitions(&self, batches: Vec<(u32, WriteBatch)>) -> Result<()> {
        self.apply_all(self.commit_mode(), batches, false).await
    }

    /// One transaction with redb's `Durability::None`: no fsync; the next
    /// durable commit (a `sync`, any `apply`) persists it with everything
    /// before it, and a crash falls back to the last durable commit.
    /// The batch is compacted first ([`WriteBatch::compact`]): each key
    /// written once, in key order.
    async fn apply_replayed(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.apply_all(Commit::Deferred, vec![(partition, batch)], true)
            .await
    }

    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.check(partition)?;
        let start = match after {
            Some(a) => Bound::Excluded(prefixed(partition, a)),
            None => Bound::Included(partition.to_be_bytes().to_vec()),
        };
        let end = match partition.checked_add(1) {
            Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        self.file
            .run("read", move |db: &Database| {
                let txn = db.begin_read().op("begin a read")?;
                let t = txn.open_table(DATA).op("open the data table")?;
                let start_ref = match &start {
                    Bound::Included(v) => Bound::Included(&v[..]),
                    Bound::Excluded(v) => Bound::Excluded(&v[..]),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let end_ref = match &end {
                    Bound::Included(v) => Bound::Included(&v[..]),
                    Bound::Excluded(v) => Bound::Excluded(&v[..]),
                    Bound::Unbounded => Bound::Unbounded,
                };
                let mut out = Vec::new();
                for item in t.range::<&[u8]>((start_ref, end_ref)).op("scan")? {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, v) = item.op("scan")?;
                    out.push((
                        Bytes::copy_from_slice(&k.value()[4..]),
                        Bytes::copy_from_slice(v.value()),
                    ));
                }
                Ok(out)
            })
            .await
    }

    async fn len(&self, partition: u32) -> Result<u64> {
        self.check(partition)?;
        self.file
            .run("read", move |db: &Database| {
                let txn = db.begin_read().op("begin a read")?;
                let t = txn.open_table(DATA).op("open the data table")?;
                let start = partition.to_be_bytes();
                let range = match partition.checked_add(1) {
                    Some(next) => {
                        let end = next.to_be_bytes();
                        t.range::<&[u8]>(&start[..]..&end[..])
                    }
                    None => t.range::<&[u8]>(&start[..]..),
                }
                .op("scan")?;
                Ok(range.count() as u64)
            })
            .await
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        self.check(partition)?;
        self.file
            .run("read", move |db: &Database| {
                let txn = db.begin_read().op("begin a read")?;
                let t = txn.open_table(OFFSETS).op("open the offsets table")?;
                Ok(t.get(partition).op("get the offset")?.map(|g| g.value()))
            })
            .await
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        self.check(partition)?;
        self.write(self.commit_mode(), move |txn| {
            RedbTable::clear(txn, partition)
        })
        .await
    }

    /// An empty transaction with `Durability::Immediate`: redb writes and
    /// fsyncs every commit before it.
    async fn sync(&self) -> Result<()> {
        self.write(Commit::Durable, |_| Ok(())).await
    }

    async fn reset(&self) -> Result<()> {
        let partitions = self.partitions;
        self.write(self.commit_mode(), move |txn| {
            for p in 0..partitions {
                RedbTable::clear(txn, p)?;
            }
            Ok(())
        })
        .await
    }
}

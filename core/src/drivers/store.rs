//! The `Store` driver trait: local table state per partition.
//!
//! A store keeps the key/value bytes of every table partition this worker
//! serves, plus the offset of the last changelog record applied to each
//! partition. Durable stores persist data and offset in one atomic write so a
//! restart only replays the changelog tail. Every store must pass
//! `faustus_testkit::store_conformance`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::drivers::url::DriverUrl;
use crate::error::Result;

/// Identifies a table to a store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableSpec {
    /// Table name as the app knows it (e.g. `word_counts`).
    pub name: String,
    /// Number of partitions (the changelog's).
    pub partitions: u32,
}

impl TableSpec {
    /// A table spec.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TableSpec {
            name: name.into(),
            partitions,
        }
    }
}

/// Where a store may keep files, from the app's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreContext {
    /// The app id (with version), e.g. `word-counts` or `word-counts-v2`.
    pub app_id: String,
    /// `{datadir}/{tabledir}` resolved: where table files go by default.
    pub table_dir: PathBuf,
}

impl StoreContext {
    /// A store context.
    pub fn new(app_id: impl Into<String>, table_dir: impl Into<PathBuf>) -> Self {
        StoreContext {
            app_id: app_id.into(),
            table_dir: table_dir.into(),
        }
    }
}

/// One write to a table partition: puts and deletes in order, plus the
/// changelog offset they bring the partition up to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// `(key, Some(value))` puts, `(key, None)` deletes; later entries win.
    pub ops: Vec<(Bytes, Option<Bytes>)>,
    /// Offset of the last changelog record these ops reflect, stored atomically with them.
    pub offset: Option<i64>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Add a put.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push((key.into(), Some(value.into())));
        self
    }

    /// Add a delete.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.ops.push((key.into(), None));
        self
    }

    /// No ops and no offset.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.offset.is_none()
    }

    /// Keep only the last op of each key, in key order. The batch's effect
    /// is unchanged (later ops win anyway), but a compacted changelog's many
    /// versions of a key are written once, and B-tree stores get their keys
    /// in order. Stores may call it in
    /// [`TableStore::apply_replayed`].
    ///
    /// ```
    /// use faustus_core::store::WriteBatch;
    ///
    /// let mut b = WriteBatch::new();
    /// b.put("b", "1").put("a", "2").delete("b").put("a", "3");
    /// b.compact();
    /// let ops: Vec<_> = b.ops.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
    /// assert_eq!(ops, [(&b"a"[..], Some(&b"3"[..])), (&b"b"[..], None)]);
    /// ```
    pub fn compact(&mut self) {
        if self.ops.len() < 2 {
            return;
        }
        // Stable: the ops of one key stay in their order.
        self.ops.sort_by(|a, b| a.0.cmp(&b.0));
        // `dedup_by` keeps the first of a run: move each later op into it.
        self.ops.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });
    }
}

/// A table store backend (one per app).
///
/// Helpers over the tables it opens are on [`TableStoreExt`].
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Driver name for logs and errors, e.g. `"memory"`, `"redb"`.
    fn name(&self) -> &str;

    /// Open (or create) the local state of one table.
    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>>;
}

/// The local state of one table, by partition.
#[async_trait]
pub trait TableStore: Send + Sync + fmt::Debug + 'static {
    /// A value.
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>>;

    /// Apply a batch atomically: after a crash either all of it (and its
    /// offset) is visible or none of it. Durable when it returns (for
    /// durable stores with their default settings): table flushes rely on
    /// it before source offsets are committed.
    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()>;

    /// Apply several partitions' batches (each partition at most once), as
    /// [`apply`](Self::apply) does one. Table flushes write every changed
    /// partition with one call. Each partition's batch is atomic with its
    /// offset; a store may also make the whole call one atomic, durable
    /// write (redb: one transaction, one fsync). Defaults to one `apply` per
    /// partition, in order.
    async fn apply_partitions(&self, batches: Vec<(u32, WriteBatch)>) -> Result<()> {
        for (partition, batch) in batches {
            self.apply(partition, batch).await?;
        }
        Ok(())
    }

    /// Apply a batch replayed from the changelog (table recovery): atomic
    /// like [`apply`](Self::apply), but it need not be durable when this
    /// returns. It becomes durable with the next [`sync`](Self::sync) or the
    /// next [`apply`](Self::apply) of this table. After a crash (or a close
    /// without either) the store holds the data and offsets of some earlier
    /// point, never a mix, so replaying the changelog after the stored
    /// offset restores the rest. Table recovery sends the changelog's
    /// records in order, uncompacted ([`WriteBatch::compact`] may be applied
    /// here). Defaults to [`apply`](Self::apply).
    async fn apply_replayed(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.apply(partition, batch).await
    }

    /// Entries of a partition in key order, strictly after `after`, at most `limit`.
    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>>;

    /// Number of keys in a partition.
    async fn len(&self, partition: u32) -> Result<u64>;

    /// Offset of the last changelog record applied to this partition.
    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>>;

    /// Forget a partition's data and offset (it will be replayed in full).
    async fn drop_partition(&self, partition: u32) -> Result<()>;

    /// Forget everything of this table.
    async fn reset(&self) -> Result<()>;

    /// Make everything applied so far durable, [`apply_replayed`](Self::apply_replayed)
    /// batches included (a no-op for memory stores).
    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}

// Forwarding impls, so `Arc<dyn Store>` / `Arc<dyn TableStore>` (and
// `Arc<MyStore>`) can be passed wherever `impl Store` is asked for. Every
// method forwards, provided ones too, so a driver's override is kept.

#[async_trait]
impl<T: Store + ?Sized> Store for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        (**self).open(table).await
    }
}

#[async_trait]
impl<T: TableStore + ?Sized> TableStore for Arc<T> {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        (**self).get(partition, key).await
    }

    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        (**self).apply(partition, batch).await
    }

    async fn apply_partitions(&self, batches: Vec<(u32, WriteBatch)>) -> Result<()> {
        (**self).apply_partitions(batches).await
    }

    async fn apply_replayed(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        (**self).apply_replayed(partition, batch).await
    }

    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        (**self).scan(partition, after, limit).await
    }

    async fn len(&self, partition: u32) -> Result<u64> {
        (**self).len(partition).await
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        (**self).persisted_offset(partition).await
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        (**self).drop_partition(partition).await
    }

    async fn reset(&self) -> Result<()> {
        (**self).reset().await
    }

    async fn sync(&self) -> Result<()> {
        (**self).sync().await
    }
}

/// Helpers over any [`TableStore`] (blanket-implemented).
#[async_trait]
pub trait TableStoreExt: TableStore {
    /// The changelog offset to replay `partition` from: one past the
    /// [`persisted_offset`](TableStore::persisted_offset), 0 when none.
    async fn replay_from(&self, partition: u32) -> Result<i64> {
        Ok(self.persisted_offset(partition).await?.map_or(0, |o| o + 1))
    }
}

impl<T: TableStore + ?Sized> TableStoreExt for T {}

/// Builds a store from its URL and the app's directories.
pub type StoreFactory =
    Arc<dyn Fn(&DriverUrl, &StoreContext) -> Result<Arc<dyn Store>> + Send + Sync + 'static>;

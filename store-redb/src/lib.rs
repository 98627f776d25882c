//! The `redb://` table store: one [redb](https://docs.rs/redb) file per table.
//!
//! - `redb://` keeps the files in the app's `{datadir}/{tabledir}`;
//!   `redb:///abs/path` picks the directory.
//! - Options: `cache_mb` (redb's page cache per table file, default 64) and
//!   `durability` (`immediate`, the default: every write batch is on disk when
//!   it returns; `eventual`: batches are committed without a flush to disk and
//!   made durable together at least once a second, so a crash or power loss
//!   may lose up to the last second of batches, never the consistency between
//!   data and offsets — recovery replays the changelog after the stored
//!   offset).
//! - A write batch and the changelog offset it brings its partition to are
//!   committed in one redb write transaction, so after a crash data and offset
//!   never disagree.
//! - Every redb call runs on the blocking thread pool, never on the async
//!   runtime.
//!
//! Keys are stored as the partition number (4 bytes, big-endian) followed by
//! the key, so each partition is one key range.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::store::{Store, StoreContext, StoreFactory, TableSpec, TableStore, WriteBatch};
use faustus_core::{DriverUrl, Error, Registry, Result};
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// The URL scheme.
pub const SCHEME: &str = "redb";

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const OFFSETS: TableDefinition<u32, i64> = TableDefinition::new("offsets");
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");

/// With `durability=eventual`, the longest a committed batch stays
/// non-durable (the next write after it is made durable).
const EVENTUAL_FLUSH: Duration = Duration::from_secs(1);

/// Register the `redb://` store.
pub fn register(registry: &Registry) {
    let factory: StoreFactory = Arc::new(|url: &DriverUrl, ctx: &StoreContext| {
        Ok(Arc::new(RedbStore::new(RedbConfig::from_url(url, ctx)?)) as Arc<dyn Store>)
    });
    registry.register_store(SCHEME, factory);
}

/// How the store writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteDurability {
    /// Each batch is durable when `apply` returns.
    Immediate,
    /// Batches become durable together with a later one, at least once a
    /// second (faster; consistent after a crash).
    Eventual,
}

/// The store's settings, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedbConfig {
    /// Directory of the table files.
    pub dir: PathBuf,
    /// Page cache per table file, bytes.
    pub cache_bytes: usize,
    /// Write durability.
    pub durability: WriteDurability,
}

impl RedbConfig {
    /// Parse `redb://[/abs/dir][?cache_mb=N&durability=immediate|eventual]`.
    pub fn from_url(url: &DriverUrl, ctx: &StoreContext) -> Result<Self> {
        for key in url.query().keys() {
            if key != "cache_mb" && key != "durability" {
                return Err(Error::config(
                    format!("redb.{key}"),
                    format!(
                        "unknown option in {:?}; accepted: cache_mb, durability",
                        url.as_str()
                    ),
                ));
            }
        }
        if !url.authority().is_empty() {
            return Err(Error::config(
                "store",
                format!(
                    "{:?}: a redb URL has no host; use redb:// or redb:///absolute/dir",
                    url.as_str()
                ),
            ));
        }
        let dir = if url.path().is_empty() || url.path() == "/" {
            ctx.table_dir.clone()
        } else {
            PathBuf::from(url.path())
        };
        let cache_mb: u64 = url.parse_option("cache_mb")?.unwrap_or(64);
        let durability = match url.option("durability") {
            None | Some("immediate") => WriteDurability::Immediate,
            Some("eventual") => WriteDurability::Eventual,
            Some(other) => {
                return Err(Error::config(
                    "redb.durability",
                    format!("{other:?}: expected immediate or eventual"),
                ))
            }
        };
        Ok(RedbConfig {
            dir,
            cache_bytes: usize::try_from(cache_mb.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            durability,
        })
    }
}

/// The redb store: opens one file per table in its directory.
pub struct RedbStore {
    config: RedbConfig,
    /// Tables opened and still in use: a table nobody holds any more is
    /// closed (its file lock released), so a new store can open it.
    open: Mutex<HashMap<String, Weak<RedbTable>>>,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("config", &self.config)
            .finish()
    }
}

impl RedbStore {
    /// A store with these settings.
    pub fn new(config: RedbConfig) -> Self {
        RedbStore {
            config,
            open: Mutex::new(HashMap::new()),
        }
    }
}

fn backend(context: impl fmt::Display, e: impl fmt::Display) -> Error {
    Error::backend("redb", format!("{context}: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| backend("blocking task", e))?
}

#[async_trait]
impl Store for RedbStore {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        if let Some(t) = self.open.lock().get(&table.name).and_then(Weak::upgrade) {
            if t.partitions != table.partitions {
                return Err(Error::State(format!(
                    "table {:?} is open with {} partitions, not {}",
                    table.name, t.partitions, table.partitions
                )));
            }
            return Ok(t.clone());
        }
        if table.partitions == 0 {
            return Err(Error::config(
                format!("table {:?} partitions", table.name),
                "must be at least 1",
            ));
        }
        let safe: String = table
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.config.dir.join(format!("{safe}.redb"));
        let (cache, dir, name, partitions) = (
            self.config.cache_bytes,
            self.config.dir.clone(),
            table.name.clone(),
            table.partitions,
        );
        let db = blocking(move || open_db(&dir, &path, cache, &name, partitions)).await?;
        let t = Arc::new(RedbTable {
            name: table.name.clone(),
            partitions: table.partitions,
            db: Arc::new(db),
            durability: self.config.durability,
            last_durable: Arc::new(Mutex::new(Instant::now())),
        });
        self.open
            .lock()
            .insert(table.name.clone(), Arc::downgrade(&t));
        Ok(t)
    }
}

fn open_db(dir: &Path, path: &Path, cache: usize, name: &str, partitions: u32) -> Result<Database> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        context: format!("creating the table directory {}", dir.display()),
        source: e,
    })?;
    let db = Database::builder()
        .set_cache_size(cache)
        .create(path)
        .map_err(|e| backend(format!("opening {}", path.display()), e))?;
    let txn = db.begin_write().map_err(|e| backend(path.display(), e))?;
    {
        txn.open_table(DATA)
            .map_err(|e| backend(path.display(), e))?;
        txn.open_table(OFFSETS)
            .map_err(|e| backend(path.display(), e))?;
        let mut meta = txn
            .open_table(META)
            .map_err(|e| backend(path.display(), e))?;
        let stored = meta
            .get("partitions")
            .map_err(|e| backend(path.display(), e))?
            .map(|g| g.value());
        match stored {
            Some(p) if p != partitions => {
                return Err(Error::State(format!(
                    "table {name:?} in {} has {p} partitions, the app asks for {partitions}: reset the table's local state",
                    path.display()
                )))
            }
            Some(_) => {}
            None => {
                meta.insert("partitions", partitions)
                    .map_err(|e| backend(path.display(), e))?;
            }
        }
    }
    txn.commit().map_err(|e| backend(path.display(), e))?;
    Ok(db)
}

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
    name: String,
    partitions: u32,
    db: Arc<Database>,
    durability: WriteDurability,
    /// When a durable commit last ended (`durability=eventual` makes a write
    /// durable once this is [`EVENTUAL_FLUSH`] old).
    last_durable: Arc<Mutex<Instant>>,
}

impl fmt::Debug for RedbTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbTable")
            .field("name", &self.name)
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
    fn check(&self, partition: u32) -> Result<()> {
        if partition >= self.partitions {
            return Err(Error::NotFound {
                what: "table partition",
                name: format!(
                    "{} partition {partition} (the table has {})",
                    self.name, self.partitions
                ),
            });
        }
        Ok(())
    }

    fn ctx(&self) -> String {
        format!("table {:?}", self.name)
    }

    /// How ordinary writes commit, from the settings.
    fn commit_mode(&self) -> Commit {
        match self.durability {
            WriteDurability::Immediate => Commit::Durable,
            WriteDurability::Eventual => Commit::Eventual,
        }
    }

    /// One write transaction committed as `mode`, on the blocking pool.
    fn write(
        &self,
        mode: Commit,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<()> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (db, last_durable) = (self.db.clone(), self.last_durable.clone());
        let ctx = self.ctx();
        blocking(move || {
            let mut txn = db.begin_write().map_err(|e| backend(&ctx, e))?;
            // Only one write transaction runs at a time, so reading and
            // resetting `last_durable` around it does not race.
            let durable = match mode {
                Commit::Durable => true,
                Commit::Deferred => false,
                Commit::Eventual => last_durable.lock().elapsed() >= EVENTUAL_FLUSH,
            };
            let durability = if durable {
                Durability::Immediate
            } else {
                Durability::None
            };
            txn.set_durability(durability)
                .map_err(|e| backend(&ctx, e))?;
            f(&txn)?;
            txn.commit().map_err(|e| backend(&ctx, e))?;
            if durable {
                *last_durable.lock() = Instant::now();
            }
            Ok(())
        })
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
        let ctx = self.ctx();
        self.write(mode, move |txn| {
            let mut data = txn.open_table(DATA).map_err(|e| backend(&ctx, e))?;
            let mut offsets = txn.open_table(OFFSETS).map_err(|e| backend(&ctx, e))?;
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
                            data.insert(&k[..], &v[..]).map_err(|e| backend(&ctx, e))?;
                        }
                        None => {
                            data.remove(&k[..]).map_err(|e| backend(&ctx, e))?;
                        }
                    }
                }
                if let Some(o) = batch.offset {
                    offsets
                        .insert(*partition, o)
                        .map_err(|e| backend(&ctx, e))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Remove every key of `partition` and its offset, in `txn`.
    fn clear(txn: &redb::WriteTransaction, partition: u32, ctx: &str) -> Result<()> {
        let mut data = txn.open_table(DATA).map_err(|e| backend(ctx, e))?;
        let start = partition.to_be_bytes();
        let keys: Vec<Vec<u8>> = {
            let range = match partition.checked_add(1) {
                Some(next) => {
                    let end = next.to_be_bytes();
                    data.range::<&[u8]>(&start[..]..&end[..])
                }
                None => data.range::<&[u8]>(&start[..]..),
            }
            .map_err(|e| backend(ctx, e))?;
            let mut keys = Vec::new();
            for item in range {
                let (k, _) = item.map_err(|e| backend(ctx, e))?;
                keys.push(k.value().to_vec());
            }
            keys
        };
        for k in keys {
            data.remove(&k[..]).map_err(|e| backend(ctx, e))?;
        }
        let mut offsets = txn.open_table(OFFSETS).map_err(|e| backend(ctx, e))?;
        offsets.remove(partition).map_err(|e| backend(ctx, e))?;
        Ok(())
    }
}

#[async_trait]
impl TableStore for RedbTable {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.check(partition)?;
        let (db, k, ctx) = (self.db.clone(), prefixed(partition, key), self.ctx());
        blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(&ctx, e))?;
            let t = txn.open_table(DATA).map_err(|e| backend(&ctx, e))?;
            Ok(t.get(&k[..])
                .map_err(|e| backend(&ctx, e))?
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
        let (db, ctx) = (self.db.clone(), self.ctx());
        let start = match after {
            Some(a) => Bound::Excluded(prefixed(partition, a)),
            None => Bound::Included(partition.to_be_bytes().to_vec()),
        };
        let end = match partition.checked_add(1) {
            Some(next) => Bound::Excluded(next.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(&ctx, e))?;
            let t = txn.open_table(DATA).map_err(|e| backend(&ctx, e))?;
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
            for item in t
                .range::<&[u8]>((start_ref, end_ref))
                .map_err(|e| backend(&ctx, e))?
            {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = item.map_err(|e| backend(&ctx, e))?;
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
        let (db, ctx) = (self.db.clone(), self.ctx());
        blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(&ctx, e))?;
            let t = txn.open_table(DATA).map_err(|e| backend(&ctx, e))?;
            let start = partition.to_be_bytes();
            let range = match partition.checked_add(1) {
                Some(next) => {
                    let end = next.to_be_bytes();
                    t.range::<&[u8]>(&start[..]..&end[..])
                }
                None => t.range::<&[u8]>(&start[..]..),
            }
            .map_err(|e| backend(&ctx, e))?;
            Ok(range.count() as u64)
        })
        .await
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        self.check(partition)?;
        let (db, ctx) = (self.db.clone(), self.ctx());
        blocking(move || {
            let txn = db.begin_read().map_err(|e| backend(&ctx, e))?;
            let t = txn.open_table(OFFSETS).map_err(|e| backend(&ctx, e))?;
            Ok(t.get(partition)
                .map_err(|e| backend(&ctx, e))?
                .map(|g| g.value()))
        })
        .await
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        self.check(partition)?;
        let ctx = self.ctx();
        self.write(self.commit_mode(), move |txn| {
            RedbTable::clear(txn, partition, &ctx)
        })
        .await
    }

    /// An empty transaction with `Durability::Immediate`: redb writes and
    /// fsyncs every commit before it.
    async fn sync(&self) -> Result<()> {
        self.write(Commit::Durable, |_| Ok(())).await
    }

    async fn reset(&self) -> Result<()> {
        let (ctx, partitions) = (self.ctx(), self.partitions);
        self.write(self.commit_mode(), move |txn| {
            for p in 0..partitions {
                RedbTable::clear(txn, p, &ctx)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> StoreContext {
        StoreContext::new("app", "/data/app/tables")
    }

    #[test]
    fn url_mapping() {
        let c =
            RedbConfig::from_url(&DriverUrl::parse("store", "redb://").unwrap(), &ctx()).unwrap();
        assert_eq!(c.dir, PathBuf::from("/data/app/tables"));
        assert_eq!(c.cache_bytes, 64 * 1024 * 1024);
        assert_eq!(c.durability, WriteDurability::Immediate);
        let c = RedbConfig::from_url(
            &DriverUrl::parse("store", "redb:///var/lib/x?cache_mb=8&durability=eventual").unwrap(),
            &ctx(),
        )
        .unwrap();
        assert_eq!(c.dir, PathBuf::from("/var/lib/x"));
        assert_eq!(c.cache_bytes, 8 * 1024 * 1024);
        assert_eq!(c.durability, WriteDurability::Eventual);
        let e = RedbConfig::from_url(
            &DriverUrl::parse("store", "redb://?cache=1").unwrap(),
            &ctx(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redb.cache"), "{e}");
        let e = RedbConfig::from_url(
            &DriverUrl::parse("store", "redb://?cache_mb=lots").unwrap(),
            &ctx(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redb.cache_mb"), "{e}");
        let e = RedbConfig::from_url(
            &DriverUrl::parse("store", "redb://?durability=maybe").unwrap(),
            &ctx(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("redb.durability"), "{e}");
    }
}

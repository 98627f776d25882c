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
//! - Errors name the table and its file ([`RedbError`]); a panic inside redb
//!   (a damaged or truncated file trips its assertions) is caught and
//!   reported as an error.
//! - After an I/O error (a full disk) redb refuses every later call until
//!   the file is reopened: the driver closes and reopens that table's file
//!   before the next call, so once the disk has room again the next write
//!   (the caller's retry of the failed batch) succeeds and nothing committed
//!   before is lost. The failed batch was not committed (or, if only its
//!   final fsync failed, committed in full): a retry of the same batch
//!   leaves the same state either way. If commits made without fsync
//!   (`apply_replayed` before a `sync`, `durability=eventual`) were
//!   outstanding, the reopened file would be behind what was acknowledged:
//!   the table then refuses every call, saying to restart the worker, whose
//!   recovery replays the changelog from the offsets the file holds. See
//!   [`Recovery`].
//!
//! Keys are stored as the partition number (4 bytes, big-endian) followed by
//! the key, so each partition is one key range.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use faustus_core::store::{Store, StoreContext, StoreFactory, TableSpec, TableStore};
use faustus_core::{DriverUrl, Error, Registry, Result};
use parking_lot::Mutex;

mod file;
#[cfg(test)]
mod heal_tests;
mod table;

pub use file::{Recovery, RedbError};
pub use table::RedbTable;

/// The URL scheme.
pub const SCHEME: &str = "redb";

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
    /// The unit tests' injected disk faults.
    faults: Option<Arc<file::DiskFaults>>,
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
            faults: None,
        }
    }

    /// A store whose files fail their writes while `faults.full` is set.
    #[cfg(test)]
    fn with_faults(config: RedbConfig, faults: Arc<file::DiskFaults>) -> Self {
        RedbStore {
            faults: Some(faults),
            ..RedbStore::new(config)
        }
    }

    /// The file of table `name`: `{dir}/{name}.redb`, every character but
    /// ASCII letters, digits, `-`, `_` and `.` replaced by `_`.
    pub fn table_path(&self, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.config.dir.join(format!("{safe}.redb"))
    }
}

#[async_trait]
impl Store for RedbStore {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        if let Some(t) = self.open.lock().get(&table.name).and_then(Weak::upgrade) {
            if t.partitions() != table.partitions {
                return Err(Error::State(format!(
                    "table {:?} is open with {} partitions, not {}",
                    table.name,
                    t.partitions(),
                    table.partitions
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
        let t = Arc::new(
            RedbTable::open(
                self.config.dir.clone(),
                self.table_path(&table.name),
                self.config.cache_bytes,
                table,
                self.config.durability,
                self.faults.clone(),
            )
            .await?,
        );
        self.open
            .lock()
            .insert(table.name.clone(), Arc::downgrade(&t));
        Ok(t)
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

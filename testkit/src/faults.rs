//! Fault injection for stores: [`FaultyStore`] wraps any
//! [`Store`](faustus_core::store::Store) and makes its writes fail on
//! demand, with an error like a full disk's.
//!
//! A write is any call that changes a table: `apply`, `apply_partitions`,
//! `apply_replayed`, `drop_partition`, `reset` and `sync`. Reads (`get`,
//! `scan`, `len`, `persisted_offset`) and `open` always go through.
//!
//! - [`fail_writes(true)`](FaultyStore::fail_writes): every write fails
//!   until `fail_writes(false)`.
//! - [`fail_next_writes(n)`](FaultyStore::fail_next_writes): the next `n`
//!   writes fail, later ones go through.
//! - By default a failed write is not applied (the store is as before the
//!   call). [`fail_after_applying(true)`](FaultyStore::fail_after_applying)
//!   applies it first and fails afterwards — a commit whose fsync failed:
//!   the caller cannot tell, and its retry must be harmless.
//! - The error is [retryable](faustus_core::Error::is_retryable) (as a
//!   redb store's after an I/O error) unless
//!   [`set_retryable(false)`](FaultyStore::set_retryable); it is an
//!   `Error::Backend` named after the wrapped store, whose source is an
//!   [`std::io::Error`] of kind `StorageFull`, its text naming the table and
//!   the call: `memory: table "counts": apply_partitions failed: No space
//!   left on device (injected by FaultyStore)`.
//! - [`failed_writes`](FaultyStore::failed_writes) and
//!   [`writes`](FaultyStore::writes) count the writes failed and the writes
//!   applied.
//!
//! A `FaultyStore` is cheap to clone; clones share the switches, so keep one
//! in the test and give the app another, through a registry scheme:
//!
//! ```
//! use std::sync::Arc;
//! use faustus_core::store::{Store, TableSpec, WriteBatch};
//! use faustus_core::{DriverUrl, Registry};
//! use faustus_core::store::StoreContext;
//! use faustus_store_memory::MemoryStore;
//! use faustus_testkit::faults::FaultyStore;
//!
//! # faustus_testkit::store_conformance::block_on(async {
//! let store = FaultyStore::new(MemoryStore::new());
//! // An app built with this registry and `store = "faulty://"` gets it.
//! let registry = Registry::new();
//! store.register(&registry, "faulty");
//! let app_store = registry
//!     .store(&DriverUrl::parse("store", "faulty://").unwrap(), &StoreContext::new("app", "/tmp"))
//!     .unwrap();
//! let table = app_store.open(&TableSpec::new("counts", 1)).await.unwrap();
//!
//! let mut batch = WriteBatch::new();
//! batch.put("k", "1");
//! batch.offset = Some(7);
//!
//! store.fail_writes(true);
//! let e = table.apply(0, batch.clone()).await.unwrap_err();
//! assert!(e.is_retryable());
//! assert!(e.to_string().contains("No space left on device"), "{e}");
//! assert_eq!(table.persisted_offset(0).await.unwrap(), None, "not applied");
//! assert_eq!(store.failed_writes(), 1);
//!
//! store.fail_writes(false);
//! table.apply(0, batch).await.unwrap(); // the retry
//! assert_eq!(table.persisted_offset(0).await.unwrap(), Some(7));
//! assert_eq!(store.writes(), 1);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::store::{Store, StoreFactory, TableSpec, TableStore, WriteBatch};
use faustus_core::{Error, Registry, Result};

#[derive(Debug)]
struct Switches {
    always: AtomicBool,
    next: AtomicU64,
    after: AtomicBool,
    retryable: AtomicBool,
    failed: AtomicU64,
    applied: AtomicU64,
}

impl Switches {
    /// Whether this write fails (and uses up one of `next`).
    fn fails(&self) -> bool {
        self.always.load(Ordering::Acquire)
            || self
                .next
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }
}

/// A store whose writes fail on demand; see the [module docs](self).
#[derive(Clone)]
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    switches: Arc<Switches>,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("switches", &self.switches)
            .finish()
    }
}

impl FaultyStore {
    /// Wrap `inner` (any store, `Arc<dyn Store>` included); no faults yet.
    pub fn new(inner: impl Store) -> Self {
        FaultyStore {
            inner: Arc::new(inner),
            switches: Arc::new(Switches {
                always: AtomicBool::new(false),
                next: AtomicU64::new(0),
                after: AtomicBool::new(false),
                retryable: AtomicBool::new(true),
                failed: AtomicU64::new(0),
                applied: AtomicU64::new(0),
            }),
        }
    }

    /// Make every write fail (`true`) until called with `false`.
    pub fn fail_writes(&self, on: bool) {
        self.switches.always.store(on, Ordering::Release);
    }

    /// Make the next `n` writes fail (replacing any count left); then they
    /// go through again.
    pub fn fail_next_writes(&self, n: u64) {
        self.switches.next.store(n, Ordering::Release);
    }

    /// With `true`, a failing write is applied first and fails afterwards
    /// (as a commit whose final fsync failed). Default `false`: a failing
    /// write is not applied.
    pub fn fail_after_applying(&self, on: bool) {
        self.switches.after.store(on, Ordering::Release);
    }

    /// Whether the injected error is retryable (default `true`).
    pub fn set_retryable(&self, retryable: bool) {
        self.switches.retryable.store(retryable, Ordering::Release);
    }

    /// Writes failed so far.
    pub fn failed_writes(&self) -> u64 {
        self.switches.failed.load(Ordering::Acquire)
    }

    /// Writes applied to the wrapped store so far (those failed after
    /// applying included).
    pub fn writes(&self) -> u64 {
        self.switches.applied.load(Ordering::Acquire)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// A factory returning this store (a clone: same switches) for every
    /// URL, for [`Registry::register_store`].
    pub fn factory(&self) -> StoreFactory {
        let store = self.clone();
        Arc::new(move |_url, _ctx| Ok(Arc::new(store.clone()) as Arc<dyn Store>))
    }

    /// Register this store as `scheme` in `registry`: an app built with
    /// that registry and `store = "{scheme}://"` uses it.
    pub fn register(&self, registry: &Registry, scheme: &str) {
        registry.register_store(scheme, self.factory());
    }
}

#[async_trait]
impl Store for FaultyStore {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn open(&self, table: &TableSpec) -> Result<Arc<dyn TableStore>> {
        let inner = self.inner.open(table).await?;
        Ok(Arc::new(FaultyTable {
            inner,
            table: table.name.clone(),
            backend: self.inner.name().to_string(),
            switches: self.switches.clone(),
        }))
    }
}

/// One table of a [`FaultyStore`].
struct FaultyTable {
    inner: Arc<dyn TableStore>,
    table: String,
    backend: String,
    switches: Arc<Switches>,
}

impl fmt::Debug for FaultyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyTable")
            .field("table", &self.table)
            .field("inner", &self.inner)
            .finish()
    }
}

impl FaultyTable {
    fn error(&self, call: &str) -> Error {
        let source = io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "table {:?}: {call} failed: No space left on device (injected by FaultyStore)",
                self.table
            ),
        );
        if self.switches.retryable.load(Ordering::Acquire) {
            Error::retryable(self.backend.clone(), source)
        } else {
            Error::backend(self.backend.clone(), source)
        }
    }

    /// Run the write `call` unless it is to fail.
    async fn write(&self, call: &str, write: impl Future<Output = Result<()>>) -> Result<()> {
        let fails = self.switches.fails();
        if fails && !self.switches.after.load(Ordering::Acquire) {
            self.switches.failed.fetch_add(1, Ordering::AcqRel);
            return Err(self.error(call));
        }
        write.await?;
        self.switches.applied.fetch_add(1, Ordering::AcqRel);
        if fails {
            self.switches.failed.fetch_add(1, Ordering::AcqRel);
            return Err(self.error(call));
        }
        Ok(())
    }
}

#[async_trait]
impl TableStore for FaultyTable {
    async fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.inner.get(partition, key).await
    }

    async fn apply(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.write("apply", self.inner.apply(partition, batch))
            .await
    }

    async fn apply_partitions(&self, batches: Vec<(u32, WriteBatch)>) -> Result<()> {
        self.write("apply_partitions", self.inner.apply_partitions(batches))
            .await
    }

    async fn apply_replayed(&self, partition: u32, batch: WriteBatch) -> Result<()> {
        self.write(
            "apply_replayed",
            self.inner.apply_replayed(partition, batch),
        )
        .await
    }

    async fn scan(
        &self,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        self.inner.scan(partition, after, limit).await
    }

    async fn len(&self, partition: u32) -> Result<u64> {
        self.inner.len(partition).await
    }

    async fn persisted_offset(&self, partition: u32) -> Result<Option<i64>> {
        self.inner.persisted_offset(partition).await
    }

    async fn drop_partition(&self, partition: u32) -> Result<()> {
        self.write("drop_partition", self.inner.drop_partition(partition))
            .await
    }

    async fn reset(&self) -> Result<()> {
        self.write("reset", self.inner.reset()).await
    }

    async fn sync(&self) -> Result<()> {
        self.write("sync", self.inner.sync()).await
    }
}

//! Tables: partitioned key/value state backed by a changelog topic.
//!
//! A write goes to the partition of the event being processed (so a table
//! stays copartitioned with the stream that updates it), to the changelog
//! topic `{app_id}-{table}-changelog` and to the local [`TableStore`]. The
//! worker commits source offsets only after the changelog records those
//! events produced are acknowledged. On assignment each table partition is
//! recovered from its changelog before its events are processed.
//!
//! Files: this one is the typed [`Table`] API (reads, writes, iteration —
//! about 700 lines, one concept: every method is a user-facing operation on
//! the same cache; splitting reads from writes would scatter what each
//! partition's cache guarantees); `cache` the per-partition cache, eviction
//! and key filter; `builder` the definition; `ops` what the worker drives
//! (open, activate, flush); `windowed`, `global`, `set` the other kinds.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::topic::TopicDef;
use crate::app::App;
use crate::drivers::codec::CodecChain;
use crate::drivers::store::{Store, TableSpec, TableStore, WriteBatch};
use crate::drivers::transport::{Delivery, Producer, Record};
use crate::error::{Error, Field, Result};
use crate::flow::event;

mod builder;
mod cache;
pub mod global;
mod ops;
pub mod set;
pub mod windowed;

pub use builder::TableBuilder;
pub use cache::DEFAULT_CACHE_CAPACITY;
use cache::{KeyFilter, Known, Op, Parts, Slot};

pub(crate) use crate::app::defs::TableOps;

/// Clears a flag when dropped (whichever way a flush ends).
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One partition's share of a flush.
struct FlushWork<K> {
    partition: u32,
    ops: Vec<Op>,
    /// The changed keys behind `ops` (coalescing mode; empty per write).
    keys: Vec<K>,
    deliveries: Vec<Delivery>,
}

#[derive(Clone)]
struct Runtime {
    store: Arc<dyn TableStore>,
    producer: Arc<dyn Producer>,
}

pub(crate) struct TableInner<K, V> {
    name: String,
    help: String,
    partitions: u32,
    changelog: Arc<TopicDef>,
    key_codec: CodecChain,
    value_codec: CodecChain,
    default: Option<Arc<dyn Fn() -> V + Send + Sync>>,
    per_write: bool,
    use_partitioner: bool,
    /// Every worker serves every partition, kept current by a changelog reader.
    global: bool,
    /// Cached keys per table (over all partitions).
    capacity: usize,
    /// `capacity` shared among the active partitions.
    part_capacity: AtomicUsize,
    /// A flush is between taking changed keys and storing them: nothing is evicted.
    flushing: AtomicBool,
    /// Hashes keys for the partitions' key filters.
    key_hasher: ahash::RandomState,
    parts: Mutex<Parts<K, V>>,
    /// Store and producer while a worker runs (released when it stops).
    runtime: parking_lot::RwLock<Option<Runtime>>,
    write_order: tokio::sync::Mutex<()>,
    /// Held while changes move to the store (flush), so `items`/`len` never
    /// read the store between a flush taking the changed keys and storing them.
    store_order: tokio::sync::Mutex<()>,
}

/// A partitioned, changelog-backed key/value table.
///
/// ```
/// # use faustus_core::App;
/// # fn demo(app: App) -> faustus_core::Result<()> {
/// let counts = app.table::<String, u64>("word_counts").with_default().build()?;
/// // inside an agent, while processing an event:
/// // counts.update("hello".to_string(), |n| *n += 1).await?;
/// # Ok(()) }
/// ```
pub struct Table<K, V> {
    inner: Arc<TableInner<K, V>>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Table({:?})", self.inner.name)
    }
}

impl<K, V> Table<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The table name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its changelog topic.
    pub fn changelog_topic(&self) -> &str {
        &self.inner.changelog.name
    }

    /// Partitions.
    pub fn partitions(&self) -> u32 {
        self.inner.partitions
    }

    fn runtime(&self) -> Result<Runtime> {
        self.inner.runtime.read().clone().ok_or_else(|| {
            Error::State(format!(
                "table {:?} is not open: start the worker first",
                self.inner.name
            ))
        })
    }

    /// The partition of the current event, when a write should go there
    /// (inside an event, unless the table uses the partitioner).
    fn event_partition(&self) -> Result<Option<u32>> {
        if let Some((agent, n)) = event::current_concurrent_agent() {
            return Err(Error::config(
                format!("agent {agent:?} concurrency"),
                format!(
                    "table {:?} cannot be written from an agent with concurrency {n} > 1: its instances would race on the same keys and the changelog order would not be the processing order (as in Faust); use concurrency 1",
                    self.inner.name
                ),
            ));
        }
        if self.inner.use_partitioner {
            return Ok(None);
        }
        let Some(p) = event::current_partition() else {
            return Ok(None);
        };
        if p >= self.inner.partitions {
            return Err(Error::Config {
                setting: format!("table {:?} partitions", self.inner.name),
                message: format!(
                    "the event's partition {p} is beyond the table's {} partitions: give the table the partition count of the topic that updates it",
                    self.inner.partitions
                ),
            });
        }
        Ok(Some(p))
    }

    /// Where a write of `key` goes: the current event's partition, else
    /// (outside a stream, or with [`TableBuilder::use_partitioner`]) the
    /// key's partition by the partitioner.
    fn write_partition(&self, key: &K) -> Result<u32> {
        match self.event_partition()? {
            Some(p) => Ok(p),
            None => self.key_partition(key),
        }
    }

    /// Where a write about `key` goes when the table's own key is built
    /// from it (windowed and set tables): the current event's partition, else
    /// the partition the partitioner gives `key` encoded with the table's
    /// key codec.
    pub(crate) fn write_partition_of<Q: Serialize + 'static>(&self, key: &Q) -> Result<u32> {
        if let Some(p) = self.event_partition()? {
            return Ok(p);
        }
        Ok(crate::drivers::partitioner::partition_for_key(
            &self.inner.encode_key(key)?,
            self.inner.partitions,
        ))
    }

    /// The partition the partitioner gives `key` (murmur2 of its encoded
    /// bytes, as for a keyed record sent to the changelog).
    pub fn key_partition(&self, key: &K) -> Result<u32> {
        Ok(crate::drivers::partitioner::partition_for_key(
            &self.encode_key(key)?,
            self.inner.partitions,
        ))
    }

    fn not_assigned(&self, partition: u32) -> Error {
        Error::PartitionNotAssigned {
            table: self.inner.name.clone(),
            partition,
        }
    }

    fn encode_key(&self, key: &K) -> Result<Bytes> {
        self.inner.encode_key(key)
    }

    /// The value of `key` in `partition`: from the cache, else from the store
    /// (then cached). `None` when the partition is not served here.
    pub(crate) async fn load(&self, partition: u32, key: &K) -> Result<Option<V>> {
        match self.inner.parts.lock().get_mut(&partition) {
            None => return Ok(None),
            Some(part) => {
                if let Some(slot) = part.cache.get_mut(key) {
                    slot.used = true;
                    return Ok(slot.value.clone());
                }
            }
        }
        let value = self.read_missing(partition, key).await?;
        if let Some(part) = self.inner.parts.lock().get_mut(&partition) {
            if !part.cache.contains_key(key) {
                part.make_room(self.inner.part_capacity(), self.inner.is_flushing());
                part.cache
                    .insert(key.clone(), Slot::new(value.clone(), false));
            }
        }
        Ok(value)
    }

    /// The stored value of a key not in the cache. Skips the store when the
    /// partition's key filter rules the key out (the store partition was
    /// empty when first checked, and the filter holds every key written
    /// here since).
    async fn read_missing(&self, p: u32, key: &K) -> Result<Option<V>> {
        let hash = self.inner.key_hash(key);
        let epoch = {
            let parts = self.inner.parts.lock();
            let part = parts.get(&p).ok_or_else(|| self.not_assigned(p))?;
            match &part.known {
                Known::Filter(f) if !f.may_contain(hash) => return Ok(None),
                Known::Unchecked if !self.inner.global => Some(part.store_epoch),
                _ => None,
            }
        };
        if let Some(epoch) = epoch {
            // First miss in this partition: is its store empty?
            let empty = self.runtime()?.store.scan(p, None, 1).await?.is_empty();
            let mut parts = self.inner.parts.lock();
            if let Some(part) = parts.get_mut(&p) {
                if matches!(part.known, Known::Unchecked) {
                    if !empty {
                        part.known = Known::Unfiltered;
                    } else if part.store_epoch == epoch {
                        // Nothing written to the store since the check: the
                        // store holds at most the keys cached now.
                        let mut f = KeyFilter::default();
                        for k in part.cache.keys() {
                            f.insert(self.inner.key_hash(k));
                        }
                        let absent = !f.may_contain(hash);
                        part.known = Known::Filter(f);
                        if absent {
                            return Ok(None);
                        }
                    }
                }
            }
        }
        self.read_store(p, key).await
    }

    async fn read_store(&self, partition: u32, key: &K) -> Result<Option<V>> {
        let rt = self.runtime()?;
        match rt.store.get(partition, &self.encode_key(key)?).await? {
            Some(b) => self.inner.decode_value(b, partition).map(Some),
            None => Ok(None),
        }
    }

    /// The value of `key` (looked up in the current event's partition, else in
    /// every partition this worker serves).
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        let current = event::current_partition();
        if let Some(p) = current {
            if let Some(v) = self.load(p, key).await? {
                return Ok(Some(v));
            }
        }
        let mut active: Vec<u32> = self.inner.parts.lock().keys().collect();
        active.sort_unstable();
        for p in active.into_iter().filter(|p| Some(*p) != current) {
            if let Some(v) = self.load(p, key).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The value of `key`, or the table's default when missing.
    pub async fn get_or_default(&self, key: &K) -> Result<V> {
        match self.get(key).await? {
            Some(v) => Ok(v),
            None => self.inner.default_value(),
        }
    }

    /// Whether `key` has a value.
    pub async fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Set `key` to `value` (in the current event's partition; outside a
    /// stream in the key's partition, see [`TableBuilder::use_partitioner`]).
    pub async fn set(&self, key: K, value: V) -> Result<()> {
        let p = self.write_partition(&key)?;
        self.set_in(p, key, value).await
    }

    /// [`set`](Self::set) in partition `p`.
    pub(crate) async fn set_in(&self, p: u32, key: K, value: V) -> Result<()> {
        self.modify(p, key, |slot| *slot = Some(value)).await
    }

    /// Remove `key` (in the partition a write goes to, as for [`set`](Self::set)).
    pub async fn delete(&self, key: &K) -> Result<()> {
        let p = self.write_partition(key)?;
        self.delete_in(p, key).await
    }

    /// [`delete`](Self::delete) in partition `p`.
    pub(crate) async fn delete_in(&self, p: u32, key: &K) -> Result<()> {
        self.modify(p, key.clone(), |slot| *slot = None).await
    }

    /// Change the value of `key` in place (starting from the default when
    /// missing) and return the new value: `counts.update("word", |n| *n += 1)`.
    pub async fn update<Q>(&self, key: &Q, f: impl FnOnce(&mut V)) -> Result<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let p = match self.event_partition()? {
            Some(p) => p,
            None => self.key_partition(&key.to_owned())?,
        };
        self.update_in(p, key, f).await
    }

    /// [`update`](Self::update) in partition `p`.
    pub(crate) async fn update_in<Q>(&self, p: u32, key: &Q, f: impl FnOnce(&mut V)) -> Result<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.inner.per_write {
            // Fast path: a cached key takes one lock and one lookup, no allocation.
            let mut parts = self.inner.parts.lock();
            let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
            if let Some(slot) = part.cache.get_mut(key) {
                let mut v = match slot.value.take() {
                    Some(v) => v,
                    None => match &self.inner.default {
                        Some(d) => d(),
                        None => return Err(self.no_default()),
                    },
                };
                f(&mut v);
                let out = v.clone();
                slot.value = Some(v);
                slot.used = true;
                if !slot.dirty {
                    slot.dirty = true;
                    part.note_stored(self.inner.key_hash(key));
                    part.dirty.push(key.to_owned());
                }
                return Ok(out);
            }
            // A miss the partition's key filter rules out is a new key: no
            // store read, so no await and no second lock.
            let hash = self.inner.key_hash(key);
            if let Known::Filter(filter) = &part.known {
                if !filter.may_contain(hash) {
                    let mut v = match &self.inner.default {
                        Some(d) => d(),
                        None => return Err(self.no_default()),
                    };
                    f(&mut v);
                    let out = v.clone();
                    part.insert_changed(
                        key.to_owned(),
                        hash,
                        Some(v),
                        self.inner.part_capacity(),
                        self.inner.is_flushing(),
                    );
                    return Ok(out);
                }
            }
        }
        let default = self.inner.default.clone();
        if default.is_none() {
            if self.inner.parts.lock().get(&p).is_none() {
                return Err(self.not_assigned(p));
            }
            if self.load(p, &key.to_owned()).await?.is_none() {
                // Nothing to update and nothing to start from: no write at all.
                return Err(self.no_default());
            }
        }
        let mut out = Err(self.no_default());
        let out_ref = &mut out;
        self.modify(p, key.to_owned(), move |slot| {
            let v = match slot.take() {
                Some(v) => Some(v),
                None => default.as_ref().map(|d| d()),
            };
            if let Some(mut v) = v {
                f(&mut v);
                *out_ref = Ok(v.clone());
                *slot = Some(v);
            }
        })
        .await?;
        out
    }

    fn no_default(&self) -> Error {
        Error::NotFound {
            what: "table key (the table has no default value)",
            name: self.inner.name.clone(),
        }
    }

    /// Apply `change` to the cached value of `key` in partition `p` (loading
    /// it from the store first when not cached) and record the write.
    async fn modify(&self, p: u32, key: K, change: impl FnOnce(&mut Option<V>)) -> Result<()> {
        if self.inner.per_write {
            return self.modify_per_write(p, key, change).await;
        }
        let mut change = Some(change);
        // The cache is looked at again under the lock that applies the
        // change: the key may have been cached or evicted meanwhile.
        let mut loaded: Option<Option<V>> = None;
        loop {
            {
                let mut parts = self.inner.parts.lock();
                let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
                let dirty_key = match (part.cache.get_mut(&key), loaded.take()) {
                    (Some(slot), _) => {
                        if let Some(change) = change.take() {
                            change(&mut slot.value);
                        }
                        slot.used = true;
                        let newly = !std::mem::replace(&mut slot.dirty, true);
                        if newly {
                            part.note_stored(self.inner.key_hash(&key));
                        }
                        Some(newly)
                    }
                    (None, Some(mut value)) => {
                        if let Some(change) = change.take() {
                            change(&mut value);
                        }
                        let hash = self.inner.key_hash(&key);
                        part.insert_changed(
                            key,
                            hash,
                            value,
                            self.inner.part_capacity(),
                            self.inner.is_flushing(),
                        );
                        return Ok(());
                    }
                    (None, None) => None,
                };
                match dirty_key {
                    Some(true) => {
                        part.dirty.push(key);
                        return Ok(());
                    }
                    Some(false) => return Ok(()),
                    None => {}
                }
            }
            loaded = Some(self.read_missing(p, &key).await?);
        }
    }

    async fn modify_per_write(
        &self,
        p: u32,
        key: K,
        change: impl FnOnce(&mut Option<V>),
    ) -> Result<()> {
        let rt = self.runtime()?;
        // One writer at a time, so the changelog order is the write order.
        let _order = self.inner.write_order.lock().await;
        let mut change = Some(change);
        let mut loaded: Option<Option<V>> = None;
        // The op joins `pending` under the same lock as the cache change, so
        // the entry is never evictable while its value is in no store.
        let (kb, vb) = loop {
            {
                let mut parts = self.inner.parts.lock();
                let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
                if !part.cache.contains_key(&key) {
                    if let Some(value) = loaded.take() {
                        part.make_room(self.inner.part_capacity(), self.inner.is_flushing());
                        part.cache.insert(key.clone(), Slot::new(value, false));
                    }
                }
                let hash = self.inner.key_hash(&key);
                if let Some(slot) = part.cache.get_mut(&key) {
                    if let Some(change) = change.take() {
                        change(&mut slot.value);
                    }
                    slot.used = true;
                    let op = self.inner.encode_op(&key, slot.value.as_ref())?;
                    part.pending.push(op.clone());
                    part.note_stored(hash);
                    break op;
                }
            }
            loaded = Some(self.read_missing(p, &key).await?);
        };
        let mut record = Record::new(self.inner.changelog.name.clone(), Some(kb), vb);
        record.partition = Some(p);
        let delivery = rt.producer.send(record).await?;
        let mut parts = self.inner.parts.lock();
        let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
        part.deliveries.push(delivery);
        Ok(())
    }

    /// Put every write so far into the store (without moving its offsets).
    async fn flush_pending_ops(&self) -> Result<()> {
        let rt = self.runtime()?;
        let _stored = self.inner.store_order.lock().await;
        self.inner.flushing.store(true, Ordering::Release);
        let _flushing = ClearOnDrop(&self.inner.flushing);
        // Each batch with how many of its ops were pending (the rest are
        // dirty keys, which stay dirty).
        let mut batches: Vec<(u32, WriteBatch)> = Vec::new();
        let mut taken: Vec<usize> = Vec::new();
        let mut first_error = None;
        {
            let mut parts = self.inner.parts.lock();
            for (n, part) in parts.iter_mut() {
                part.store_epoch += 1;
                let mut ops = std::mem::take(&mut part.pending);
                let pending = ops.len();
                for k in &part.dirty {
                    let encoded = part
                        .cache
                        .get(k)
                        .map(|slot| self.inner.encode_op(k, slot.value.as_ref()));
                    match encoded {
                        Some(Ok(op)) => ops.push(op),
                        // The key stays dirty; the error is this call's.
                        Some(Err(e)) => {
                            first_error.get_or_insert(e);
                        }
                        None => {}
                    }
                }
                if !ops.is_empty() {
                    batches.push((n, WriteBatch { ops, offset: None }));
                    taken.push(pending);
                }
            }
        }
        if !batches.is_empty() {
            if let Err(e) = rt.store.apply_partitions(batches.clone()).await {
                // Nothing was stored: the pending ops go back for the next write.
                let mut parts = self.inner.parts.lock();
                for ((n, mut batch), pending) in batches.into_iter().zip(taken) {
                    if let Some(part) = parts.get_mut(&n) {
                        batch.ops.truncate(pending);
                        let newer = std::mem::replace(&mut part.pending, batch.ops);
                        part.pending.extend(newer);
                    }
                }
                return Err(e);
            }
        }
        for (_, part) in self.inner.parts.lock().iter_mut() {
            part.store_epoch += 1;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Entries in the partitions this worker serves.
    pub async fn items(&self) -> Result<Vec<(K, V)>> {
        self.flush_pending_ops().await?;
        let mut active: Vec<u32> = self.inner.parts.lock().keys().collect();
        active.sort_unstable();
        let mut out = Vec::new();
        for p in active {
            self.scan_into(p, &mut out).await?;
        }
        Ok(out)
    }

    /// Entries of one served partition (windowed tables rebuild their index with it).
    pub(crate) async fn items_in(&self, p: u32) -> Result<Vec<(K, V)>> {
        self.flush_pending_ops().await?;
        let mut out = Vec::new();
        self.scan_into(p, &mut out).await?;
        Ok(out)
    }

    async fn scan_into(&self, p: u32, out: &mut Vec<(K, V)>) -> Result<()> {
        let rt = self.runtime()?;
        let mut after: Option<Bytes> = None;
        loop {
            let page = rt.store.scan(p, after.as_deref(), 1024).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.0.clone());
            for (k, v) in page {
                let key = self
                    .inner
                    .key_codec
                    .decode::<K>(k)
                    .map_err(|m| Error::Codec {
                        codec: self.inner.key_codec.name().into(),
                        message: format!("stored key of table {:?}: {m}", self.inner.name),
                    })?;
                out.push((key, self.inner.decode_value(v, p)?));
            }
        }
        Ok(())
    }

    /// Number of keys in the partitions this worker serves.
    pub async fn len(&self) -> Result<u64> {
        self.flush_pending_ops().await?;
        let rt = self.runtime()?;
        let active: Vec<u32> = self.inner.parts.lock().keys().collect();
        let mut n = 0;
        for p in active {
            n += rt.store.len(p).await?;
        }
        Ok(n)
    }

    /// Whether the served partitions hold no keys.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// The partition `key` belongs to: the partitioner over its encoded
    /// key, as for the messages of a copartitioned topic.
    pub fn partition_for(&self, key: &K) -> Result<u32> {
        Ok(crate::drivers::partitioner::partition_for_key(
            &self.encode_key(key)?,
            self.inner.partitions,
        ))
    }

    /// Serve every partition (global tables, once caught up).
    pub(crate) fn activate_all(&self) {
        let mut parts = self.inner.parts.lock();
        for p in 0..self.inner.partitions {
            parts.activate(p);
        }
        self.inner.share_capacity(&parts);
    }

    /// Changelog records of partition `p` were stored by a reader: drop the
    /// clean cached entries of their keys, so reads see the stored values.
    /// Changed keys keep their newer local value.
    pub(crate) fn forget_clean(&self, p: u32, keys: impl Iterator<Item = Bytes>) {
        let decoded: Vec<K> = keys
            .filter_map(|k| self.inner.key_codec.decode::<K>(k).ok())
            .collect();
        let mut parts = self.inner.parts.lock();
        if let Some(part) = parts.get_mut(&p) {
            for k in decoded {
                if part.cache.get(&k).is_some_and(|slot| !slot.dirty) {
                    part.cache.remove(&k);
                }
            }
        }
    }

    /// The table's store, once open.
    pub(crate) fn store(&self) -> Result<Arc<dyn TableStore>> {
        Ok(self.runtime()?.store.clone())
    }

    /// Keys now held in memory (over the served partitions); at most the
    /// cache capacity plus the keys changed since the last commit.
    pub fn cached_keys(&self) -> usize {
        let parts = self.inner.parts.lock();
        let n = parts.iter().map(|p| p.cache.len()).sum();
        n
    }

    /// Partitions this worker serves now.
    pub fn active_partitions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.inner.parts.lock().keys().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFilter;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_key_filter_has_no_false_negatives(keys in prop::collection::vec(any::<u64>(), 0..20_000)) {
            let mut f = KeyFilter::default();
            for k in &keys {
                f.insert(*k);
            }
            for k in &keys {
                prop_assert!(f.may_contain(*k));
            }
        }
    }

    #[test]
    fn the_key_filter_rules_out_most_other_keys() {
        let s = ahash::RandomState::with_seeds(1, 2, 3, 4);
        let mut f = KeyFilter::default();
        for i in 0..100_000u64 {
            f.insert(s.hash_one(i));
        }
        let false_positives = (100_000..200_000u64)
            .filter(|i| f.may_contain(s.hash_one(i)))
            .count();
        // About 1% per layer at 10 bits per key; several layers add up.
        assert!(false_positives < 10_000, "{false_positives} of 100000");
    }
}

//! Tables: partitioned key/value state backed by a changelog topic.
//!
//! A write goes to the partition of the event being processed (so a table
//! stays copartitioned with the stream that updates it), to the changelog
//! topic `{app_id}-{table}-changelog` and to the local [`TableStore`]. The
//! worker commits source offsets only after the changelog records those
//! events produced are acknowledged. On assignment each table partition is
//! recovered from its changelog before its events are processed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::App;
use crate::codec::CodecChain;
use crate::error::{Error, Field, Result};
use crate::event;
use crate::store::{Store, TableSpec, TableStore, WriteBatch};
use crate::topic::TopicDef;
use crate::transport::{Delivery, Producer, Record};

/// What the worker needs of any table, whatever its types.
#[async_trait]
pub(crate) trait TableOps: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn help(&self) -> &str;
    fn changelog(&self) -> &Arc<TopicDef>;
    fn partitions(&self) -> u32;
    async fn open(&self, store: &Arc<dyn Store>, producer: Arc<dyn Producer>) -> Result<()>;
    fn table_store(&self) -> Option<Arc<dyn TableStore>>;
    /// Serve these partitions (after recovery).
    fn activate(&self, partitions: &BTreeSet<u32>);
    /// Stop serving these partitions; forget their cached values.
    fn deactivate(&self, partitions: &BTreeSet<u32>);
    /// Wait for the changelog acknowledgements of all writes so far and store
    /// them with their offsets.
    async fn flush(&self) -> Result<()>;
}

/// One partition's share of a flush.
struct FlushWork<K> {
    partition: u32,
    ops: Vec<Op>,
    /// The changed keys behind `ops` (coalescing mode; empty per write).
    keys: Vec<K>,
    deliveries: Vec<Delivery>,
}

/// An encoded table write: key and value (`None` deletes).
type Op = (Bytes, Option<Bytes>);

struct Slot<V> {
    /// `None`: known to be absent (deleted or never written).
    value: Option<V>,
    /// Changed since the last flush.
    dirty: bool,
}

struct Part<K, V> {
    cache: HashMap<K, Slot<V>, ahash::RandomState>,
    /// Keys changed since the last flush, each once (coalescing mode).
    dirty: Vec<K>,
    /// Encoded ops not yet in the store (per-write mode).
    pending: Vec<(Bytes, Option<Bytes>)>,
    /// Changelog deliveries not yet awaited (per-write mode).
    deliveries: Vec<Delivery>,
}

impl<K, V> Default for Part<K, V> {
    fn default() -> Self {
        Part {
            cache: HashMap::default(),
            dirty: Vec::new(),
            pending: Vec::new(),
            deliveries: Vec::new(),
        }
    }
}

/// The partitions this worker serves, indexed by partition number.
struct Parts<K, V>(Vec<Option<Part<K, V>>>);

impl<K, V> Parts<K, V> {
    fn get(&self, p: &u32) -> Option<&Part<K, V>> {
        self.0.get(*p as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, p: &u32) -> Option<&mut Part<K, V>> {
        self.0.get_mut(*p as usize).and_then(Option::as_mut)
    }

    /// Served partition numbers, ascending.
    fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(i, _)| i as u32)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Part<K, V>)> + '_ {
        self.0
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i as u32, p)))
    }

    fn activate(&mut self, p: u32) {
        let i = p as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, || None);
        }
        if self.0[i].is_none() {
            self.0[i] = Some(Part::default());
        }
    }

    fn remove(&mut self, p: &u32) {
        if let Some(slot) = self.0.get_mut(*p as usize) {
            *slot = None;
        }
    }
}

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
    parts: Mutex<Parts<K, V>>,
    runtime: std::sync::OnceLock<Runtime>,
    write_order: tokio::sync::Mutex<()>,
    /// Held while changes move to the store (flush), so `items`/`len` never
    /// read the store between a flush taking the changed keys and storing them.
    store_order: tokio::sync::Mutex<()>,
}

/// Defines a table; see [`App::table`].
#[must_use = "call .build() to define the table"]
pub struct TableBuilder<K, V> {
    app: App,
    name: String,
    help: String,
    partitions: Option<u32>,
    default: Option<Arc<dyn Fn() -> V + Send + Sync>>,
    key_serializer: Option<String>,
    value_serializer: Option<String>,
    per_write: bool,
    _types: PhantomData<fn() -> K>,
}

impl<K, V> TableBuilder<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(crate) fn new(app: App, name: impl Into<String>) -> Self {
        TableBuilder {
            app,
            name: name.into(),
            help: String::new(),
            partitions: None,
            default: None,
            key_serializer: None,
            value_serializer: None,
            per_write: false,
            _types: PhantomData,
        }
    }

    /// Write one changelog record per table write, as Faust does, instead of
    /// one per changed key per commit (the default, as Quix's checkpoints).
    /// Both keep the table equal to the fold of its changelog at every commit;
    /// per-write costs a send per write and gives standbys fresher data.
    pub fn changelog_per_write(mut self) -> Self {
        self.per_write = true;
        self
    }

    /// Help text (for the `tables` command).
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }

    /// Partitions (default `topic_partitions`); must match the stream that updates it.
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }

    /// Value for missing keys, like Faust's `default=int`.
    pub fn default_value(mut self, f: impl Fn() -> V + Send + Sync + 'static) -> Self {
        self.default = Some(Arc::new(f));
        self
    }

    /// Missing keys read as `V::default()`.
    pub fn with_default(self) -> Self
    where
        V: Default,
    {
        self.default_value(V::default)
    }

    /// Key codec (default: the app's `key_serializer`).
    pub fn key_serializer(mut self, codec: impl Into<String>) -> Self {
        self.key_serializer = Some(codec.into());
        self
    }

    /// Value codec (default: the app's `value_serializer`).
    pub fn value_serializer(mut self, codec: impl Into<String>) -> Self {
        self.value_serializer = Some(codec.into());
        self
    }

    /// Register the table (and its changelog topic) with the app.
    pub fn build(self) -> Result<Table<K, V>> {
        let app = self.app.clone();
        if app
            .inner
            .defs
            .lock()
            .tables
            .iter()
            .any(|t| t.name() == self.name)
        {
            return Err(Error::config(
                format!("table {:?}", self.name),
                "a table with this name is already defined",
            ));
        }
        let partitions = self
            .partitions
            .unwrap_or(app.inner.settings().topic_partitions);
        let mut changelog = app
            .topic::<K, V>(format!("{}-{}-changelog", app.id(), self.name))
            .partitions(partitions)
            .compacting(true)
            .internal(true);
        if let Some(k) = &self.key_serializer {
            changelog = changelog.key_serializer(k.clone());
        }
        if let Some(v) = &self.value_serializer {
            changelog = changelog.value_serializer(v.clone());
        }
        let changelog = changelog.build()?;
        let inner = Arc::new(TableInner {
            name: self.name,
            help: self.help,
            partitions,
            key_codec: changelog.def.key_codec.clone(),
            value_codec: changelog.def.value_codec.clone(),
            changelog: changelog.def.clone(),
            default: self.default,
            per_write: self.per_write,
            parts: Mutex::new(Parts(Vec::new())),
            runtime: std::sync::OnceLock::new(),
            write_order: tokio::sync::Mutex::new(()),
            store_order: tokio::sync::Mutex::new(()),
        });
        app.inner.defs.lock().tables.push(inner.clone());
        Ok(Table { inner })
    }
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

    fn runtime(&self) -> Result<&Runtime> {
        self.inner.runtime.get().ok_or_else(|| {
            Error::State(format!(
                "table {:?} is not open: start the worker first",
                self.inner.name
            ))
        })
    }

    fn write_partition(&self) -> Result<u32> {
        if let Some((agent, n)) = event::current_concurrent_agent() {
            return Err(Error::config(
                format!("agent {agent:?} concurrency"),
                format!(
                    "table {:?} cannot be written from an agent with concurrency {n} > 1: its instances would race on the same keys and the changelog order would not be the processing order (as in Faust); use concurrency 1",
                    self.inner.name
                ),
            ));
        }
        let p = event::current_partition().ok_or_else(|| Error::NoCurrentEvent {
            table: self.inner.name.clone(),
        })?;
        if p >= self.inner.partitions {
            return Err(Error::Config {
                setting: format!("table {:?} partitions", self.inner.name),
                message: format!(
                    "the event's partition {p} is beyond the table's {} partitions: give the table the partition count of the topic that updates it",
                    self.inner.partitions
                ),
            });
        }
        Ok(p)
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
    async fn load(&self, partition: u32, key: &K) -> Result<Option<V>> {
        match self.inner.parts.lock().get(&partition) {
            None => return Ok(None),
            Some(part) => {
                if let Some(slot) = part.cache.get(key) {
                    return Ok(slot.value.clone());
                }
            }
        }
        let value = self.read_store(partition, key).await?;
        if let Some(part) = self.inner.parts.lock().get_mut(&partition) {
            part.cache.entry(key.clone()).or_insert_with(|| Slot {
                value: value.clone(),
                dirty: false,
            });
        }
        Ok(value)
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

    /// Set `key` to `value` (in the current event's partition).
    pub async fn set(&self, key: K, value: V) -> Result<()> {
        let p = self.write_partition()?;
        self.modify(p, key, |slot| *slot = Some(value))
            .await
            .map(|_| ())
    }

    /// Remove `key` (in the current event's partition).
    pub async fn delete(&self, key: &K) -> Result<()> {
        let p = self.write_partition()?;
        self.modify(p, key.clone(), |slot| *slot = None)
            .await
            .map(|_| ())
    }

    /// Change the value of `key` in place (starting from the default when
    /// missing) and return the new value: `counts.update("word", |n| *n += 1)`.
    pub async fn update<Q>(&self, key: &Q, f: impl FnOnce(&mut V)) -> Result<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let p = self.write_partition()?;
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
                if !slot.dirty {
                    slot.dirty = true;
                    part.dirty.push(key.to_owned());
                }
                return Ok(out);
            }
        }
        let default = self.inner.default.clone();
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
        let cached = match self.inner.parts.lock().get(&p) {
            None => return Err(self.not_assigned(p)),
            Some(part) => part.cache.contains_key(&key),
        };
        let loaded = if cached {
            None
        } else {
            Some(self.read_store(p, &key).await?)
        };
        if self.inner.per_write {
            return self.modify_per_write(p, key, loaded, change).await;
        }
        let mut parts = self.inner.parts.lock();
        let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
        let dirty_key = match part.cache.get_mut(&key) {
            Some(slot) => {
                change(&mut slot.value);
                !std::mem::replace(&mut slot.dirty, true)
            }
            None => {
                let mut value = loaded.flatten();
                change(&mut value);
                part.cache.insert(key.clone(), Slot { value, dirty: true });
                true
            }
        };
        if dirty_key {
            part.dirty.push(key);
        }
        Ok(())
    }

    async fn modify_per_write(
        &self,
        p: u32,
        key: K,
        loaded: Option<Option<V>>,
        change: impl FnOnce(&mut Option<V>),
    ) -> Result<()> {
        let rt = self.runtime()?;
        // One writer at a time, so the changelog order is the write order.
        let _order = self.inner.write_order.lock().await;
        let value = {
            let mut parts = self.inner.parts.lock();
            let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
            let slot = part.cache.entry(key.clone()).or_insert_with(|| Slot {
                value: loaded.flatten(),
                dirty: false,
            });
            change(&mut slot.value);
            slot.value.clone()
        };
        let kb = self.encode_key(&key)?;
        let vb = match &value {
            Some(v) => Some(self.inner.encode_value(v)?),
            None => None,
        };
        let mut record = Record::new(
            self.inner.changelog.name.clone(),
            Some(kb.clone()),
            vb.clone(),
        );
        record.partition = Some(p);
        let delivery = rt.producer.send(record).await?;
        let mut parts = self.inner.parts.lock();
        let part = parts.get_mut(&p).ok_or_else(|| self.not_assigned(p))?;
        part.pending.push((kb, vb));
        part.deliveries.push(delivery);
        Ok(())
    }

    /// Put every write so far into the store (without moving its offsets).
    async fn flush_pending_ops(&self) -> Result<()> {
        let rt = self.runtime()?;
        let _stored = self.inner.store_order.lock().await;
        let batches: Vec<(u32, Vec<Op>)> = {
            let mut parts = self.inner.parts.lock();
            let mut out = Vec::new();
            for (n, part) in parts.iter_mut() {
                let n = &n;
                let mut ops = std::mem::take(&mut part.pending);
                for k in &part.dirty {
                    if let Some(slot) = part.cache.get(k) {
                        ops.push(self.inner.encode_op(k, slot.value.as_ref())?);
                    }
                }
                if !ops.is_empty() {
                    out.push((*n, ops));
                }
            }
            out
        };
        for (p, ops) in batches {
            rt.store.apply(p, WriteBatch { ops, offset: None }).await?;
        }
        Ok(())
    }

    /// Entries in the partitions this worker serves.
    pub async fn items(&self) -> Result<Vec<(K, V)>> {
        self.flush_pending_ops().await?;
        let rt = self.runtime()?;
        let mut active: Vec<u32> = self.inner.parts.lock().keys().collect();
        active.sort_unstable();
        let mut out = Vec::new();
        for p in active {
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
                    let value =
                        self.inner
                            .value_codec
                            .decode::<V>(v)
                            .map_err(|m| Error::Codec {
                                codec: self.inner.value_codec.name().into(),
                                message: format!(
                                    "stored value of table {:?}: {m}",
                                    self.inner.name
                                ),
                            })?;
                    out.push((key, value));
                }
            }
        }
        Ok(out)
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

    /// Partitions this worker serves now.
    pub fn active_partitions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.inner.parts.lock().keys().collect();
        v.sort_unstable();
        v
    }
}

impl<K, V> TableInner<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn encode_key(&self, key: &K) -> Result<Bytes> {
        self.key_codec.encode(key).map_err(|message| Error::Encode {
            field: Field::Key,
            topic: self.changelog.name.to_string(),
            codec: self.key_codec.name().to_string(),
            message,
        })
    }

    fn encode_value(&self, value: &V) -> Result<Bytes> {
        self.value_codec
            .encode(value)
            .map_err(|message| Error::Encode {
                field: Field::Value,
                topic: self.changelog.name.to_string(),
                codec: self.value_codec.name().to_string(),
                message,
            })
    }

    fn encode_op(&self, key: &K, value: Option<&V>) -> Result<(Bytes, Option<Bytes>)> {
        Ok((
            self.encode_key(key)?,
            match value {
                Some(v) => Some(self.encode_value(v)?),
                None => None,
            },
        ))
    }

    fn decode_value(&self, bytes: Bytes, partition: u32) -> Result<V> {
        self.value_codec
            .decode::<V>(bytes)
            .map_err(|message| Error::Codec {
                codec: self.value_codec.name().to_string(),
                message: format!(
                    "stored value of table {:?} partition {partition}: {message}",
                    self.name
                ),
            })
    }

    fn default_value(&self) -> Result<V> {
        match &self.default {
            Some(d) => Ok(d()),
            None => Err(Error::NotFound {
                what: "table key (the table has no default value)",
                name: self.name.clone(),
            }),
        }
    }
}

#[async_trait]
impl<K, V> TableOps for TableInner<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn help(&self) -> &str {
        &self.help
    }

    fn changelog(&self) -> &Arc<TopicDef> {
        &self.changelog
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn open(&self, store: &Arc<dyn Store>, producer: Arc<dyn Producer>) -> Result<()> {
        if self.runtime.get().is_some() {
            return Ok(());
        }
        let ts = store
            .open(&TableSpec::new(self.name.clone(), self.partitions))
            .await?;
        let _ = self.runtime.set(Runtime {
            store: ts,
            producer,
        });
        Ok(())
    }

    fn table_store(&self) -> Option<Arc<dyn TableStore>> {
        self.runtime.get().map(|r| r.store.clone())
    }

    fn activate(&self, partitions: &BTreeSet<u32>) {
        let mut parts = self.parts.lock();
        for p in partitions {
            if *p < self.partitions {
                parts.activate(*p);
            }
        }
    }

    fn deactivate(&self, partitions: &BTreeSet<u32>) {
        let mut parts = self.parts.lock();
        for p in partitions {
            if let Some(part) = parts.get(p) {
                if !part.dirty.is_empty() || !part.pending.is_empty() || !part.deliveries.is_empty()
                {
                    tracing::warn!(table = %self.name, partition = p, "deactivating a partition with unflushed writes; they stay in the changelog");
                }
            }
            parts.remove(p);
        }
    }

    async fn flush(&self) -> Result<()> {
        let Some(rt) = self.runtime.get() else {
            return Ok(());
        };
        let _stored = self.store_order.lock().await;
        // Changed keys (coalescing) or written ops (per write), per partition.
        let mut work: Vec<FlushWork<K>> = Vec::new();
        let mut first_error = None;
        {
            let mut parts = self.parts.lock();
            for (n, part) in parts.iter_mut() {
                if !part.dirty.is_empty() {
                    let mut ops = Vec::with_capacity(part.dirty.len());
                    let mut keys = Vec::with_capacity(part.dirty.len());
                    let mut kept = Vec::new();
                    for k in std::mem::take(&mut part.dirty) {
                        let Some(slot) = part.cache.get_mut(&k) else {
                            continue;
                        };
                        match self.encode_op(&k, slot.value.as_ref()) {
                            Ok(op) => {
                                slot.dirty = false;
                                ops.push(op);
                                keys.push(k);
                            }
                            Err(e) => {
                                tracing::error!(table = %self.name, partition = n, error = %e, "cannot encode a table entry for the changelog");
                                first_error.get_or_insert(e);
                                kept.push(k);
                            }
                        }
                    }
                    part.dirty = kept;
                    work.push(FlushWork {
                        partition: n,
                        ops,
                        keys,
                        deliveries: Vec::new(),
                    });
                } else if !part.pending.is_empty() || !part.deliveries.is_empty() {
                    work.push(FlushWork {
                        partition: n,
                        ops: std::mem::take(&mut part.pending),
                        keys: Vec::new(),
                        deliveries: std::mem::take(&mut part.deliveries),
                    });
                }
            }
        }
        for mut w in work {
            let p = w.partition;
            let mut failed = None;
            for (k, v) in &w.ops {
                if !w.keys.is_empty() {
                    let mut record =
                        Record::new(self.changelog.name.clone(), Some(k.clone()), v.clone());
                    record.partition = Some(p);
                    match rt.producer.send(record).await {
                        Ok(d) => w.deliveries.push(d),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            let mut offset = None;
            for d in w.deliveries {
                match d.await {
                    Ok(md) => offset = offset.max(Some(md.offset)),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                tracing::error!(table = %self.name, partition = p, error = %e, "changelog write failed; the changed keys are sent again at the next commit");
                // Mark them changed again so the next flush resends them.
                {
                    let mut parts = self.parts.lock();
                    if let Some(part) = parts.get_mut(&p) {
                        for k in w.keys {
                            if let Some(slot) = part.cache.get_mut(&k) {
                                if !std::mem::replace(&mut slot.dirty, true) {
                                    part.dirty.push(k);
                                }
                            }
                        }
                    }
                }
                first_error.get_or_insert(e);
                // Data ahead of its offset is safe; the offset waits for the changelog.
                rt.store
                    .apply(
                        p,
                        WriteBatch {
                            ops: w.ops,
                            offset: None,
                        },
                    )
                    .await?;
                continue;
            }
            rt.store.apply(p, WriteBatch { ops: w.ops, offset }).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

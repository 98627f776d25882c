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

struct Part<K, V> {
    cache: HashMap<K, Option<V>>,
    pending: Vec<(Bytes, Option<Bytes>)>,
    deliveries: Vec<Delivery>,
}

impl<K, V> Default for Part<K, V> {
    fn default() -> Self {
        Part {
            cache: HashMap::new(),
            pending: Vec::new(),
            deliveries: Vec::new(),
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
    parts: Mutex<HashMap<u32, Part<K, V>>>,
    runtime: std::sync::OnceLock<Runtime>,
    write_order: tokio::sync::Mutex<()>,
    app: std::sync::Weak<crate::app::AppInner>,
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
            _types: PhantomData,
        }
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
            parts: Mutex::new(HashMap::new()),
            runtime: std::sync::OnceLock::new(),
            write_order: tokio::sync::Mutex::new(()),
            app: Arc::downgrade(&app.inner),
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
        let p = event::current()
            .and_then(|c| c.partition())
            .ok_or_else(|| Error::NoCurrentEvent {
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
        if !self.inner.parts.lock().contains_key(&p) {
            return Err(Error::PartitionNotAssigned {
                table: self.inner.name.clone(),
                partition: p,
            });
        }
        Ok(p)
    }

    fn encode_key(&self, key: &K) -> Result<Bytes> {
        self.inner
            .key_codec
            .encode(key)
            .map_err(|message| Error::Encode {
                field: Field::Key,
                topic: self.inner.changelog.name.to_string(),
                codec: self.inner.key_codec.name().to_string(),
                message,
            })
    }

    async fn load(&self, partition: u32, key: &K) -> Result<Option<V>> {
        if let Some(part) = self.inner.parts.lock().get(&partition) {
            if let Some(v) = part.cache.get(key) {
                return Ok(v.clone());
            }
        } else {
            return Ok(None);
        }
        let rt = self.runtime()?;
        let raw = rt.store.get(partition, &self.encode_key(key)?).await?;
        let value = match raw {
            Some(b) => {
                Some(
                    self.inner
                        .value_codec
                        .decode::<V>(b)
                        .map_err(|message| Error::Codec {
                            codec: self.inner.value_codec.name().to_string(),
                            message: format!(
                                "stored value of table {:?} partition {partition}: {message}",
                                self.inner.name
                            ),
                        })?,
                )
            }
            None => None,
        };
        if let Some(part) = self.inner.parts.lock().get_mut(&partition) {
            part.cache
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        Ok(value)
    }

    /// The value of `key` (looked up in the current event's partition, else in
    /// every partition this worker serves).
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        if let Some(p) = event::current().and_then(|c| c.partition()) {
            if let Some(v) = self.load(p, key).await? {
                return Ok(Some(v));
            }
        }
        let mut active: Vec<u32> = self.inner.parts.lock().keys().copied().collect();
        active.sort_unstable();
        for p in active {
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
            None => self.default_value(key),
        }
    }

    fn default_value(&self, _key: &K) -> Result<V> {
        match &self.inner.default {
            Some(d) => Ok(d()),
            None => Err(Error::NotFound {
                what: "table key (the table has no default value)",
                name: self.inner.name.clone(),
            }),
        }
    }

    /// Whether `key` has a value.
    pub async fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Set `key` to `value` (in the current event's partition).
    pub async fn set(&self, key: K, value: V) -> Result<()> {
        let p = self.write_partition()?;
        let _order = self.inner.write_order.lock().await;
        self.write(p, key, Some(value)).await
    }

    /// Remove `key` (in the current event's partition).
    pub async fn delete(&self, key: &K) -> Result<()> {
        let p = self.write_partition()?;
        let _order = self.inner.write_order.lock().await;
        self.write(p, key.clone(), None).await
    }

    /// Change the value of `key` in place (starting from the default when
    /// missing) and return the new value: `counts.update(word, |n| *n += 1)`.
    pub async fn update(&self, key: K, f: impl FnOnce(&mut V)) -> Result<V> {
        let p = self.write_partition()?;
        let _order = self.inner.write_order.lock().await;
        let mut value = match self.load(p, &key).await? {
            Some(v) => v,
            None => self.default_value(&key)?,
        };
        f(&mut value);
        self.write(p, key, Some(value.clone())).await?;
        Ok(value)
    }

    async fn write(&self, partition: u32, key: K, value: Option<V>) -> Result<()> {
        let rt = self.runtime()?;
        let kb = self.encode_key(&key)?;
        let vb = match &value {
            Some(v) => Some(
                self.inner
                    .value_codec
                    .encode(v)
                    .map_err(|message| Error::Encode {
                        field: Field::Value,
                        topic: self.inner.changelog.name.to_string(),
                        codec: self.inner.value_codec.name().to_string(),
                        message,
                    })?,
            ),
            None => None,
        };
        let mut record = Record::new(
            self.inner.changelog.name.clone(),
            Some(kb.clone()),
            vb.clone(),
        );
        record.partition = Some(partition);
        let delivery = rt.producer.send(record).await?;
        let mut parts = self.inner.parts.lock();
        let Some(part) = parts.get_mut(&partition) else {
            return Err(Error::PartitionNotAssigned {
                table: self.inner.name.clone(),
                partition,
            });
        };
        part.cache.insert(key, value);
        part.pending.push((kb, vb));
        part.deliveries.push(delivery);
        drop(parts);
        if let Some(app) = self.inner.app.upgrade() {
            app.monitor.add_table_writes(1);
        }
        Ok(())
    }

    async fn flush_pending_ops(&self) -> Result<()> {
        let rt = self.runtime()?;
        let batches: Vec<(u32, Vec<(Bytes, Option<Bytes>)>)> = {
            let mut parts = self.inner.parts.lock();
            parts
                .iter_mut()
                .filter(|(_, p)| !p.pending.is_empty())
                .map(|(n, p)| (*n, std::mem::take(&mut p.pending)))
                .collect()
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
        let mut active: Vec<u32> = self.inner.parts.lock().keys().copied().collect();
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
        let active: Vec<u32> = self.inner.parts.lock().keys().copied().collect();
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
        let mut v: Vec<u32> = self.inner.parts.lock().keys().copied().collect();
        v.sort_unstable();
        v
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
                parts.entry(*p).or_default();
            }
        }
    }

    fn deactivate(&self, partitions: &BTreeSet<u32>) {
        let mut parts = self.parts.lock();
        for p in partitions {
            if let Some(part) = parts.get(p) {
                if !part.pending.is_empty() || !part.deliveries.is_empty() {
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
        let work: Vec<(u32, Vec<(Bytes, Option<Bytes>)>, Vec<Delivery>)> = {
            let mut parts = self.parts.lock();
            parts
                .iter_mut()
                .filter(|(_, p)| !p.pending.is_empty() || !p.deliveries.is_empty())
                .map(|(n, p)| {
                    (
                        *n,
                        std::mem::take(&mut p.pending),
                        std::mem::take(&mut p.deliveries),
                    )
                })
                .collect()
        };
        let mut first_error = None;
        for (p, ops, deliveries) in work {
            let mut offset = None;
            for d in deliveries {
                match d.await {
                    Ok(md) => offset = offset.max(Some(md.offset)),
                    Err(e) => {
                        tracing::error!(table = %self.name, partition = p, error = %e, "changelog write failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
            let offset = if first_error.is_some() { None } else { offset };
            rt.store.apply(p, WriteBatch { ops, offset }).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

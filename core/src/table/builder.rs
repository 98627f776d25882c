//! [`TableBuilder`]: how a table is defined (codecs, default, partitions,
//! cache, changelog options) before `build()` registers it with the app.

use super::*;

/// Defines a table; see [`App::table`].
#[must_use = "call .build() to define the table"]
pub struct TableBuilder<K, V> {
    pub(super) app: App,
    pub(super) name: String,
    pub(super) help: String,
    pub(super) partitions: Option<u32>,
    pub(super) default: Option<Arc<dyn Fn() -> V + Send + Sync>>,
    pub(super) key_serializer: Option<String>,
    pub(super) value_serializer: Option<String>,
    pub(super) per_write: bool,
    pub(super) use_partitioner: bool,
    pub(super) global: bool,
    pub(super) cache_capacity: usize,
    /// `compact,delete` with this retention (windowed tables: `expires`).
    pub(super) changelog_retention: Option<std::time::Duration>,
    pub(super) _types: PhantomData<fn() -> K>,
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
            use_partitioner: false,
            global: false,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            changelog_retention: None,
            _types: PhantomData,
        }
    }

    /// The same definition for another key type (windowed tables key by
    /// `(key, window start, window end)`).
    pub(crate) fn rekey<K2>(self) -> TableBuilder<K2, V> {
        TableBuilder {
            app: self.app,
            name: self.name,
            help: self.help,
            partitions: self.partitions,
            default: self.default,
            key_serializer: self.key_serializer,
            value_serializer: self.value_serializer,
            per_write: self.per_write,
            use_partitioner: self.use_partitioner,
            global: self.global,
            cache_capacity: self.cache_capacity,
            changelog_retention: self.changelog_retention,
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

    /// Write every key to its own partition by the partitioner (murmur2 of
    /// the encoded key, as Kafka's and Faust's `use_partitioner=True`), even
    /// inside a stream, instead of to the current event's partition. Writes
    /// outside a stream always do this. Either way the partition must be
    /// served by this worker, else the write fails with
    /// [`Error::PartitionNotAssigned`] naming table and partition (Faust
    /// would change its local copy and send the changelog record anyway,
    /// leaving the owner's copy stale until it recovers).
    pub fn use_partitioner(mut self) -> Self {
        self.use_partitioner = true;
        self
    }

    /// Keys kept in memory for this table (over all the partitions this
    /// worker serves; default [`DEFAULT_CACHE_CAPACITY`]). Beyond it, clean
    /// entries (already in the store) are evicted, least recently used
    /// first (approximately: a second-chance sweep), and a read of an evicted
    /// key goes to the store. Keys changed since the last commit stay cached
    /// until they are flushed, so a burst of distinct keys between two
    /// commits can exceed it. With `redb://` this is what lets a table be
    /// larger than memory.
    pub fn cache_capacity(mut self, keys: usize) -> Self {
        self.cache_capacity = keys.max(1);
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
        if let Some(retention) = self.changelog_retention {
            changelog = changelog.deleting(true).retention(retention);
        }
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
            use_partitioner: self.use_partitioner || self.global,
            global: self.global,
            capacity: self.cache_capacity,
            part_capacity: AtomicUsize::new(self.cache_capacity),
            flushing: AtomicBool::new(false),
            key_hasher: ahash::RandomState::new(),
            parts: Mutex::new(Parts(Vec::new())),
            runtime: parking_lot::RwLock::new(None),
            write_order: tokio::sync::Mutex::new(()),
            store_order: tokio::sync::Mutex::new(()),
        });
        app.inner.defs.lock().tables.push(inner.clone());
        let table = Table { inner };
        if table.inner.global {
            global::register_reader(&app, &table);
        }
        Ok(table)
    }
}

/// Tables an app defines.
impl App {
    /// Define a table; finish with `.build()`.
    pub fn table<K, V>(&self, name: impl Into<String>) -> TableBuilder<K, V>
    where
        K: Serialize + DeserializeOwned + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        TableBuilder::new(self.clone(), name)
    }
}

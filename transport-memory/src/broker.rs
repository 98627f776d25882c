//! The shared broker state: topics with append-only partition logs, consumer
//! groups, and the wake-up signal consumers wait on.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use faustus_core::partitioner::partition_for_key;
use faustus_core::transport::{Message, Record, RecordMetadata, TopicPartition};
use faustus_core::{Error, Result};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::group::Group;

/// One topic: a fixed number of append-only partition logs.
pub(crate) struct Topic {
    name: Arc<str>,
    partitions: Box<[Mutex<Vec<Message>>]>,
    /// Round-robin counter for keyless records without an explicit partition.
    next: AtomicU32,
}

impl Topic {
    fn new(name: Arc<str>, partitions: u32) -> Self {
        Topic {
            name,
            partitions: (0..partitions).map(|_| Mutex::new(Vec::new())).collect(),
            next: AtomicU32::new(0),
        }
    }

    /// Partition count.
    pub(crate) fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Append `records` (all for `partition`) in order under one lock of its
    /// log, handing each one's metadata to `each`.
    fn append_run(
        &self,
        partition: u32,
        records: impl Iterator<Item = Record>,
        now: i64,
        mut each: impl FnMut(RecordMetadata),
    ) -> Result<()> {
        let Some(log) = self.partitions.get(partition as usize) else {
            return Err(Error::State(format!(
                "memory broker: partition {partition} of {:?} vanished",
                self.name
            )));
        };
        let mut log = log.lock();
        for record in records {
            let offset = log.len() as i64;
            let timestamp_ms = Some(record.timestamp_ms.unwrap_or(now));
            log.push(Message {
                topic: self.name.clone(),
                partition,
                offset,
                timestamp_ms,
                key: record.key,
                value: record.value,
                headers: record.headers,
            });
            each(RecordMetadata {
                topic: self.name.clone(),
                partition,
                offset,
                timestamp_ms,
            });
        }
        Ok(())
    }

    /// The partition `record` goes to: its own, else by key, else the next
    /// in turn.
    fn partition_of(&self, record: &Record) -> Result<u32> {
        let n = self.partition_count();
        match (record.partition, &record.key) {
            (Some(p), _) if p >= n => Err(Error::NotFound {
                what: "partition",
                name: format!(
                    "{}[{p}] (topic {:?} has {n} partitions)",
                    self.name, self.name
                ),
            }),
            (Some(p), _) => Ok(p),
            (None, Some(key)) => Ok(partition_for_key(key, n)),
            (None, None) => Ok(self.next.fetch_add(1, Ordering::Relaxed) % n),
        }
    }

    /// The log end offset of `partition` (`None` when out of range).
    pub(crate) fn end_offset(&self, partition: u32) -> Option<i64> {
        self.partitions
            .get(partition as usize)
            .map(|log| log.lock().len() as i64)
    }

    /// Append up to `max` messages of `partition` starting at `from` to `out`;
    /// returns how many were appended.
    pub(crate) fn read(
        &self,
        partition: u32,
        from: i64,
        max: usize,
        out: &mut Vec<Message>,
    ) -> usize {
        let Some(log) = self.partitions.get(partition as usize) else {
            return 0;
        };
        let Ok(from) = usize::try_from(from) else {
            return 0;
        };
        let log = log.lock();
        if from >= log.len() {
            return 0;
        }
        let to = log.len().min(from.saturating_add(max));
        out.extend_from_slice(&log[from..to]);
        to - from
    }
}

/// The broker every transport of one name (or one private transport) shares.
pub(crate) struct Broker {
    name: Option<String>,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>, ahash::RandomState>>,
    pub(crate) groups: Mutex<HashMap<String, Group>>,
    notify: Notify,
    waiters: AtomicUsize,
    next_member: AtomicU64,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("name", &self.name)
            .field("topics", &self.topics.read().len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Registers a consumer as waiting for data for as long as it lives.
pub(crate) struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Broker {
    pub(crate) fn new(name: Option<String>) -> Self {
        Broker {
            name,
            topics: RwLock::new(HashMap::default()),
            groups: Mutex::new(HashMap::new()),
            notify: Notify::new(),
            waiters: AtomicUsize::new(0),
            next_member: AtomicU64::new(0),
        }
    }

    /// The process-wide broker called `name`, created on first use.
    pub(crate) fn named(name: &str) -> Arc<Broker> {
        static NAMED: OnceLock<Mutex<HashMap<String, Arc<Broker>>>> = OnceLock::new();
        NAMED
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Broker::new(Some(name.to_string()))))
            .clone()
    }

    /// The broker's name (`None` for a private broker).
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// A fresh, process-unique member sequence number (join order).
    pub(crate) fn next_member_seq(&self) -> u64 {
        self.next_member.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// The topic, created with `partitions` partitions when missing.
    pub(crate) fn topic_or_create(&self, name: &str, partitions: u32) -> Arc<Topic> {
        if let Some(t) = self.topic(name) {
            return t;
        }
        let mut topics = self.topics.write();
        topics
            .entry(Arc::from(name))
            .or_insert_with_key(|k| {
                tracing::debug!(topic = %k, partitions, "memory broker: auto-created topic");
                Arc::new(Topic::new(k.clone(), partitions.max(1)))
            })
            .clone()
    }

    /// Create a topic; Ok when it exists with the same partition count.
    pub(crate) fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        if partitions == 0 {
            return Err(Error::config(
                "topic_partitions",
                format!("topic {name:?} needs at least 1 partition, asked for 0"),
            ));
        }
        let mut topics = self.topics.write();
        match topics.get(name) {
            Some(t) if t.partition_count() == partitions => Ok(()),
            Some(t) => Err(Error::config(
                "topic_partitions",
                format!(
                    "topic {name:?} already exists with {} partitions, asked for {partitions}",
                    t.partition_count()
                ),
            )),
            None => {
                let name: Arc<str> = Arc::from(name);
                topics.insert(name.clone(), Arc::new(Topic::new(name, partitions)));
                Ok(())
            }
        }
    }

    /// Names of all topics, sorted.
    pub(crate) fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.topics.read().keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// Append a record; creates the topic with `default_partitions` when missing.
    pub(crate) fn append(&self, record: Record, default_partitions: u32) -> Result<RecordMetadata> {
        let topic = self.topic_or_create(&record.topic, default_partitions);
        let partition = topic.partition_of(&record)?;
        let mut metadata = None;
        topic.append_run(partition, std::iter::once(record), now_ms(), |m| {
            metadata = Some(m)
        })?;
        self.wake_waiters();
        metadata.ok_or_else(|| Error::State("memory broker: an append returned nothing".into()))
    }

    /// Pairs with `waiter()`: a consumer registers before it checks the
    /// logs, so either it sees an appended message or we see it waiting.
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Append records in order, each partition's run of records under one
    /// lock, and wake waiting consumers once. A record naming a partition
    /// the topic lacks fails the call; the records before it stay appended.
    pub(crate) fn append_all(
        &self,
        records: Vec<Record>,
        default_partitions: u32,
    ) -> Result<Vec<RecordMetadata>> {
        let mut out = Vec::with_capacity(records.len());
        let mut topic: Option<Arc<Topic>> = None;
        let mut records = records.into_iter().peekable();
        let now = now_ms();
        let result = loop {
            let Some(first) = records.next() else {
                break Ok(());
            };
            let t = match &topic {
                Some(t) if t.name == first.topic => t.clone(),
                _ => {
                    let t = self.topic_or_create(&first.topic, default_partitions);
                    topic = Some(t.clone());
                    t
                }
            };
            let partition = match t.partition_of(&first) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            // The same partition, named explicitly: under the same lock.
            let run = std::iter::once(first).chain(std::iter::from_fn(|| {
                records.next_if(|r| r.partition == Some(partition) && r.topic == t.name)
            }));
            let pushed = t.append_run(partition, run, now, |m| out.push(m));
            if let Err(e) = pushed {
                break Err(e);
            }
        };
        if !out.is_empty() {
            self.wake_waiters();
        }
        result.map(|()| out)
    }

    /// Wake every waiting consumer (group state changed).
    pub(crate) fn wake_all(&self) {
        self.notify.notify_waiters();
    }

    /// The signal to wait on; enable the returned future, then register with
    /// [`Broker::waiter`], then check for work, then await it.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Count the caller as waiting for appends until the guard drops.
    pub(crate) fn waiter(&self) -> WaiterGuard<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        WaiterGuard(&self.waiters)
    }
}

/// A handle on a memory broker, for inspecting it in tests.
///
/// Obtained from [`MemoryTransport::broker`](crate::MemoryTransport::broker);
/// cheap to clone. Every view is a snapshot taken at the call.
#[derive(Clone)]
pub struct MemoryBroker {
    pub(crate) inner: Arc<Broker>,
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MemoryBroker")
            .field(&self.inner.name)
            .finish()
    }
}

impl MemoryBroker {
    /// A new private broker (not reachable by name).
    pub fn new() -> Self {
        MemoryBroker {
            inner: Arc::new(Broker::new(None)),
        }
    }

    /// The process-wide broker called `name` (what `memory://NAME` uses).
    pub fn named(name: &str) -> Self {
        MemoryBroker {
            inner: Broker::named(name),
        }
    }

    /// The broker's name, `None` for a private broker.
    pub fn name(&self) -> Option<&str> {
        self.inner.name()
    }

    /// Names of all topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topic_names()
    }

    /// Partition count of `topic`, `None` when it does not exist.
    pub fn partition_count(&self, topic: &str) -> Option<u32> {
        self.inner.topic(topic).map(|t| t.partition_count())
    }

    /// Every message of one partition, in offset order (empty when unknown).
    pub fn messages(&self, topic: &str, partition: u32) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(t) = self.inner.topic(topic) {
            t.read(partition, 0, usize::MAX, &mut out);
        }
        out
    }

    /// The offset the next message of `tp` will get (0 for an unknown topic or partition).
    pub fn end_offset(&self, tp: &TopicPartition) -> i64 {
        self.inner
            .topic(&tp.topic)
            .and_then(|t| t.end_offset(tp.partition))
            .unwrap_or(0)
    }

    /// The offset `group` committed for `tp` (the next offset to read).
    pub fn committed(&self, group: &str, tp: &TopicPartition) -> Option<i64> {
        self.inner
            .groups
            .lock()
            .get(group)
            .and_then(|g| g.committed(tp))
    }

    /// Member ids of `group`, in join order (`{client_id}-{n}`).
    pub fn group_members(&self, group: &str) -> Vec<String> {
        self.inner
            .groups
            .lock()
            .get(group)
            .map(|g| g.member_ids())
            .unwrap_or_default()
    }

    /// What each member of `group` currently owns (the partitions it was told
    /// about and has not given back yet), keyed by member id.
    pub fn group_assignment(&self, group: &str) -> BTreeMap<String, Vec<TopicPartition>> {
        self.inner
            .groups
            .lock()
            .get(group)
            .map(|g| g.owned_by_member())
            .unwrap_or_default()
    }

    /// Members `group` removed because they stopped polling, oldest first,
    /// with what they owned and what was committed for it at that moment.
    pub fn expulsions(&self, group: &str) -> Vec<crate::Expulsion> {
        self.inner
            .groups
            .lock()
            .get(group)
            .map(|g| g.expulsions())
            .unwrap_or_default()
    }

    /// Whether `group` is between the start and the end of a rebalance.
    pub fn is_rebalancing(&self, group: &str) -> bool {
        self.inner
            .groups
            .lock()
            .get(group)
            .is_some_and(|g| g.is_rebalancing())
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

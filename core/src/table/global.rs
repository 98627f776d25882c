//! Global tables: every worker holds every partition (Faust's `GlobalTable`).
//!
//! A global table is a [`Table`] that each worker serves in full, whatever
//! the consumer group assigns. Its own group-less reader keeps it current:
//! before the agents start it reads every changelog partition from the
//! store's offset to the end (so a worker starts with the whole table), then
//! it follows the changelog for as long as the worker runs, storing each
//! batch with its offset. The group is never involved, so several workers
//! cannot make each other recover in a loop (Faust's global tables take part
//! in the group's assignment as standbys, and can rebalance forever).
//!
//! Writes go to the key's partition by the partitioner (every worker may
//! write any key, and a key lives in one partition), to the local cache and
//! store at once, and to the changelog at commit as for any table; other
//! workers see them once their reader reads them (eventually consistent).
//! The store's offsets are moved only by the reader, since other workers'
//! records below ours may not be read yet.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Table, TableBuilder};
use crate::app::{App, Service};
use crate::drivers::store::{TableStore, TableStoreExt, WriteBatch};
use crate::drivers::transport::{
    Message, PartitionReader, PartitionReaderExt, ReaderConfig, TopicPartition,
};
use crate::error::Result;
use crate::lifecycle::ShutdownSignal;

/// Quiet polls (200 ms each) after which missing offsets below the end
/// count as read (compaction, transaction markers).
const IDLE_POLLS_BEFORE_DONE: u32 = 50;

impl App {
    /// Define a global table: every worker holds all of it, kept current
    /// from its changelog (see [`table::global`](crate::table::global));
    /// finish with `.build()` (the builder is a [`TableBuilder`], so
    /// `with_default`, codecs etc. apply).
    ///
    /// ```
    /// # use faustus_core::App;
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// let prices = app.global_table::<String, f64>("prices").build()?;
    /// // any worker: prices.get(&"ACME".to_string()).await?
    /// # Ok(()) }
    /// ```
    pub fn global_table<K, V>(&self, name: impl Into<String>) -> TableBuilder<K, V>
    where
        K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let mut b = TableBuilder::new(self.clone(), name);
        b.global = true;
        b
    }
}

/// Registers the reader of a global table (called by `TableBuilder::build`).
pub(crate) fn register_reader<K, V>(app: &App, table: &Table<K, V>)
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    app.service(Reader {
        name: format!("global table {:?}", table.name()),
        table: table.clone(),
        consumer: tokio::sync::Mutex::new(None),
    });
}

struct Reader<K, V> {
    name: String,
    table: Table<K, V>,
    consumer: tokio::sync::Mutex<Option<Box<dyn PartitionReader>>>,
}

impl<K, V> Reader<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Store a polled batch, each partition's records with its last offset.
    /// While catching up (`catching_up`) the writes need not be durable (a
    /// `sync` ends the catch-up); afterwards each poll is one durable write.
    async fn apply(
        &self,
        store: &Arc<dyn TableStore>,
        msgs: Vec<Message>,
        catching_up: bool,
    ) -> Result<()> {
        let mut by_part: HashMap<u32, WriteBatch> = HashMap::new();
        for m in msgs {
            let batch = by_part.entry(m.partition).or_default();
            batch
                .ops
                .push((m.key.clone().unwrap_or_default(), m.value.clone()));
            batch.offset = Some(m.offset);
        }
        let keys: Vec<(u32, Vec<Bytes>)> = by_part
            .iter()
            .map(|(p, b)| (*p, b.ops.iter().map(|(k, _)| k.clone()).collect()))
            .collect();
        if catching_up {
            for (p, batch) in by_part {
                store.apply_replayed(p, batch).await?;
            }
        } else {
            // Every partition of the poll in one store write (redb: one transaction).
            store
                .apply_partitions(by_part.into_iter().collect())
                .await?;
        }
        for (p, keys) in keys {
            self.table.forget_clean(p, keys.into_iter());
        }
        Ok(())
    }
}

#[async_trait]
impl<K, V> Service for Reader<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    /// Catch up with every changelog partition before the agents start.
    async fn on_start(&self, app: &App) -> Result<()> {
        let store = self.table.store()?;
        let transport = app.inner.transport().await?;
        let mut consumer = transport
            .reader(&ReaderConfig::new(format!(
                "{}-global-{}",
                app.inner.settings().broker_client_id,
                self.table.name()
            )))
            .await?;
        let tps = TopicPartition::all(self.table.changelog_topic(), self.table.partitions());
        // Partition → offset to read up to before the table is served.
        let mut behind: HashMap<u32, i64> = HashMap::new();
        let mut starts = Vec::with_capacity(tps.len());
        for tp in tps {
            let end = consumer.high_watermark(&tp).await?;
            let mut start = store.replay_from(tp.partition).await?;
            if start > end {
                tracing::warn!(table = self.table.name(), partition = tp.partition, stored = start - 1, changelog_end = end,
                    "the store has applied changelog offsets the changelog does not have (topic recreated or another broker?): wiping the partition and reading it in full");
                store.drop_partition(tp.partition).await?;
                start = 0;
            }
            if start < end {
                behind.insert(tp.partition, end);
            }
            starts.push((tp, start));
        }
        consumer.assign_at(&starts).await?;
        let mut idle = 0;
        while !behind.is_empty() {
            let msgs = consumer.poll(Duration::from_millis(200)).await?;
            if msgs.is_empty() {
                idle += 1;
                if idle >= IDLE_POLLS_BEFORE_DONE {
                    tracing::warn!(table = self.table.name(), partitions = ?behind.keys().collect::<Vec<_>>(),
                        "no more records arrive below the changelog end; treating the global table as caught up");
                    behind.clear();
                }
                continue;
            }
            idle = 0;
            app.inner.monitor.add_recovered_records(msgs.len() as u64);
            for m in &msgs {
                if behind
                    .get(&m.partition)
                    .is_some_and(|end| m.offset + 1 >= *end)
                {
                    behind.remove(&m.partition);
                }
            }
            self.apply(&store, msgs, true).await?;
        }
        store.sync().await?;
        self.table.activate_all();
        *self.consumer.lock().await = Some(consumer);
        Ok(())
    }

    /// Follow the changelog until the worker stops.
    async fn run(&self, _app: App, stop: ShutdownSignal) -> Result<()> {
        let store = self.table.store()?;
        let mut guard = self.consumer.lock().await;
        let Some(consumer) = guard.as_mut() else {
            return Ok(());
        };
        loop {
            let event = tokio::select! {
                _ = stop.wait() => break,
                e = consumer.poll(Duration::from_millis(200)) => e,
            };
            match event {
                Ok(msgs) if !msgs.is_empty() => {
                    if let Err(e) = self.apply(&store, msgs, false).await {
                        tracing::error!(table = self.table.name(), error = %e, "cannot store changelog records of a global table");
                        return Err(e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(table = self.table.name(), error = %e, "reading the changelog of a global table failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if let Some(mut c) = guard.take() {
            c.close().await.ok();
        }
        Ok(())
    }
}

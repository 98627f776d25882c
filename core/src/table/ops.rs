//! The untyped side of a table that the worker drives: opening its store,
//! serving and dropping partitions, and the flush that moves changed keys to
//! the changelog and the store at each commit.

use super::*;

impl<K, V> TableInner<K, V>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Clone + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    pub(super) fn key_hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.key_hasher.hash_one(key)
    }

    pub(super) fn part_capacity(&self) -> usize {
        self.part_capacity.load(Ordering::Relaxed)
    }

    pub(super) fn is_flushing(&self) -> bool {
        self.flushing.load(Ordering::Acquire)
    }

    /// Share the capacity among the partitions now served.
    pub(super) fn share_capacity(&self, parts: &Parts<K, V>) {
        let n = parts.keys().count().max(1);
        self.part_capacity
            .store((self.capacity / n).max(1), Ordering::Relaxed);
    }

    /// Encode `key` (the table's key, or what windowed and set tables build it from).
    pub(super) fn encode_key<Q: Serialize + 'static>(&self, key: &Q) -> Result<Bytes> {
        self.key_codec
            .encode(key)
            .map_err(|message| self.encode_error(Field::Key, message))
    }

    /// One op, each part its own allocation (per-write ops; a flush uses
    /// [`encode_op_in`](Self::encode_op_in)).
    pub(super) fn encode_op(&self, key: &K, value: Option<&V>) -> Result<(Bytes, Option<Bytes>)> {
        let key = self.encode_key(key)?;
        let value = match value {
            Some(v) => Some(
                self.value_codec
                    .encode(v)
                    .map_err(|message| self.encode_error(Field::Value, message))?,
            ),
            None => None,
        };
        Ok((key, value))
    }

    /// [`encode_op`](Self::encode_op) into the free capacity of `buf` (a
    /// flush encodes its ops into a few shared allocations).
    pub(super) fn encode_op_in(
        &self,
        key: &K,
        value: Option<&V>,
        buf: &mut BytesMut,
    ) -> Result<(Bytes, Option<Bytes>)> {
        let key = self
            .key_codec
            .encode_in(key, buf)
            .map_err(|message| self.encode_error(Field::Key, message))?;
        let value = match value {
            Some(v) => Some(
                self.value_codec
                    .encode_in(v, buf)
                    .map_err(|message| self.encode_error(Field::Value, message))?,
            ),
            None => None,
        };
        Ok((key, value))
    }

    pub(super) fn encode_error(&self, field: Field, message: String) -> Error {
        let codec = match field {
            Field::Key => &self.key_codec,
            Field::Value => &self.value_codec,
        };
        Error::Encode {
            field,
            topic: self.changelog.name.to_string(),
            codec: codec.name().to_string(),
            message,
        }
    }

    pub(super) fn decode_value(&self, bytes: Bytes, partition: u32) -> Result<V> {
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

    pub(super) fn default_value(&self) -> Result<V> {
        match &self.default {
            Some(d) => Ok(d()),
            None => Err(Error::NotFound {
                what: "table key (the table has no default value)",
                name: self.name.clone(),
            }),
        }
    }

    /// Take each partition's changes: the changed keys, encoded (coalescing
    /// mode), or the ops written (per-write mode). A key that cannot be
    /// encoded stays changed and its error is the flush's.
    fn take_changes(&self, first_error: &mut Option<Error>) -> Vec<FlushWork<K>> {
        let mut work: Vec<FlushWork<K>> = Vec::new();
        let mut buf = BytesMut::new();
        let mut parts = self.parts.lock();
        for (n, part) in parts.iter_mut() {
            part.store_epoch += 1;
            if !part.dirty.is_empty() {
                let mut ops = Vec::with_capacity(part.dirty.len());
                let mut keys = Vec::with_capacity(part.dirty.len());
                let mut kept = Vec::new();
                for k in std::mem::take(&mut part.dirty) {
                    let Some(slot) = part.cache.get_mut(&k) else {
                        continue;
                    };
                    match self.encode_op_in(&k, slot.value.as_ref(), &mut buf) {
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
        work
    }

    /// Send the changed keys' records to the changelog, one batch per
    /// partition (per-write ops were sent when written). One error slot per
    /// partition.
    async fn send_changes(&self, rt: &Runtime, work: &mut [FlushWork<K>]) -> Vec<Option<Error>> {
        let mut failed: Vec<Option<Error>> = Vec::with_capacity(work.len());
        for w in work.iter_mut() {
            let mut f = None;
            if !w.keys.is_empty() {
                let records = w
                    .ops
                    .iter()
                    .map(|(k, v)| {
                        let mut record =
                            Record::new(self.changelog.name.clone(), Some(k.clone()), v.clone());
                        record.partition = Some(w.partition);
                        record
                    })
                    .collect();
                match rt.producer.send_batch(records).await {
                    Ok(d) => w.deliveries = d,
                    Err(e) => f = Some(e),
                }
            }
            failed.push(f);
        }
        failed
    }

    /// Await each partition's changelog deliveries: its store batch carries
    /// the highest changelog offset — none when a record failed (its keys
    /// are marked changed again, to be resent at the next flush) or for a
    /// global table (its reader owns the offsets).
    async fn await_changelog(
        &self,
        work: Vec<FlushWork<K>>,
        failed: Vec<Option<Error>>,
        first_error: &mut Option<Error>,
    ) -> (Vec<(u32, WriteBatch)>, Vec<Vec<K>>) {
        let mut batches = Vec::with_capacity(work.len());
        let mut stored_keys = Vec::with_capacity(work.len());
        for (w, mut failed) in work.into_iter().zip(failed) {
            let p = w.partition;
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
                self.mark_changed_again(p, w.keys);
                stored_keys.push(Vec::new());
                first_error.get_or_insert(e);
                // Data ahead of its offset is safe; the offset waits for the changelog.
                offset = None;
            } else {
                stored_keys.push(w.keys);
            }
            // A global table's offsets belong to its changelog reader: other
            // workers write to the same partitions, and their records below
            // ours may not be read yet.
            let offset = if self.global { None } else { offset };
            batches.push((p, WriteBatch { ops: w.ops, offset }));
        }
        (batches, stored_keys)
    }

    /// A store write failed: put its changes back, so the next flush stores
    /// them again. Changed keys are marked changed again (their changelog
    /// records, full values, are sent again: harmless); ops written in
    /// per-write mode go back to the front of the partition's pending ops
    /// (their offset is then carried by a later flush's, or stays unstored
    /// and recovery replays them: both sound).
    pub(super) fn restore_unstored(&self, batches: Vec<(u32, WriteBatch)>, keys: Vec<Vec<K>>) {
        for ((p, batch), keys) in batches.into_iter().zip(keys) {
            if keys.is_empty() {
                let mut parts = self.parts.lock();
                if let Some(part) = parts.get_mut(&p) {
                    let newer = std::mem::replace(&mut part.pending, batch.ops);
                    part.pending.extend(newer);
                }
            } else {
                self.mark_changed_again(p, keys);
            }
        }
    }

    /// Mark `keys` of partition `p` changed again, so the next flush resends them.
    fn mark_changed_again(&self, p: u32, keys: Vec<K>) {
        let mut parts = self.parts.lock();
        if let Some(part) = parts.get_mut(&p) {
            for k in keys {
                if let Some(slot) = part.cache.get_mut(&k) {
                    if !std::mem::replace(&mut slot.dirty, true) {
                        part.dirty.push(k);
                    }
                }
            }
        }
    }

    /// After a flush stored its changes: bump every partition's store epoch
    /// (a store check that overlapped the flush must not trust what it saw)
    /// and evict down to the capacity.
    fn trim_after_flush(&self) {
        let capacity = self.part_capacity();
        let mut parts = self.parts.lock();
        for (_, part) in parts.iter_mut() {
            part.store_epoch += 1;
            part.trim(capacity);
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
        if self.runtime.read().is_some() {
            return Ok(());
        }
        let ts = store
            .open(&TableSpec::new(self.name.clone(), self.partitions))
            .await?;
        *self.runtime.write() = Some(Runtime {
            store: ts,
            producer,
        });
        Ok(())
    }

    fn table_store(&self) -> Option<Arc<dyn TableStore>> {
        self.runtime.read().as_ref().map(|r| r.store.clone())
    }

    async fn get_text(self: Arc<Self>, key: &str) -> Result<Option<serde_json::Value>> {
        let parsed: K = crate::drivers::web::parse_text(key).map_err(|e| Error::NotFound {
            what: "table key",
            name: format!("{key:?} is not a key of table {:?}: {e}", self.name),
        })?;
        let table = Table { inner: self };
        match table.get(&parsed).await? {
            Some(v) => serde_json::to_value(&v)
                .map(Some)
                .map_err(|e| Error::Codec {
                    codec: "json".into(),
                    message: format!("value of table {:?}: {e}", table.inner.name),
                }),
            None => Ok(None),
        }
    }

    async fn local_len(&self) -> Result<u64> {
        let Some(store) = self.table_store() else {
            return Ok(0);
        };
        let active: Vec<u32> = self.parts.lock().keys().collect();
        let mut n = 0;
        for p in active {
            n += store.len(p).await?;
        }
        Ok(n)
    }

    fn activate(&self, partitions: &BTreeSet<u32>) {
        if self.global {
            // Served from the start (after its reader caught up), whatever
            // the group assigns.
            return;
        }
        let mut parts = self.parts.lock();
        for p in partitions {
            if *p < self.partitions {
                parts.activate(*p);
            }
        }
        self.share_capacity(&parts);
    }

    fn deactivate(&self, partitions: &BTreeSet<u32>) {
        if self.global {
            return;
        }
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
        self.share_capacity(&parts);
    }

    fn is_global(&self) -> bool {
        self.global
    }

    fn close(&self) {
        if self.has_changes() {
            tracing::warn!(table = %self.name, "closing with unflushed writes; they stay in the changelog");
        }
        self.parts.lock().0.clear();
        *self.runtime.write() = None;
    }

    fn has_changes(&self) -> bool {
        let parts = self.parts.lock();
        let changed = parts.iter().any(|part| {
            !part.dirty.is_empty() || !part.pending.is_empty() || !part.deliveries.is_empty()
        });
        changed
    }

    async fn flush(&self) -> Result<()> {
        let Some(rt) = self.runtime.read().clone() else {
            return Ok(());
        };
        let _stored = self.store_order.lock().await;
        // From taking the changed keys until they are stored, their cache
        // entries are the only copy outside the changelog: no eviction.
        self.flushing.store(true, Ordering::Release);
        let flushing = ClearOnDrop(&self.flushing);
        let mut first_error = None;
        let mut work = self.take_changes(&mut first_error);
        // Send every partition's changes to the changelog first, then await
        // the deliveries, then store every partition in one store write (one
        // durable commit per flush, not one per partition).
        let failed = self.send_changes(&rt, &mut work).await;
        let (batches, keys) = self.await_changelog(work, failed, &mut first_error).await;
        if !batches.is_empty() {
            if let Err(e) = rt.store.apply_partitions(batches.clone()).await {
                // Nothing of this write is stored: its changes stay pending
                // (and unevictable) for the next flush to store again, and
                // the offsets of the events behind them are not committed.
                self.restore_unstored(batches, keys);
                return Err(e);
            }
        }
        // What was stored is clean: evict down to the capacity.
        drop(flushing);
        self.trim_after_flush();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

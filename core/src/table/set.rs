//! Set tables: per key, a set of members (Faust's `app.SetTable`).
//!
//! A set table is a [`Table`] keyed by `(key, member)`: `add` writes the
//! pair (value `null`), `discard` deletes it. So its changelog is the log of
//! the operations — an add is a record, a discard a tombstone — and folding
//! it (last record per pair wins) gives exactly the sets; compaction keeps
//! that true. Writes go to the key's partition: the current event's inside
//! a stream (copartitioned with the stream), else the partitioner's.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::app::App;
use crate::error::Result;
use crate::table::{Table, TableBuilder};

/// Defines a set table; see [`App::set_table`].
#[must_use = "call .build() to define the table"]
pub struct SetTableBuilder<K, M> {
    table: TableBuilder<(K, M), ()>,
}

impl App {
    /// Define a set table: for each key a set of members, with a changelog
    /// of add/discard operations. Finish with `.build()`.
    ///
    /// ```
    /// # use faustus_core::App;
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// let followers = app.set_table::<String, String>("followers").build()?;
    /// // inside an agent:
    /// // followers.add(&"alice".into(), "bob".into()).await?;
    /// // followers.contains(&"alice".into(), &"bob".into()).await?;
    /// # Ok(()) }
    /// ```
    pub fn set_table<K, M>(&self, name: impl Into<String>) -> SetTableBuilder<K, M>
    where
        K: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
        M: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
    {
        SetTableBuilder {
            table: TableBuilder::new(self.clone(), name),
        }
    }
}

impl<K, M> SetTableBuilder<K, M>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
{
    /// Help text (for the `tables` command).
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.table = self.table.help(help);
        self
    }

    /// Partitions (default `topic_partitions`); must match the stream that updates it.
    pub fn partitions(mut self, n: u32) -> Self {
        self.table = self.table.partitions(n);
        self
    }

    /// Send each operation to the changelog at once (see
    /// [`TableBuilder::changelog_per_write`]).
    pub fn changelog_per_write(mut self) -> Self {
        self.table = self.table.changelog_per_write();
        self
    }

    /// `(key, member)` pairs kept in memory (see [`TableBuilder::cache_capacity`]).
    pub fn cache_capacity(mut self, pairs: usize) -> Self {
        self.table = self.table.cache_capacity(pairs);
        self
    }

    /// Register the table and its changelog with the app.
    pub fn build(self) -> Result<SetTable<K, M>> {
        Ok(SetTable {
            table: self.table.build()?,
        })
    }
}

/// Per key, a set of members; see the [module docs](self).
pub struct SetTable<K, M> {
    table: Table<(K, M), ()>,
}

impl<K, M> Clone for SetTable<K, M> {
    fn clone(&self) -> Self {
        SetTable {
            table: self.table.clone(),
        }
    }
}

impl<K, M> fmt::Debug for SetTable<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SetTable({:?})", self.table)
    }
}

impl<K, M> SetTable<K, M>
where
    K: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Hash + Eq + Ord + Clone + Send + Sync + 'static,
{
    /// The table underneath, keyed by `(key, member)`.
    pub fn table(&self) -> &Table<(K, M), ()> {
        &self.table
    }

    /// Add `member` to the set of `key` (a changelog record).
    pub async fn add(&self, key: &K, member: M) -> Result<()> {
        let p = self.table.write_partition_of(key)?;
        self.table.set_in(p, (key.clone(), member), ()).await
    }

    /// Remove `member` from the set of `key` (a changelog tombstone); a
    /// missing member is no error.
    pub async fn discard(&self, key: &K, member: &M) -> Result<()> {
        let p = self.table.write_partition_of(key)?;
        self.table
            .delete_in(p, &(key.clone(), member.clone()))
            .await
    }

    /// Whether `member` is in the set of `key`.
    pub async fn contains(&self, key: &K, member: &M) -> Result<bool> {
        let p = self.served_partition(key)?;
        Ok(self
            .table
            .load(p, &(key.clone(), member.clone()))
            .await?
            .is_some())
    }

    /// The members of `key`, in order (reads the key's partition from the store).
    pub async fn members(&self, key: &K) -> Result<BTreeSet<M>> {
        let p = self.served_partition(key)?;
        Ok(self
            .table
            .items_in(p)
            .await?
            .into_iter()
            .filter(|((k, _), _)| k == key)
            .map(|((_, m), _)| m)
            .collect())
    }

    /// The partition of `key`, which this worker must serve to answer.
    fn served_partition(&self, key: &K) -> Result<u32> {
        let p = self.table.write_partition_of(key)?;
        if !self.table.active_partitions().contains(&p) {
            return Err(crate::Error::PartitionNotAssigned {
                table: self.table.name().to_string(),
                partition: p,
            });
        }
        Ok(p)
    }

    /// Every key with its members, over the partitions this worker serves.
    pub async fn items(&self) -> Result<Vec<(K, BTreeSet<M>)>> {
        let mut out: std::collections::BTreeMap<K, BTreeSet<M>> = Default::default();
        for ((k, m), ()) in self.table.items().await? {
            out.entry(k).or_default().insert(m);
        }
        Ok(out.into_iter().collect())
    }
}

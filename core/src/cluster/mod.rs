//! The cluster map: which worker of the app holds which partitions, and
//! where to reach it.
//!
//! Every worker publishes a small record about itself — its id, its
//! canonical web URL, the topic partitions it is assigned, the active
//! partitions of each table and its standby partitions — to the internal
//! compacted topic `{app_id}-__cluster` (one partition, keyed by worker id),
//! after every change of its assignment or URL and every
//! [`HEARTBEAT`]. A graceful stop writes a tombstone. Every worker reads the
//! topic from the start with a partition reader (no group) and folds it into the same
//! [`ClusterMap`] (the fold depends only on the records read, so workers that
//! read the same prefix agree).
//!
//! Why a topic and not the group protocol: with rdkafka there is no custom
//! group assignor, so a member only learns its own assignment (see
//! `DESIGN.md`). The map gives table routing, the `/router` endpoint and
//! standby replicas the view of the whole group.
//!
//! Conflicts and crashes: when two records claim the same partition (a
//! rebalance moved it and the old owner has not republished yet), the later
//! record in the topic wins. A worker that crashed (no tombstone) expires
//! once another live worker has published [`EXPIRE_AFTER_BEATS`] heartbeats
//! after its last record — a logical clock, so every reader decides alike and
//! no wall clocks are compared.

//!
//! [`map`](self) holds the pure part: the records workers publish and the fold
//! every worker derives from them (standby placement included), tested
//! without I/O. `service` is the I/O around it: publishing this worker's
//! record, reading the topic, the `App` methods. `standby` keeps the
//! standby partitions this worker was given warm.

mod map;
mod service;
pub(crate) mod standby;

pub use map::{ClusterMap, WorkerInfo, EXPIRE_AFTER_BEATS, HEARTBEAT};
pub(crate) use service::{partition_reader, topic_name, ClusterService, ClusterState};

//! Worker signals (`on_partitions_assigned`, `on_partitions_revoked`,
//! `on_rebalance_complete`, `on_worker_init`, `on_before_shutdown`) and the
//! leader: the worker holding partition 0 of `{app_id}-__assignor-__leader`.

use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::app::App;
use crate::transport::TopicPartition;

type PartitionsFn = Arc<dyn Fn(App, Vec<TopicPartition>) -> BoxFuture<'static, ()> + Send + Sync>;
type AppFn = Arc<dyn Fn(App) -> BoxFuture<'static, ()> + Send + Sync>;
type SyncAppFn = Arc<dyn Fn(&App) + Send + Sync>;

/// Connected signal receivers of one app.
#[derive(Default)]
pub(crate) struct Signals {
    assigned: Mutex<Vec<PartitionsFn>>,
    revoked: Mutex<Vec<PartitionsFn>>,
    rebalance_complete: Mutex<Vec<AppFn>>,
    worker_init: Mutex<Vec<SyncAppFn>>,
    before_shutdown: Mutex<Vec<AppFn>>,
}

impl App {
    /// The leader topic's name: `{app_id}-__assignor-__leader`.
    pub fn leader_topic(&self) -> String {
        format!("{}-__assignor-__leader", self.id())
    }

    /// Whether this worker is the leader: it holds partition 0 of the
    /// single-partition [`leader_topic`](App::leader_topic).
    pub fn is_leader(&self) -> bool {
        let topic = self.leader_topic();
        self.inner
            .assigned
            .lock()
            .keys()
            .any(|tp| tp.partition == 0 && *tp.topic == *topic)
    }
}

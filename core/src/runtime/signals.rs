//! Worker signals (`on_partitions_assigned`, `on_partitions_revoked`,
//! `on_rebalance_complete`, `on_worker_init`, `on_before_shutdown`) and the
//! leader: the worker holding partition 0 of `{app_id}-__assignor-__leader`.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::app::App;
use crate::drivers::transport::TopicPartition;

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
    before_shutdown: Mutex<Vec<SyncAppFn>>,
    /// Whether the worker takes part in leader election.
    pub(crate) leader: std::sync::atomic::AtomicBool,
    /// `on_before_shutdown` already ran for this worker.
    shutting_down: std::sync::atomic::AtomicBool,
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
            .assignment
            .borrow()
            .keys()
            .any(|tp| tp.partition == 0 && *tp.topic == *topic)
    }
}

impl App {
    /// Signal: partitions were assigned to this worker (after their tables
    /// recovered). Faust's `on_partitions_assigned`; async.
    pub fn on_partitions_assigned<F, Fut>(&self, f: F)
    where
        F: Fn(App, Vec<TopicPartition>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .state::<Signals>()
            .assigned
            .lock()
            .push(Arc::new(move |a, t| Box::pin(f(a, t))));
    }

    /// Signal: partitions are being taken from this worker (before their
    /// events in hand finish and are committed). Async.
    pub fn on_partitions_revoked<F, Fut>(&self, f: F)
    where
        F: Fn(App, Vec<TopicPartition>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .state::<Signals>()
            .revoked
            .lock()
            .push(Arc::new(move |a, t| Box::pin(f(a, t))));
    }

    /// Signal: a rebalance finished: the new partitions are recovered and
    /// processing resumes. Async.
    pub fn on_rebalance_complete<F, Fut>(&self, f: F)
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .state::<Signals>()
            .rebalance_complete
            .lock()
            .push(Arc::new(move |a| Box::pin(f(a))));
    }

    /// Signal: a worker is starting for this app (before anything runs). Sync.
    pub fn on_worker_init(&self, f: impl Fn(&App) + Send + Sync + 'static) {
        self.inner
            .state::<Signals>()
            .worker_init
            .lock()
            .push(Arc::new(f));
    }

    /// Signal: the worker is about to stop (before intake stops). Sync.
    pub fn on_before_shutdown(&self, f: impl Fn(&App) + Send + Sync + 'static) {
        self.inner
            .state::<Signals>()
            .before_shutdown
            .lock()
            .push(Arc::new(f));
    }
}

/// Run the receivers of a partitions signal, in order of connection.
pub(crate) async fn partitions(app: &App, revoked: bool, tps: &[TopicPartition]) {
    let receivers: Vec<PartitionsFn> = if revoked {
        app.inner.state::<Signals>().revoked.lock().clone()
    } else {
        app.inner.state::<Signals>().assigned.lock().clone()
    };
    for r in receivers {
        r(app.clone(), tps.to_vec()).await;
    }
}

/// Run the `on_rebalance_complete` receivers.
pub(crate) async fn rebalance_complete(app: &App) {
    let receivers = app
        .inner
        .state::<Signals>()
        .rebalance_complete
        .lock()
        .clone();
    for r in receivers {
        r(app.clone()).await;
    }
}

/// Run the `on_worker_init` (`init`) or `on_before_shutdown` receivers
/// (the latter once per worker run).
pub(crate) fn lifecycle(app: &App, init: bool) {
    use std::sync::atomic::Ordering;
    let flag = &app.inner.state::<Signals>().shutting_down;
    if init {
        flag.store(false, Ordering::Release);
    } else if flag.swap(true, Ordering::AcqRel) {
        return;
    }
    let receivers = if init {
        app.inner.state::<Signals>().worker_init.lock().clone()
    } else {
        app.inner.state::<Signals>().before_shutdown.lock().clone()
    };
    for r in receivers {
        r(app);
    }
}

//! The worker harness: the [`Cluster`] itself, how each worker's app is
//! built on the simulated broker and its own fused store, and the worker
//! lifecycle (join, leave, crash, restart), plus input sends.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use faustus_core::monitor::RecoveryState;
use faustus_core::store::Store;
use faustus_core::transport::{
    Producer, ProducerConfig, Record, RecordMetadata, TopicPartition, Transport,
};
use faustus_core::{App, AppBuilder, DriverUrl, Registry, Result, WorkerHandle};
use faustus_store_memory::MemoryStore;
use faustus_transport_memory::MemoryBroker;

use super::fuse::{Fuse, FusedStore, FusedTransport};
use super::{Crash, Recorder, SimConfig, SimRng, TraceEntry};

/// What a worker's app is built with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerCtx {
    /// Worker name (`w0`, `w1`, …); its `broker_client_id` is
    /// `{name}.{incarnation}`.
    pub name: String,
    /// 0 for the first start, then 1, 2, … for each restart.
    pub incarnation: u32,
    /// Where the app can record what it does, for [`Cluster::trace`].
    pub recorder: Recorder,
}

type BuildFn = Arc<dyn Fn(&WorkerCtx, AppBuilder) -> Result<App> + Send + Sync>;

pub(super) enum State {
    Running {
        app: App,
        handle: WorkerHandle,
        fuse: Fuse,
    },
    Crashed,
    Stopped,
}

pub(super) struct Slot {
    pub(super) incarnation: u32,
    pub(super) state: State,
}

/// A simulated cluster; see the [module docs](super).
pub struct Cluster {
    pub(super) config: SimConfig,
    broker_name: String,
    pub(super) broker: MemoryBroker,
    base: Registry,
    build: BuildFn,
    pub(super) workers: BTreeMap<u8, Slot>,
    /// Crashed workers' apps and handles: kept, never stopped (a dead process
    /// does not shut down); dropped with the cluster.
    zombies: Vec<(App, WorkerHandle)>,
    crashes: Vec<Crash>,
    pub(super) recorder: Recorder,
    pub(super) rng: SimRng,
    input: Option<Arc<dyn Producer>>,
    pub(super) sent: u64,
    acknowledged: Vec<RecordMetadata>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("broker", &self.broker_name)
            .field("live", &self.live_workers())
            .finish()
    }
}

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

pub(super) fn worker_name(n: u8) -> String {
    format!("w{n}")
}

/// Each incarnation is its own group member: `w0.2`.
pub(super) fn client_id(name: &str, incarnation: u32) -> String {
    format!("{name}.{incarnation}")
}

impl Cluster {
    /// A cluster of `config.app_id` whose workers are built by `build` (given
    /// the worker's context and a builder already pointed at the simulated
    /// broker and the worker's own store). Call inside a runtime with a
    /// paused clock ([`run_paused`], or `#[tokio::test(start_paused = true)]`).
    ///
    /// [`run_paused`]: super::run_paused
    pub fn new(
        config: SimConfig,
        build: impl Fn(&WorkerCtx, AppBuilder) -> Result<App> + Send + Sync + 'static,
    ) -> Self {
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let broker_name = format!("faustus-sim-{}-{n}", config.seed);
        let base = Registry::new();
        faustus_transport_memory::register(&base);
        faustus_store_memory::register(&base);
        let recorder = Recorder::default();
        recorder.record("cluster", format!("seed {}", config.seed));
        Cluster {
            broker: MemoryBroker::named(&broker_name),
            rng: SimRng::new(config.seed),
            config,
            broker_name,
            base,
            build: Arc::new(build),
            workers: BTreeMap::new(),
            zombies: Vec::new(),
            crashes: Vec::new(),
            recorder,
            input: None,
            sent: 0,
            acknowledged: Vec::new(),
        }
    }

    /// The shared broker, for inspection.
    pub fn broker(&self) -> &MemoryBroker {
        &self.broker
    }

    /// The recorder apps may write to (also in [`WorkerCtx`]).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The trace: steps, crashes, settles and what apps recorded.
    pub fn trace(&self) -> Vec<TraceEntry> {
        self.recorder.entries()
    }

    /// The crashes so far.
    pub fn crashes(&self) -> &[Crash] {
        &self.crashes
    }

    /// Input records the broker acknowledged ([`Step::Send`], [`Cluster::send`]).
    ///
    /// [`Step::Send`]: super::Step::Send
    pub fn acknowledged(&self) -> &[RecordMetadata] {
        &self.acknowledged
    }

    /// Names of the running workers, sorted.
    pub fn live_workers(&self) -> Vec<String> {
        self.workers
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Running { .. }))
            .map(|(n, _)| worker_name(*n))
            .collect()
    }

    /// The app of a running worker.
    pub fn app(&self, worker: u8) -> Option<&App> {
        match self.workers.get(&worker).map(|s| &s.state) {
            Some(State::Running { app, .. }) => Some(app),
            _ => None,
        }
    }

    pub(super) fn group(&self) -> String {
        // Every worker shares the id; the group is the app's (versioned) id.
        self.workers
            .values()
            .find_map(|s| match &s.state {
                State::Running { app, .. } => Some(app.id().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| self.config.app_id.clone())
    }

    pub(super) fn store_name(&self, worker: &str) -> String {
        format!("{}-{worker}", self.broker_name)
    }

    /// Start worker `n` (or restart it with its local store).
    pub async fn join(&mut self, n: u8) -> Result<()> {
        if matches!(
            self.workers.get(&n).map(|s| &s.state),
            Some(State::Running { .. })
        ) {
            return Ok(());
        }
        let incarnation = self.workers.get(&n).map_or(0, |s| s.incarnation + 1);
        let name = worker_name(n);
        let fuse = Fuse::new();
        let registry = self.worker_registry(&name, &fuse)?;
        let ctx = WorkerCtx {
            name: name.clone(),
            incarnation,
            recorder: self.recorder.clone(),
        };
        let builder = App::builder(self.config.app_id.clone())
            .registry(registry)
            .env(BTreeMap::new())
            .broker(format!("sim://{}", self.broker_name))
            .store("sim://")
            .broker_client_id(client_id(&name, incarnation))
            .broker_commit_interval(self.config.commit_interval)
            .topic_partitions(self.config.partitions)
            .table_standby_replicas(self.config.standby_replicas)
            .web_enabled(false);
        let app = (self.build)(&ctx, builder)?;
        // A fixed id (not a random one) keeps the cluster topic reproducible.
        app.set_worker_id(client_id(&name, incarnation))?;
        let handle = app.start().await?;
        self.recorder.record(
            "cluster",
            format!("{name} starts (incarnation {incarnation})"),
        );
        self.workers.insert(
            n,
            Slot {
                incarnation,
                state: State::Running { app, handle, fuse },
            },
        );
        Ok(())
    }

    fn worker_registry(&self, name: &str, fuse: &Fuse) -> Result<Registry> {
        let registry = Registry::new();
        let url = DriverUrl::parse(
            "broker",
            &format!(
                "memory://{}?partitions={}&rebalance_timeout_ms={}&session_timeout_ms={}",
                self.broker_name,
                self.config.partitions,
                self.config.rebalance_timeout.as_millis(),
                self.config.session_timeout.as_millis()
            ),
        )?;
        let transport = self.base.transport(&url)?;
        let fused: Arc<dyn Transport> = Arc::new(FusedTransport {
            inner: transport,
            fuse: fuse.clone(),
            fetch_delay: self.config.fetch_delay,
        });
        registry.register_transport("sim", Arc::new(move |_| Ok(fused.clone())));
        let store: Arc<dyn Store> = Arc::new(FusedStore {
            inner: Arc::new(MemoryStore::named(&self.store_name(name))),
            fuse: fuse.clone(),
        });
        registry.register_store("sim", Arc::new(move |_, _| Ok(store.clone())));
        Ok(registry)
    }

    /// Stop worker `n` gracefully.
    pub async fn leave(&mut self, n: u8) -> Result<()> {
        let Some(slot) = self.workers.get_mut(&n) else {
            return Ok(());
        };
        if let State::Running { handle, .. } = std::mem::replace(&mut slot.state, State::Stopped) {
            self.recorder
                .record("cluster", format!("{} leaves", worker_name(n)));
            handle.stop().await?;
            self.recorder
                .record("cluster", format!("{} stopped", worker_name(n)));
        }
        Ok(())
    }

    /// Crash worker `n`: nothing it does from now on reaches the broker or
    /// its store; the group notices after the session timeout.
    pub fn crash(&mut self, n: u8) {
        let group = self.group();
        let Some(slot) = self.workers.get_mut(&n) else {
            return;
        };
        if let State::Running {
            app, handle, fuse, ..
        } = std::mem::replace(&mut slot.state, State::Crashed)
        {
            fuse.blow();
            let mut owned: Vec<(TopicPartition, Option<i64>)> = app
                .assignment()
                .into_iter()
                .map(|tp| {
                    let c = self.broker.committed(&group, &tp);
                    (tp, c)
                })
                .collect();
            owned.sort();
            self.recorder.record(
                "cluster",
                format!("{} crashes owning {:?}", worker_name(n), owned),
            );
            let at_ms = self.recorder.entries.lock().last().map_or(0, |e| e.at_ms);
            self.crashes.push(Crash {
                worker: worker_name(n),
                incarnation: slot.incarnation,
                at_ms,
                owned,
            });
            self.zombies.push((app, handle));
        }
    }

    /// Whether worker `n` is replaying a changelog (its monitor shows a
    /// recovery running).
    pub fn is_recovering(&self, n: u8) -> bool {
        self.app(n).is_some_and(|app| {
            app.monitor()
                .recovery_progress()
                .iter()
                .any(|r| r.state == RecoveryState::Running)
        })
    }

    /// Send one record to the broker (not through any worker) and wait for
    /// its acknowledgement.
    pub async fn send(&mut self, record: Record) -> Result<RecordMetadata> {
        let producer = match &self.input {
            Some(p) => p.clone(),
            None => {
                let url = DriverUrl::parse(
                    "broker",
                    &format!(
                        "memory://{}?partitions={}",
                        self.broker_name, self.config.partitions
                    ),
                )?;
                let p = self
                    .base
                    .transport(&url)?
                    .producer(&ProducerConfig::new("sim-input"))
                    .await?;
                self.input = Some(p.clone());
                p
            }
        };
        let md = producer.send(record).await?.await?;
        self.acknowledged.push(md.clone());
        Ok(md)
    }

    /// Stop every running worker gracefully.
    pub async fn shutdown(&mut self) -> Result<()> {
        let running: Vec<u8> = self
            .workers
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Running { .. }))
            .map(|(n, _)| *n)
            .collect();
        for n in running {
            self.leave(n).await?;
        }
        Ok(())
    }
}

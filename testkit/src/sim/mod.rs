//! The deterministic cluster simulator: several workers of one app in one
//! process, on one named memory broker, on virtual time.
//!
//! A [`Cluster`] starts, stops, crashes and restarts workers of your app
//! (each worker is a fresh [`App`] built by your function, so a restarted
//! worker is a new process with the old worker's local store), feeds input,
//! lets virtual time pass or jumps the clock, and then checks what users rely
//! on: every partition has one owner, each table's local state equals the
//! fold of its changelog, nothing acknowledged was lost.
//!
//! Runs are reproducible: the runtime is single-threaded with a paused clock,
//! the broker and stores are in memory, and the only randomness is the
//! seeded [`SimRng`] handed to your input feed and to [`random_schedule`].
//! The same seed and schedule give the same [`Cluster::trace`] and the same
//! [`Cluster::output`] (every record of every topic, every committed offset).
//!
//! A crash ([`Step::Crash`]) blows a fuse in the worker's transport and store:
//! from that instant nothing the worker does reaches the broker or its store
//! (no commit, no flush, no changelog write), and the broker notices the
//! silent member after its session timeout, as with a killed process.
//!
//! Simulating a rebalance of your own app takes a few lines:
//!
//! ```
//! use std::time::Duration;
//! use faustus_core::transport::Record;
//! use faustus_testkit::sim::{Cluster, SimConfig, Step};
//! use futures::StreamExt;
//!
//! # fn main() -> faustus_core::Result<()> {
//! faustus_testkit::sim::run_paused(async {
//!     let mut cluster = Cluster::new(SimConfig::new("counter", 1), |_worker, builder| {
//!         let app = builder.build()?;
//!         let words = app.topic::<String, String>("words").build()?;
//!         let counts = app.table::<String, u64>("counts").with_default().build()?;
//!         app.agent::<String, String>("count").on(&words).build(move |stream| {
//!             let counts = counts.clone();
//!             async move {
//!                 let mut words = stream;
//!                 while let Some(word) = words.next().await {
//!                     counts.update(&word, |n| *n += 1).await?;
//!                 }
//!                 Ok(())
//!             }
//!         })?;
//!         Ok(app)
//!     });
//!     let feed = |_rng: &mut _, i: u64| {
//!         let word = format!("\"w{}\"", i % 5);
//!         Record::new("words", Some(word.clone().into()), Some(word.into()))
//!     };
//!     cluster
//!         .run(
//!             &[
//!                 Step::Join(0),
//!                 Step::Send(50),
//!                 Step::Run(2_000),
//!                 Step::Join(1), // a second worker: the partitions are split
//!                 Step::Send(50),
//!                 Step::Run(2_000),
//!                 Step::Crash(0), // worker 0 dies; worker 1 takes over after the session timeout
//!             ],
//!             feed,
//!         )
//!         .await?;
//!     cluster.settle().await?;
//!     cluster.check_one_owner_per_partition("words")?;
//!     cluster.check_tables_match_changelogs().await?;
//!     assert_eq!(cluster.live_workers(), vec!["w1".to_string()]);
//!     Ok(())
//! })
//! # }
//! ```

mod fuse;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use faustus_core::monitor::RecoveryState;
use faustus_core::store::{Store, TableSpec};
use faustus_core::transport::{
    Producer, ProducerConfig, Record, RecordMetadata, TopicPartition, Transport,
};
use faustus_core::{App, AppBuilder, DriverUrl, Error, Registry, Result, WorkerHandle};
use faustus_store_memory::MemoryStore;
use faustus_transport_memory::MemoryBroker;
use parking_lot::Mutex;
use tokio::time::Instant;

use fuse::{Fuse, FusedStore, FusedTransport};

/// A small seeded random generator (splitmix64): the simulator's only source
/// of randomness.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How the simulated cluster is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// The app id every worker shares.
    pub app_id: String,
    /// Seed of the run ([`SimRng`] for the input feed and random schedules).
    pub seed: u64,
    /// Partition count of topics the broker creates implicitly.
    pub partitions: u32,
    /// The workers' `broker_commit_interval`.
    pub commit_interval: Duration,
    /// How long a silent (crashed) worker stays a group member.
    pub session_timeout: Duration,
    /// How long a member may take to acknowledge a revocation.
    pub rebalance_timeout: Duration,
    /// Virtual time each changelog read (group-less poll) takes, so recovery
    /// lasts long enough for rebalances to land in the middle of it.
    pub fetch_delay: Duration,
    /// [`Cluster::settle`] gives up after this much virtual time.
    pub settle_limit: Duration,
    /// The workers' `table_standby_replicas`.
    pub standby_replicas: u32,
}

impl SimConfig {
    /// Defaults for app `app_id` and `seed`: 4 partitions, commits every
    /// second, 6 s sessions, 10 s rebalance timeout, 50 ms per changelog read,
    /// one standby replica.
    pub fn new(app_id: impl Into<String>, seed: u64) -> Self {
        SimConfig {
            app_id: app_id.into(),
            seed,
            partitions: 4,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(6),
            rebalance_timeout: Duration::from_secs(10),
            fetch_delay: Duration::from_millis(50),
            settle_limit: Duration::from_secs(600),
            standby_replicas: 1,
        }
    }
}

/// One step of a schedule. Workers are numbered; worker `n` is named `w{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start worker `n`: a new worker, or a restart (with its local store)
    /// of one that left or crashed. Nothing when it is running.
    Join(u8),
    /// Stop worker `n` gracefully (finish, flush, commit, leave the group).
    Leave(u8),
    /// Kill worker `n`: from now on nothing it does has an effect.
    Crash(u8),
    /// Start worker `a`, wait until it is reading changelogs (recovering),
    /// then start worker `b`: a rebalance in the middle of recovery.
    JoinWhileRecovering(u8, u8),
    /// Send this many input records from the feed.
    Send(u16),
    /// Let the cluster run for this many milliseconds of virtual time.
    Run(u32),
    /// Jump the clock this many milliseconds at once: every timer that was
    /// due fires late, as after a frozen process or a suspended machine.
    JumpClock(u32),
}

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

/// A shared log of what happened, stamped with virtual time.
#[derive(Clone, Default)]
pub struct Recorder {
    entries: Arc<Mutex<Vec<TraceEntry>>>,
    origin: Arc<Mutex<Option<Instant>>>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recorder({} entries)", self.entries.lock().len())
    }
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEntry {
    /// Virtual milliseconds since the cluster was created.
    pub at_ms: u64,
    /// Who: `cluster`, or a worker name.
    pub who: String,
    /// What.
    pub what: String,
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8} ms {:<8} {}", self.at_ms, self.who, self.what)
    }
}

impl Recorder {
    /// Append an entry.
    pub fn record(&self, who: &str, what: impl Into<String>) {
        let origin = *self.origin.lock().get_or_insert_with(Instant::now);
        let at_ms = Instant::now().duration_since(origin).as_millis() as u64;
        self.entries.lock().push(TraceEntry {
            at_ms,
            who: who.to_string(),
            what: what.into(),
        });
    }

    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<TraceEntry> {
        self.entries.lock().clone()
    }
}

/// A crash, with what the group had committed at that instant for the
/// partitions the worker owned: events at or after those offsets may be
/// processed again by the next owner (at-least-once), events before them
/// never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// The worker.
    pub worker: String,
    /// Its incarnation.
    pub incarnation: u32,
    /// Virtual milliseconds since the cluster was created.
    pub at_ms: u64,
    /// Partitions the worker owned, with the group's committed offset (the
    /// next offset to read; `None`: nothing committed).
    pub owned: Vec<(TopicPartition, Option<i64>)>,
}

/// Everything the cluster left on the broker: for a run's reproducibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Every record of every topic (timestamps left out: they are wall-clock).
    pub records: Vec<OutputRecord>,
    /// The group's committed offsets.
    pub committed: Vec<(TopicPartition, Option<i64>)>,
}

/// One record on the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Bytes>,
    /// Value bytes.
    pub value: Option<Bytes>,
}

type BuildFn = Arc<dyn Fn(&WorkerCtx, AppBuilder) -> Result<App> + Send + Sync>;

enum State {
    Running {
        app: App,
        handle: WorkerHandle,
        fuse: Fuse,
    },
    Crashed,
    Stopped,
}

struct Slot {
    incarnation: u32,
    state: State,
}

/// A simulated cluster; see the [module docs](self).
pub struct Cluster {
    config: SimConfig,
    broker_name: String,
    broker: MemoryBroker,
    base: Registry,
    build: BuildFn,
    workers: BTreeMap<u8, Slot>,
    /// Crashed workers' apps and handles: kept, never stopped (a dead process
    /// does not shut down); dropped with the cluster.
    zombies: Vec<(App, WorkerHandle)>,
    crashes: Vec<Crash>,
    recorder: Recorder,
    rng: SimRng,
    input: Option<Arc<dyn Producer>>,
    sent: u64,
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

/// Run `fut` on a fresh single-threaded runtime with a paused clock (what the
/// simulator needs for reproducible runs; one per proptest case).
pub fn run_paused<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => panic!("cannot build a tokio runtime for the simulation: {e}"),
    }
}

fn worker_name(n: u8) -> String {
    format!("w{n}")
}

/// Each incarnation is its own group member: `w0.2`.
fn client_id(name: &str, incarnation: u32) -> String {
    format!("{name}.{incarnation}")
}

impl Cluster {
    /// A cluster of `config.app_id` whose workers are built by `build` (given
    /// the worker's context and a builder already pointed at the simulated
    /// broker and the worker's own store). Call inside a runtime with a
    /// paused clock ([`run_paused`], or `#[tokio::test(start_paused = true)]`).
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

    fn group(&self) -> String {
        // Every worker shares the id; the group is the app's (versioned) id.
        self.workers
            .values()
            .find_map(|s| match &s.state {
                State::Running { app, .. } => Some(app.id().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| self.config.app_id.clone())
    }

    fn store_name(&self, worker: &str) -> String {
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

    /// Let the cluster run for `d` of virtual time.
    pub async fn run_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Run a schedule; `feed` makes the input records of [`Step::Send`]
    /// (given the seeded generator and the record's index in the run).
    pub async fn run(
        &mut self,
        schedule: &[Step],
        mut feed: impl FnMut(&mut SimRng, u64) -> Record,
    ) -> Result<()> {
        for step in schedule {
            self.step(*step, &mut feed).await?;
        }
        Ok(())
    }

    /// Run one step.
    pub async fn step(
        &mut self,
        step: Step,
        feed: &mut impl FnMut(&mut SimRng, u64) -> Record,
    ) -> Result<()> {
        self.recorder.record("cluster", format!("step {step:?}"));
        match step {
            Step::Join(n) => self.join(n).await?,
            Step::Leave(n) => self.leave(n).await?,
            Step::Crash(n) => self.crash(n),
            Step::JoinWhileRecovering(a, b) => {
                self.join(a).await?;
                // Up to 10 s for `a` to get partitions and start recovering
                // (it never does when there is nothing to recover).
                let mut waited = Duration::ZERO;
                while !self.is_recovering(a) && waited < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    waited += Duration::from_millis(5);
                }
                let recovering = self.is_recovering(a);
                self.recorder.record(
                    "cluster",
                    format!("{} recovering: {recovering}", worker_name(a)),
                );
                self.join(b).await?;
            }
            Step::Send(count) => {
                for _ in 0..count {
                    let record = feed(&mut self.rng, self.sent);
                    self.sent += 1;
                    let md = self.send(record).await?;
                    self.recorder.record(
                        "cluster",
                        format!("sent {}[{}]@{}", md.topic, md.partition, md.offset),
                    );
                }
            }
            Step::Run(ms) => self.run_for(Duration::from_millis(u64::from(ms))).await,
            Step::JumpClock(ms) => {
                tokio::time::advance(Duration::from_millis(u64::from(ms))).await;
            }
        }
        Ok(())
    }

    /// Run until the cluster is quiet: at least one worker running (worker 0
    /// is started if none is), no rebalance in progress, every running worker
    /// ready and a member of the group (crashed ones expired), and every
    /// partition the group reads committed up to its end — so every table
    /// change of those records is in the changelog and the stores.
    pub async fn settle(&mut self) -> Result<()> {
        if self.live_workers().is_empty() {
            let first = self.workers.keys().next().copied().unwrap_or(0);
            self.join(first).await?;
        }
        let began = Instant::now();
        loop {
            match self.quiet() {
                Ok(()) => {
                    self.recorder.record("cluster", "settled");
                    return Ok(());
                }
                Err(why) => {
                    if began.elapsed() > self.config.settle_limit {
                        return Err(Error::Timeout {
                            what: format!(
                                "the simulated cluster (seed {}) to settle; last reason: {why}",
                                self.config.seed
                            ),
                            after: self.config.settle_limit,
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why the cluster is not quiet yet, if it is not.
    fn quiet(&self) -> std::result::Result<(), String> {
        let group = self.group();
        if self.broker.is_rebalancing(&group) {
            return Err("a rebalance is in progress".into());
        }
        let mut live = BTreeSet::new();
        for (n, slot) in &self.workers {
            if let State::Running { handle, .. } = &slot.state {
                if !handle.is_ready() {
                    return Err(format!("{} is not ready", worker_name(*n)));
                }
                live.insert(client_id(&worker_name(*n), slot.incarnation));
            }
        }
        let assignment = self.broker.group_assignment(&group);
        let members: BTreeSet<String> = assignment.keys().map(|m| member_client(m)).collect();
        if members != live {
            return Err(format!(
                "group members {members:?} are not the running workers {live:?}"
            ));
        }
        for tps in assignment.values() {
            for tp in tps {
                let end = self.broker.end_offset(tp);
                let committed = self.broker.committed(&group, tp).unwrap_or(0);
                if committed < end {
                    return Err(format!("{tp} committed {committed} of {end}"));
                }
            }
        }
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                let me = client_id(&worker_name(*n), slot.incarnation);
                let mut mine = app.assignment();
                mine.sort();
                let mut given: Vec<TopicPartition> = assignment
                    .iter()
                    .filter(|(m, _)| member_client(m) == me)
                    .flat_map(|(_, t)| t.iter().cloned())
                    .collect();
                given.sort();
                if mine != given {
                    return Err(format!("{me} holds {mine:?}, the group gave it {given:?}"));
                }
            }
        }
        Ok(())
    }

    /// The running workers owning each partition of `topic`.
    pub fn owners(&self, topic: &str) -> BTreeMap<u32, Vec<String>> {
        let count = self.broker.partition_count(topic).unwrap_or(0);
        let mut out: BTreeMap<u32, Vec<String>> = (0..count).map(|p| (p, Vec::new())).collect();
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                for tp in app.assignment() {
                    if &*tp.topic == topic {
                        out.entry(tp.partition).or_default().push(worker_name(*n));
                    }
                }
            }
        }
        out
    }

    /// Every partition of `topic` has exactly one running owner.
    pub fn check_one_owner_per_partition(&self, topic: &str) -> Result<()> {
        let owners = self.owners(topic);
        if owners.is_empty() {
            return Err(Error::State(format!("topic {topic:?} has no partitions")));
        }
        let bad: Vec<_> = owners.iter().filter(|(_, o)| o.len() != 1).collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::State(format!(
                "seed {}: partitions of {topic:?} without exactly one owner: {bad:?}",
                self.config.seed
            )))
        }
    }

    /// The fold of a changelog topic: per partition, each key's last value
    /// (deleted keys absent).
    pub fn changelog_fold(&self, changelog: &str) -> BTreeMap<u32, BTreeMap<Bytes, Bytes>> {
        let count = self.broker.partition_count(changelog).unwrap_or(0);
        let mut out = BTreeMap::new();
        for p in 0..count {
            let mut state: BTreeMap<Bytes, Bytes> = BTreeMap::new();
            for m in self.broker.messages(changelog, p) {
                let Some(key) = m.key.clone() else { continue };
                match m.value.clone() {
                    Some(v) => state.insert(key, v),
                    None => state.remove(&key),
                };
            }
            out.insert(p, state);
        }
        out
    }

    /// What worker `worker` has stored for one partition of `table` (all of
    /// it, in key order), with the stored changelog offset.
    pub async fn stored(
        &self,
        worker: &str,
        table: &str,
        partitions: u32,
        partition: u32,
    ) -> Result<(BTreeMap<Bytes, Bytes>, Option<i64>)> {
        let store = MemoryStore::named(&self.store_name(worker));
        let ts = store.open(&TableSpec::new(table, partitions)).await?;
        let mut out = BTreeMap::new();
        let mut after: Option<Bytes> = None;
        loop {
            let page = ts.scan(partition, after.as_deref(), 1024).await?;
            let Some(last) = page.last().map(|(k, _)| k.clone()) else {
                break;
            };
            out.extend(page);
            after = Some(last);
        }
        Ok((out, ts.persisted_offset(partition).await?))
    }

    /// For every table of the app, every partition's owner has stored exactly
    /// the fold of the partition's changelog, up to its last record.
    pub async fn check_tables_match_changelogs(&self) -> Result<()> {
        let Some(app) = self.workers.values().find_map(|s| match &s.state {
            State::Running { app, .. } => Some(app.clone()),
            _ => None,
        }) else {
            return Err(Error::State("no running worker".into()));
        };
        for table in app.tables() {
            let fold = self.changelog_fold(&table.changelog);
            let partitions = fold.len() as u32;
            for (p, expected) in &fold {
                let owners = self.table_owners(&table.name, *p);
                let [owner] = owners.as_slice() else {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} is active on {owners:?}, not on exactly one worker",
                        self.config.seed, table.name
                    )));
                };
                let (stored, offset) = self.stored(owner, &table.name, partitions, *p).await?;
                let end = self
                    .broker
                    .end_offset(&TopicPartition::new(table.changelog.clone(), *p));
                if &stored != expected {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} on {owner}: stored {} keys, the changelog folds to {} keys; \
                         first difference: {:?}",
                        self.config.seed,
                        table.name,
                        stored.len(),
                        expected.len(),
                        first_difference(&stored, expected)
                    )));
                }
                if end > 0 && offset != Some(end - 1) {
                    return Err(Error::State(format!(
                        "seed {}: table {} partition {p} on {owner}: stored offset {offset:?}, changelog ends at {end}",
                        self.config.seed, table.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Running workers serving partition `p` of `table`.
    fn table_owners(&self, table: &str, p: u32) -> Vec<String> {
        let mut out = Vec::new();
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                let serves = app.assignment().iter().any(|tp| tp.partition == p)
                    && app.tables().iter().any(|t| t.name == table);
                if serves {
                    out.push(worker_name(*n));
                }
            }
        }
        out
    }

    /// Every record on the broker and every committed offset of the group.
    pub fn output(&self) -> Output {
        let group = self.group();
        let mut records = Vec::new();
        let mut committed = Vec::new();
        for topic in self.broker.topics() {
            let count = self.broker.partition_count(&topic).unwrap_or(0);
            for p in 0..count {
                for m in self.broker.messages(&topic, p) {
                    records.push(OutputRecord {
                        topic: topic.clone(),
                        partition: p,
                        offset: m.offset,
                        key: m.key.clone(),
                        value: m.value.clone(),
                    });
                }
                let tp = TopicPartition::new(topic.clone(), p);
                committed.push((tp.clone(), self.broker.committed(&group, &tp)));
            }
        }
        Output { records, committed }
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

/// `w3.1-17` → `w3.1` (member ids are `{client_id}-{seq}`).
fn member_client(member: &str) -> String {
    member
        .rsplit_once('-')
        .map_or(member, |(w, _)| w)
        .to_string()
}

fn first_difference(
    a: &BTreeMap<Bytes, Bytes>,
    b: &BTreeMap<Bytes, Bytes>,
) -> Option<(Bytes, Option<Bytes>, Option<Bytes>)> {
    let keys: BTreeSet<&Bytes> = a.keys().chain(b.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (x, y) = (a.get(k), b.get(k));
        (x != y).then(|| (k.clone(), x.cloned(), y.cloned()))
    })
}

/// A random schedule for `workers` workers from `seed`, `len` steps long:
/// joins, leaves, crashes, restarts, sends, runs and clock jumps.
pub fn random_schedule(seed: u64, workers: u8, len: usize) -> Vec<Step> {
    let mut rng = SimRng::new(seed);
    let mut out = vec![Step::Join(0)];
    for _ in 1..len {
        let w = rng.below(u64::from(workers.max(1))) as u8;
        let step = match rng.below(20) {
            0..=3 => Step::Join(w),
            4 => Step::Leave(w),
            5..=6 => Step::Crash(w),
            7 => Step::JoinWhileRecovering(w, rng.below(u64::from(workers.max(1))) as u8),
            8..=11 => Step::Send(1 + rng.below(40) as u16),
            12 => Step::JumpClock(1 + rng.below(20_000) as u32),
            _ => Step::Run(1 + rng.below(5_000) as u32),
        };
        out.push(step);
    }
    out
}

/// Proptest strategies for schedules (they shrink towards short, simple ones).
pub mod strategy {
    use proptest::prelude::*;

    use super::Step;

    /// One step for `workers` workers.
    pub fn step(workers: u8) -> impl Strategy<Value = Step> {
        let w = 0..workers.max(1);
        prop_oneof![
            4 => (1u16..40).prop_map(Step::Send),
            4 => (1u32..5_000).prop_map(Step::Run),
            3 => w.clone().prop_map(Step::Join),
            1 => w.clone().prop_map(Step::Leave),
            2 => w.clone().prop_map(Step::Crash),
            1 => (w.clone(), w).prop_map(|(a, b)| Step::JoinWhileRecovering(a, b)),
            1 => (1u32..20_000).prop_map(Step::JumpClock),
        ]
    }

    /// A schedule of up to `max_len` steps that starts with worker 0 joining.
    pub fn schedule(workers: u8, max_len: usize) -> impl Strategy<Value = Vec<Step>> {
        proptest::collection::vec(step(workers), 0..max_len).prop_map(|mut v| {
            v.insert(0, Step::Join(0));
            v
        })
    }
}

//! The worker: starts the drivers, services, agents, conductor, tasks and
//! timers of an app, and stops them in order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::defs::{AgentOps, TableOps};
use crate::app::topic::TopicDef;
use crate::app::{App, Service, TaskFn};
use crate::cluster::ClusterService;
use crate::drivers::transport::{ConsumerConfig, Producer};
use crate::drivers::web::WebServer;
use crate::error::{Error, Result};
use crate::flow::event::{self, CurrentEvent};
use crate::lifecycle::panic_message;
pub use crate::lifecycle::{shutdown_signal, ShutdownSignal};
use crate::runtime::conductor::Conductor;
use crate::runtime::pages::WebState;
use crate::runtime::timers::Scheduled;

/// A running worker.
pub struct WorkerHandle {
    app: App,
    stop: Arc<dyn Fn() + Send + Sync>,
    signal: ShutdownSignal,
    ready: watch::Receiver<Option<std::result::Result<(), String>>>,
    join: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("app", &self.app)
            .finish()
    }
}

impl WorkerHandle {
    /// The app.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Wait until the worker holds its first assignment, recovered its tables
    /// and started its tasks.
    pub async fn ready(&self) -> Result<()> {
        let mut rx = self.ready.clone();
        let state = match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match state {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(Error::State(e)),
            None => Err(Error::State("worker stopped before it was ready".into())),
        }
    }

    /// Whether the worker is ready now (see [`ready`](Self::ready)).
    pub fn is_ready(&self) -> bool {
        matches!(&*self.ready.borrow(), Some(Ok(())))
    }

    /// Ask the worker to stop (returns at once).
    pub fn request_stop(&self) {
        (self.stop)();
    }

    /// The worker's shutdown signal.
    pub fn signal(&self) -> ShutdownSignal {
        self.signal.clone()
    }

    /// Stop: finish events in hand, flush, commit, stop services; then return.
    pub async fn stop(mut self) -> Result<()> {
        (self.stop)();
        self.join_inner().await
    }

    /// Wait until the worker stops by itself (or fails).
    pub async fn wait(mut self) -> Result<()> {
        self.join_inner().await
    }

    async fn join_inner(&mut self) -> Result<()> {
        match self.join.take() {
            Some(j) => match j.await {
                Ok(r) => r,
                Err(e) => Err(Error::Task {
                    what: "worker".into(),
                    message: e.to_string(),
                }),
            },
            None => Ok(()),
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.join.is_some() {
            (self.stop)();
        }
    }
}

impl App {
    /// Start a worker in the background; see [`WorkerHandle`].
    pub async fn start(&self) -> Result<WorkerHandle> {
        let (signal, stop) = ShutdownSignal::new();
        let (ready_tx, ready_rx) = watch::channel(None);
        let app = self.clone();
        let sig = signal.clone();
        let fire = stop.clone();
        let join = tokio::spawn(async move {
            let r = run_worker(app, sig, ready_tx.clone()).await;
            // A worker that ended by itself (a fatal error) fires its own
            // signal, so whoever waits on it (`run`, the `worker` command)
            // stops and reports instead of lingering.
            fire();
            if let Err(e) = &r {
                ready_tx.send_if_modified(|v| {
                    if v.is_none() {
                        *v = Some(Err(e.to_string()));
                        true
                    } else {
                        false
                    }
                });
            }
            r
        });
        Ok(WorkerHandle {
            app: self.clone(),
            stop: Arc::new(stop),
            signal,
            ready: ready_rx,
            join: Some(join),
        })
    }

    /// Run a worker until Ctrl-C or SIGTERM, then stop it cleanly.
    pub async fn run(&self) -> Result<()> {
        let worker = self.start().await?;
        let signal = worker.signal();
        tokio::select! {
            _ = shutdown_signal() => {
                tracing::info!("shutdown requested; finishing events in hand");
            }
            _ = signal.wait() => {}
        }
        worker.stop().await
    }
}

type ReadyTx = watch::Sender<Option<std::result::Result<(), String>>>;

async fn run_worker(app: App, stop: ShutdownSignal, ready: ReadyTx) -> Result<()> {
    let inner = app.inner.clone();
    inner.mark_started()?;
    let result = run_worker_inner(app.clone(), stop, ready).await;
    inner.mark_stopped();
    result
}

/// What the app defined, as the worker found it at start.
struct Defined {
    topics: Vec<Arc<TopicDef>>,
    tables: Vec<Arc<dyn TableOps>>,
    agents: Vec<Arc<dyn AgentOps>>,
    services: Vec<Arc<dyn Service>>,
}

/// What a worker run started, stopped in the reverse order by [`Running::stop`].
struct Running {
    web: Option<Arc<dyn WebServer>>,
    producer: Arc<dyn Producer>,
    /// Services' `run`, leader election, tasks and timers.
    background: Vec<JoinHandle<()>>,
    agent_tasks: Vec<JoinHandle<()>>,
    cluster: Option<ClusterService>,
    conductor: Option<JoinHandle<Result<()>>>,
}

async fn run_worker_inner(app: App, stop: ShutdownSignal, ready: ReadyTx) -> Result<()> {
    crate::runtime::signals::lifecycle(&app, true);
    let defined = {
        let d = app.inner.defs.lock();
        Defined {
            topics: d.topics.values().cloned().collect(),
            tables: d.tables.clone(),
            agents: d.agents.clone(),
            services: d.services.clone(),
        }
    };
    // Reaching the broker and the store may wait (a broker not up yet): a
    // stop request during that wait ends the start at once.
    let producer = tokio::select! {
        biased;
        _ = stop.wait() => {
            tracing::info!(app = %app.id(), "stop requested while starting; nothing was started");
            for t in &defined.tables {
                t.close();
            }
            return Ok(());
        }
        r = prepare(&app, &defined) => r?,
    };
    let (mut running, ready_rx) = start(&app, &defined, producer, &stop).await?;
    let failure = running.serve(&app, &stop, &ready, ready_rx).await;
    crate::runtime::signals::lifecycle(&app, false);
    let failure = running.stop(&app, &defined, &stop, failure).await;
    tracing::info!(app = %app.id(), "worker stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reach the drivers: the transport, the producer, the topics declared,
/// the tables opened (nothing that runs on its own yet).
async fn prepare(app: &App, defined: &Defined) -> Result<Arc<dyn Producer>> {
    let inner = &app.inner;
    let settings = inner.settings();
    let transport = inner.transport().await?;
    let producer = inner.producer().await?;
    tracing::info!(app = %app.id(), transport = transport.name(), broker = %crate::drivers::url::redact(&settings.broker), store = %settings.store,
        agents = defined.agents.len(), tables = defined.tables.len(), "starting worker");
    for t in &defined.topics {
        t.declare(inner).await?;
    }
    if !defined.tables.is_empty() {
        let store = inner.store().await?;
        for t in &defined.tables {
            t.open(&store, producer.clone()).await?;
        }
    }
    Ok(producer)
}

/// Start everything, in order (after [`prepare`]): services, the web
/// server, agents, leader election, the cluster map, the conductor.
async fn start(
    app: &App,
    defined: &Defined,
    producer: Arc<dyn Producer>,
    stop: &ShutdownSignal,
) -> Result<(Running, tokio::sync::oneshot::Receiver<Result<()>>)> {
    for s in &defined.services {
        s.on_start(app).await?;
    }
    let web = crate::runtime::pages::start(app).await?;
    let mut background: Vec<JoinHandle<()>> = Vec::new();
    for s in &defined.services {
        let (s, app, sig) = (s.clone(), app.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            if let Err(e) = s.run(app, sig).await {
                tracing::error!(service = s.name(), error = %e, "service failed");
            }
        }));
    }
    let mut agent_tasks = Vec::new();
    for a in &defined.agents {
        a.reopen();
        for _ in 0..a.concurrency().max(1) {
            agent_tasks.push(tokio::spawn(a.clone().supervise(app.clone(), stop.clone())));
        }
    }
    if let Some(l) = crate::runtime::timers::join_leader_election(app).await? {
        background.push(l);
    }
    let cluster = ClusterService::start(app).await;
    background.push(tokio::spawn(watch_broker(app.clone(), stop.clone())));
    let (conductor, ready_rx) = spawn_conductor(app, stop).await?;
    let running = Running {
        web,
        producer,
        background,
        agent_tasks,
        cluster,
        conductor: Some(conductor),
    };
    Ok((running, ready_rx))
}

type ConductorReady = tokio::sync::oneshot::Receiver<Result<()>>;

/// Every `broker_check_interval`, ask the transport whether its broker
/// answers ([`Transport::check`](crate::transport::Transport::check)); while
/// it does not, the worker is not ready (component `broker`). librdkafka
/// retries on its own, so nothing else changes: the outage is reported, and
/// the report clears when a check succeeds. A check that does not return
/// within the interval (at least 5 s) counts as failed.
async fn watch_broker(app: App, stop: ShutdownSignal) {
    let interval = app.inner.settings().broker_check_interval;
    let limit = interval.max(Duration::from_secs(5));
    let Ok(transport) = app.inner.transport().await else {
        return; // The worker could not start without it.
    };
    let broker = crate::drivers::url::redact(&app.inner.settings().broker);
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let outcome = tokio::select! {
            _ = stop.wait() => return,
            r = tokio::time::timeout(limit, transport.check()) => r,
        };
        match outcome {
            Ok(Ok(())) => {
                if app.health().clear("broker") {
                    tracing::info!(broker = %broker, "the broker answers again");
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {limit:?}"),
                };
                let reason = format!("the broker at {broker} does not answer: {why}");
                if app.health().set_problem("broker", reason.clone()) {
                    tracing::warn!(broker = %broker, "{reason}; the worker keeps retrying and is not ready meanwhile");
                }
            }
        }
    }
}

/// A new group consumer and the conductor running it.
async fn spawn_conductor(
    app: &App,
    stop: &ShutdownSignal,
) -> Result<(JoinHandle<Result<()>>, ConductorReady)> {
    let transport = app.inner.transport().await?;
    let consumer = transport
        .consumer(&ConsumerConfig::group(
            app.id().to_string(),
            app.inner.settings().broker_client_id.clone(),
        ))
        .await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let conductor = tokio::spawn(Conductor::new(app.clone(), consumer, ready_tx).run(stop.clone()));
    Ok((conductor, ready_rx))
}

/// A failed conductor is restarted at most this many times within
/// [`RESTART_WINDOW`]; one more failure stops the worker (non-zero exit).
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(600);

/// The wait before restart `n` (1-based): 1 s, 2 s, 4 s … at most 30 s.
fn restart_delay(n: usize) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

impl Running {
    /// Once the first assignment is recovered: ready, tasks and timers
    /// start; then run until asked to stop or the conductor fails (the
    /// failure, if any). A stop before the first assignment is no failure,
    /// even when the conductor, stopping too, dropped its ready sender.
    async fn serve(
        &mut self,
        app: &App,
        stop: &ShutdownSignal,
        ready: &ReadyTx,
        ready_rx: tokio::sync::oneshot::Receiver<Result<()>>,
    ) -> Option<Error> {
        let started = tokio::select! {
            biased;
            _ = stop.wait() => Ok(()),
            r = ready_rx => match r {
                Ok(r) => r,
                Err(_) if stop.is_set() => Ok(()),
                Err(_) => Err(Error::State("conductor stopped".into())),
            },
        };
        match started {
            Ok(()) if !stop.is_set() => {}
            Ok(()) => return None,
            Err(e) => return Some(e),
        }
        // /ready answers "ready" before anyone waiting on ready() wakes.
        app.inner.state::<WebState>().set_ready(true);
        ready.send_replace(Some(Ok(())));
        tracing::info!(app = %app.id(), "worker ready");
        self.start_tasks_and_timers(app, stop);
        let mut restarts: std::collections::VecDeque<tokio::time::Instant> = Default::default();
        loop {
            let c = self.conductor.as_mut()?;
            let failure = tokio::select! {
                _ = stop.wait() => return None,
                r = c => {
                    self.conductor = None;
                    match r {
                        Ok(Ok(())) if stop.is_set() => return None,
                        Ok(Ok(())) => Error::State("conductor stopped".into()),
                        Ok(Err(e)) => e,
                        Err(e) => Error::Task { what: "conductor".into(), message: e.to_string() },
                    }
                }
            };
            // Heal: a new consumer rejoins the group (topics re-created if
            // the broker lost them; tables recovered as on any assignment),
            // unless the conductor keeps failing.
            let now = tokio::time::Instant::now();
            restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
            if restarts.len() >= MAX_RESTARTS {
                tracing::error!(error = %failure, restarts = restarts.len(), window = ?RESTART_WINDOW, "conductor failed again; giving up and stopping the worker");
                return Some(failure);
            }
            restarts.push_back(now);
            let delay = restart_delay(restarts.len());
            app.health().set_problem(
                "conductor",
                format!(
                    "failed ({failure}); restart {} of {MAX_RESTARTS}",
                    restarts.len()
                ),
            );
            tracing::error!(error = %failure, attempt = restarts.len(), retry_in = ?delay, "conductor failed; restarting it");
            tokio::select! {
                _ = stop.wait() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            match self.restart_conductor(app, stop).await {
                Ok(()) => {}
                Err(e) => {
                    // Counted as a failed attempt: the loop tries again.
                    tracing::error!(error = %e, "restarting the conductor failed");
                    self.conductor = Some(tokio::spawn(async move { Err(e) }));
                }
            }
        }
    }

    /// Start a new conductor after one failed: topics declared again (a
    /// broker may have come back without them), a new group consumer. The
    /// worker's `conductor` problem clears once it holds its first
    /// assignment, recovered.
    async fn restart_conductor(&mut self, app: &App, stop: &ShutdownSignal) -> Result<()> {
        let defs: Vec<Arc<TopicDef>> = app.inner.defs.lock().topics.values().cloned().collect();
        for def in defs {
            def.redeclare(&app.inner).await?;
        }
        // The cluster map's readers (map and standbys) start over too: a
        // broker that lost its topics left them reading partitions that no
        // longer exist, and starting creates the cluster topic again.
        if let Some(cluster) = self.cluster.take() {
            cluster.leave().await;
        }
        self.cluster = ClusterService::start(app).await;
        let (conductor, ready_rx) = spawn_conductor(app, stop).await?;
        self.conductor = Some(conductor);
        let app = app.clone();
        tokio::spawn(async move {
            if let Ok(Ok(())) = ready_rx.await {
                if app.health().clear("conductor") {
                    tracing::info!("conductor restarted; processing resumes");
                }
            }
        });
        Ok(())
    }

    fn start_tasks_and_timers(&mut self, app: &App, stop: &ShutdownSignal) {
        let scheduled = app.inner.state::<Scheduled>();
        let tasks: Vec<_> = scheduled
            .tasks
            .lock()
            .iter()
            .map(|t| (t.name.clone(), t.run.clone()))
            .collect();
        let timers: Vec<_> = scheduled
            .timers
            .lock()
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.schedule.clone(),
                    t.on_leader,
                    t.run.clone(),
                )
            })
            .collect();
        for (name, run) in tasks {
            self.background
                .push(tokio::spawn(run_task(app.clone(), name, run)));
        }
        for (name, schedule, on_leader, run) in timers {
            self.background
                .push(tokio::spawn(crate::runtime::timers::run(
                    app.clone(),
                    name,
                    schedule,
                    on_leader,
                    run,
                    stop.clone(),
                )));
        }
    }

    /// Shutdown: timers and tasks first, then intake (the conductor
    /// finishes events in hand, commits and leaves), then agents, the
    /// cluster map, the producer, services, the web server, tables. Returns
    /// the run's failure, or the first one met while stopping.
    async fn stop(
        self,
        app: &App,
        defined: &Defined,
        stop: &ShutdownSignal,
        mut failure: Option<Error>,
    ) -> Option<Error> {
        // Close every stream buffer first, so streams dropped with their
        // tasks give their buffered events back instead of counting them as done.
        for queues in app.inner.subs.by_topic.lock().values() {
            for q in queues {
                q.close();
            }
        }
        for b in &self.background {
            b.abort();
        }
        let stop_all = || {
            for a in &defined.agents {
                a.close();
            }
        };
        if failure.is_some() {
            stop_all();
        }
        if let Some(c) = self.conductor {
            // The conductor watches the same signal; make sure it fired.
            if !stop.is_set() {
                stop_all();
            }
            match c.await {
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(Error::Task {
                        what: "conductor".into(),
                        message: e.to_string(),
                    });
                }
                Ok(Ok(())) => {}
            }
        }
        stop_all();
        let agents_done = futures::future::join_all(self.agent_tasks);
        if tokio::time::timeout(Duration::from_secs(30), agents_done)
            .await
            .is_err()
        {
            tracing::warn!("agents did not stop within 30 s");
        }
        if let Some(cluster) = self.cluster {
            // After the conductor released its partitions: a graceful leave.
            cluster.leave().await;
        }
        if let Err(e) = self.producer.flush().await {
            tracing::error!(error = %e, "final producer flush failed");
        }
        for s in defined.services.iter().rev() {
            if let Err(e) = s.on_stop(app).await {
                tracing::error!(service = s.name(), error = %e, "service failed to stop");
            }
        }
        crate::runtime::pages::stop(app, self.web).await;
        for t in &defined.tables {
            t.close();
        }
        failure
    }
}

async fn run_task(app: App, name: String, run: TaskFn) {
    use futures::FutureExt;
    let fut = event::scope(CurrentEvent::new(), run(app));
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(task = %name, error = %e, "task failed"),
        Err(p) => tracing::error!(task = %name, panic = %panic_message(&p), "task panicked"),
    }
}

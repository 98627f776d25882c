//! Timers on a fixed grid, cron schedules with time zones, and timers that
//! run only on the leader.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use crate::app::{App, TaskFn};
use crate::error::{Error, Result};
use crate::flow::event::{self, CurrentEvent};
use crate::lifecycle::panic_message;
use crate::lifecycle::ShutdownSignal;
use crate::runtime::signals::Signals;

/// When a timer runs.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every interval, on a grid starting one interval after the worker is ready.
    Every(Duration),
    /// At the times of a cron expression, in a time zone.
    Cron(Box<Cron>),
}

/// A parsed cron expression with its time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    expr: String,
    schedule: cron::Schedule,
    tz: chrono_tz::Tz,
}

impl Cron {
    /// Parse a cron expression (5 fields `min hour day month weekday` like
    /// Faust's, or 6–7 with seconds and year) and an IANA time zone name
    /// (`"UTC"`, `"Europe/Paris"`).
    ///
    /// ```
    /// use faustus_core::timers::Cron;
    /// let c = Cron::parse("0 9 * * *", "Europe/Paris").unwrap();
    /// let after = "2026-07-01T00:00:00Z".parse().unwrap();
    /// // 09:00 in Paris is 07:00 UTC in summer.
    /// assert_eq!(c.next_after(after).unwrap().to_rfc3339(), "2026-07-01T07:00:00+00:00");
    /// assert!(Cron::parse("61 * * * *", "UTC").is_err());
    /// assert!(Cron::parse("0 * * * *", "Mars/Olympus").is_err());
    /// ```
    pub fn parse(expr: &str, timezone: &str) -> Result<Self> {
        let fields = expr.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {expr}")
        } else {
            expr.to_string()
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| Error::config(format!("crontab {expr:?}"), e.to_string()))?;
        let tz = timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|e| Error::config(format!("crontab {expr:?} timezone"), e.to_string()))?;
        Ok(Cron {
            expr: expr.to_string(),
            schedule,
            tz,
        })
    }

    /// The first time strictly after `after` that the expression names.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&after.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The expression as given.
    pub fn expr(&self) -> &str {
        &self.expr
    }
}

impl App {
    /// Like [`App::timer`], but runs only while this worker is the leader
    /// (Faust's `@app.timer(interval, on_leader=True)`). Joins the leader
    /// election.
    pub fn timer_on_leader<F, Fut>(&self, name: impl Into<String>, interval: Duration, f: F)
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.enable_leader_election();
        self.inner
            .state::<Scheduled>()
            .timers
            .lock()
            .push(TimerDef {
                name: name.into(),
                schedule: Schedule::Every(interval),
                on_leader: true,
                run: Arc::new(move |app| Box::pin(f(app))),
            });
    }

    /// Run `f` at the times of the cron expression `expr` in `timezone`
    /// (Faust's `@app.crontab(expr, timezone=..., on_leader=...)`); with
    /// `on_leader`, only on the leader. A bad expression or zone fails here,
    /// naming it.
    ///
    /// ```
    /// # fn demo(app: faustus_core::App) -> faustus_core::Result<()> {
    /// app.crontab("nightly-report", "30 2 * * *", "Europe/Paris", true, |_app| async {
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn crontab<F, Fut>(
        &self,
        name: impl Into<String>,
        expr: &str,
        timezone: &str,
        on_leader: bool,
        f: F,
    ) -> Result<()>
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let cron = Cron::parse(expr, timezone)?;
        if on_leader {
            self.enable_leader_election();
        }
        self.inner
            .state::<Scheduled>()
            .timers
            .lock()
            .push(TimerDef {
                name: name.into(),
                schedule: Schedule::Cron(Box::new(cron)),
                on_leader,
                run: Arc::new(move |app| Box::pin(f(app))),
            });
        Ok(())
    }

    /// Take part in leader election: the worker subscribes to the
    /// single-partition [`leader_topic`](App::leader_topic) and
    /// [`is_leader`](App::is_leader) is true on the worker holding its
    /// partition 0. On by itself with `timer_on_leader` or an `on_leader`
    /// crontab; without it, `is_leader` is always false.
    pub fn enable_leader_election(&self) {
        self.inner
            .state::<Signals>()
            .leader
            .store(true, Ordering::Release);
    }
}

/// Subscribe to the leader topic when the app takes part in leader election;
/// the returned task drains it (nothing is expected on it).
pub(crate) async fn join_leader_election(app: &App) -> Result<Option<JoinHandle<()>>> {
    if !app.inner.state::<Signals>().leader.load(Ordering::Acquire) {
        return Ok(None);
    }
    let topic = app
        .topic::<(), ()>(app.leader_topic())
        .partitions(1)
        .internal(true)
        .build()?;
    topic.def.declare(&app.inner).await?;
    let queue = app.inner.subscribe(&topic.def);
    Ok(Some(tokio::spawn(async move {
        while let Some(d) = queue.pop().await {
            d.token.ack();
        }
    })))
}

/// How long until `at` (wall clock), as a tokio duration.
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Run one timer until `stop`.
pub(crate) async fn run(
    app: App,
    name: String,
    schedule: Schedule,
    on_leader: bool,
    run: TaskFn,
    stop: ShutdownSignal,
) {
    match schedule {
        Schedule::Every(interval) => {
            let interval = interval.max(Duration::from_millis(1));
            let origin = tokio::time::Instant::now();
            let mut next = origin + interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = stop.wait() => return,
                }
                once(&app, &name, on_leader, &run, Some(interval)).await;
                // Keep to the grid (no drift); ticks a slow run overran are
                // skipped, not stacked.
                let now = tokio::time::Instant::now();
                next += interval;
                if next <= now {
                    let behind = now.duration_since(origin).as_nanos() / interval.as_nanos();
                    let k = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                    next = origin + interval * k;
                }
            }
        }
        Schedule::Cron(cron) => {
            // Wall time on tokio's clock, so schedules run on virtual time in tests.
            let (wall0, t0) = (Utc::now(), tokio::time::Instant::now());
            let now = || wall0 + chrono::Duration::from_std(t0.elapsed()).unwrap_or_default();
            let mut last = now();
            loop {
                let Some(next) = cron.next_after(last) else {
                    tracing::info!(timer = %name, crontab = cron.expr(), "crontab has no more times");
                    return;
                };
                let wait = until(next, now());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait() => return,
                }
                once(&app, &name, on_leader, &run, None).await;
                // Times that passed while it ran are skipped, not stacked.
                let after = now();
                if cron.next_after(next).is_some_and(|n| n <= after) {
                    tracing::warn!(timer = %name, crontab = cron.expr(), "crontab run overran its next time; skipped");
                }
                last = after.max(next);
            }
        }
    }
}

/// One run of a timer, unless it is for the leader and this worker is not.
async fn once(app: &App, name: &str, on_leader: bool, run: &TaskFn, interval: Option<Duration>) {
    use futures::FutureExt;
    if on_leader && !app.is_leader() {
        tracing::trace!(timer = %name, "not the leader: skipped");
        return;
    }
    let began = tokio::time::Instant::now();
    let fut = event::scope(CurrentEvent::new(), run(app.clone()));
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(timer = %name, error = %e, "timer run failed"),
        Err(p) => {
            tracing::error!(timer = %name, panic = %panic_message(&p), "timer run panicked")
        }
    }
    let took = began.elapsed();
    app.inner.monitor.time(
        "faustus_timer_seconds",
        format!("timer=\"{}\"", crate::monitor::escape_label(name)),
        took,
    );
    if let Some(interval) = interval {
        if took > interval {
            app.inner.monitor.count(
                "faustus_timer_overruns_total",
                format!("timer=\"{}\"", crate::monitor::escape_label(name)),
                1,
            );
            tracing::warn!(timer = %name, ?took, ?interval, "timer run took longer than its interval; the ticks it overran are skipped, not stacked");
        }
    }
}

/// A one-shot task started when the worker is ready.
pub(crate) struct TaskDef {
    pub(crate) name: String,
    pub(crate) run: TaskFn,
}

/// A periodic task.
pub(crate) struct TimerDef {
    pub(crate) name: String,
    pub(crate) schedule: Schedule,
    pub(crate) on_leader: bool,
    pub(crate) run: TaskFn,
}

/// The tasks and timers an app defined (its slot: `AppInner::state`).
#[derive(Default)]
pub(crate) struct Scheduled {
    pub(crate) tasks: parking_lot::Mutex<Vec<TaskDef>>,
    pub(crate) timers: parking_lot::Mutex<Vec<TimerDef>>,
}

/// Tasks and timers an app defines.
impl App {
    /// Run `f` once, after the worker is fully started (recovered, consuming).
    pub fn task<F, Fut>(&self, name: impl Into<String>, f: F)
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.inner.state::<Scheduled>().tasks.lock().push(TaskDef {
            name: name.into(),
            run: Arc::new(move |app| Box::pin(f(app))),
        });
    }

    /// Run `f` every `interval`, first one interval after the worker started.
    /// Runs keep to that grid (no drift); a run slower than the interval is
    /// reported and the ticks it overran are skipped: runs never overlap or
    /// pile up. See also `timer_on_leader` and `crontab`.
    pub fn timer<F, Fut>(&self, name: impl Into<String>, interval: Duration, f: F)
    where
        F: Fn(App) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        self.inner
            .state::<Scheduled>()
            .timers
            .lock()
            .push(TimerDef {
                name: name.into(),
                schedule: Schedule::Every(interval),
                on_leader: false,
                run: Arc::new(move |app| Box::pin(f(app))),
            });
    }
}

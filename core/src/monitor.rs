//! Counters about what the worker did, for logs, tests and `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// How many recent agent failures are kept.
const KEEP_FAILURES: usize = 100;

/// One agent failure: an error returned or a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentFailure {
    /// Agent name.
    pub agent: String,
    /// The event being processed (`topic[partition]@offset`), if any.
    pub event: String,
    /// The error or panic message.
    pub message: String,
    /// Whether it was a panic.
    pub panicked: bool,
}

/// Worker counters. Cheap to update (relaxed atomics).
#[derive(Debug, Default)]
pub struct Monitor {
    messages_received: AtomicU64,
    events_acked: AtomicU64,
    decode_errors: AtomicU64,
    agent_errors: AtomicU64,
    commits: AtomicU64,
    messages_sent: AtomicU64,
    rebalances: AtomicU64,
    partitions_paused: AtomicU64,
    recovered_records: AtomicU64,
    standby_records: AtomicU64,
    livelock_warnings: AtomicU64,
    dead_letters: AtomicU64,
    failures: Mutex<VecDeque<AgentFailure>>,
    labeled: Mutex<BTreeMap<(&'static str, String), Figure>>,
    /// Counters bumped without a lock through [`Monitor::counter`] handles.
    shared: Mutex<BTreeMap<(&'static str, String), Arc<AtomicU64>>>,
    recovery: Mutex<BTreeMap<String, RecoveryProgress>>,
}

/// One labelled figure (see [`Monitor::figures`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Figure {
    /// A count that only grows.
    Counter(u64),
    /// A value that goes up and down.
    Gauge(f64),
    /// Observed durations in seconds: how many, their sum, the largest.
    Timing {
        /// Observations.
        count: u64,
        /// Sum of the observations, in seconds.
        sum: f64,
        /// The largest observation, in seconds.
        max: f64,
    },
}

/// Where a table's recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryState {
    /// Replaying its changelog.
    Running,
    /// Caught up with the changelog's end.
    Done,
    /// Stopped by a rebalance (or shutdown) before the end; the next
    /// assignment resumes from the offsets stored with what was applied.
    Cancelled,
}

/// The progress of one table's latest recovery (changelog replay).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RecoveryProgress {
    /// Table name.
    pub table: String,
    /// The partitions being replayed.
    pub partitions: Vec<u32>,
    /// Changelog records to replay (persisted offset + 1 up to the end).
    pub total: u64,
    /// Records replayed so far (read; stored batch by batch with their offsets).
    pub done: u64,
    /// Records still to apply.
    pub remaining: u64,
    /// Time since this recovery started.
    pub elapsed: Duration,
    /// Records per second so far.
    pub rate: f64,
    /// Estimated time to finish at the rate so far (`None` before the first record).
    pub eta: Option<Duration>,
    /// Running, done or cancelled.
    pub state: RecoveryState,
}

impl Monitor {
    /// Record an agent failure (the most recent ones are kept).
    pub fn record_failure(&self, failure: AgentFailure) {
        self.add_agent_errors(1);
        let mut f = self.failures.lock();
        if f.len() >= KEEP_FAILURES {
            f.pop_front();
        }
        f.push_back(failure);
    }

    /// Add `n` to the counter `name` with `labels` (Prometheus label text,
    /// e.g. `topic="posts"`).
    pub fn count(&self, name: &'static str, labels: impl Into<String>, n: u64) {
        let mut m = self.labeled.lock();
        let e = m.entry((name, labels.into())).or_insert(Figure::Counter(0));
        if let Figure::Counter(c) = e {
            *c += n;
        }
    }

    /// Set the gauge `name` with `labels`.
    pub fn gauge(&self, name: &'static str, labels: impl Into<String>, value: f64) {
        self.labeled
            .lock()
            .insert((name, labels.into()), Figure::Gauge(value));
    }

    /// Record one duration of `name` with `labels`.
    pub fn time(&self, name: &'static str, labels: impl Into<String>, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.labeled.lock();
        let e = m.entry((name, labels.into())).or_insert(Figure::Timing {
            count: 0,
            sum: 0.0,
            max: 0.0,
        });
        if let Figure::Timing { count, sum, max } = e {
            *count += 1;
            *sum += secs;
            *max = max.max(secs);
        }
    }

    /// Every labelled figure: (name, labels, value), sorted by name then labels.
    pub fn figures(&self) -> Vec<(&'static str, String, Figure)> {
        let mut all: BTreeMap<(&'static str, String), Figure> = self.labeled.lock().clone();
        for ((n, l), c) in self.shared.lock().iter() {
            let e = all.entry((*n, l.clone())).or_insert(Figure::Counter(0));
            if let Figure::Counter(v) = e {
                *v += c.load(Ordering::Relaxed);
            }
        }
        all.into_iter().map(|((n, l), f)| (n, l, f)).collect()
    }

    /// A handle on the counter `name` with `labels` that is bumped with one
    /// atomic add (for per-record figures on hot paths); it shows in
    /// [`figures`](Self::figures) as a counter.
    pub fn counter(&self, name: &'static str, labels: impl Into<String>) -> Arc<AtomicU64> {
        self.shared
            .lock()
            .entry((name, labels.into()))
            .or_default()
            .clone()
    }

    /// The most recent agent failures, oldest first.
    pub fn failures(&self) -> Vec<AgentFailure> {
        self.failures.lock().iter().cloned().collect()
    }

    /// Record a table's recovery progress (replaces its previous figures).
    pub fn set_recovery_progress(&self, progress: RecoveryProgress) {
        self.recovery
            .lock()
            .insert(progress.table.clone(), progress);
    }

    /// The latest recovery figures of every table that recovered, by table name.
    pub fn recovery_progress(&self) -> Vec<RecoveryProgress> {
        self.recovery.lock().values().cloned().collect()
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorSnapshot {
    /// Messages the consumer delivered to the conductor.
    pub messages_received: u64,
    /// Events acknowledged by streams.
    pub events_acked: u64,
    /// Messages whose key or value could not be decoded.
    pub decode_errors: u64,
    /// Agent failures (errors and panics).
    pub agent_errors: u64,
    /// Offset commits.
    pub commits: u64,
    /// Records sent through topics.
    pub messages_sent: u64,
    /// Rebalances seen.
    pub rebalances: u64,
    /// Times a partition was paused because a stream buffer was full.
    pub partitions_paused: u64,
    /// Changelog records applied during recovery.
    pub recovered_records: u64,
    /// Changelog records applied to standby partitions.
    pub standby_records: u64,
    /// Warnings that a partition's committed offset stalled while processing
    /// (`broker_commit_livelock_soft_timeout`).
    pub livelock_warnings: u64,
    /// Events sent to a dead-letter topic.
    pub dead_letters: u64,
}

macro_rules! counters {
    ($($name:ident => $inc:ident),* $(,)?) => {
        impl Monitor {
            $(
                #[doc = concat!("Add to `", stringify!($name), "`.")]
                pub fn $inc(&self, n: u64) {
                    self.$name.fetch_add(n, Ordering::Relaxed);
                }
            )*

            /// Read all counters.
            pub fn snapshot(&self) -> MonitorSnapshot {
                MonitorSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    messages_received => add_messages_received,
    events_acked => add_events_acked,
    decode_errors => add_decode_errors,
    agent_errors => add_agent_errors,
    commits => add_commits,
    messages_sent => add_messages_sent,
    rebalances => add_rebalances,
    partitions_paused => add_partitions_paused,
    recovered_records => add_recovered_records,
    standby_records => add_standby_records,
    livelock_warnings => add_livelock_warnings,
    dead_letters => add_dead_letters,
}

/// Prometheus label text for a topic: `topic="name"` (quotes and backslashes escaped).
pub fn topic_labels(topic: &str) -> String {
    format!("topic=\"{}\"", escape_label(topic))
}

/// Prometheus label text for a topic partition.
pub fn tp_labels(tp: &crate::drivers::transport::TopicPartition) -> String {
    format!(
        "topic=\"{}\",partition=\"{}\"",
        escape_label(&tp.topic),
        tp.partition
    )
}

/// Escape a Prometheus label value.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

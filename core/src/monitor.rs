//! Counters about what the worker did, for logs, tests and (later) `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
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
    failures: Mutex<VecDeque<AgentFailure>>,
    recovery: Mutex<BTreeMap<String, RecoveryProgress>>,
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
}

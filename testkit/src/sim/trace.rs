//! What happened during a run: the [`Recorder`] and its [`TraceEntry`]
//! lines, stamped with virtual time, and the [`Crash`] records.

use std::fmt;
use std::sync::Arc;

use faustus_core::transport::TopicPartition;
use parking_lot::Mutex;
use tokio::time::Instant;

/// A shared log of what happened, stamped with virtual time.
#[derive(Clone, Default)]
pub struct Recorder {
    pub(super) entries: Arc<Mutex<Vec<TraceEntry>>>,
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

//! Events: a decoded key and value with the message they came from, and the
//! "current event" that table writes use to find their partition.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::acks::AckToken;
use crate::error::Coordinates;
use crate::transport::Message;

/// Where the event being processed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInfo {
    /// Topic (`None` for channel and iterator events).
    pub topic: Option<Arc<str>>,
    /// Partition.
    pub partition: Option<u32>,
    /// Offset.
    pub offset: Option<i64>,
    /// Timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl EventInfo {
    /// Coordinates when the event came from a topic.
    pub fn coordinates(&self) -> Option<Coordinates> {
        Some(Coordinates {
            topic: self.topic.as_ref()?.to_string(),
            partition: self.partition?,
            offset: self.offset?,
        })
    }
}

impl fmt::Display for EventInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.coordinates() {
            Some(c) => write!(f, "{c}"),
            None => f.write_str("(channel event)"),
        }
    }
}

/// The event a task is processing, shared between its streams and the tables
/// it writes (set when a stream yields, read by table writes and error reports).
#[derive(Debug, Default)]
pub struct CurrentEvent {
    info: Mutex<Option<EventInfo>>,
}

impl CurrentEvent {
    /// A fresh, empty cell.
    pub fn new() -> Arc<Self> {
        Arc::new(CurrentEvent::default())
    }

    /// Record the event now being processed.
    pub fn set(&self, info: Option<EventInfo>) {
        *self.info.lock() = info;
    }

    /// The event now being processed.
    pub fn get(&self) -> Option<EventInfo> {
        self.info.lock().clone()
    }

    /// Its partition.
    pub fn partition(&self) -> Option<u32> {
        self.info.lock().as_ref().and_then(|i| i.partition)
    }
}

tokio::task_local! {
    static CURRENT: Arc<CurrentEvent>;
}

/// The current-event cell of the running agent or task, if any.
pub fn current() -> Option<Arc<CurrentEvent>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Run `fut` with `cell` as its current-event cell.
pub async fn scope<F: std::future::Future>(cell: Arc<CurrentEvent>, fut: F) -> F::Output {
    CURRENT.scope(cell, fut).await
}

/// The ack of one event, shared by the [`Event`] and its stream: whichever
/// acks first wins, the other does nothing.
#[derive(Debug)]
pub(crate) struct SharedAck(Mutex<Option<AckToken>>);

impl SharedAck {
    pub(crate) fn new(token: AckToken) -> Arc<Self> {
        Arc::new(SharedAck(Mutex::new(Some(token))))
    }

    pub(crate) fn ack(&self) {
        if let Some(t) = self.0.lock().take() {
            t.ack();
        }
    }
}

/// A key and value with the message they were decoded from.
///
/// The event is acknowledged when you call [`ack`](Event::ack), when it is
/// dropped (the scope behaviour of Faust's `async with event`), or when its
/// stream advances past it — whichever comes first.
pub struct Event<K, V> {
    /// The decoded key (`None` when the message had none).
    pub key: Option<K>,
    /// The decoded value.
    pub value: V,
    message: Option<Message>,
    ack: Arc<SharedAck>,
}

impl<K, V> Event<K, V> {
    pub(crate) fn new(
        key: Option<K>,
        value: V,
        message: Option<Message>,
        ack: Arc<SharedAck>,
    ) -> Self {
        Event {
            key,
            value,
            message,
            ack,
        }
    }

    /// The raw message: topic, partition, offset, timestamp, headers, key and value bytes.
    /// `None` for channel and iterator events.
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// Acknowledge now: processing is complete and must not happen again.
    pub fn ack(&self) {
        self.ack.ack();
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Event<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("key", &self.key)
            .field("value", &self.value)
            .field(
                "at",
                &self.message.as_ref().map(|m| m.coordinates().to_string()),
            )
            .finish()
    }
}

impl<K, V> Drop for Event<K, V> {
    fn drop(&mut self) {
        self.ack.ack();
    }
}

//! Events: a decoded key and value with the message they came from, and the
//! "current event" that table writes use to find their partition.

use std::fmt;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::drivers::codec::CodecChain;
use crate::drivers::transport::Message;
use crate::error::Coordinates;
use crate::flow::acks::AckToken;

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
/// Cheap to update per event: atomics, and a lock only when the topic changes.
#[derive(Debug)]
pub struct CurrentEvent {
    /// Partition, or -1 for none.
    partition: AtomicI64,
    offset: AtomicI64,
    /// Timestamp, or `i64::MIN` for none.
    timestamp_ms: AtomicI64,
    topic_ptr: AtomicUsize,
    topic: Mutex<Option<Arc<str>>>,
    set: AtomicBool,
    /// The raw value of the topic event and its stream's value codec: held
    /// only when the app has a windowed table that takes its time from a
    /// field of the value (`relative_to_field`), else always empty.
    raw_value: Mutex<Option<(Bytes, CodecChain)>>,
    /// Whether `raw_value` holds something (so clearing it costs a load).
    has_raw_value: AtomicBool,
    /// The agent running with this cell and its concurrency, when > 1 (table
    /// writes are refused there).
    concurrent_agent: Option<(Arc<str>, usize)>,
}

impl Default for CurrentEvent {
    fn default() -> Self {
        CurrentEvent {
            partition: AtomicI64::new(-1),
            offset: AtomicI64::new(-1),
            timestamp_ms: AtomicI64::new(i64::MIN),
            topic_ptr: AtomicUsize::new(0),
            topic: Mutex::new(None),
            set: AtomicBool::new(false),
            raw_value: Mutex::new(None),
            has_raw_value: AtomicBool::new(false),
            concurrent_agent: None,
        }
    }
}

impl CurrentEvent {
    /// A fresh, empty cell.
    pub fn new() -> Arc<Self> {
        Arc::new(CurrentEvent::default())
    }

    /// A fresh cell for an instance of `agent`, which runs `concurrency` instances.
    pub(crate) fn for_agent(agent: &Arc<str>, concurrency: usize) -> Arc<Self> {
        Arc::new(CurrentEvent {
            concurrent_agent: (concurrency > 1).then(|| (agent.clone(), concurrency)),
            ..CurrentEvent::default()
        })
    }

    /// Record the event now being processed (a message's coordinates).
    pub fn set_message(
        &self,
        topic: &Arc<str>,
        partition: u32,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) {
        self.set_coordinates(topic, partition, offset, timestamp_ms);
        self.clear_raw_value();
    }

    /// Record the event now being processed with its raw value and the codec
    /// its stream decodes values with (for `relative_to_field` windowed tables).
    pub(crate) fn set_message_with_value(
        &self,
        topic: &Arc<str>,
        partition: u32,
        offset: i64,
        timestamp_ms: Option<i64>,
        value: Option<(Bytes, CodecChain)>,
    ) {
        self.set_coordinates(topic, partition, offset, timestamp_ms);
        match value {
            Some(v) => {
                *self.raw_value.lock() = Some(v);
                self.has_raw_value.store(true, Ordering::Relaxed);
            }
            None => self.clear_raw_value(),
        }
    }

    fn set_coordinates(
        &self,
        topic: &Arc<str>,
        partition: u32,
        offset: i64,
        timestamp_ms: Option<i64>,
    ) {
        let ptr = Arc::as_ptr(topic) as *const u8 as usize;
        if self.topic_ptr.load(Ordering::Relaxed) != ptr {
            *self.topic.lock() = Some(topic.clone());
            self.topic_ptr.store(ptr, Ordering::Relaxed);
        }
        self.partition
            .store(i64::from(partition), Ordering::Relaxed);
        self.offset.store(offset, Ordering::Relaxed);
        self.timestamp_ms
            .store(timestamp_ms.unwrap_or(i64::MIN), Ordering::Relaxed);
        self.set.store(true, Ordering::Relaxed);
    }

    fn clear_raw_value(&self) {
        if self.has_raw_value.load(Ordering::Relaxed) {
            *self.raw_value.lock() = None;
            self.has_raw_value.store(false, Ordering::Relaxed);
        }
    }

    /// Record an event that came from no topic (channel, iterator).
    pub fn set_local(&self) {
        *self.topic.lock() = None;
        self.topic_ptr.store(0, Ordering::Relaxed);
        self.partition.store(-1, Ordering::Relaxed);
        self.offset.store(-1, Ordering::Relaxed);
        self.timestamp_ms.store(i64::MIN, Ordering::Relaxed);
        self.set.store(true, Ordering::Relaxed);
        self.clear_raw_value();
    }

    /// The raw value of the topic event now being processed and its stream's
    /// value codec, when recorded (see [`set_message_with_value`](Self::set_message_with_value)).
    pub(crate) fn raw_value(&self) -> Option<(Bytes, CodecChain)> {
        if !self.has_raw_value.load(Ordering::Relaxed) {
            return None;
        }
        self.raw_value.lock().clone()
    }

    /// The event now being processed, if any.
    pub fn get(&self) -> Option<EventInfo> {
        if !self.set.load(Ordering::Relaxed) {
            return None;
        }
        let p = self.partition.load(Ordering::Relaxed);
        let o = self.offset.load(Ordering::Relaxed);
        let t = self.timestamp_ms.load(Ordering::Relaxed);
        Some(EventInfo {
            topic: self.topic.lock().clone(),
            partition: u32::try_from(p).ok(),
            offset: (o >= 0).then_some(o),
            timestamp_ms: (t != i64::MIN).then_some(t),
        })
    }

    /// Its partition.
    pub fn partition(&self) -> Option<u32> {
        u32::try_from(self.partition.load(Ordering::Relaxed)).ok()
    }
}

tokio::task_local! {
    static CURRENT: Arc<CurrentEvent>;
}

/// The partition of the event the running agent or task is processing.
pub fn current_partition() -> Option<u32> {
    CURRENT.try_with(|c| c.partition()).ok().flatten()
}

/// The agent running now and its concurrency, when that is more than one.
pub(crate) fn current_concurrent_agent() -> Option<(Arc<str>, usize)> {
    CURRENT
        .try_with(|c| c.concurrent_agent.clone())
        .ok()
        .flatten()
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

    /// The token, unless the event was acked already.
    pub(crate) fn take(&self) -> Option<AckToken> {
        self.0.lock().take()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_value_is_kept_only_for_the_message_it_came_with() {
        let cell = CurrentEvent::new();
        let topic: Arc<str> = Arc::from("orders");
        assert!(cell.raw_value().is_none());
        cell.set_message_with_value(
            &topic,
            1,
            7,
            Some(5),
            Some((Bytes::from_static(b"{}"), CodecChain::json())),
        );
        let Some((raw, codec)) = cell.raw_value() else {
            panic!("the raw value was recorded");
        };
        assert_eq!(&raw[..], b"{}");
        assert_eq!(codec.name(), "json");
        assert_eq!(
            cell.get()
                .and_then(|i| i.coordinates())
                .map(|c| c.to_string()),
            Some("orders[1]@7".into())
        );
        // The next message without a value, or a channel event, drops it.
        cell.set_message(&topic, 1, 8, None);
        assert!(cell.raw_value().is_none());
        cell.set_message_with_value(
            &topic,
            1,
            9,
            None,
            Some((Bytes::from_static(b"1"), CodecChain::json())),
        );
        assert!(cell.raw_value().is_some());
        cell.set_local();
        assert!(cell.raw_value().is_none());
        assert_eq!(cell.get().map(|i| i.topic), Some(None));
    }
}

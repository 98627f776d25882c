//! Deliveries nobody waits for: a send returns once the producer accepted
//! the record, and the commit is what waits for the broker.
//!
//! Every record sent through a topic (`Topic::send*`, agent sends, replies,
//! dead letters) whose delivery is not complete when the producer accepts it
//! is *tracked* here with the event being processed when it was sent (its
//! source topic, partition and offset). The caller gets a [`Delivery`] that
//! shares the outcome: awaiting it gives the [`RecordMetadata`] (or the
//! error); dropping it is fine.
//!
//! Before the conductor commits source offsets it flushes the producer and
//! then [`settles`](Tracker::settle) what was tracked until then. A failed
//! delivery that its caller did not observe is logged with the record's
//! topic and the source event, counted (`faustus_send_failures_total`, and as
//! an agent failure in the monitor) and *holds* the source partition: its
//! commits stop below the offset of the event that sent the record, until the
//! partition leaves this worker. After a restart or a rebalance that event
//! is processed again, so the record is sent again: at-least-once, as when
//! the send waited. A failure whose caller awaited the [`Delivery`] is the
//! caller's: it reached the agent as an error, and its error policy decides
//! (as it did when every send waited).
//!
//! Memory use is bounded by the producer: the list holds the records in
//! flight (what the producer's queue holds, since `send` waits while that
//! queue is full) plus the completed ones since the last settle, which are
//! pruned as the list grows when no worker commits (a producer-only process).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

use crate::drivers::transport::{
    Delivery, DeliveryPromise, RecordMetadata, TopicPartition, Watched,
};
use crate::error::{Coordinates, Error, Result};
use crate::monitor::{AgentFailure, Monitor};

/// Prune completed entries once the list has grown to this many.
const PRUNE_AT: usize = 4096;

/// The shared state of one tracked delivery: the caller's handle and the
/// tracker may both wait for it, so the delivery is always polled with a
/// waker that wakes every one of them.
#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    wakers: Arc<Wakers>,
}

/// The wakers of everyone waiting for a slot.
#[derive(Debug, Default)]
struct Wakers(Mutex<Vec<Waker>>);

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waiting = std::mem::take(&mut *self.0.lock());
        for w in waiting {
            w.wake();
        }
    }
}

enum SlotState {
    /// Not complete yet.
    Waiting(Delivery),
    /// Complete, observed by the tracker; the outcome waits for the caller
    /// (`None`: taken).
    Done(Option<Result<RecordMetadata>>),
    /// Complete and observed by the caller.
    Observed,
}

impl std::fmt::Debug for SlotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotState::Waiting(_) => f.write_str("Waiting"),
            SlotState::Done(r) => f.debug_tuple("Done").field(r).finish(),
            SlotState::Observed => f.write_str("Observed"),
        }
    }
}

/// What the tracker learned from polling a slot.
enum Seen {
    /// Still in flight.
    Pending,
    /// Delivered, or the caller observed the outcome (its business).
    Fine,
    /// Failed and nobody has observed it: the tracker's to report.
    Failed(String),
}

impl Slot {
    fn new(delivery: Delivery) -> Self {
        Slot {
            state: Mutex::new(SlotState::Waiting(delivery)),
            wakers: Arc::default(),
        }
    }

    /// Poll the delivery, registering `waker` (if any) to be woken.
    fn poll_delivery(
        &self,
        state: &mut SlotState,
        waker: Option<&Waker>,
    ) -> Poll<Result<RecordMetadata>> {
        let SlotState::Waiting(delivery) = state else {
            return Poll::Ready(Err(Error::State("delivery polled after completion".into())));
        };
        if let Some(w) = waker {
            let mut wakers = self.wakers.0.lock();
            if !wakers.iter().any(|x| x.will_wake(w)) {
                wakers.push(w.clone());
            }
        }
        let shared = Waker::from(self.wakers.clone());
        Pin::new(delivery).poll(&mut Context::from_waker(&shared))
    }

    /// Poll for the tracker (`waker`: the tracker's, or none to only look).
    fn poll_tracker(&self, waker: Option<&Waker>) -> Poll<Seen> {
        let mut state = self.state.lock();
        if !matches!(*state, SlotState::Waiting(_)) {
            return Poll::Ready(Seen::Fine);
        }
        let Poll::Ready(result) = self.poll_delivery(&mut state, waker) else {
            return Poll::Pending;
        };
        let seen = match &result {
            Ok(_) => Seen::Fine,
            Err(e) => Seen::Failed(e.to_string()),
        };
        *state = SlotState::Done(Some(result));
        drop(state);
        // Whoever else waits (the caller) finds the outcome in the slot.
        self.wakers.wake_by_ref();
        Poll::Ready(seen)
    }

    /// Look without waiting. (Outside tokio's cooperative budget: a prune
    /// looks at thousands of deliveries in one go.)
    fn check(&self) -> Seen {
        let mut look =
            tokio::task::unconstrained(std::future::poll_fn(|_| self.poll_tracker(None)));
        match Pin::new(&mut look).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(seen) => seen,
            Poll::Pending => Seen::Pending,
        }
    }
}

/// The caller's side of a tracked delivery.
struct Handle {
    slot: Arc<Slot>,
}

impl Future for Handle {
    type Output = Result<RecordMetadata>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.lock();
        match &mut *state {
            SlotState::Waiting(_) => {
                let Poll::Ready(result) = self.slot.poll_delivery(&mut state, Some(cx.waker()))
                else {
                    return Poll::Pending;
                };
                // Observed by the caller: the tracker leaves it alone.
                *state = SlotState::Observed;
                drop(state);
                self.slot.wakers.wake_by_ref();
                Poll::Ready(result)
            }
            SlotState::Done(result) => {
                Poll::Ready(result.take().unwrap_or_else(|| {
                    Err(Error::State("delivery polled after completion".into()))
                }))
            }
            SlotState::Observed => {
                Poll::Ready(Err(Error::State("delivery polled after completion".into())))
            }
        }
    }
}

/// What the tracker watches: a transport's promise (shared with the
/// caller's [`Delivery`], one allocation per record), or any other pending
/// delivery behind a slot.
#[derive(Debug)]
enum Watch {
    Promise(Arc<DeliveryPromise>),
    Slot(Arc<Slot>),
}

impl Watch {
    fn poll_tracker(&self, waker: Option<&Waker>) -> Poll<Seen> {
        match self {
            Watch::Slot(slot) => slot.poll_tracker(waker),
            Watch::Promise(p) => p.watch(waker).map(|w| match w {
                Watched::Fine => Seen::Fine,
                Watched::Failed(e) => Seen::Failed(e),
            }),
        }
    }

    fn check(&self) -> Seen {
        match self {
            Watch::Slot(slot) => slot.check(),
            Watch::Promise(_) => match self.poll_tracker(None) {
                Poll::Ready(seen) => seen,
                Poll::Pending => Seen::Pending,
            },
        }
    }
}

/// One tracked delivery: where it goes and the event that sent it.
#[derive(Debug)]
struct Tracked {
    slot: Watch,
    topic: Arc<str>,
    partition: Option<u32>,
    source: Option<Source>,
}

/// The event a record was sent from: topic, partition, offset.
#[derive(Debug, Clone)]
struct Source(Arc<str>, u32, i64);

/// The app's tracked deliveries and the partitions a failed one holds.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pending: Mutex<Vec<Tracked>>,
    /// Length after the last prune (the next prune waits for twice as many).
    pruned_len: Mutex<usize>,
    /// Source partitions whose commits must stay at or below this offset.
    held: Mutex<HashMap<TopicPartition, i64>>,
}

impl Tracker {
    /// Track `delivery` of a record to `topic` (partition if chosen), sent
    /// while the current event (if any) was processed. Returns the caller's
    /// handle; a delivery already complete is returned as it is (an error
    /// is the caller's at once).
    pub(crate) fn track(
        &self,
        monitor: &Monitor,
        mut delivery: Delivery,
        topic: &Arc<str>,
        partition: Option<u32>,
    ) -> Result<Delivery> {
        let (watch, handle) = match delivery.promise() {
            Some(p) => {
                if let Some(result) = p.try_take() {
                    return result.map(|m| Delivery::ready(Ok(m)));
                }
                (Watch::Promise(p.clone()), delivery)
            }
            None => {
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(result) = Pin::new(&mut delivery).poll(&mut cx) {
                    return result.map(|m| Delivery::ready(Ok(m)));
                }
                let slot = Arc::new(Slot::new(delivery));
                (
                    Watch::Slot(slot.clone()),
                    Delivery::pending(Handle { slot }),
                )
            }
        };
        let source = crate::flow::event::current()
            .and_then(|c| c.get())
            .and_then(|e| Some(Source(e.topic?, e.partition?, e.offset?)));
        let len = {
            let mut pending = self.pending.lock();
            pending.push(Tracked {
                slot: watch,
                topic: topic.clone(),
                partition,
                source,
            });
            pending.len()
        };
        let threshold = (*self.pruned_len.lock() * 2).max(PRUNE_AT);
        if len >= threshold {
            self.prune(monitor);
        }
        Ok(handle)
    }

    /// Drop completed entries (reporting failures) without waiting.
    fn prune(&self, monitor: &Monitor) {
        let mut failed = Vec::new();
        let len = {
            let mut pending = self.pending.lock();
            pending.retain(|t| match t.slot.check() {
                Seen::Pending => true,
                Seen::Fine => false,
                Seen::Failed(e) => {
                    failed.push((t.topic.clone(), t.partition, t.source.clone(), e));
                    false
                }
            });
            pending.len()
        };
        *self.pruned_len.lock() = len;
        for (topic, partition, source, e) in failed {
            self.failed(monitor, &topic, partition, source, &e);
        }
    }

    /// Take what is tracked now, to [`settle`](Self::settle) after a flush.
    pub(crate) fn take(&self) -> Vec<TrackedDelivery> {
        *self.pruned_len.lock() = 0;
        std::mem::take(&mut *self.pending.lock())
            .into_iter()
            .map(TrackedDelivery)
            .collect()
    }

    /// Put back what [`take`](Self::take) took (a flush failed), ahead of
    /// what was tracked since.
    pub(crate) fn restore(&self, taken: Vec<TrackedDelivery>) {
        let mut pending = self.pending.lock();
        let later = std::mem::take(&mut *pending);
        pending.extend(taken.into_iter().map(|TrackedDelivery(t)| t));
        pending.extend(later);
    }

    /// Whether any delivery is tracked.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.lock().is_empty()
    }

    /// Wait for every delivery in `taken` (after a producer flush they are
    /// complete) and report the failures nobody observed. Returns how many
    /// failed.
    pub(crate) async fn settle(&self, monitor: &Monitor, taken: Vec<TrackedDelivery>) -> usize {
        let mut failures = 0;
        for TrackedDelivery(t) in taken {
            let seen = std::future::poll_fn(|cx| t.slot.poll_tracker(Some(cx.waker()))).await;
            if let Seen::Failed(e) = seen {
                failures += 1;
                self.failed(monitor, &t.topic, t.partition, t.source, &e);
            }
        }
        failures
    }

    fn failed(
        &self,
        monitor: &Monitor,
        topic: &str,
        partition: Option<u32>,
        source: Option<Source>,
        error: &str,
    ) {
        let dest = match partition {
            Some(p) => format!("{topic}[{p}]"),
            None => topic.to_string(),
        };
        monitor.count(
            "faustus_send_failures_total",
            crate::monitor::topic_labels(topic),
            1,
        );
        let source = source.map(|Source(topic, partition, offset)| Coordinates {
            topic: topic.to_string(),
            partition,
            offset,
        });
        monitor.record_failure(AgentFailure {
            agent: "(send)".into(),
            event: source
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "(no event)".into()),
            message: format!("delivery to {dest} failed: {error}"),
            panicked: false,
        });
        match source {
            Some(c) => {
                let tp = TopicPartition::new(c.topic.as_str(), c.partition);
                let mut held = self.held.lock();
                let at = held.entry(tp).or_insert(c.offset);
                *at = (*at).min(c.offset);
                tracing::error!(topic = %topic, partition = ?partition, source = %c, error = %error,
                    "a record sent while processing this event was not delivered: the source partition's commits stop before the event, which is processed again after a restart or rebalance");
            }
            None => {
                tracing::error!(topic = %topic, partition = ?partition, error = %error,
                    "a record sent outside any event was not delivered (await its Delivery to handle this)");
            }
        }
    }

    /// The highest offset `tp` may be committed to: `offset`, or lower
    /// when a failed delivery holds it.
    pub(crate) fn cap(&self, tp: &TopicPartition, offset: i64) -> i64 {
        match self.held.lock().get(tp) {
            Some(h) => offset.min(*h),
            None => offset,
        }
    }

    /// Forget the holds of partitions that leave this worker (whoever gets
    /// them next reads from the committed offset, below the failed event).
    pub(crate) fn release(&self, tps: &std::collections::BTreeSet<TopicPartition>) {
        let mut held = self.held.lock();
        if !held.is_empty() {
            held.retain(|tp, _| !tps.contains(tp));
        }
    }
}

/// A tracked delivery taken for settling.
#[derive(Debug)]
pub(crate) struct TrackedDelivery(Tracked);

#[cfg(test)]
mod tests {
    use super::*;

    fn held_delivery() -> (
        tokio::sync::oneshot::Sender<Result<RecordMetadata>>,
        Delivery,
    ) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let d = Delivery::pending(async move {
            rx.await
                .unwrap_or_else(|_| Err(Error::State("sender dropped".into())))
        });
        (tx, d)
    }

    fn meta(offset: i64) -> RecordMetadata {
        RecordMetadata {
            topic: "out".into(),
            partition: 0,
            offset,
            timestamp_ms: None,
        }
    }

    #[tokio::test]
    async fn the_caller_gets_the_metadata_and_the_tracker_skips_it() {
        let tracker = Tracker::default();
        let monitor = Monitor::default();
        let (tx, d) = held_delivery();
        let handle = tracker.track(&monitor, d, &"out".into(), None).unwrap();
        let waiting = tokio::spawn(handle);
        tokio::task::yield_now().await;
        tx.send(Ok(meta(7))).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap().offset, 7);
        let taken = tracker.take();
        assert_eq!(tracker.settle(&monitor, taken).await, 0);
    }

    #[tokio::test]
    async fn the_tracker_completes_a_delivery_the_caller_awaits_and_wakes_it() {
        let tracker = Tracker::default();
        let monitor = Monitor::default();
        let (tx, d) = held_delivery();
        let handle = tracker.track(&monitor, d, &"out".into(), None).unwrap();
        let waiting = tokio::spawn(handle);
        tokio::task::yield_now().await;
        let taken = tracker.take();
        let settling = tracker.settle(&monitor, taken);
        tx.send(Err(Error::State("refused".into()))).unwrap();
        assert_eq!(settling.await, 1);
        assert!(waiting.await.unwrap().is_err());
        assert_eq!(monitor.snapshot().agent_errors, 1);
    }

    #[tokio::test]
    async fn an_unobserved_failure_holds_its_source_partition() {
        let tracker = Tracker::default();
        let monitor = Monitor::default();
        let cell = crate::flow::event::CurrentEvent::new();
        cell.set_message(&"in".into(), 2, 41, None);
        let (tx, d) = held_delivery();
        let handle = crate::flow::event::scope(cell, async {
            tracker.track(&monitor, d, &"out".into(), Some(0))
        })
        .await
        .unwrap();
        drop(handle);
        tx.send(Err(Error::State("refused".into()))).unwrap();
        let taken = tracker.take();
        assert_eq!(tracker.settle(&monitor, taken).await, 1);
        let tp = TopicPartition::new("in", 2);
        assert_eq!(tracker.cap(&tp, 100), 41);
        assert_eq!(tracker.cap(&TopicPartition::new("in", 1), 100), 100);
        tracker.release(&[tp.clone()].into_iter().collect());
        assert_eq!(tracker.cap(&tp, 100), 100);
    }

    #[tokio::test]
    async fn a_promised_delivery_is_shared_not_wrapped() {
        let tracker = Tracker::default();
        let monitor = Monitor::default();
        let cell = crate::flow::event::CurrentEvent::new();
        cell.set_message(&"in".into(), 1, 9, None);

        // The caller awaits: the metadata is its, the tracker skips it.
        let awaited = DeliveryPromise::new("out".into());
        let handle = tracker
            .track(&monitor, awaited.delivery(), &"out".into(), None)
            .unwrap();
        assert!(handle.promise().is_some(), "no slot around a promise");
        awaited.delivered(0, 5, None);
        assert_eq!(handle.await.unwrap().offset, 5);

        // Dropped by the caller, failed: reported once, holds the source.
        let dropped = DeliveryPromise::new("out".into());
        let handle = crate::flow::event::scope(cell, async {
            tracker.track(&monitor, dropped.delivery(), &"out".into(), Some(2))
        })
        .await
        .unwrap();
        drop(handle);
        let taken = tracker.take();
        assert_eq!(taken.len(), 2);
        let settling = tokio::spawn({
            let dropped = dropped.clone();
            async move {
                tokio::task::yield_now().await;
                dropped.failed(Error::State("refused".into()));
            }
        });
        assert_eq!(tracker.settle(&monitor, taken).await, 1);
        settling.await.unwrap();
        assert_eq!(tracker.cap(&TopicPartition::new("in", 1), 100), 9);

        // Already complete when tracked: the caller's at once, not tracked.
        let done = DeliveryPromise::new("out".into());
        done.failed(Error::State("refused".into()));
        assert!(tracker
            .track(&monitor, done.delivery(), &"out".into(), None)
            .is_err());
        assert!(tracker.is_empty());
    }

    #[tokio::test]
    async fn completed_entries_are_pruned_as_the_list_grows() {
        let tracker = Tracker::default();
        let monitor = Monitor::default();
        let mut senders = Vec::new();
        for i in 0..PRUNE_AT {
            let (tx, d) = held_delivery();
            drop(tracker.track(&monitor, d, &"out".into(), None).unwrap());
            if i % 2 == 0 {
                tx.send(Ok(meta(i as i64))).unwrap();
            } else {
                senders.push(tx);
            }
        }
        assert_eq!(tracker.pending.lock().len(), PRUNE_AT / 2);
        drop(senders);
    }
}

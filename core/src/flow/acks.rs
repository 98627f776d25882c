//! Acknowledgement tracking: which offsets of a partition are done, and so
//! which offset may be committed.
//!
//! The conductor registers each message it hands to streams with the number
//! of streams that got it. A stream acks it when done (advanced past it,
//! failed on it, or shut down after it). The committable offset is one past
//! the highest offset below which *every* registered message is fully acked —
//! never past a message some stream still holds (the bug Faust had in #606).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::drivers::transport::TopicPartition;

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    refs: u32,
    abandoned: bool,
}

#[derive(Debug, Default)]
struct Inner {
    pending: VecDeque<Entry>,
    /// Next offset to commit (one past the last fully acked contiguous one).
    committable: Option<i64>,
    /// Entries with refs > 0.
    outstanding: usize,
}

/// Ack state of one assigned partition.
#[derive(Debug)]
pub struct PartitionAcks {
    tp: TopicPartition,
    inner: Mutex<Inner>,
    revoked: AtomicBool,
    /// Lowest offset some `processed` waiter waits for (`i64::MAX`: none).
    wake_past: AtomicI64,
    /// Tasks waiting for `drained`.
    drain_waiters: AtomicUsize,
    changed: Notify,
}

impl PartitionAcks {
    /// Tracker for `tp`.
    pub fn new(tp: TopicPartition) -> Arc<Self> {
        Arc::new(PartitionAcks {
            tp,
            inner: Mutex::new(Inner::default()),
            revoked: AtomicBool::new(false),
            wake_past: AtomicI64::new(i64::MAX),
            drain_waiters: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    /// The partition tracked.
    pub fn tp(&self) -> &TopicPartition {
        &self.tp
    }

    /// Register `offset` as handed to `refs` streams. Offsets must increase.
    /// A message handed to no stream counts as done at once.
    pub fn add(self: &Arc<Self>, offset: i64, refs: u32) {
        self.add_many(std::iter::once(offset), refs);
    }

    /// Register several increasing offsets, each handed to `refs` streams
    /// (an offset not above the last registered one is ignored).
    pub fn add_many(self: &Arc<Self>, offsets: impl Iterator<Item = i64>, refs: u32) {
        let mut inner = self.inner.lock();
        for offset in offsets {
            if let Some(last) = inner.pending.back() {
                debug_assert!(offset > last.offset, "offsets must increase");
                if offset <= last.offset {
                    continue;
                }
            }
            if refs > 0 {
                inner.outstanding += 1;
            }
            inner.pending.push_back(Entry {
                offset,
                refs,
                abandoned: false,
            });
        }
        if refs == 0 {
            self.advance(&mut inner);
        }
    }

    /// One stream is done with `offset`.
    pub fn ack(&self, offset: i64) {
        self.done(offset, false);
    }

    /// One stream gives `offset` back unprocessed (revoked or shut down before
    /// it was processed): it will never be committable here.
    pub fn release(&self, offset: i64) {
        self.done(offset, true);
    }

    fn done(&self, offset: i64, abandoned: bool) {
        let mut inner = self.inner.lock();
        let Ok(i) = inner.pending.binary_search_by_key(&offset, |e| e.offset) else {
            return;
        };
        let e = &mut inner.pending[i];
        if e.refs == 0 {
            return;
        }
        e.refs -= 1;
        e.abandoned |= abandoned;
        if e.refs == 0 {
            inner.outstanding -= 1;
        }
        if i == 0 || inner.outstanding == 0 {
            self.advance(&mut inner);
        }
    }

    fn advance(&self, inner: &mut Inner) {
        let mut moved = false;
        while let Some(front) = inner.pending.front() {
            if front.refs > 0 || front.abandoned {
                break;
            }
            inner.committable = Some(front.offset + 1);
            inner.pending.pop_front();
            moved = true;
        }
        // Wake waiters only when what they wait for may have happened, so a
        // waiter does not cost a wake-up per ack.
        let past_target = moved
            && inner
                .committable
                .is_some_and(|c| c > self.wake_past.load(Ordering::SeqCst));
        let drained = inner.outstanding == 0 && self.drain_waiters.load(Ordering::SeqCst) > 0;
        if past_target || drained {
            if past_target {
                self.wake_past.store(i64::MAX, Ordering::SeqCst);
            }
            self.changed.notify_waiters();
        }
    }

    /// Next offset to commit, if any message has been fully acked.
    pub fn committable(&self) -> Option<i64> {
        self.inner.lock().committable
    }

    /// Messages some stream still holds.
    pub fn outstanding(&self) -> usize {
        self.inner.lock().outstanding
    }

    /// Mark the partition as taken away from this worker.
    pub fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
    }

    /// Whether the partition was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Wait until no stream holds a message of this partition.
    pub async fn drained(&self) {
        self.drain_waiters.fetch_add(1, Ordering::SeqCst);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.inner.lock().outstanding == 0 {
                break;
            }
            notified.await;
        }
        self.drain_waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wait until `offset` is done (the committable offset passed it).
    pub async fn processed(&self, offset: i64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.wake_past.fetch_min(offset, Ordering::SeqCst);
            if self.inner.lock().committable.is_some_and(|c| c > offset) {
                return;
            }
            notified.await;
        }
    }
}

/// One stream's claim on one message: ack it (done) or release it (given back).
/// Dropping it without either releases it.
#[derive(Debug)]
pub struct AckToken {
    acks: Option<Arc<PartitionAcks>>,
    offset: i64,
}

impl AckToken {
    /// A claim on `offset` of the partition tracked by `acks`.
    pub fn new(acks: Arc<PartitionAcks>, offset: i64) -> Self {
        AckToken {
            acks: Some(acks),
            offset,
        }
    }

    /// A token that tracks nothing (channel and iterator events).
    pub fn none() -> Self {
        AckToken {
            acks: None,
            offset: -1,
        }
    }

    /// The message was processed.
    pub fn ack(mut self) {
        if let Some(a) = self.acks.take() {
            a.ack(self.offset);
        }
    }

    /// The message goes back unprocessed.
    pub fn release(mut self) {
        if let Some(a) = self.acks.take() {
            a.release(self.offset);
        }
    }

    /// Whether the partition was revoked since the message was handed out.
    pub fn is_revoked(&self) -> bool {
        self.acks.as_ref().is_some_and(|a| a.is_revoked())
    }

    /// The partition this token belongs to.
    pub fn tp(&self) -> Option<&TopicPartition> {
        self.acks.as_ref().map(|a| a.tp())
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if let Some(a) = self.acks.take() {
            a.release(self.offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tracker() -> Arc<PartitionAcks> {
        PartitionAcks::new(TopicPartition::new("t", 0))
    }

    #[test]
    fn commits_only_contiguous_prefix() {
        let a = tracker();
        for o in 0..5 {
            a.add(o, 1);
        }
        a.ack(1);
        a.ack(2);
        assert_eq!(a.committable(), None);
        a.ack(0);
        assert_eq!(a.committable(), Some(3));
        a.ack(4);
        assert_eq!(a.committable(), Some(3));
        a.ack(3);
        assert_eq!(a.committable(), Some(5));
        assert_eq!(a.outstanding(), 0);
    }

    #[test]
    fn two_streams_must_both_ack() {
        let a = tracker();
        a.add(0, 2);
        a.ack(0);
        assert_eq!(a.committable(), None);
        a.ack(0);
        assert_eq!(a.committable(), Some(1));
    }

    #[test]
    fn released_messages_block_commit() {
        let a = tracker();
        a.add(0, 1);
        a.add(1, 1);
        a.ack(0);
        a.release(1);
        assert_eq!(a.committable(), Some(1));
        assert_eq!(a.outstanding(), 0);
    }

    #[test]
    fn dropped_token_releases() {
        let a = tracker();
        a.add(7, 1);
        drop(AckToken::new(a.clone(), 7));
        assert_eq!(a.committable(), None);
        assert_eq!(a.outstanding(), 0);
    }

    #[tokio::test]
    async fn processed_waits_for_ack() {
        let a = tracker();
        a.add(0, 1);
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.processed(0).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        a.ack(0);
        waiter.await.unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Next message arrives on the partition, handed to `streams` streams (bitmask).
        Arrive(u8),
        /// Stream `s` acks its oldest unacked message.
        Ack(usize),
        /// Stream `s` acks a random one of its unacked messages (manual acks out of order).
        AckAny(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8).prop_map(Op::Arrive),
            (0usize..3).prop_map(Op::Ack),
            (0usize..3, 0usize..64).prop_map(|(s, i)| Op::AckAny(s, i)),
        ]
    }

    proptest! {
        /// Random interleavings of arrivals (with gaps, to 0–3 streams) and acks:
        /// the committable offset is always one past the highest offset below
        /// which everything is acked, and never covers an unacked message.
        #[test]
        fn committable_is_highest_contiguous_acked(ops in proptest::collection::vec(op(), 1..200), gaps in proptest::collection::vec(1i64..4, 200)) {
            let a = tracker();
            // Model: for each offset, the set of streams still holding it.
            let mut model: Vec<(i64, Vec<usize>)> = Vec::new();
            let mut held: [Vec<i64>; 3] = Default::default();
            let mut next = 0i64;
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Op::Arrive(mask) => {
                        let streams: Vec<usize> = (0..3).filter(|s| mask & (1 << s) != 0).collect();
                        a.add(next, streams.len() as u32);
                        for s in &streams { held[*s].push(next); }
                        model.push((next, streams));
                        next += gaps[i % gaps.len()];
                    }
                    Op::Ack(s) => {
                        if !held[*s].is_empty() {
                            let o = held[*s].remove(0);
                            a.ack(o);
                            let e = model.iter_mut().find(|(off, _)| *off == o).unwrap();
                            e.1.retain(|x| x != s);
                        }
                    }
                    Op::AckAny(s, j) => {
                        if !held[*s].is_empty() {
                            let o = held[*s].remove(j % held[*s].len());
                            a.ack(o);
                            let e = model.iter_mut().find(|(off, _)| *off == o).unwrap();
                            e.1.retain(|x| x != s);
                        }
                    }
                }
                // Expected: one past the last offset of the fully acked prefix.
                let mut expected = None;
                for (off, holders) in &model {
                    if holders.is_empty() { expected = Some(off + 1); } else { break; }
                }
                prop_assert_eq!(a.committable(), expected);
                if let Some(c) = a.committable() {
                    for (off, holders) in &model {
                        if *off < c { prop_assert!(holders.is_empty(), "committed {} over unacked {}", c, off); }
                    }
                }
                let outstanding = model.iter().filter(|(_, h)| !h.is_empty()).count();
                prop_assert_eq!(a.outstanding(), outstanding);
            }
        }
    }
}

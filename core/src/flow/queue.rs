//! The bounded buffer between the conductor (or a channel) and a stream.
//!
//! It never holds more than its capacity: items count from the moment they
//! are pushed until the stream has *taken them into processing*
//! ([`consumed`](StreamQueue::consumed)), including items a stream has popped
//! in a batch but not yet yielded. A push into a full buffer hands the items
//! back; the conductor parks them and pauses their partitions. When a stream
//! drains a full buffer to half it wakes whoever waits for space.

use crate::drivers::transport::Message;
use crate::flow::acks::AckToken;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// A bounded multi-producer multi-consumer queue with async pop.
#[derive(Debug)]
pub struct StreamQueue<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    /// Items pushed and not yet consumed (in the queue or popped by a stream).
    held: AtomicUsize,
    closed: AtomicBool,
    not_empty: Notify,
    space: Arc<Notify>,
    want_space: AtomicBool,
    peak: AtomicUsize,
}

impl<T> StreamQueue<T> {
    /// A queue holding at most `capacity` items; `space` is notified when a full
    /// queue drains to half.
    pub fn new(capacity: usize, space: Arc<Notify>) -> Arc<Self> {
        Arc::new(StreamQueue {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            held: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            not_empty: Notify::new(),
            space,
            want_space: AtomicBool::new(false),
            peak: AtomicUsize::new(0),
        })
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Items held now (queued, or popped by a stream and not yet consumed).
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items ever held at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn note_peak(&self, held: usize) {
        if held > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(held, Ordering::Relaxed);
        }
    }

    /// Push unless full or closed; gives the item back otherwise.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        let mut items = self.items.lock();
        let held = self.held.load(Ordering::Acquire);
        if self.is_closed() || held >= self.capacity {
            self.want_space.store(true, Ordering::Release);
            return Err(item);
        }
        items.push_back(item);
        // Pushers hold the lock; consumers only decrease `held` (lock-free),
        // so `held` read above is an upper bound and fetch_add keeps it exact.
        let now = self.held.fetch_add(1, Ordering::AcqRel) + 1;
        drop(items);
        self.note_peak(now);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Push as many of `batch` as fit (in order); returns the rest.
    pub fn push_many(&self, mut batch: Vec<T>) -> Vec<T> {
        let mut items = self.items.lock();
        let held = self.held.load(Ordering::Acquire);
        let room = if self.is_closed() {
            0
        } else {
            self.capacity.saturating_sub(held)
        };
        let n = room.min(batch.len());
        let rest = batch.split_off(n);
        items.extend(batch);
        let now = self.held.fetch_add(n, Ordering::AcqRel) + n;
        drop(items);
        if !rest.is_empty() {
            self.want_space.store(true, Ordering::Release);
        }
        if n > 0 {
            self.note_peak(now);
            self.not_empty.notify_one();
        }
        rest
    }

    /// Push, waiting for space. Fails (giving the item back) once closed.
    pub async fn push(&self, mut item: T) -> Result<(), T> {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    if self.is_closed() {
                        return Err(back);
                    }
                    item = back;
                }
            }
            notified.await;
        }
    }

    /// Pop the oldest item, waiting for one; `None` once closed and empty.
    /// The item counts as consumed at once.
    pub async fn pop(&self) -> Option<T> {
        let mut one = VecDeque::with_capacity(1);
        if self.pop_many(1, &mut one).await == 0 {
            return None;
        }
        self.consumed(1);
        one.pop_front()
    }

    /// Pop without waiting (the item counts as consumed).
    pub fn try_pop(&self) -> Option<T> {
        let mut one = VecDeque::with_capacity(1);
        if self.try_pop_many(1, &mut one) == 0 {
            return None;
        }
        self.consumed(1);
        one.pop_front()
    }

    /// Move up to `max` items into `out` without waiting. They stay counted
    /// until [`consumed`](Self::consumed).
    pub fn try_pop_many(&self, max: usize, out: &mut VecDeque<T>) -> usize {
        let mut items = self.items.lock();
        let n = max.min(items.len());
        out.extend(items.drain(..n));
        let more = !items.is_empty();
        drop(items);
        if more && n > 0 {
            // Pass the wake-up on to a sibling consumer (concurrency > 1).
            self.not_empty.notify_one();
        }
        n
    }

    /// Wait for items and move up to `max` into `out`; 0 once closed and empty.
    pub async fn pop_many(&self, max: usize, out: &mut VecDeque<T>) -> usize {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let n = self.try_pop_many(max, out);
            if n > 0 {
                return n;
            }
            if self.is_closed() {
                return 0;
            }
            notified.await;
        }
    }

    /// Put popped, unconsumed items back at the front, in order (a stream
    /// that stops before processing them).
    pub fn unpop(&self, popped: &mut VecDeque<T>) {
        if popped.is_empty() {
            return;
        }
        let mut items = self.items.lock();
        while let Some(item) = popped.pop_back() {
            items.push_front(item);
        }
        drop(items);
        self.not_empty.notify_one();
    }

    /// Put an item that was already taken into processing back at the front
    /// (an agent retries the event it failed on). It counts again until consumed.
    pub fn requeue_front(&self, item: T) {
        let mut items = self.items.lock();
        items.push_front(item);
        self.held.fetch_add(1, Ordering::AcqRel);
        drop(items);
        self.not_empty.notify_one();
    }

    /// `n` popped items were taken into processing (or dropped): they no
    /// longer count against the capacity.
    pub fn consumed(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.held.fetch_sub(n, Ordering::AcqRel);
        let now = before.saturating_sub(n);
        if now <= self.capacity / 2 && self.want_space.swap(false, Ordering::AcqRel) {
            self.space.notify_waiters();
            self.space.notify_one();
        }
    }

    /// Remove and return the queued items matching `pred` (they no longer count).
    pub fn purge(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut items = self.items.lock();
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(items.len());
        for item in items.drain(..) {
            if pred(&item) {
                removed.push(item);
            } else {
                kept.push_back(item);
            }
        }
        *items = kept;
        drop(items);
        self.consumed(removed.len());
        removed
    }

    /// Stop accepting items; consumers get what is queued, then `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.not_empty.notify_waiters();
        self.not_empty.notify_one();
        self.space.notify_waiters();
    }

    /// Accept items again after [`close`](Self::close) (a restarted worker).
    pub fn reopen(&self) {
        self.closed.store(false, Ordering::Release);
    }

    /// Whether closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A message handed by the conductor to one stream, with that stream's claim on it.
#[derive(Debug)]
pub(crate) struct Delivered {
    pub(crate) msg: Message,
    pub(crate) token: AckToken,
}

/// A typed value sent through an in-memory channel.
#[derive(Debug)]
pub(crate) struct ChannelItem<K, V> {
    pub(crate) key: Option<K>,
    pub(crate) value: V,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_until_consumed() {
        let q = StreamQueue::new(2, Arc::new(Notify::new()));
        assert!(q.try_push(1).is_ok());
        assert!(q.try_push(2).is_ok());
        assert_eq!(q.try_push(3), Err(3));
        assert_eq!(q.peak(), 2);
        let mut out = VecDeque::new();
        assert_eq!(q.try_pop_many(10, &mut out), 2);
        // Popped but not consumed: still counted.
        assert_eq!(q.try_push(3), Err(3));
        q.consumed(1);
        assert!(q.try_push(3).is_ok());
        assert_eq!(q.push_many(vec![4, 5]), vec![4, 5]);
        q.consumed(1);
        assert_eq!(q.push_many(vec![4, 5]), vec![5]);
        assert_eq!(q.peak(), 2);
    }

    #[tokio::test]
    async fn push_waits_for_space_and_pop_ends_on_close() {
        let q = StreamQueue::new(1, Arc::new(Notify::new()));
        q.try_push(1).unwrap();
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(2).await });
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        assert_eq!(q.pop().await, Some(1));
        pusher.await.unwrap().unwrap();
        assert_eq!(q.pop().await, Some(2));
        q.close();
        assert_eq!(q.pop().await, None);
    }

    #[test]
    fn purge_removes_matching() {
        let q = StreamQueue::new(10, Arc::new(Notify::new()));
        for i in 0..6 {
            q.try_push(i).unwrap();
        }
        assert_eq!(q.purge(|i| i % 2 == 0), vec![0, 2, 4]);
        assert_eq!(q.len(), 3);
    }
}

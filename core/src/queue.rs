//! The bounded buffer between the conductor (or a channel) and a stream.
//!
//! It never grows past its capacity: a push into a full queue fails and the
//! conductor parks the message and pauses its partition. When a stream drains
//! the queue to half its capacity it wakes whoever waits for space.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

/// A bounded multi-producer multi-consumer queue with async pop.
#[derive(Debug)]
pub struct StreamQueue<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
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
            inner: Mutex::new(Inner {
                items: VecDeque::with_capacity(capacity.min(4096)),
                closed: false,
            }),
            capacity: capacity.max(1),
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

    /// Items buffered now.
    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items ever buffered at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Push unless full or closed; gives the item back otherwise.
    pub fn try_push(&self, item: T) -> Result<(), T> {
        let mut inner = self.inner.lock();
        if inner.closed || inner.items.len() >= self.capacity {
            self.want_space.store(true, Ordering::Release);
            return Err(item);
        }
        inner.items.push_back(item);
        let len = inner.items.len();
        drop(inner);
        if len > self.peak.load(Ordering::Relaxed) {
            self.peak.store(len, Ordering::Relaxed);
        }
        self.not_empty.notify_one();
        Ok(())
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
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.is_closed() {
                return None;
            }
            notified.await;
        }
    }

    /// Pop without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let mut inner = self.inner.lock();
        let item = inner.items.pop_front();
        let len = inner.items.len();
        let more = len > 0;
        drop(inner);
        if item.is_some() {
            if len <= self.capacity / 2 && self.want_space.swap(false, Ordering::AcqRel) {
                self.space.notify_waiters();
                self.space.notify_one();
            }
            if more {
                // Pass the wake-up on to a sibling consumer (concurrency > 1).
                self.not_empty.notify_one();
            }
        }
        item
    }

    /// Remove and return the items matching `pred`.
    pub fn purge(&self, mut pred: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut inner = self.inner.lock();
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(inner.items.len());
        for item in inner.items.drain(..) {
            if pred(&item) {
                removed.push(item);
            } else {
                kept.push_back(item);
            }
        }
        inner.items = kept;
        drop(inner);
        if !removed.is_empty() && self.want_space.swap(false, Ordering::AcqRel) {
            self.space.notify_waiters();
            self.space.notify_one();
        }
        removed
    }

    /// Stop accepting items; consumers get what is left, then `None`.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.not_empty.notify_waiters();
        self.not_empty.notify_one();
        self.space.notify_waiters();
    }

    /// Accept items again after [`close`](Self::close) (a restarted worker).
    pub fn reopen(&self) {
        self.inner.lock().closed = false;
    }

    /// Whether closed.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let q = StreamQueue::new(2, Arc::new(Notify::new()));
        assert!(q.try_push(1).is_ok());
        assert!(q.try_push(2).is_ok());
        assert_eq!(q.try_push(3), Err(3));
        assert_eq!(q.peak(), 2);
        assert_eq!(q.try_pop(), Some(1));
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

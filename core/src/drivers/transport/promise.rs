//! [`DeliveryPromise`]: the cheap way for a transport to complete a
//! [`Delivery`] later, from any thread.

use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use super::{Delivery, RecordMetadata};
use crate::error::{Error, Result};

/// The transport's side of a [`Delivery`] it completes later, from any
/// thread: a librdkafka delivery callback, a network task.
///
/// One allocation per record, shared by the transport, the caller's
/// [`Delivery`] and the worker's bookkeeping of what is in flight (the
/// commit waits for it). A transport makes one per accepted record, hands
/// [`delivery`](Self::delivery) to the caller and calls
/// [`delivered`](Self::delivered) or [`failed`](Self::failed) once.
///
/// ```
/// use std::sync::Arc;
/// use faustus_core::transport::DeliveryPromise;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let promise = DeliveryPromise::new(Arc::from("orders"));
/// let delivery = promise.delivery();
/// std::thread::spawn(move || promise.delivered(3, 42, Some(1_700_000_000_000)));
/// let meta = delivery.await.unwrap();
/// assert_eq!((&*meta.topic, meta.partition, meta.offset), ("orders", 3, 42));
/// # }
/// ```
#[derive(Debug)]
pub struct DeliveryPromise {
    topic: Arc<str>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The outcome, until the caller takes it.
    result: Option<Result<RecordMetadata>>,
    /// Completed (`result` may since have been taken).
    done: bool,
    /// The caller took the outcome: a failure is the caller's.
    taken: bool,
    /// A failure was reported by the worker's tracking.
    reported: bool,
    caller: Option<Waker>,
    tracker: Option<Waker>,
}

/// What the worker's tracking learned from a promise.
pub(crate) enum Watched {
    /// Delivered, or the caller has the outcome (its business).
    Fine,
    /// Failed, and nobody has reported or taken it: the tracker's to report.
    Failed(String),
}

impl DeliveryPromise {
    /// A promise for a record sent to `topic`.
    pub fn new(topic: Arc<str>) -> Arc<Self> {
        Arc::new(DeliveryPromise {
            topic,
            state: Mutex::new(State::default()),
        })
    }

    /// The caller's handle: resolves when the promise is completed.
    pub fn delivery(self: &Arc<Self>) -> Delivery {
        Delivery::promised(self.clone())
    }

    /// The record was stored at `partition`/`offset`.
    pub fn delivered(&self, partition: u32, offset: i64, timestamp_ms: Option<i64>) {
        self.complete(Ok(RecordMetadata {
            topic: self.topic.clone(),
            partition,
            offset,
            timestamp_ms,
        }));
    }

    /// The record was not delivered.
    pub fn failed(&self, error: Error) {
        self.complete(Err(error));
    }

    /// The topic the record was sent to.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    fn complete(&self, result: Result<RecordMetadata>) {
        let (caller, tracker) = {
            let mut s = self.state.lock();
            if s.done {
                return;
            }
            s.result = Some(result);
            s.done = true;
            (s.caller.take(), s.tracker.take())
        };
        if let Some(w) = caller {
            w.wake();
        }
        if let Some(w) = tracker {
            w.wake();
        }
    }

    /// The caller's poll (see [`Delivery`]).
    pub(super) fn poll_caller(&self, waker: &Waker) -> Poll<Result<RecordMetadata>> {
        let mut s = self.state.lock();
        if !s.done {
            if !s.caller.as_ref().is_some_and(|w| w.will_wake(waker)) {
                s.caller = Some(waker.clone());
            }
            return Poll::Pending;
        }
        s.taken = true;
        Poll::Ready(
            s.result
                .take()
                .unwrap_or_else(|| Err(Error::State("delivery polled after completion".into()))),
        )
    }

    /// Take the outcome if it is known (the caller's, at once).
    pub(crate) fn try_take(&self) -> Option<Result<RecordMetadata>> {
        let mut s = self.state.lock();
        if !s.done || s.taken {
            return None;
        }
        s.taken = true;
        s.result.take()
    }

    /// The worker's look (`waker`: woken on completion; none: only look).
    pub(crate) fn watch(&self, waker: Option<&Waker>) -> Poll<Watched> {
        let mut s = self.state.lock();
        if !s.done {
            if let Some(w) = waker {
                if !s.tracker.as_ref().is_some_and(|t| t.will_wake(w)) {
                    s.tracker = Some(w.clone());
                }
            }
            return Poll::Pending;
        }
        if s.taken || s.reported {
            return Poll::Ready(Watched::Fine);
        }
        match &s.result {
            Some(Err(e)) => {
                let e = e.to_string();
                s.reported = true;
                Poll::Ready(Watched::Failed(e))
            }
            _ => Poll::Ready(Watched::Fine),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Context;

    #[tokio::test]
    async fn the_caller_gets_the_metadata_from_another_thread() {
        let p = DeliveryPromise::new("t".into());
        let d = p.delivery();
        let q = p.clone();
        std::thread::spawn(move || q.delivered(1, 7, None));
        let m = d.await.unwrap();
        assert_eq!((&*m.topic, m.partition, m.offset), ("t", 1, 7));
        assert!(matches!(p.watch(None), Poll::Ready(Watched::Fine)));
    }

    #[test]
    fn a_failure_is_reported_once_unless_the_caller_took_it() {
        let p = DeliveryPromise::new("t".into());
        assert!(matches!(p.watch(None), Poll::Pending));
        p.failed(Error::State("refused".into()));
        p.delivered(0, 1, None); // a second completion is ignored
        assert!(matches!(p.watch(None), Poll::Ready(Watched::Failed(e)) if e.contains("refused")));
        assert!(matches!(p.watch(None), Poll::Ready(Watched::Fine)));

        let taken = DeliveryPromise::new("t".into());
        taken.failed(Error::State("refused".into()));
        assert!(taken.try_take().is_some_and(|r| r.is_err()));
        assert!(matches!(taken.watch(None), Poll::Ready(Watched::Fine)));
    }

    #[test]
    fn completion_wakes_the_caller_and_the_tracker() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let p = DeliveryPromise::new("t".into());
        let mut d = p.delivery();
        assert!(std::pin::Pin::new(&mut d)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        assert!(p.watch(Some(&waker)).is_pending());
        p.delivered(0, 3, None);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        let Poll::Ready(Ok(m)) = std::pin::Pin::new(&mut d).poll(&mut Context::from_waker(&waker))
        else {
            panic!("delivery not ready after completion");
        };
        assert_eq!(m.offset, 3);
    }
}

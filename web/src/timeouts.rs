//! Per-connection timeouts of the hyper server: how long a client may take
//! to send a request's head, and how long a keep-alive connection may sit
//! idle between requests.
//!
//! Each connection has a [`ConnWatch`] in one of three phases:
//!
//! - **head**: from the connection's start, or from the first byte of a
//!   request after an idle spell, until hyper has the whole head (it calls
//!   the service). Limited by `header_timeout`, counted from the phase's
//!   start: trickling bytes does not extend it (slowloris).
//! - **busy**: a request is being handled (its body read, the handler run).
//!   No limit here: a slow handler is not cut.
//! - **idle**: after the answer, until the next request's first byte;
//!   limited by `idle_timeout`, counted from the last write (a slow reader
//!   of a large answer is not cut while it keeps reading).
//!
//! [`watchdog`] resolves when the current phase has overrun its limit; the
//! connection task then drops the connection (closing the socket). hyper's
//! own `header_read_timeout` is not used: it starts again as soon as an
//! answer is written, so it cannot tell a slow head from an idle
//! keep-alive connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Head { since: Instant },
    Busy { requests: usize },
    Idle { since: Instant },
}

/// Why [`watchdog`] closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overrun {
    /// The request head did not arrive within `header_timeout`.
    Head,
    /// The connection was idle for `idle_timeout`.
    Idle,
}

impl Overrun {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Overrun::Head => "request head not received within header_timeout",
            Overrun::Idle => "idle for idle_timeout",
        }
    }
}

/// The phase of one connection, shared by its I/O, its service and its
/// watchdog.
#[derive(Debug)]
pub(crate) struct ConnWatch {
    phase: Mutex<Phase>,
    /// Wakes the watchdog when a request is done (busy → idle).
    done: Notify,
}

impl ConnWatch {
    /// A new connection: waiting for the first request's head.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnWatch {
            phase: Mutex::new(Phase::Head {
                since: Instant::now(),
            }),
            done: Notify::new(),
        })
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn on_read(&self) {
        let mut p = self.phase.lock();
        if let Phase::Idle { .. } = *p {
            *p = Phase::Head {
                since: Instant::now(),
            };
        }
    }

    /// Bytes were written: an idle connection still moves.
    fn on_write(&self) {
        let mut p = self.phase.lock();
        if let Phase::Idle { since } = &mut *p {
            *since = Instant::now();
        }
    }

    /// hyper has a request's head and calls the service: busy until the
    /// guard is dropped (the answer is ready, or the request was abandoned).
    pub(crate) fn busy(self: &Arc<Self>) -> BusyGuard {
        let mut p = self.phase.lock();
        *p = match *p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
        BusyGuard(self.clone())
    }
}

/// Marks its connection busy while alive.
#[derive(Debug)]
pub(crate) struct BusyGuard(Arc<ConnWatch>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut p = self.0.phase.lock();
        if let Phase::Busy { requests } = *p {
            *p = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        drop(p);
        self.0.done.notify_one();
    }
}

/// Resolves when the connection overran the limit of its phase.
pub(crate) async fn watchdog(watch: Arc<ConnWatch>, header: Duration, idle: Duration) -> Overrun {
    loop {
        // Taken before reading the phase: a request finishing in between
        // leaves a permit, so the wake-up is not lost.
        let done = watch.done.notified();
        let phase = *watch.phase.lock();
        let (deadline, overrun) = match phase {
            Phase::Head { since } => (since + header, Overrun::Head),
            Phase::Idle { since } => (since + idle, Overrun::Idle),
            Phase::Busy { .. } => {
                done.await;
                continue;
            }
        };
        if Instant::now() >= deadline {
            return overrun;
        }
        // Wake at the deadline (or when the phase may have changed) and
        // look again: the phase or its start may have moved meanwhile.
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = done => {}
        }
    }
}

/// A connection's socket, reporting reads and writes to its [`ConnWatch`].
#[derive(Debug)]
pub(crate) struct WatchedIo<T> {
    inner: T,
    watch: Arc<ConnWatch>,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(inner: T, watch: Arc<ConnWatch>) -> Self {
        WatchedIo { inner, watch }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_overruns_the_header_timeout() {
        let w = ConnWatch::new();
        let start = Instant::now();
        assert_eq!(watchdog(w, HEADER, IDLE).await, Overrun::Head);
        assert_eq!(start.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn trickled_head_bytes_do_not_extend_the_header_timeout() {
        let w = ConnWatch::new();
        let start = Instant::now();
        let dog = tokio::spawn(watchdog(w.clone(), HEADER, IDLE));
        for _ in 0..9 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.on_read();
            w.on_write();
        }
        assert_eq!(dog.await.unwrap(), Overrun::Head);
        assert_eq!(start.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_cut_and_idles_afterwards() {
        let w = ConnWatch::new();
        let start = Instant::now();
        let dog = tokio::spawn(watchdog(w.clone(), HEADER, IDLE));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = w.busy();
        // A handler far slower than both limits.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!dog.is_finished());
        drop(busy);
        // The answer is written slowly: each write restarts the idle time.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(30)).await;
            w.on_write();
        }
        assert_eq!(dog.await.unwrap(), Overrun::Idle);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1 + 300 + 5 * 30) + IDLE
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_after_idling_gets_a_fresh_header_timeout() {
        let w = ConnWatch::new();
        let dog = tokio::spawn(watchdog(w.clone(), HEADER, IDLE));
        drop(w.busy());
        tokio::time::sleep(Duration::from_secs(50)).await;
        w.on_read();
        let head_start = Instant::now();
        assert_eq!(dog.await.unwrap(), Overrun::Head);
        assert_eq!(head_start.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn pipelined_requests_stay_busy_until_the_last_is_done() {
        let w = ConnWatch::new();
        let dog = tokio::spawn(watchdog(w.clone(), HEADER, IDLE));
        let a = w.busy();
        let b = w.busy();
        drop(a);
        tokio::time::sleep(IDLE * 2).await;
        assert!(!dog.is_finished());
        drop(b);
        let idle_start = Instant::now();
        assert_eq!(dog.await.unwrap(), Overrun::Idle);
        assert_eq!(idle_start.elapsed(), IDLE);
    }
}

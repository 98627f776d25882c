//! Batches for `take` / `take_events`: up to `max` events or whatever came
//! within the time limit, their claims held until the next batch is asked for.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use crate::flow::acks::AckToken;
use crate::flow::event::SharedAck;
use crate::stream::{Core, Pulled};

/// A pull that owns its core (so it can wait across batches).
type PendingPull<K, V> = BoxFuture<'static, (Core<K, V>, Option<Pulled<K, V>>)>;

/// Gathers batches for `take` / `take_events`.
pub(super) struct Batcher<K, V> {
    pub(super) core: Option<Core<K, V>>,
    /// A pull still waiting when the last batch's time ran out.
    pub(super) pending: Option<PendingPull<K, V>>,
    pub(super) max: usize,
    pub(super) within: Duration,
    pub(super) ended: bool,
    /// The current batch's claims (values mode).
    pub(super) held: Vec<AckToken>,
    /// The current batch's events (events mode).
    pub(super) shared: Vec<Arc<SharedAck>>,
    pub(super) _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Batcher<K, V>
where
    K: DeserializeOwned + Send + 'static,
    V: DeserializeOwned + Send + 'static,
{
    pub(super) fn new(core: Core<K, V>, max: usize, within: Duration) -> Self {
        Batcher {
            core: Some(core),
            pending: None,
            max,
            within,
            ended: false,
            held: Vec::new(),
            shared: Vec::new(),
            _types: PhantomData,
        }
    }

    /// The previous batch was processed: ack its events.
    pub(super) fn finish_batch(&mut self) {
        for t in self.held.drain(..) {
            t.ack();
        }
        for s in self.shared.drain(..) {
            s.ack();
        }
    }

    fn pull(&mut self) -> Option<PendingPull<K, V>> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let mut core = self.core.take()?;
        Some(
            async move {
                let p = core.pull().await;
                (core, p)
            }
            .boxed(),
        )
    }

    pub(super) async fn next_batch(&mut self) -> Option<Vec<Pulled<K, V>>> {
        let mut batch = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.ended {
                return (!batch.is_empty()).then_some(batch);
            }
            let mut fut = self.pull()?;
            let (core, p) = match deadline {
                None => fut.await,
                Some(d) => {
                    tokio::select! {
                        r = &mut fut => r,
                        _ = tokio::time::sleep_until(d) => {
                            self.pending = Some(fut);
                            return Some(batch);
                        }
                    }
                }
            };
            self.core = Some(core);
            match p {
                None => self.ended = true,
                Some(p) => {
                    if deadline.is_none() {
                        deadline = Some(tokio::time::Instant::now() + self.within);
                    }
                    batch.push(p);
                    if batch.len() >= self.max {
                        return Some(batch);
                    }
                }
            }
        }
    }
}

impl<K, V> Drop for Batcher<K, V> {
    fn drop(&mut self) {
        // The batch in hand is done: processed, or the agent failed on it.
        for t in self.held.drain(..) {
            t.ack();
        }
        for s in self.shared.drain(..) {
            s.ack();
        }
    }
}

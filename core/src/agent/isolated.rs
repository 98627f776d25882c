//! `isolated_partitions`: one agent instance per assigned partition.
//!
//! The agent's buffer is split by partition into per-partition buffers (kept
//! by the agent across restarts, so an event being retried stays first in its
//! partition). An instance starts when its partition is assigned (or its
//! first event arrives) and stops when the partition is no longer assigned.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::agent::{AgentLink, RunState};
use crate::app::App;
use crate::error::{Error, Result};
use crate::flow::event::{self, CurrentEvent};
use crate::flow::queue::Delivered;
use crate::flow::queue::StreamQueue;

type Queue = Arc<StreamQueue<Delivered>>;

/// Run one agent instance per partition until the agent's buffer closes.
pub(crate) async fn run_isolated<M>(app: App, main: Queue, link: AgentLink, make: M) -> Result<()>
where
    M: Fn(&App, Queue, Arc<CurrentEvent>, AgentLink) -> BoxFuture<'static, Result<()>>
        + Send
        + Sync
        + 'static,
{
    let topic = app
        .inner
        .defs
        .lock()
        .agents
        .iter()
        .find(|a| a.name() == &*link.ctx.name)
        .and_then(|a| a.topic().map(str::to_string))
        .unwrap_or_default();
    let mut running: HashMap<u32, Queue> = HashMap::new();
    // Instances stop with this run (failure elsewhere, or shutdown).
    let aborts = AbortAll::default();
    // The run state of each partition's instance (what it holds in hand).
    let held_by: parking_lot::Mutex<HashMap<u32, Arc<RunState>>> = Default::default();
    let mut instances: FuturesUnordered<BoxFuture<'static, (u32, Result<()>)>> =
        FuturesUnordered::new();
    let start =
        |p: u32,
         running: &mut HashMap<u32, Queue>,
         instances: &mut FuturesUnordered<BoxFuture<'static, (u32, Result<()>)>>| {
            if running.contains_key(&p) {
                return;
            }
            let q = link.ctx.partition_queue(&app.inner, p);
            q.reopen();
            running.insert(p, q.clone());
            let cell = CurrentEvent::for_agent(&link.ctx.name, 1);
            // Each instance holds its own event in hand; the one a failing
            // instance held goes to this run, for the supervisor to settle.
            let instance = link.fresh_run();
            let instance_run = instance.run.clone();
            let run_state = link.run.clone();
            held_by.lock().insert(p, instance.run.clone());
            let run = make(&app, q, cell.clone(), instance);
            tracing::debug!(agent = %link.ctx.name, partition = p, "starting agent instance");
            // Its own task: the dispatcher may wait for room in its buffer.
            let handle = tokio::spawn(event::scope(cell, run));
            aborts.lock().push(handle.abort_handle());
            instances.push(Box::pin(async move {
                let outcome = handle.await;
                let failed = match &outcome {
                    Ok(r) => r.is_err(),
                    Err(e) => e.is_panic(),
                };
                if failed {
                    if let Some(held) = instance_run.take_held() {
                        run_state.hold(held);
                    }
                }
                let r = match outcome {
                    Ok(r) => r,
                    Err(e) if e.is_panic() => {
                        let panic = e.into_panic();
                        std::panic::resume_unwind(panic)
                    }
                    Err(e) => Err(Error::Task {
                        what: format!("agent instance for partition {p}"),
                        message: e.to_string(),
                    }),
                };
                (p, r)
            }));
        };
    let mut assignment = app.inner.assignment.subscribe();
    let mut local = VecDeque::new();
    loop {
        // Start instances for assigned partitions, stop those of revoked ones.
        let now: Vec<u32> = assignment
            .borrow_and_update()
            .keys()
            .filter(|tp| *tp.topic == *topic)
            .map(|tp| tp.partition)
            .collect();
        for p in &now {
            start(*p, &mut running, &mut instances);
        }
        let gone: Vec<u32> = running
            .keys()
            .filter(|p| !now.contains(p))
            .copied()
            .collect();
        for p in gone {
            if let Some(q) = running.get(&p) {
                tracing::debug!(agent = %link.ctx.name, partition = p, "stopping agent instance: partition revoked");
                q.close();
            }
        }
        tokio::select! {
            n = main.pop_many(64, &mut local) => {
                if n == 0 {
                    break;
                }
                // Hand each event to its partition's instance. When a buffer
                // is full, wait for room — or for an instance to end: a
                // failed one never drains its buffer.
                while let Some(d) = local.pop_front() {
                    let p = d.msg.partition;
                    start(p, &mut running, &mut instances);
                    let Some(q) = running.get(&p).cloned() else {
                        main.consumed(1);
                        d.token.release();
                        continue;
                    };
                    let room = app.inner.space.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    match q.try_push(d) {
                        Ok(()) => main.consumed(1),
                        Err(d) if q.is_closed() => {
                            main.consumed(1);
                            d.token.release();
                        }
                        Err(d) => {
                            local.push_front(d);
                            tokio::select! {
                                _ = &mut room => {}
                                Some((p, r)) = instances.next() => {
                                    running.remove(&p);
                                    if let Err(e) = r {
                                        // Give what we hold back to the agent's buffer.
                                        main.unpop(&mut local);
                                        stop_instances(&aborts, &mut instances, &held_by).await;
                                        return Err(e);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            Some((p, r)) = instances.next() => {
                running.remove(&p);
                if let Err(e) = r {
                    stop_instances(&aborts, &mut instances, &held_by).await;
                    return Err(e);
                }
            }
            r = assignment.changed() => {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    // The agent's buffer closed (shutdown): stop every instance.
    for q in running.values() {
        q.close();
    }
    while let Some((_, r)) = instances.next().await {
        r?;
    }
    Ok(())
}

/// One instance failed: stop the others, and give back the events they
/// held (they did not fail on them; the next run processes them first).
async fn stop_instances(
    aborts: &AbortAll,
    instances: &mut FuturesUnordered<BoxFuture<'static, (u32, Result<()>)>>,
    held_by: &parking_lot::Mutex<HashMap<u32, Arc<RunState>>>,
) {
    for h in aborts.lock().drain(..) {
        h.abort();
    }
    while instances.next().await.is_some() {}
    for (_, run) in held_by.lock().drain() {
        if let Some(held) = run.take_held() {
            held.give_back();
        }
    }
}

/// Aborts the tasks it holds when dropped.
#[derive(Default)]
struct AbortAll(parking_lot::Mutex<Vec<tokio::task::AbortHandle>>);

impl AbortAll {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Vec<tokio::task::AbortHandle>> {
        self.0.lock()
    }
}

impl Drop for AbortAll {
    fn drop(&mut self) {
        for h in self.0.get_mut().drain(..) {
            h.abort();
        }
    }
}

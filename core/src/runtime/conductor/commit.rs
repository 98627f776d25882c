//! Commits: the periodic one (its flush — producer, then tables — runs in
//! the background while events keep flowing; offsets are committed when it
//! is done) and the synchronous one on revocation and shutdown. Only what is
//! fully processed, with its effects flushed, is committed.

use super::*;

/// A periodic commit whose flush (producer, then tables) runs while the
/// conductor keeps delivering; its offsets are committed once it is done.
pub(super) struct PendingCommit {
    /// Offsets fully processed when the flush began.
    offsets: Vec<(TopicPartition, i64)>,
    began: Instant,
    flush: tokio::task::JoinHandle<Result<()>>,
}

/// Flush the producer and settle the sends nobody waited for, then flush
/// every table (tables with changes only when there is no offset to commit).
///
/// A send returns once the producer accepted the record, so this is where
/// the deliveries of the events below `offsets` are waited for: every send
/// tracked until now (a superset of what those events sent, since an event
/// is acked after its sends returned) is complete after the flush. A failed
/// one holds its source partition below the event that sent it
/// (`delivery::Tracker::cap`, applied in `commit_offsets`).
pub(super) async fn flush_effects(
    app: App,
    tables: Vec<Arc<dyn TableOps>>,
    offsets: bool,
) -> Result<()> {
    let inner = &app.inner;
    if offsets || !inner.deliveries.is_empty() {
        let taken = inner.deliveries.take();
        let flushed = match inner.producer().await {
            Ok(p) => p.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = flushed {
            // Settled by the next commit's flush (these offsets are not committed).
            inner.deliveries.restore(taken);
            report(&app, "producer", Err(&e));
            return Err(e);
        }
        report(&app, "producer", Ok(()));
        inner.deliveries.settle(&inner.monitor, taken).await;
    }
    for t in &tables {
        if offsets || t.has_changes() {
            if let Err(e) = t.flush().await {
                // The table keeps what it could not write for the next flush.
                report(&app, "store", Err(&e));
                return Err(e);
            }
        }
    }
    report(&app, "store", Ok(()));
    Ok(())
}

/// Record a flush step's outcome in the worker's health (`/ready`), logging
/// each change of state once: a store that keeps failing is one error line
/// and one "recovered" line, not an error at every commit interval.
fn report(app: &App, component: &str, outcome: std::result::Result<(), &crate::Error>) {
    let health = app.health();
    match outcome {
        Err(e) => {
            if health.set_problem(component, format!("flush failed (retried at each commit interval; offsets are not committed meanwhile): {e}")) {
                tracing::error!(component, error = %e, "flush failed; retrying at each commit interval and committing no offsets until it succeeds");
            }
        }
        Ok(()) => {
            if health.clear(component) {
                tracing::info!(component, "flush succeeded again; committing resumes");
            }
        }
    }
}

/// The end of the pending commit's flush; never, without one.
pub(super) async fn pending_flush(pending: &mut Option<PendingCommit>) -> Result<()> {
    match pending {
        Some(p) => (&mut p.flush)
            .await
            .map_err(|e| crate::Error::State(format!("commit flush task: {e}")))?,
        None => std::future::pending().await,
    }
}

impl Conductor {
    /// The periodic commit, when `broker_commit_interval` has passed: its
    /// flush runs in the background while events keep flowing (one at a
    /// time; an interval that finds the last one still running skips).
    pub(super) async fn commit_if_due(&mut self) {
        if self.pending.as_ref().is_some_and(|p| p.flush.is_finished()) {
            let flushed = pending_flush(&mut self.pending).await;
            self.finish_pending(flushed).await;
        }
        let now = Instant::now();
        if now < self.next_commit {
            return;
        }
        self.next_commit = now + self.app.inner.settings().broker_commit_interval;
        if self.pending.is_some() {
            return;
        }
        let offsets = self.committable(now);
        if offsets.is_empty()
            && !self.tables.iter().any(|t| t.has_changes())
            && self.app.inner.deliveries.is_empty()
        {
            return;
        }
        let flush = tokio::spawn(flush_effects(
            self.app.clone(),
            self.tables.clone(),
            !offsets.is_empty(),
        ));
        self.pending = Some(PendingCommit {
            offsets,
            began: now,
            flush,
        });
    }

    /// The pending commit's flush ended: commit its offsets (asynchronously).
    pub(super) async fn finish_pending(&mut self, flushed: Result<()>) {
        let Some(p) = self.pending.take() else {
            return;
        };
        match flushed {
            Ok(()) => {
                if let Err(e) = self.commit_offsets(p.offsets, p.began, false).await {
                    tracing::error!(error = %e, "commit failed; will retry at the next interval");
                }
            }
            // Reported (once per change of state) by the flush itself.
            Err(e) => tracing::debug!(error = %e, "flush failed; no offsets committed"),
        }
    }

    /// Every partition's offset that is fully processed and not committed
    /// yet (and the livelock warning for partitions that stay stuck).
    pub(super) fn committable(&mut self, now: Instant) -> Vec<(TopicPartition, i64)> {
        let soft = self
            .app
            .inner
            .settings()
            .broker_commit_livelock_soft_timeout;
        let mut offsets = Vec::new();
        for (tp, st) in self.parts.iter_mut() {
            match st.acks.committable() {
                Some(c) if Some(c) > st.last_committed => offsets.push((tp.clone(), c)),
                _ => {
                    if st.acks.outstanding() == 0 {
                        st.last_progress = now;
                        st.warned = false;
                    } else if !st.warned && now.duration_since(st.last_progress) > soft {
                        st.warned = true;
                        self.app.inner.monitor.add_livelock_warnings(1);
                        tracing::warn!(partition = %tp, stalled_for = ?now.duration_since(st.last_progress), "committed offset has not advanced while messages are being processed (broker_commit_livelock_soft_timeout): an agent may be stuck");
                    }
                }
            }
        }
        offsets
    }

    /// Commit every partition's fully processed offset, after the effects of
    /// those messages (sends, changelog writes) are acknowledged and stored,
    /// now and synchronously (rebalance, shutdown): after the pending commit,
    /// if any.
    pub(super) async fn commit(&mut self) -> Result<()> {
        if self.pending.is_some() {
            let flushed = pending_flush(&mut self.pending).await;
            self.finish_pending(flushed).await;
        }
        let now = Instant::now();
        let offsets = self.committable(now);
        flush_effects(self.app.clone(), self.tables.clone(), !offsets.is_empty()).await?;
        self.commit_offsets(offsets, now, true).await
    }

    /// Commit `offsets`, whose effects are flushed (a flush that began at
    /// `began`).
    pub(super) async fn commit_offsets(
        &mut self,
        offsets: Vec<(TopicPartition, i64)>,
        began: Instant,
        wait: bool,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        // A partition revoked while the flush ran is not ours to commit; one
        // held by a failed delivery stops below the event that sent it.
        let deliveries = &self.app.inner.deliveries;
        let offsets: Vec<_> = offsets
            .into_iter()
            .filter_map(|(tp, c)| {
                let st = self.parts.get(&tp)?;
                let c = deliveries.cap(&tp, c);
                (Some(c) > st.last_committed).then_some((tp, c))
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        if wait {
            self.consumer.commit(&offsets).await?;
        } else {
            self.consumer.commit_async(&offsets).await?;
        }
        let monitor = &self.app.inner.monitor;
        monitor.add_commits(1);
        monitor.time("faustus_commit_seconds", "", began.elapsed());
        for (tp, c) in &offsets {
            monitor.gauge(
                "faustus_committed_offset",
                crate::monitor::tp_labels(tp),
                *c as f64,
            );
        }
        let now = Instant::now();
        for (tp, c) in offsets {
            if let Some(st) = self.parts.get_mut(&tp) {
                st.last_committed = Some(c);
                st.last_progress = now;
                st.warned = false;
            }
            tracing::trace!(partition = %tp, offset = c, "committed");
        }
        Ok(())
    }

    /// Record, per topic, how long delivered batches took until every
    /// stream was done with them (`faustus_processing_seconds`).
    pub(super) fn observe_processing(&mut self) {
        let monitor = &self.app.inner.monitor;
        for (tp, st) in self.parts.iter_mut() {
            if st.inflight.is_empty() {
                continue;
            }
            let Some(done) = st.acks.committable() else {
                continue;
            };
            while let Some(&(last, at)) = st.inflight.front() {
                if last >= done {
                    break;
                }
                st.inflight.pop_front();
                monitor.time(
                    "faustus_processing_seconds",
                    crate::monitor::topic_labels(&tp.topic),
                    at.elapsed(),
                );
            }
        }
    }
}

//! Supervision: an agent runs until its stream ends or the worker stops;
//! a failure (error or panic) goes through the agent's policy (`on_error`,
//! dead letters, restart limit, backoff) with the event the run held.

use super::*;

impl AgentDef {
    pub(super) async fn run_supervised(self: Arc<Self>, app: App, stop: ShutdownSignal) {
        let mut backoff = Duration::from_millis(100);
        let mut restarts: VecDeque<tokio::time::Instant> = VecDeque::new();
        let mut last_failed: Option<(Coordinates, u32)> = None;
        loop {
            let cell = CurrentEvent::for_agent(&self.ctx.name, self.concurrency);
            let run = Arc::new(RunState::default());
            let link = AgentLink {
                ctx: self.ctx.clone(),
                run: run.clone(),
            };
            let fut = (self.launch)(app.clone(), cell.clone(), link);
            let started = tokio::time::Instant::now();
            let outcome = AssertUnwindSafe(event::scope(cell.clone(), fut))
                .catch_unwind()
                .await;
            // The event the run held when it ended: settled here, explicitly.
            let failed = run.take_held().and_then(HeldEvent::settle);
            let (message, panicked) = match outcome {
                Ok(Ok(())) => {
                    if let Some((_, token, _)) = failed {
                        token.ack();
                    }
                    if !stop.is_set() {
                        tracing::warn!(agent = %self.name, "agent returned before shutdown; its stream is no longer processed");
                    }
                    return;
                }
                Ok(Err(e)) => (e.to_string(), false),
                Err(panic) => (panic_message(&panic), true),
            };
            let at = match &failed {
                Some((msg, _, _)) => Some(msg.coordinates()),
                None => cell.get().and_then(|i| i.coordinates()),
            };
            let attempts = match (&last_failed, &at) {
                (Some((c, n)), Some(a)) if c == a => n + 1,
                _ => 1,
            };
            last_failed = at.clone().map(|c| (c, attempts));
            let error = AgentError {
                agent: self.name.clone(),
                error: message,
                at,
                panicked,
                attempts,
            };
            match failed {
                Some((msg, token, queue)) => {
                    match self.ctx.handle(&app.inner, error, Some(&msg), token).await {
                        Handled::Done => {}
                        Handled::Retry(token) => match queue {
                            Some(q) => q.requeue_front(Delivered { msg, token }),
                            None => token.ack(),
                        },
                        Handled::Stop => {
                            tracing::error!(agent = %self.name, "on_error said stop: the agent no longer processes events on this worker");
                            return;
                        }
                    }
                }
                None => {
                    // The event in hand (if any) was acked by its stream.
                    let decision = self.ctx.on_error.as_ref().map(|f| f(&error));
                    handle_report(&app.inner, &error);
                    if decision == Some(OnError::Stop) {
                        tracing::error!(agent = %self.name, "on_error said stop: the agent no longer processes events on this worker");
                        return;
                    }
                }
            }
            if stop.is_set() {
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            if let Some((max, within)) = self.restart_limit {
                let now = tokio::time::Instant::now();
                restarts.push_back(now);
                while restarts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > within)
                {
                    restarts.pop_front();
                }
                if restarts.len() > max as usize {
                    app.inner.monitor.record_failure(AgentFailure {
                        agent: self.name.clone(),
                        event: "(restart limit)".into(),
                        message: format!("restarted more than {max} times within {within:?}; the agent is stopped"),
                        panicked: false,
                    });
                    tracing::error!(agent = %self.name, max, ?within, "agent restart limit reached; the agent no longer processes events on this worker");
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Log and record a failure that has no event for the policy to act on.
fn handle_report(app: &AppInner, error: &AgentError) {
    let at = error
        .at
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "(no event yet)".into());
    app.monitor.record_failure(AgentFailure {
        agent: error.agent.clone(),
        event: at.clone(),
        message: error.error.clone(),
        panicked: error.panicked,
    });
    tracing::error!(agent = %error.agent, event = %at, error = %error.error, panicked = error.panicked,
        "agent failed; the event is acked and the agent restarts");
}

//! Rebalances: a revocation finishes the events in hand, commits and stops
//! serving the partitions' tables; an assignment recovers the tables'
//! partitions (polling on meanwhile, so the group does not time out) before
//! their events are delivered.

use super::*;

impl Conductor {
    /// Take partitions away: drop what was not started, let events in hand
    /// finish, commit, and stop serving their table partitions.
    pub(super) async fn release_partitions(&mut self, tps: &BTreeSet<TopicPartition>) {
        for tp in tps {
            if let Some(st) = self.parts.get(tp) {
                st.acks.revoke();
            }
        }
        for o in self.overflow.iter_mut() {
            // Dropped tokens give the events back unprocessed.
            o.items.retain(|d| {
                !tps.contains(&TopicPartition {
                    topic: d.msg.topic.clone(),
                    partition: d.msg.partition,
                })
            });
        }
        self.overflow.retain(|o| !o.items.is_empty());
        for queues in self.subs.values() {
            for q in queues {
                drop(q.purge(|d| {
                    tps.contains(&TopicPartition {
                        topic: d.msg.topic.clone(),
                        partition: d.msg.partition,
                    })
                }));
            }
        }
        let waits: Vec<_> = tps
            .iter()
            .filter_map(|tp| self.parts.get(tp).map(|s| s.acks.clone()))
            .collect();
        let drained = tokio::time::timeout(
            DRAIN_TIMEOUT,
            futures::future::join_all(waits.iter().map(|a| a.drained())),
        )
        .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "events in hand did not finish in time; committing what is done");
        }
        if let Err(e) = self.commit().await {
            tracing::error!(error = %e, "commit on revocation failed");
        }
        self.app.inner.deliveries.release(tps);
        for tp in tps {
            self.parts.remove(tp);
        }
        let parts = &self.parts;
        // Watchers (isolated agents, the cluster map) see the change below.
        self.app.inner.assignment.send_if_modified(|a| {
            let before = a.len();
            Arc::make_mut(a).retain(|tp, _| parts.contains_key(tp));
            a.len() != before
        });
        let still: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        let gone: BTreeSet<u32> = tps
            .iter()
            .map(|tp| tp.partition)
            .filter(|p| !still.contains(p))
            .collect();
        for t in &self.tables {
            t.deactivate(&gone);
        }
        self.app
            .inner
            .state::<ClusterState>()
            .standby
            .release(&gone);
    }

    pub(super) async fn on_revoked(&mut self, tps: Vec<TopicPartition>) {
        self.app.inner.monitor.add_rebalances(1);
        tracing::info!(partitions = ?tps, "partitions revoked");
        crate::runtime::signals::partitions(&self.app, true, &tps).await;
        let set: BTreeSet<TopicPartition> = tps.into_iter().collect();
        self.release_partitions(&set).await;
    }

    pub(super) async fn on_assigned(
        &mut self,
        tps: Vec<TopicPartition>,
        stop: &ShutdownSignal,
    ) -> Result<()> {
        tracing::info!(partitions = ?tps, "partitions assigned");
        if self.ensure_topics().await? {
            // This consumer would see the re-created topics only at its next
            // metadata refresh (minutes; re-subscribing to the same topics
            // changes nothing in librdkafka): the worker heals by starting a
            // new conductor, whose consumer joins with fresh metadata.
            return Err(crate::Error::State(
                "topics the app uses were missing on the broker and were created again; a new consumer joins to be assigned them".into(),
            ));
        }
        let new: Vec<TopicPartition> = tps
            .into_iter()
            .filter(|tp| !self.parts.contains_key(tp))
            .collect();
        let active: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        let to_recover: BTreeSet<u32> = new
            .iter()
            .map(|tp| tp.partition)
            .filter(|p| !active.contains(p))
            .collect();
        if !to_recover.is_empty()
            && !self.tables.is_empty()
            && !self.recover_while_polling(&new, to_recover, stop).await?
        {
            // A rebalance (handled) or shutdown cancelled the recovery.
            return Ok(());
        }
        {
            let mut assigned = HashMap::new();
            for tp in &new {
                let acks = PartitionAcks::new(tp.clone());
                assigned.insert(tp.clone(), acks.clone());
                self.parts.insert(
                    tp.clone(),
                    PartState {
                        acks,
                        paused: false,
                        last_committed: None,
                        last_progress: Instant::now(),
                        warned: false,
                        inflight: VecDeque::new(),
                        received: self.app.inner.monitor.counter(
                            "faustus_messages_received_total",
                            crate::monitor::topic_labels(&tp.topic),
                        ),
                        sequence: Default::default(),
                    },
                );
            }
            self.app
                .inner
                .assignment
                .send_modify(|a| Arc::make_mut(a).extend(assigned));
        }
        // A partition this member paused (a full stream) before it was
        // revoked may still be paused in the consumer (librdkafka keeps an
        // application's pause across assignments): new partitions start
        // flowing.
        if !new.is_empty() {
            self.consumer.resume(&new).await?;
        }
        let all: BTreeSet<u32> = self.parts.keys().map(|tp| tp.partition).collect();
        for t in &self.tables {
            t.activate(&all);
        }
        crate::runtime::signals::partitions(&self.app, false, &new).await;
        crate::runtime::signals::rebalance_complete(&self.app).await;
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ok(()));
        }
        Ok(())
    }

    /// Recover table `partitions` while serving the group: the new topic
    /// partitions stay paused, the others keep flowing, commits go on, and a
    /// revocation cancels the recovery (between two stored batches) and is
    /// handled at once, so a long recovery never gets the member expelled.
    /// Returns false when the recovery was cancelled.
    pub(super) async fn recover_while_polling(
        &mut self,
        new: &[TopicPartition],
        partitions: BTreeSet<u32>,
        stop: &ShutdownSignal,
    ) -> Result<bool> {
        if !new.is_empty() {
            self.consumer.pause(new).await?;
        }
        // Standby reading of these partitions stops before they are recovered.
        self.app
            .inner
            .state::<ClusterState>()
            .standby
            .claim(&partitions)
            .await;
        let (cancel, fire) = ShutdownSignal::new();
        // Global tables keep themselves current (their own reader).
        let local: Vec<Arc<dyn TableOps>> = self
            .tables
            .iter()
            .filter(|t| !t.is_global())
            .cloned()
            .collect();
        let task = tokio::spawn(recovery::recover(
            self.app.clone(),
            local,
            partitions,
            cancel,
        ));
        // Why the recovery has to stop early, if it does.
        enum Interrupt {
            Stop,
            Revoked(Vec<TopicPartition>),
            Assigned(Vec<TopicPartition>),
            Failed(crate::Error),
        }
        let mut task = task;
        let mut interrupt = None;
        // The recovery's result, once it finished (a join handle is awaited once).
        let mut finished = None;
        while interrupt.is_none() {
            if stop.is_set() {
                interrupt = Some(Interrupt::Stop);
                break;
            }
            self.commit_if_due().await;
            // Poll the group while recovering, but notice the end of the
            // recovery at once, not at the end of a poll.
            let event = tokio::select! {
                biased;
                r = &mut task => {
                    finished = Some(r);
                    break;
                }
                ev = self.consumer.poll(Duration::from_millis(50)) => ev,
            };
            match event {
                Ok(ConsumerEvent::Messages(batch)) => {
                    let delivered = match self.refresh_subscriptions().await {
                        Ok(()) => self.deliver_batch(batch).await,
                        Err(e) => Err(e),
                    };
                    interrupt = delivered.err().map(Interrupt::Failed);
                }
                Ok(ConsumerEvent::Revoked(tps)) => interrupt = Some(Interrupt::Revoked(tps)),
                // Not expected without a revocation first; recover for it.
                Ok(ConsumerEvent::Assigned(tps)) => interrupt = Some(Interrupt::Assigned(tps)),
                Ok(ConsumerEvent::Idle) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "consumer poll failed during table recovery; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => interrupt = Some(Interrupt::Failed(e)),
            }
        }
        if let Some(interrupt) = interrupt {
            // Stop the recovery between two stored batches, then act.
            fire();
            let ended = match finished {
                Some(r) => r,
                None => task.await,
            };
            if let Ok(Err(e)) = ended {
                tracing::warn!(error = %e, "table recovery failed while being cancelled");
            }
            match interrupt {
                Interrupt::Stop => {}
                Interrupt::Revoked(tps) => {
                    tracing::info!("rebalance during table recovery: cancelled it; the next assignment resumes it");
                    self.on_revoked(tps).await;
                }
                Interrupt::Assigned(tps) => Box::pin(self.on_assigned(tps, stop)).await?,
                Interrupt::Failed(e) => return Err(e),
            }
            return Ok(false);
        }
        let ended = match finished {
            Some(r) => r,
            None => task.await,
        };
        match ended {
            Ok(Ok(recovery::Outcome::Done)) => {}
            Ok(Ok(recovery::Outcome::Cancelled)) => return Ok(false),
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(crate::Error::Task {
                    what: "table recovery".into(),
                    message: e.to_string(),
                })
            }
        }
        if !new.is_empty() {
            self.consumer.resume(new).await?;
        }
        Ok(true)
    }

    /// Create again every topic of the app that the broker no longer has (a
    /// broker that came back without its data): source topics, changelogs,
    /// internal topics. Returns whether any was created. Checked at each
    /// assignment, which such a broker always causes.
    async fn ensure_topics(&mut self) -> Result<bool> {
        let transport = self.app.inner.transport().await?;
        let defs: Vec<Arc<crate::app::topic::TopicDef>> = self
            .app
            .inner
            .defs
            .lock()
            .topics
            .values()
            .cloned()
            .collect();
        let mut created = false;
        for def in defs {
            if !def.declared.initialized() {
                continue; // Not in use yet: declared when first used.
            }
            let want = def.spec(&self.app.inner).partitions;
            match transport.partition_count(&def.name).await? {
                None => {
                    tracing::warn!(topic = %def.name, "topic missing on the broker (did it lose its data?): creating it again");
                    def.redeclare(&self.app.inner).await?;
                    created = true;
                }
                // An internal topic re-created by someone else (a broker
                // auto-creating it with its default count) no longer
                // matches the tables' partitioning: say so on /ready.
                Some(n) if def.internal && n != want => {
                    let reason = format!(
                        "topic {} has {n} partitions, the app needs {want} (re-created by the broker's auto-creation?): delete it and restart",
                        def.name
                    );
                    if self
                        .app
                        .health()
                        .set_problem(&format!("topic {}", def.name), reason.clone())
                    {
                        tracing::error!(topic = %def.name, partitions = n, expected = want, "{reason}");
                    }
                }
                Some(_) => {
                    self.app.health().clear(&format!("topic {}", def.name));
                }
            }
        }
        // The cluster map's topic: created again with the cluster map
        // itself, when the worker heals.
        let cluster = crate::cluster::topic_name(self.app.id());
        let running = self
            .app
            .inner
            .state::<crate::cluster::ClusterState>()
            .running
            .load(std::sync::atomic::Ordering::Acquire);
        if running && transport.partition_count(&cluster).await?.is_none() {
            tracing::warn!(topic = %cluster, "topic missing on the broker (did it lose its data?): it is created again with a new cluster map");
            created = true;
        }
        Ok(created)
    }
}

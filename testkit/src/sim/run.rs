//! The run driver: a paused single-threaded runtime ([`run_paused`]),
//! running a schedule step by step, letting virtual time pass, and
//! [`Cluster::settle`] with the quiet test it waits for.

use std::collections::BTreeSet;
use std::time::Duration;

use faustus_core::transport::{Record, TopicPartition};
use faustus_core::{Error, Result};
use tokio::time::Instant;

use super::cluster::{client_id, worker_name, State};
use super::{Cluster, SimRng, Step};

/// Run `fut` on a fresh single-threaded runtime with a paused clock (what the
/// simulator needs for reproducible runs; one per proptest case).
pub fn run_paused<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => panic!("cannot build a tokio runtime for the simulation: {e}"),
    }
}

impl Cluster {
    /// Let the cluster run for `d` of virtual time.
    pub async fn run_for(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }

    /// Run a schedule; `feed` makes the input records of [`Step::Send`]
    /// (given the seeded generator and the record's index in the run).
    pub async fn run(
        &mut self,
        schedule: &[Step],
        mut feed: impl FnMut(&mut SimRng, u64) -> Record,
    ) -> Result<()> {
        for step in schedule {
            self.step(*step, &mut feed).await?;
        }
        Ok(())
    }

    /// Run one step.
    pub async fn step(
        &mut self,
        step: Step,
        feed: &mut impl FnMut(&mut SimRng, u64) -> Record,
    ) -> Result<()> {
        self.recorder.record("cluster", format!("step {step:?}"));
        match step {
            Step::Join(n) => self.join(n).await?,
            Step::Leave(n) => self.leave(n).await?,
            Step::Crash(n) => self.crash(n),
            Step::JoinWhileRecovering(a, b) => {
                self.join(a).await?;
                // Up to 10 s for `a` to get partitions and start recovering
                // (it never does when there is nothing to recover).
                let mut waited = Duration::ZERO;
                while !self.is_recovering(a) && waited < Duration::from_secs(10) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    waited += Duration::from_millis(5);
                }
                let recovering = self.is_recovering(a);
                self.recorder.record(
                    "cluster",
                    format!("{} recovering: {recovering}", worker_name(a)),
                );
                self.join(b).await?;
            }
            Step::Send(count) => {
                for _ in 0..count {
                    let record = feed(&mut self.rng, self.sent);
                    self.sent += 1;
                    let md = self.send(record).await?;
                    self.recorder.record(
                        "cluster",
                        format!("sent {}[{}]@{}", md.topic, md.partition, md.offset),
                    );
                }
            }
            Step::Run(ms) => self.run_for(Duration::from_millis(u64::from(ms))).await,
            Step::JumpClock(ms) => {
                tokio::time::advance(Duration::from_millis(u64::from(ms))).await;
            }
        }
        Ok(())
    }

    /// Run until the cluster is quiet: at least one worker running (worker 0
    /// is started if none is), no rebalance in progress, every running worker
    /// ready and a member of the group (crashed ones expired), and every
    /// partition the group reads committed up to its end — so every table
    /// change of those records is in the changelog and the stores.
    pub async fn settle(&mut self) -> Result<()> {
        if self.live_workers().is_empty() {
            let first = self.workers.keys().next().copied().unwrap_or(0);
            self.join(first).await?;
        }
        let began = Instant::now();
        loop {
            match self.quiet() {
                Ok(()) => {
                    self.recorder.record("cluster", "settled");
                    return Ok(());
                }
                Err(why) => {
                    if began.elapsed() > self.config.settle_limit {
                        return Err(Error::Timeout {
                            what: format!(
                                "the simulated cluster (seed {}) to settle; last reason: {why}",
                                self.config.seed
                            ),
                            after: self.config.settle_limit,
                        });
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why the cluster is not quiet yet, if it is not.
    fn quiet(&self) -> std::result::Result<(), String> {
        let group = self.group();
        if self.broker.is_rebalancing(&group) {
            return Err("a rebalance is in progress".into());
        }
        let mut live = BTreeSet::new();
        for (n, slot) in &self.workers {
            if let State::Running { handle, .. } = &slot.state {
                if !handle.is_ready() {
                    return Err(format!("{} is not ready", worker_name(*n)));
                }
                live.insert(client_id(&worker_name(*n), slot.incarnation));
            }
        }
        let assignment = self.broker.group_assignment(&group);
        let members: BTreeSet<String> = assignment.keys().map(|m| member_client(m)).collect();
        if members != live {
            return Err(format!(
                "group members {members:?} are not the running workers {live:?}"
            ));
        }
        for tps in assignment.values() {
            for tp in tps {
                let end = self.broker.end_offset(tp);
                let committed = self.broker.committed(&group, tp).unwrap_or(0);
                if committed < end {
                    return Err(format!("{tp} committed {committed} of {end}"));
                }
            }
        }
        for (n, slot) in &self.workers {
            if let State::Running { app, .. } = &slot.state {
                let me = client_id(&worker_name(*n), slot.incarnation);
                let mut mine = app.assignment();
                mine.sort();
                let mut given: Vec<TopicPartition> = assignment
                    .iter()
                    .filter(|(m, _)| member_client(m) == me)
                    .flat_map(|(_, t)| t.iter().cloned())
                    .collect();
                given.sort();
                if mine != given {
                    return Err(format!("{me} holds {mine:?}, the group gave it {given:?}"));
                }
            }
        }
        Ok(())
    }
}

/// `w3.1-17` → `w3.1` (member ids are `{client_id}-{seq}`).
fn member_client(member: &str) -> String {
    member
        .rsplit_once('-')
        .map_or(member, |(w, _)| w)
        .to_string()
}

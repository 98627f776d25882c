//! The memory consumer: group membership, positions, fetching and waiting.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use faustus_core::transport::{Consumer, ConsumerEvent, Message, PartitionReader, TopicPartition};
use faustus_core::{Error, Result};
use tokio::time::Instant;

use crate::broker::{Broker, Topic};
use crate::group::{Group, Step, Timeouts};

/// How the consumer gets its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Neither subscribed nor assigned.
    Idle,
    /// Member `seq` of the group, subscribed to `topics`.
    Subscribed { seq: u64, topics: Vec<Arc<str>> },
    /// Partitions given by [`PartitionReader::assign`].
    Manual,
}

/// What the group asks of a poll.
enum GroupOutcome {
    Event(ConsumerEvent),
    Fetch,
    Wait(Option<Instant>),
    Retry,
}

/// A consumer of a memory broker.
pub(crate) struct MemoryConsumer {
    broker: Arc<Broker>,
    group: Option<String>,
    client_id: String,
    max_poll_records: usize,
    default_partitions: u32,
    timeouts: Timeouts,
    mode: Mode,
    assigned: Vec<TopicPartition>,
    positions: HashMap<TopicPartition, i64>,
    paused: HashSet<TopicPartition>,
    cursor: usize,
    closed: bool,
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("group", &self.group)
            .field("client_id", &self.client_id)
            .field("mode", &self.mode)
            .field("assigned", &self.assigned)
            .finish_non_exhaustive()
    }
}

/// Partition counts as the group's assignor sees them.
fn counts(broker: &Broker) -> impl Fn(&str) -> u32 + '_ {
    move |topic| broker.topic(topic).map_or(0, |t| t.partition_count())
}

impl MemoryConsumer {
    pub(crate) fn new(
        broker: Arc<Broker>,
        group: Option<String>,
        client_id: String,
        max_poll_records: usize,
        default_partitions: u32,
        timeouts: Timeouts,
    ) -> Self {
        MemoryConsumer {
            broker,
            group,
            client_id,
            max_poll_records: max_poll_records.max(1),
            default_partitions,
            timeouts,
            mode: Mode::Idle,
            assigned: Vec::new(),
            positions: HashMap::new(),
            paused: HashSet::new(),
            cursor: 0,
            closed: false,
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed(format!(
                "memory consumer {:?}",
                self.client_id
            )));
        }
        Ok(())
    }

    fn group_name(&self, what: &str) -> Result<&str> {
        self.group.as_deref().ok_or_else(|| {
            Error::config(
                "group_id",
                format!(
                    "{what} needs a consumer group, but consumer {:?} was created without a \
                     group id (it is a partition reader); use Transport::consumer with a \
                     ConsumerConfig for a group member",
                    self.client_id
                ),
            )
        })
    }

    /// Join the group as a new member.
    fn join(&mut self, group: &str, topics: Vec<Arc<str>>) {
        let seq = self.broker.next_member_seq();
        let id = format!("{}-{seq}", self.client_id);
        {
            let mut groups = self.broker.groups.lock();
            let g = groups
                .entry(group.to_string())
                .or_insert_with(|| Group::new(group));
            g.join(
                seq,
                id,
                topics.clone(),
                self.timeouts,
                Instant::now(),
                &counts(&self.broker),
            );
        }
        self.mode = Mode::Subscribed { seq, topics };
        self.broker.wake_all();
    }

    /// Leave the group (if a member) and forget the assignment.
    fn leave(&mut self) {
        if let Mode::Subscribed { seq, .. } = std::mem::replace(&mut self.mode, Mode::Idle) {
            if let Some(group) = &self.group {
                let mut groups = self.broker.groups.lock();
                if let Some(g) = groups.get_mut(group.as_str()) {
                    g.leave(seq, Instant::now(), &counts(&self.broker));
                }
            }
            self.broker.wake_all();
        }
        self.assigned.clear();
        self.positions.clear();
        self.paused.clear();
    }

    fn group_step(&mut self) -> GroupOutcome {
        let (Mode::Subscribed { seq, topics }, Some(group)) = (&self.mode, &self.group) else {
            return GroupOutcome::Fetch;
        };
        let (seq, topics, group) = (*seq, topics.clone(), group.clone());
        let (step, changed) = {
            let mut groups = self.broker.groups.lock();
            let g = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group));
            g.poll_step(seq, Instant::now(), &counts(&self.broker))
        };
        if changed {
            self.broker.wake_all();
        }
        match step {
            Step::Revoked(tps) => {
                self.assigned.clear();
                self.positions.clear();
                self.paused.clear();
                GroupOutcome::Event(ConsumerEvent::Revoked(tps))
            }
            Step::Assigned(list) => {
                self.assigned = list.iter().map(|(tp, _)| tp.clone()).collect();
                self.positions = list
                    .into_iter()
                    .map(|(tp, off)| (tp, off.unwrap_or(0)))
                    .collect();
                self.paused.clear();
                GroupOutcome::Event(ConsumerEvent::Assigned(self.assigned.clone()))
            }
            Step::Fetch => GroupOutcome::Fetch,
            Step::Wait(deadline) => GroupOutcome::Wait(deadline),
            Step::Gone => {
                tracing::warn!(
                    group = %group,
                    client_id = %self.client_id,
                    "memory consumer was removed from its group; rejoining"
                );
                let lost = std::mem::take(&mut self.assigned);
                self.positions.clear();
                self.paused.clear();
                self.join(&group, topics);
                if lost.is_empty() {
                    GroupOutcome::Retry
                } else {
                    GroupOutcome::Event(ConsumerEvent::Revoked(lost))
                }
            }
        }
    }

    /// Up to `max_poll_records` messages, shared fairly across the readable partitions.
    fn fetch(&mut self) -> Vec<Message> {
        let active: Vec<(&TopicPartition, Option<Arc<Topic>>)> = self
            .assigned
            .iter()
            .filter(|tp| !self.paused.contains(*tp))
            .map(|tp| (tp, self.broker.topic(&tp.topic)))
            .collect();
        let n = active.len();
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        let budget = self.max_poll_records;
        let share = budget.div_ceil(n);
        let start = self.cursor % n;
        self.cursor = self.cursor.wrapping_add(1);
        // First pass: a fair share each; second: fill what is left.
        for limit in [share, budget] {
            for k in 0..n {
                let remaining = budget - out.len();
                if remaining == 0 {
                    return out;
                }
                let (tp, topic) = &active[(start + k) % n];
                let Some(topic) = topic else { continue };
                let pos = self.positions.entry((*tp).clone()).or_insert(0);
                let got = topic.read(tp.partition, *pos, limit.min(remaining), &mut out);
                *pos += got as i64;
            }
        }
        out
    }

    fn check_assigned(&self, tp: &TopicPartition, what: &str) -> Result<()> {
        if self.assigned.contains(tp) {
            Ok(())
        } else {
            Err(Error::State(format!(
                "cannot {what} {tp}: the partition is not assigned to consumer {:?}",
                self.client_id
            )))
        }
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        self.leave();
    }
}

impl MemoryConsumer {
    async fn poll_event(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        self.check_open()?;
        let deadline = Instant::now() + timeout;
        let broker = self.broker.clone();
        loop {
            // Register for wake-ups before looking, so nothing slips between.
            let notified = broker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiter = broker.waiter();
            let mut wake_at = deadline;
            let may_fetch = match self.group_step() {
                GroupOutcome::Event(event) => return Ok(event),
                GroupOutcome::Retry => continue,
                GroupOutcome::Fetch => true,
                GroupOutcome::Wait(rebalance_deadline) => {
                    if let Some(d) = rebalance_deadline {
                        // Wake when a silent member times out, to expel it.
                        wake_at = wake_at.min(d.max(Instant::now()));
                    }
                    false
                }
            };
            if may_fetch {
                let messages = self.fetch();
                if !messages.is_empty() {
                    return Ok(ConsumerEvent::Messages(messages));
                }
            }
            if Instant::now() >= deadline {
                return Ok(ConsumerEvent::Idle);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    fn close_now(&mut self) -> Result<()> {
        self.leave();
        self.closed = true;
        Ok(())
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn subscribe(&mut self, topics: &[String]) -> Result<()> {
        self.check_open()?;
        let group = self.group_name("subscribe")?.to_string();
        if self.mode == Mode::Manual {
            return Err(Error::State(format!(
                "consumer {:?} has manually assigned partitions; it cannot also subscribe \
                 (use a separate consumer for each)",
                self.client_id
            )));
        }
        let mut names: Vec<Arc<str>> = Vec::with_capacity(topics.len());
        for t in topics {
            if t.is_empty() {
                return Err(Error::config(
                    "topics",
                    "cannot subscribe to an empty topic name",
                ));
            }
            if !names.iter().any(|n| **n == **t) {
                // Like Kafka's auto.create.topics.enable.
                self.broker.topic_or_create(t, self.default_partitions);
                names.push(Arc::from(t.as_str()));
            }
        }
        names.sort();
        if names.is_empty() {
            self.leave();
            return Ok(());
        }
        if let Mode::Subscribed { seq, topics } = &mut self.mode {
            let seq = *seq;
            *topics = names.clone();
            let still_member = {
                let mut groups = self.broker.groups.lock();
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(&group));
                g.resubscribe(seq, names.clone(), Instant::now(), &counts(&self.broker))
            };
            if still_member {
                self.broker.wake_all();
                return Ok(());
            }
        }
        self.join(&group, names);
        Ok(())
    }

    async fn poll(&mut self, timeout: Duration) -> Result<ConsumerEvent> {
        self.poll_event(timeout).await
    }

    async fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        for tp in partitions {
            // Partitions not (or no longer) assigned are ignored: a rebalance
            // may have taken them between the caller's decision and this call.
            if self.assigned.contains(tp) {
                self.paused.insert(tp.clone());
            }
        }
        Ok(())
    }

    async fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        for tp in partitions {
            self.paused.remove(tp);
        }
        Ok(())
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        self.check_open()?;
        let group = self.group_name("commit")?.to_string();
        let mut groups = self.broker.groups.lock();
        let g = groups
            .entry(group.clone())
            .or_insert_with(|| Group::new(&group));
        match &self.mode {
            Mode::Subscribed { seq, .. } => g.commit(*seq, offsets),
            Mode::Manual | Mode::Idle => {
                for (tp, _) in offsets {
                    self.check_assigned(tp, "commit")?;
                }
                g.commit_unchecked(offsets)
            }
        }
    }

    async fn committed(&mut self, partitions: &[TopicPartition]) -> Result<Vec<Option<i64>>> {
        self.check_open()?;
        let group = self.group_name("committed")?;
        let groups = self.broker.groups.lock();
        let g = groups.get(group);
        Ok(partitions
            .iter()
            .map(|tp| g.and_then(|g| g.committed(tp)))
            .collect())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.clone()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.seek_to(tp, offset)
    }

    async fn close(&mut self) -> Result<()> {
        self.close_now()
    }
}

impl MemoryConsumer {
    /// Move the position of an assigned partition (group member or reader).
    fn seek_to(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.check_open()?;
        self.check_assigned(tp, "seek")?;
        if offset < 0 {
            return Err(Error::State(format!(
                "cannot seek {tp} to negative offset {offset}"
            )));
        }
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }
}

#[async_trait]
impl PartitionReader for MemoryConsumer {
    async fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        if let Mode::Subscribed { .. } = self.mode {
            return Err(Error::State(format!(
                "consumer {:?} is subscribed to group {:?}; it cannot also assign partitions \
                 manually (use a partition reader for that)",
                self.client_id,
                self.group.as_deref().unwrap_or_default()
            )));
        }
        let mut new: Vec<TopicPartition> = Vec::with_capacity(partitions.len());
        for tp in partitions {
            if let Some(topic) = self.broker.topic(&tp.topic) {
                if tp.partition >= topic.partition_count() {
                    return Err(Error::NotFound {
                        what: "partition",
                        name: format!(
                            "{tp} (topic {:?} has {} partitions)",
                            tp.topic,
                            topic.partition_count()
                        ),
                    });
                }
            }
            if !new.contains(tp) {
                new.push(tp.clone());
            }
        }
        new.sort();
        let committed: Vec<Option<i64>> = match &self.group {
            Some(group) => {
                let groups = self.broker.groups.lock();
                let g = groups.get(group.as_str());
                new.iter()
                    .map(|tp| g.and_then(|g| g.committed(tp)))
                    .collect()
            }
            None => vec![None; new.len()],
        };
        let mut positions = HashMap::with_capacity(new.len());
        for (tp, off) in new.iter().zip(committed) {
            let pos = self
                .positions
                .get(tp)
                .copied()
                .unwrap_or_else(|| off.unwrap_or(0));
            positions.insert(tp.clone(), pos);
        }
        self.paused.retain(|tp| new.contains(tp));
        self.positions = positions;
        self.mode = if new.is_empty() {
            Mode::Idle
        } else {
            Mode::Manual
        };
        self.assigned = new;
        Ok(())
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        self.seek_to(tp, offset)
    }

    async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        match self.poll_event(timeout).await? {
            ConsumerEvent::Messages(messages) => Ok(messages),
            // A reader is in no group: it only ever fetches.
            _ => Ok(Vec::new()),
        }
    }

    async fn high_watermark(&mut self, tp: &TopicPartition) -> Result<i64> {
        self.check_open()?;
        let topic = self
            .broker
            .topic(&tp.topic)
            .ok_or_else(|| Error::NotFound {
                what: "topic",
                name: tp.topic.to_string(),
            })?;
        topic
            .end_offset(tp.partition)
            .ok_or_else(|| Error::NotFound {
                what: "partition",
                name: format!(
                    "{tp} (topic {:?} has {} partitions)",
                    tp.topic,
                    topic.partition_count()
                ),
            })
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.clone()
    }

    async fn close(&mut self) -> Result<()> {
        self.close_now()
    }
}

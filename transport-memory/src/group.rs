//! Consumer groups: membership, the eager rebalance protocol and the range assignor.
//!
//! Any join or leave starts a new generation. Every member that owns
//! partitions must first receive `Revoked` (its next poll) and then
//! acknowledge it (the poll after that); only when no revocation is pending
//! is the new assignment computed and handed out as `Assigned`. A member that
//! does not acknowledge within its rebalance timeout is removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use faustus_core::transport::TopicPartition;
use faustus_core::{Error, Result};
use tokio::time::Instant;

/// Where a member is in the rebalance protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Owns `owned`; `pending` is a new assignment not yet delivered.
    Stable {
        pending: Option<Vec<TopicPartition>>,
    },
    /// Must be told that `owned` is revoked (on its next poll).
    MustRevoke,
    /// Was told; its next poll acknowledges (it has committed by then).
    RevokeDelivered,
    /// Owns nothing; waits for the new assignment.
    Waiting,
}

/// How long a member may stay silent before the group removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// During a rebalance: time to acknowledge a revocation (poll again).
    pub(crate) rebalance: Duration,
    /// At any time: time between two polls (Kafka's `session.timeout.ms`
    /// together with `max.poll.interval.ms`: a member that stops polling,
    /// e.g. a crashed process, is removed and its partitions reassigned).
    pub(crate) session: Duration,
}

#[derive(Debug)]
struct Member {
    id: String,
    topics: Vec<Arc<str>>,
    owned: Vec<TopicPartition>,
    state: State,
    timeouts: Timeouts,
    /// While a revocation is pending: when the member is removed if it has not polled.
    deadline: Option<Instant>,
    /// The member's last poll (or its join).
    last_poll: Instant,
}

impl Member {
    fn blocks_rebalance(&self) -> bool {
        matches!(self.state, State::MustRevoke | State::RevokeDelivered)
    }

    /// When this member is removed if it does not poll before.
    fn expires_at(&self) -> Instant {
        let session = self.last_poll + self.timeouts.session;
        match self.deadline {
            Some(d) if self.blocks_rebalance() => d.min(session),
            _ => session,
        }
    }
}

/// What a member's poll must do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Return `ConsumerEvent::Revoked` of these partitions.
    Revoked(Vec<TopicPartition>),
    /// Return `ConsumerEvent::Assigned`; each partition with the group's committed offset.
    Assigned(Vec<(TopicPartition, Option<i64>)>),
    /// Read messages of the owned partitions.
    Fetch,
    /// A rebalance is in progress: wait for it, at most until this instant
    /// (when some member's rebalance timeout expires).
    Wait(Option<Instant>),
    /// The member is not in the group (removed after a timeout).
    Gone,
}

/// One consumer group.
#[derive(Debug)]
pub(crate) struct Group {
    name: String,
    /// Members by join sequence number: iteration order is join order.
    members: BTreeMap<u64, Member>,
    committed: HashMap<TopicPartition, i64>,
    generation: u64,
    rebalancing: bool,
    /// Members removed for a timeout, with what they owned and what was
    /// committed for it then.
    expelled: Vec<Expulsion>,
}

/// A member removed because it stopped polling (crash, freeze, slow revocation).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Expulsion {
    /// The member id.
    pub member: String,
    /// Partitions it owned, each with the group's committed offset at that
    /// moment: what it processed after that offset may be processed again.
    pub owned: Vec<(TopicPartition, Option<i64>)>,
}

impl Group {
    pub(crate) fn new(name: &str) -> Self {
        Group {
            name: name.to_string(),
            members: BTreeMap::new(),
            committed: HashMap::new(),
            generation: 0,
            rebalancing: false,
            expelled: Vec::new(),
        }
    }

    pub(crate) fn committed(&self, tp: &TopicPartition) -> Option<i64> {
        self.committed.get(tp).copied()
    }

    pub(crate) fn member_ids(&self) -> Vec<String> {
        self.members.values().map(|m| m.id.clone()).collect()
    }

    pub(crate) fn owned_by_member(&self) -> BTreeMap<String, Vec<TopicPartition>> {
        self.members
            .values()
            .map(|m| (m.id.clone(), m.owned.clone()))
            .collect()
    }

    pub(crate) fn expulsions(&self) -> Vec<Expulsion> {
        self.expelled.clone()
    }

    pub(crate) fn is_rebalancing(&self) -> bool {
        self.rebalancing
    }

    /// Add a member and start a rebalance.
    pub(crate) fn join(
        &mut self,
        seq: u64,
        id: String,
        topics: Vec<Arc<str>>,
        timeouts: Timeouts,
        now: Instant,
        counts: &impl Fn(&str) -> u32,
    ) {
        tracing::debug!(group = %self.name, member = %id, ?topics, "memory broker: member joins");
        self.members.insert(
            seq,
            Member {
                id,
                topics,
                owned: Vec::new(),
                state: State::Waiting,
                timeouts,
                deadline: None,
                last_poll: now,
            },
        );
        self.start_rebalance(now, counts);
    }

    /// Change a member's subscription and start a rebalance; false when it is gone.
    pub(crate) fn resubscribe(
        &mut self,
        seq: u64,
        topics: Vec<Arc<str>>,
        now: Instant,
        counts: &impl Fn(&str) -> u32,
    ) -> bool {
        let Some(m) = self.members.get_mut(&seq) else {
            return false;
        };
        m.topics = topics;
        self.start_rebalance(now, counts);
        true
    }

    /// Remove a member; the others rebalance.
    pub(crate) fn leave(&mut self, seq: u64, now: Instant, counts: &impl Fn(&str) -> u32) {
        if let Some(m) = self.members.remove(&seq) {
            tracing::debug!(group = %self.name, member = %m.id, "memory broker: member leaves");
            self.start_rebalance(now, counts);
        }
    }

    fn start_rebalance(&mut self, now: Instant, counts: &impl Fn(&str) -> u32) {
        self.generation += 1;
        self.rebalancing = true;
        for m in self.members.values_mut() {
            if let State::Stable { .. } = m.state {
                // An undelivered assignment was never read from: just drop it.
                if m.owned.is_empty() {
                    m.state = State::Waiting;
                } else {
                    m.state = State::MustRevoke;
                    m.deadline = Some(now + m.timeouts.rebalance);
                }
            }
        }
        self.try_complete(counts);
    }

    /// Hand out the new assignment once no revocation is pending.
    fn try_complete(&mut self, counts: &impl Fn(&str) -> u32) -> bool {
        if !self.rebalancing || self.members.values().any(Member::blocks_rebalance) {
            return false;
        }
        let subscriptions: Vec<(u64, &[Arc<str>])> = self
            .members
            .iter()
            .map(|(seq, m)| (*seq, m.topics.as_slice()))
            .collect();
        let mut assignment = range_assign(&subscriptions, counts);
        for (seq, m) in self.members.iter_mut() {
            let mine = assignment.remove(seq).unwrap_or_default();
            m.state = State::Stable {
                pending: Some(mine),
            };
            m.deadline = None;
        }
        self.rebalancing = false;
        tracing::debug!(group = %self.name, generation = self.generation, "memory broker: rebalance complete");
        true
    }

    /// Remove members whose revocation or session timed out; true when the
    /// group changed.
    pub(crate) fn expire(&mut self, now: Instant, counts: &impl Fn(&str) -> u32) -> bool {
        let late: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, m)| m.expires_at() <= now)
            .map(|(seq, _)| *seq)
            .collect();
        if late.is_empty() {
            return false;
        }
        for seq in late {
            if let Some(m) = self.members.remove(&seq) {
                self.expelled.push(Expulsion {
                    member: m.id.clone(),
                    owned: m
                        .owned
                        .iter()
                        .map(|tp| (tp.clone(), self.committed.get(tp).copied()))
                        .collect(),
                });
                if m.blocks_rebalance() && m.deadline.is_some_and(|d| d <= now) {
                    tracing::warn!(
                        group = %self.name,
                        member = %m.id,
                        timeout = ?m.timeouts.rebalance,
                        "memory broker: member did not poll within the rebalance timeout; removed from the group"
                    );
                } else {
                    tracing::warn!(
                        group = %self.name,
                        member = %m.id,
                        timeout = ?m.timeouts.session,
                        "memory broker: member did not poll within the session timeout; removed from the group"
                    );
                }
            }
        }
        self.start_rebalance(now, counts);
        true
    }

    /// The earliest instant at which some member times out (a pending
    /// revocation or a silent session).
    fn rebalance_deadline(&self) -> Option<Instant> {
        self.members.values().map(Member::expires_at).min()
    }

    /// Advance member `seq` on a poll. The bool is true when the group state
    /// changed in a way other members may be waiting for.
    pub(crate) fn poll_step(
        &mut self,
        seq: u64,
        now: Instant,
        counts: &impl Fn(&str) -> u32,
    ) -> (Step, bool) {
        if let Some(m) = self.members.get_mut(&seq) {
            m.last_poll = now;
        }
        let mut changed = self.expire(now, counts);
        loop {
            let Some(m) = self.members.get_mut(&seq) else {
                return (Step::Gone, changed);
            };
            match &mut m.state {
                State::MustRevoke => {
                    m.state = State::RevokeDelivered;
                    m.deadline = Some(now + m.timeouts.rebalance);
                    return (Step::Revoked(m.owned.clone()), changed);
                }
                State::RevokeDelivered => {
                    m.owned.clear();
                    m.state = State::Waiting;
                    m.deadline = None;
                    changed = true;
                    self.try_complete(counts);
                }
                State::Waiting => return (Step::Wait(self.rebalance_deadline()), changed),
                State::Stable { pending } => {
                    let Some(new) = pending.take() else {
                        return (Step::Fetch, changed);
                    };
                    m.owned = new.clone();
                    let with_offsets = new
                        .into_iter()
                        .map(|tp| {
                            let off = self.committed.get(&tp).copied();
                            (tp, off)
                        })
                        .collect();
                    return (Step::Assigned(with_offsets), changed);
                }
            }
        }
    }

    /// Commit offsets for partitions member `seq` owns (all or nothing).
    pub(crate) fn commit(&mut self, seq: u64, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let Some(m) = self.members.get(&seq) else {
            return Err(Error::State(format!(
                "commit failed: this consumer is no longer a member of group {:?} \
                 (removed after its rebalance timeout); its partitions were reassigned",
                self.name
            )));
        };
        for (tp, offset) in offsets {
            if !m.owned.contains(tp) {
                return Err(Error::State(format!(
                    "commit failed for {tp}: the partition is not assigned to member {} of group {:?} \
                     (it was revoked, or never assigned)",
                    m.id, self.name
                )));
            }
            check_offset(tp, *offset)?;
        }
        for (tp, offset) in offsets {
            self.committed.insert(tp.clone(), *offset);
        }
        Ok(())
    }

    /// Commit offsets without membership checks (manually assigned group consumer).
    pub(crate) fn commit_unchecked(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        for (tp, offset) in offsets {
            check_offset(tp, *offset)?;
        }
        for (tp, offset) in offsets {
            self.committed.insert(tp.clone(), *offset);
        }
        Ok(())
    }
}

fn check_offset(tp: &TopicPartition, offset: i64) -> Result<()> {
    if offset < 0 {
        return Err(Error::State(format!(
            "commit failed for {tp}: offset {offset} is negative"
        )));
    }
    Ok(())
}

/// Kafka's RangeAssignor: per topic, the members subscribed to it (in the
/// given order) get contiguous ranges; the first `n % m` get one extra.
/// Every member gets an entry, possibly empty.
pub(crate) fn range_assign(
    members: &[(u64, &[Arc<str>])],
    counts: &impl Fn(&str) -> u32,
) -> BTreeMap<u64, Vec<TopicPartition>> {
    let mut out: BTreeMap<u64, Vec<TopicPartition>> =
        members.iter().map(|(seq, _)| (*seq, Vec::new())).collect();
    let topics: BTreeSet<&Arc<str>> = members.iter().flat_map(|(_, t)| t.iter()).collect();
    for topic in topics {
        let subscribers: Vec<u64> = members
            .iter()
            .filter(|(_, t)| t.contains(topic))
            .map(|(seq, _)| *seq)
            .collect();
        let m = subscribers.len() as u32;
        if m == 0 {
            continue;
        }
        let n = counts(topic);
        let (per, extra) = (n / m, n % m);
        let mut start = 0;
        for (i, seq) in subscribers.iter().enumerate() {
            let len = per + u32::from((i as u32) < extra);
            if let Some(list) = out.get_mut(seq) {
                list.extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
            }
            start += len;
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tps(topic: &str, ps: &[u32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| TopicPartition::new(topic, *p)).collect()
    }

    fn topics(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn range_splits_like_kafka() {
        let t = topics(&["a"]);
        let members = [(0, t.as_slice()), (1, t.as_slice()), (2, t.as_slice())];
        let out = range_assign(&members, &|_| 8);
        assert_eq!(out[&0], tps("a", &[0, 1, 2]));
        assert_eq!(out[&1], tps("a", &[3, 4, 5]));
        assert_eq!(out[&2], tps("a", &[6, 7]));
    }

    #[test]
    fn range_copartitions_equal_topics() {
        let t = topics(&["a", "b"]);
        let members = [(3, t.as_slice()), (7, t.as_slice())];
        let out = range_assign(&members, &|_| 5);
        let mut want = tps("a", &[0, 1, 2]);
        want.extend(tps("b", &[0, 1, 2]));
        assert_eq!(out[&3], want);
        let mut want = tps("a", &[3, 4]);
        want.extend(tps("b", &[3, 4]));
        assert_eq!(out[&7], want);
    }

    #[test]
    fn range_more_members_than_partitions_and_mixed_subscriptions() {
        let ab = topics(&["a", "b"]);
        let b = topics(&["b"]);
        let members = [(0, ab.as_slice()), (1, b.as_slice()), (2, b.as_slice())];
        let out = range_assign(&members, &|t| if t == "a" { 2 } else { 3 });
        assert_eq!(out[&0], {
            let mut v = tps("a", &[0, 1]);
            v.extend(tps("b", &[0]));
            v
        });
        // b: 3 partitions over 3 members, one each.
        assert_eq!(out[&1], tps("b", &[1]));
        assert_eq!(out[&2], tps("b", &[2]));
        let members = [
            (0, b.as_slice()),
            (1, b.as_slice()),
            (2, b.as_slice()),
            (3, b.as_slice()),
        ];
        let out = range_assign(&members, &|_| 3);
        assert_eq!(
            out[&3],
            Vec::new(),
            "more members than partitions: the last gets none"
        );
    }

    /// A rebalance timeout of `secs`; sessions long enough not to matter.
    fn rebalance(secs: u64) -> Timeouts {
        Timeouts {
            rebalance: Duration::from_secs(secs),
            session: Duration::from_secs(3600),
        }
    }

    #[test]
    fn member_that_stops_polling_is_removed_after_its_session_timeout() {
        let counts = |_: &str| 2;
        let now = Instant::now();
        let t = topics(&["a"]);
        let timeouts = Timeouts {
            rebalance: Duration::from_secs(5),
            session: Duration::from_secs(10),
        };
        let mut g = Group::new("g");
        g.join(0, "c-0".into(), t.clone(), timeouts, now, &counts);
        g.join(1, "c-1".into(), t, timeouts, now, &counts);
        assert_eq!(assigned(g.poll_step(0, now, &counts).0), tps("a", &[0]));
        assert_eq!(assigned(g.poll_step(1, now, &counts).0), tps("a", &[1]));
        // Member 1 keeps polling; member 0 falls silent (a crashed process).
        let mut t = now;
        for _ in 0..9 {
            t += Duration::from_secs(1);
            assert_eq!(g.poll_step(1, t, &counts).0, Step::Fetch);
        }
        assert_eq!(g.member_ids(), vec!["c-0".to_string(), "c-1".to_string()]);
        t += Duration::from_secs(1);
        // Silent for 10 s: removed; the survivor gives up and gets everything.
        let (step, changed) = g.poll_step(1, t, &counts);
        assert!(changed);
        assert_eq!(step, Step::Revoked(tps("a", &[1])));
        assert_eq!(assigned(g.poll_step(1, t, &counts).0), tps("a", &[0, 1]));
        assert_eq!(g.member_ids(), vec!["c-1".to_string()]);
        assert_eq!(g.poll_step(0, t, &counts).0, Step::Gone);
        assert_eq!(
            g.expulsions(),
            vec![Expulsion {
                member: "c-0".into(),
                owned: vec![(TopicPartition::new("a", 0), None)],
            }]
        );
    }

    fn assigned(step: Step) -> Vec<TopicPartition> {
        match step {
            Step::Assigned(v) => v.into_iter().map(|(tp, _)| tp).collect(),
            other => panic!("expected Assigned, got {other:?}"),
        }
    }

    #[test]
    fn eager_rebalance_waits_for_revocation() {
        let counts = |_: &str| 4;
        let now = Instant::now();
        let t = topics(&["a"]);
        let mut g = Group::new("g");
        g.join(0, "c-0".into(), t.clone(), rebalance(30), now, &counts);
        assert_eq!(
            assigned(g.poll_step(0, now, &counts).0),
            tps("a", &[0, 1, 2, 3])
        );
        assert_eq!(g.poll_step(0, now, &counts).0, Step::Fetch);

        g.join(1, "c-1".into(), t, rebalance(30), now, &counts);
        // The newcomer waits until the old owner acknowledged its revocation.
        assert!(matches!(
            g.poll_step(1, now, &counts).0,
            Step::Wait(Some(_))
        ));
        assert_eq!(
            g.poll_step(0, now, &counts).0,
            Step::Revoked(tps("a", &[0, 1, 2, 3]))
        );
        assert!(matches!(
            g.poll_step(1, now, &counts).0,
            Step::Wait(Some(_))
        ));
        // Commit while revoked is allowed.
        g.commit(0, &[(TopicPartition::new("a", 3), 9)]).unwrap();
        assert_eq!(assigned(g.poll_step(0, now, &counts).0), tps("a", &[0, 1]));
        match g.poll_step(1, now, &counts).0 {
            Step::Assigned(v) => assert_eq!(
                v,
                vec![
                    (TopicPartition::new("a", 2), None),
                    (TopicPartition::new("a", 3), Some(9))
                ]
            ),
            other => panic!("{other:?}"),
        }
        // Member 0 no longer owns a[3].
        assert!(g.commit(0, &[(TopicPartition::new("a", 3), 10)]).is_err());
        assert!(g.commit(1, &[(TopicPartition::new("a", 3), 10)]).is_ok());
    }

    #[test]
    fn silent_member_is_removed_after_timeout() {
        let counts = |_: &str| 2;
        let now = Instant::now();
        let t = topics(&["a"]);
        let mut g = Group::new("g");
        g.join(0, "c-0".into(), t.clone(), rebalance(5), now, &counts);
        assigned(g.poll_step(0, now, &counts).0);
        g.join(1, "c-1".into(), t, rebalance(5), now, &counts);
        let Step::Wait(Some(deadline)) = g.poll_step(1, now, &counts).0 else {
            panic!("expected to wait");
        };
        assert_eq!(deadline, now + Duration::from_secs(5));
        let (step, changed) = g.poll_step(1, deadline, &counts);
        assert!(changed);
        assert_eq!(assigned(step), tps("a", &[0, 1]));
        assert_eq!(g.poll_step(0, deadline, &counts).0, Step::Gone);
        assert!(g.commit(0, &[(TopicPartition::new("a", 0), 1)]).is_err());
    }

    #[test]
    fn leave_rebalances_the_rest() {
        let counts = |_: &str| 2;
        let now = Instant::now();
        let t = topics(&["a"]);
        let mut g = Group::new("g");
        g.join(0, "c-0".into(), t.clone(), rebalance(5), now, &counts);
        g.join(1, "c-1".into(), t, rebalance(5), now, &counts);
        assert_eq!(assigned(g.poll_step(0, now, &counts).0), tps("a", &[0]));
        assert_eq!(assigned(g.poll_step(1, now, &counts).0), tps("a", &[1]));
        g.leave(1, now, &counts);
        assert_eq!(
            g.poll_step(0, now, &counts).0,
            Step::Revoked(tps("a", &[0]))
        );
        assert_eq!(assigned(g.poll_step(0, now, &counts).0), tps("a", &[0, 1]));
        assert_eq!(g.member_ids(), vec!["c-0".to_string()]);
    }
}

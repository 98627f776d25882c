//! The consumer operations other than polling, run on the consumer thread.

use std::collections::BTreeMap;
use std::time::Instant;

use faustus_core::transport::TopicPartition;
use faustus_core::{Error, Result};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};

use crate::context::LogContext;
use crate::error;

use super::worker::Ctx;
use super::{Cmd, SLICE};

/// Run a command that does not poll (the thread loop and the revoke callback share this).
pub(super) fn execute(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, cmd: Cmd) {
    match cmd {
        Cmd::Subscribe(topics, reply) => {
            let _ = reply.send(subscribe(consumer, ctx, &topics));
        }
        Cmd::Assign(tps, reply) => {
            let _ = reply.send(assign(consumer, ctx, &tps));
        }
        Cmd::Seek(tp, offset, reply) => {
            let _ = reply.send(seek(consumer, ctx, &tp, offset));
        }
        Cmd::Pause(tps, reply) => {
            let r = consumer
                .pause(&tpl_of(&tps))
                .map_err(|e| error::kafka(format!("pause {tps:?}"), e));
            if r.is_ok() {
                ctx.paused.lock().extend(tps);
            }
            let _ = reply.send(r);
        }
        Cmd::Resume(tps, reply) => {
            let r = consumer
                .resume(&tpl_of(&tps))
                .map_err(|e| error::kafka(format!("resume {tps:?}"), e));
            if r.is_ok() {
                let mut paused = ctx.paused.lock();
                for tp in &tps {
                    paused.remove(tp);
                }
            }
            let _ = reply.send(r);
        }
        Cmd::Commit(offsets, mode, reply) => {
            let _ = reply.send(commit(consumer, ctx, &offsets, mode));
        }
        Cmd::Committed(tps, reply) => {
            let _ = reply.send(committed(consumer, ctx, &tps));
        }
        Cmd::HighWatermark(tp, reply) => {
            let _ = reply.send(high_watermark(consumer, ctx, &tp));
        }
        Cmd::Poll { reply, .. } => {
            let _ = reply.send(Err(Error::State("internal: poll routed to execute".into())));
        }
        Cmd::Close(reply) => {
            let _ = reply.send(Err(Error::State(
                "internal: close routed to execute".into(),
            )));
        }
    }
}

fn to_i32(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(i32::MAX)
}

fn tpl_of(tps: &[TopicPartition]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(tps.len());
    for tp in tps {
        tpl.add_partition(&tp.topic, to_i32(tp.partition));
    }
    tpl
}

pub(super) fn tpl_to_vec(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    let mut v: Vec<TopicPartition> = tpl
        .elements()
        .iter()
        .filter_map(|e| {
            u32::try_from(e.partition())
                .ok()
                .map(|p| TopicPartition::new(e.topic(), p))
        })
        .collect();
    v.sort();
    v
}

fn subscribe(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, topics: &[String]) -> Result<()> {
    if !ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} has no group id, so it cannot subscribe to {topics:?}; use assign, or a group consumer",
            ctx.settings.client
        )));
    }
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|e| error::kafka(format!("subscribe to {topics:?}"), e))
}

/// (Re-)assign the group-less consumer's partitions at their start offsets
/// and re-apply pauses.
fn apply_groupless_assignment(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    starts: &BTreeMap<TopicPartition, Offset>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::with_capacity(starts.len());
    for (tp, offset) in starts {
        tpl.add_partition_offset(&tp.topic, to_i32(tp.partition), *offset)
            .map_err(|e| error::kafka(format!("assign {tp}"), e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| error::kafka(format!("assign {:?}", starts.keys()), e))?;
    *ctx.assignment.lock() = starts.keys().cloned().collect();
    let mut paused = ctx.paused.lock();
    paused.retain(|tp| starts.contains_key(tp));
    if !paused.is_empty() {
        let tps: Vec<TopicPartition> = paused.iter().cloned().collect();
        consumer
            .pause(&tpl_of(&tps))
            .map_err(|e| error::kafka(format!("pause {tps:?}"), e))?;
    }
    Ok(())
}

fn assign(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tps: &[TopicPartition]) -> Result<()> {
    if ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} belongs to a group, which decides its partitions; use a partition reader (Transport::reader) to assign {tps:?}",
            ctx.settings.client
        )));
    }
    let starts: BTreeMap<TopicPartition, Offset> = tps
        .iter()
        .map(|tp| (tp.clone(), Offset::Beginning))
        .collect();
    apply_groupless_assignment(consumer, ctx, &starts)?;
    *ctx.starts.lock() = starts;
    ctx.next.lock().clear();
    // Every partition starts again from the beginning.
    ctx.forget(None);
    Ok(())
}

fn seek(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tp: &TopicPartition, offset: i64) -> Result<()> {
    if ctx.settings.group {
        consumer
            .seek(
                &tp.topic,
                to_i32(tp.partition),
                Offset::Offset(offset),
                ctx.settings.operation_timeout,
            )
            .map_err(|e| error::kafka(format!("seek {tp} to {offset}"), e))?;
        // What was gathered of `tp` comes again from the new position.
        ctx.forget(Some(tp));
        return Ok(());
    }
    let mut starts = ctx.starts.lock().clone();
    if !starts.contains_key(tp) {
        return Err(Error::State(format!(
            "cannot seek {tp}: it is not assigned to consumer {:?}",
            ctx.settings.client
        )));
    }
    // Keep every other partition where it is.
    if let Ok(position) = consumer.position() {
        for e in position.elements() {
            if let (Offset::Offset(o), Ok(p)) = (e.offset(), u32::try_from(e.partition())) {
                let key = TopicPartition::new(e.topic(), p);
                if let Some(start) = starts.get_mut(&key) {
                    *start = Offset::Offset(o);
                }
            }
        }
    }
    starts.insert(tp.clone(), Offset::Offset(offset));
    apply_groupless_assignment(consumer, ctx, &starts)?;
    // The caller moves the position: not a jump to fetch again.
    ctx.next.lock().remove(tp);
    ctx.forget(Some(tp));
    *ctx.starts.lock() = starts;
    Ok(())
}

fn commit(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    offsets: &[(TopicPartition, i64)],
    mode: CommitMode,
) -> Result<()> {
    if !ctx.settings.group {
        return Err(Error::State(format!(
            "consumer {:?} has no group id, so it cannot commit",
            ctx.settings.client
        )));
    }
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, to_i32(tp.partition), Offset::Offset(*o))
            .map_err(|e| error::kafka(format!("commit {tp} at {o}"), e))?;
    }
    consumer
        .commit(&tpl, mode)
        .map_err(|e| error::kafka(format!("commit {offsets:?}"), e))
}

fn committed(
    consumer: &BaseConsumer<Ctx>,
    ctx: &Ctx,
    tps: &[TopicPartition],
) -> Result<Vec<Option<i64>>> {
    if !ctx.settings.group || tps.is_empty() {
        return Ok(vec![None; tps.len()]);
    }
    let got = consumer
        .committed_offsets(tpl_of(tps), ctx.settings.operation_timeout)
        .map_err(|e| error::kafka(format!("committed offsets of {tps:?}"), e))?;
    Ok(tps
        .iter()
        .map(|tp| {
            got.find_partition(&tp.topic, to_i32(tp.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => Some(o),
                    _ => None,
                })
        })
        .collect())
}

/// The end of `tp`: ListOffsets(latest) checked against the fetch high-water
/// mark by reading from there to partition EOF with the probe consumer.
fn high_watermark(consumer: &BaseConsumer<Ctx>, ctx: &Ctx, tp: &TopicPartition) -> Result<i64> {
    let timeout = ctx.settings.operation_timeout;
    let partition = to_i32(tp.partition);
    let (low, listed) = consumer
        .fetch_watermarks(&tp.topic, partition, timeout)
        .map_err(|e| error::kafka(format!("list offsets of {tp}"), e))?;
    let start = listed.max(low).max(0);

    let mut guard = ctx.probe.lock();
    if guard.is_none() {
        let mut config = ctx.settings.probe_config.clone();
        config
            .set("client.id", format!("{}-watermark", ctx.settings.client))
            .set("group.id", crate::private_group_id(&ctx.settings.client))
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10");
        let probe: BaseConsumer<LogContext> = config
            .create_with_context(LogContext::new(
                format!("{}-watermark", ctx.settings.client),
                &ctx.settings.shared,
            ))
            .map_err(|e| error::kafka("create the high-water-mark probe consumer", e))?;
        *guard = Some(probe);
    }
    let Some(probe) = guard.as_ref() else {
        return Err(error::message(false, "probe consumer missing"));
    };
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(&tp.topic, partition, Offset::Offset(start))
        .map_err(|e| error::kafka(format!("probe {tp}"), e))?;
    probe
        .assign(&tpl)
        .map_err(|e| error::kafka(format!("probe {tp}"), e))?;
    let deadline = Instant::now() + timeout;
    let mut end = start;
    let result = loop {
        if Instant::now() >= deadline {
            break Err(error::message(
                true,
                format!("no fetch answer for {tp} within {timeout:?} while looking for its high-water mark"),
            ));
        }
        match probe.poll(SLICE) {
            Some(Ok(m)) if m.partition() == partition && m.topic() == &*tp.topic => {
                end = end.max(m.offset() + 1);
            }
            Some(Ok(_)) => {}
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(end),
            Some(Err(e)) => {
                tracing::debug!(partition = %tp, error = %e, "high-water-mark probe");
            }
            None => {}
        }
    };
    if let Err(e) = probe.unassign() {
        tracing::debug!(error = %e, "unassign the high-water-mark probe");
    }
    result
}

//! Table recovery: replay each table partition's changelog from the offset
//! its store last applied up to the changelog's end, before the partition's
//! events are processed. Reads with a group-less consumer so the group is
//! never disturbed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::error::{Error, Result};
use crate::store::WriteBatch;
use crate::table::TableOps;
use crate::transport::{ConsumerConfig, ConsumerEvent, TopicPartition};

const BATCH: usize = 4096;
/// Quiet polls (200 ms each) after which missing tail offsets count as read.
const IDLE_POLLS_BEFORE_DONE: u32 = 50;

/// Recover `partitions` of every table.
pub(crate) async fn recover(
    app: &App,
    tables: &[Arc<dyn TableOps>],
    partitions: &BTreeSet<u32>,
) -> Result<()> {
    let transport = app.inner.transport().await?;
    let mut consumer = transport
        .consumer(&ConsumerConfig::groupless(format!(
            "{}-recovery",
            app.inner.settings().broker_client_id
        )))
        .await?;
    // tp -> (table index, end offset)
    let mut todo: HashMap<TopicPartition, (usize, i64)> = HashMap::new();
    let mut starts = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let Some(store) = table.table_store() else {
            return Err(Error::State(format!(
                "table {:?} is not open",
                table.name()
            )));
        };
        for &p in partitions.iter().filter(|p| **p < table.partitions()) {
            let tp = TopicPartition::new(table.changelog().name.clone(), p);
            let end = consumer.high_watermark(&tp).await?;
            let mut start = store.persisted_offset(p).await?.map(|o| o + 1).unwrap_or(0);
            if start > end {
                tracing::warn!(table = table.name(), partition = p, stored = start - 1, changelog_end = end,
                    "the store has applied changelog offsets the changelog does not have (topic recreated or another broker?): wiping the partition and replaying it in full");
                store.drop_partition(p).await?;
                start = 0;
            }
            if start < end {
                starts.push((tp.clone(), start));
                todo.insert(tp, (i, end));
            }
        }
    }
    if todo.is_empty() {
        consumer.close().await.ok();
        return Ok(());
    }
    let total: i64 = todo
        .iter()
        .map(|(tp, (_, end))| {
            end - starts
                .iter()
                .find(|(t, _)| t == tp)
                .map(|s| s.1)
                .unwrap_or(0)
        })
        .sum();
    tracing::info!(
        partitions = todo.len(),
        records = total,
        "recovering tables from their changelogs"
    );
    let tps: Vec<TopicPartition> = todo.keys().cloned().collect();
    consumer.assign(&tps).await?;
    for (tp, start) in &starts {
        consumer.seek(tp, *start).await?;
    }
    let mut pending: HashMap<TopicPartition, WriteBatch> = HashMap::new();
    let mut done = 0u64;
    let mut last_log = tokio::time::Instant::now();
    let mut idle = 0u32;
    while !todo.is_empty() {
        match consumer.poll(Duration::from_millis(200)).await? {
            ConsumerEvent::Messages(msgs) => {
                idle = 0;
                for m in msgs {
                    let tp = m.tp();
                    let Some((_, end)) = todo.get(&tp) else {
                        continue;
                    };
                    let end = *end;
                    if m.offset >= end {
                        continue;
                    }
                    let batch = pending.entry(tp.clone()).or_default();
                    let key = m.key.clone().unwrap_or_default();
                    batch.ops.push((key, m.value.clone()));
                    batch.offset = Some(m.offset);
                    done += 1;
                    let finished = m.offset + 1 >= end;
                    if batch.ops.len() >= BATCH || finished {
                        flush_one(tables, &todo, &mut pending, &tp).await?;
                    }
                    if finished {
                        todo.remove(&tp);
                    }
                }
            }
            ConsumerEvent::Idle => {
                // Offsets below the end can be missing (compaction, transaction
                // markers). After a long quiet spell, treat what is left as read.
                idle += 1;
                if idle >= IDLE_POLLS_BEFORE_DONE {
                    let left: Vec<TopicPartition> = todo.keys().cloned().collect();
                    for tp in left {
                        tracing::warn!(changelog = %tp, "no more records arrive below the changelog end; treating the partition as recovered");
                        flush_one(tables, &todo, &mut pending, &tp).await?;
                        todo.remove(&tp);
                    }
                }
                continue;
            }
            ConsumerEvent::Revoked(_) | ConsumerEvent::Assigned(_) => {}
        }
        if last_log.elapsed() > Duration::from_secs(3) {
            last_log = tokio::time::Instant::now();
            tracing::info!(
                done,
                remaining = total as u64 - done.min(total as u64),
                "table recovery in progress"
            );
        }
    }
    let keys: Vec<TopicPartition> = pending.keys().cloned().collect();
    for tp in keys {
        flush_one(tables, &HashMap::new(), &mut pending, &tp).await?;
    }
    app.inner.monitor.add_recovered_records(done);
    tracing::info!(records = done, "table recovery done");
    consumer.close().await.ok();
    Ok(())
}

async fn flush_one(
    tables: &[Arc<dyn TableOps>],
    todo: &HashMap<TopicPartition, (usize, i64)>,
    pending: &mut HashMap<TopicPartition, WriteBatch>,
    tp: &TopicPartition,
) -> Result<()> {
    let Some(batch) = pending.remove(tp) else {
        return Ok(());
    };
    let table = match todo.get(tp) {
        Some((i, _)) => tables.get(*i),
        None => tables.iter().find(|t| *t.changelog().name == *tp.topic),
    };
    if let Some(store) = table.and_then(|t| t.table_store()) {
        store.apply(tp.partition, batch).await?;
    }
    Ok(())
}

//! A poll that skips offsets never makes the worker move past records it did
//! not see. A broker may answer a fetch with a later batch while an earlier
//! one is not stored yet (tansu 0.6 does, with concurrent producers: a
//! record was stranded that way in the two-worker word count); the
//! conductor fetches the skipped offsets again instead of committing past
//! them. Offsets missing for good (compaction, transaction markers) are
//! fetched again once, then taken as they are.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use faustus::transport::ConsumerEvent;
use faustus::TopicPartition;
use support::hooked::{take_one, Hooked, PollHook};
use support::*;

/// The offset of `events` whose message the group consumers' polls leave
/// out, `times` times (`usize::MAX`: always, as a gap that is really there).
const SKIPPED: i64 = 5;

#[derive(Debug)]
struct SkippingPolls {
    times: AtomicUsize,
    skipped: AtomicUsize,
}

impl PollHook for SkippingPolls {
    fn after(&self, event: &mut ConsumerEvent) {
        if let ConsumerEvent::Messages(batch) = event {
            batch.retain(|m| {
                let skip = &*m.topic == "events" && m.offset == SKIPPED && take_one(&self.times);
                if skip {
                    self.skipped.fetch_add(1, Ordering::SeqCst);
                }
                !skip
            });
        }
    }
}

/// 20 events of one key through a worker whose polls leave offset 5 out
/// `times` times: the key's count, the number of polls that left it out,
/// and the partition's committed offset once the last event is processed.
async fn count_through_skips(times: usize) -> (u64, usize, Option<i64>) {
    let polls = Arc::new(SkippingPolls {
        times: AtomicUsize::new(times),
        skipped: AtomicUsize::new(0),
    });
    let hooked = Hooked::new(unique("skips"), polls.clone());
    let app = hooked
        .app("skipping", &unique("skips"))
        .web_enabled(false)
        .topic_partitions(2u32)
        .build()
        .unwrap();
    let (events, counts) = counting(&app);
    // All of them before the worker starts: offset 5 comes in the middle
    // of a poll's batch.
    let mut last = None;
    for _ in 0..20u64 {
        last = Some(events.send("k".into(), 1).await.unwrap().await.unwrap());
    }
    let last = last.unwrap();
    let tp = TopicPartition::new("events", last.partition);
    let worker = start(&app).await;
    tokio::time::timeout(Duration::from_secs(60), app.processed(&tp, last.offset))
        .await
        .expect("the last event is processed");
    let count = counts.get(&"k".to_string()).await.unwrap().unwrap_or(0);
    worker.stop().await.unwrap();
    let committed = support::broker(&hooked.name).committed(app.id(), &tp);
    (count, polls.skipped.load(Ordering::SeqCst), committed)
}

#[tokio::test(start_paused = true)]
async fn offsets_a_poll_skipped_are_fetched_again_and_counted() {
    let (count, skipped, committed) = count_through_skips(1).await;
    assert_eq!(skipped, 1, "the poll left offset {SKIPPED} out once");
    assert_eq!(count, 20, "every event counted, the skipped one too");
    assert_eq!(committed, Some(20));
}

#[tokio::test(start_paused = true)]
async fn offsets_missing_for_good_are_fetched_again_once_then_passed() {
    let (count, skipped, committed) = count_through_skips(usize::MAX).await;
    assert_eq!(skipped, 2, "fetched again once, then taken as a gap");
    assert_eq!(count, 19, "every event there is, counted once");
    assert_eq!(committed, Some(20), "the gap does not hold the commit");
}

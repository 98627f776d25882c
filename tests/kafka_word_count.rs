//! The word-count demo on a real Kafka-protocol broker, with its workers as
//! separate OS processes of the example binary (`examples/word_count.rs`).
//!
//! ```text
//! scripts/test.sh                                   # starts tansu, runs these
//! FAUSTUS_TEST_KAFKA=127.0.0.1:9092 cargo test --all-targets --test kafka_word_count -- --ignored
//! ```
//!
//! Each test uses its own app id (`FAUSTUS_ID`, so its own group, agent topic
//! and changelog) and its own posts topic (`FAUSTUS_DEMO_POSTS_TOPIC`), so the
//! tests run in parallel on one broker. The posts are produced by the demo's
//! `produce` command (another process); the result is read back by folding the
//! table's changelog `{app_id}-word_counts-changelog` (last value per key)
//! with a group-less consumer of the Faustus Kafka transport. Waits poll that
//! fold up to generous deadlines (a consumer-group join takes 20–25 s on
//! tansu); no fixed sleep decides an outcome.
//!
//! The scenarios: (1) one worker counts a known corpus exactly; (2) two
//! workers share the partitions and together count it exactly; (3) one of two
//! workers is stopped gracefully (SIGTERM) mid-stream, the other takes its
//! partitions over, recovers their table state from the changelog and the
//! final counts are exact; (4) one of two workers is killed (SIGKILL)
//! mid-stream and restarted: every word is counted at least once, and no
//! committed offset ran ahead of what it depends on.
//!
//! What "committed offsets never ran ahead of the changelog" means for this
//! two-stage app: `shuffle_words` reads posts and sends words to the
//! `count_words` agent topic; `count_words` reads that topic and writes the
//! changelog. So (a) the words of every post below the group's committed
//! offset of the posts topic are in the agent topic, and (b) every word
//! record below the committed offset of the agent topic is reflected in the
//! changelog (folded count ≥ records of that word in the committed prefix).
//! Both are checked right after the kill (committed offsets read first, the
//! topics afterwards: they only grow) and again at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../examples/word_count.rs"]
#[allow(dead_code, unreachable_pub)]
mod word_count;

mod common;

use std::time::Duration;

use common::kafka::{
    assigned, expected, finish_producer, missing, runtime, tail, Scenario, PARTITIONS, PHASE,
};

// ----------------------------------------------------------------- scenarios

#[test]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
fn one_worker_counts_the_corpus_exactly() {
    runtime().block_on(async {
        let Some(mut s) = Scenario::new("one").await else {
            return;
        };
        let mut w = s.worker("w1");
        let mut fold = s.fold().await;
        let n = 800;
        s.produce(0, n);
        fold.expect_exact(&s, &expected(0, n)).await;
        // More posts after the first commit: still exact.
        s.produce(n, 200);
        fold.expect_exact(&s, &expected(0, n + 200)).await;
        s.note(&s.check_commits_not_ahead().await);
        w.signal("TERM");
        let status = w.wait(Duration::from_secs(60));
        assert!(status.success(), "the worker stopped with {status}");
    });
}

#[test]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
fn two_workers_share_the_partitions_and_count_exactly() {
    runtime().block_on(async {
        let Some(mut s) = Scenario::new("two").await else {
            return;
        };
        let mut a = s.worker("a");
        let mut b = s.worker("b");
        let mut fold = s.fold().await;
        s.wait_until_shared(&mut [&mut a, &mut b]);
        let n = 1200;
        s.produce(0, n);
        fold.expect_exact(&s, &expected(0, n)).await;
        for w in [&mut a, &mut b] {
            // From the worker itself: its 3-s progress line may not have
            // come yet (the whole corpus takes less).
            let words = w.agent_events("count_words").await;
            w.signal("TERM");
            let status = w.wait(Duration::from_secs(60));
            assert!(status.success(), "{} stopped with {status}", w.name);
            assert!(
                words.is_some_and(|n| n > 0),
                "{} counted no words ({words:?}; it should own half the partitions); its log:\n{}",
                w.name,
                tail(&w.log, 30)
            );
        }
        // Stopping both committed everything and changed no count.
        fold.catch_up().await;
        assert_eq!(fold.counts, expected(0, n));
    });
}

#[test]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
fn a_gracefully_stopped_worker_is_taken_over_exactly() {
    runtime().block_on(async {
        let Some(mut s) = Scenario::new("stop").await else {
            return;
        };
        let (n1, n2) = (800, 800);
        let (mut a, mut b, mut fold) = s.two_workers_counting(n1).await;
        // Stop `a` while more posts arrive.
        let mut more = s.producer(n1, n2);
        a.signal("TERM");
        s.note("SIGTERM to a");
        let status = a.wait(Duration::from_secs(60));
        assert!(status.success(), "a stopped with {status}");
        s.note("a stopped");
        finish_producer(&s, &mut more);
        fold.expect_exact(&s, &expected(0, n1 + n2)).await;
        assert!(b.running(), "b exited");
        let blog = b.log_text();
        assert!(
            assigned(&blog, &s.posts).len() == PARTITIONS as usize,
            "b did not take over every posts partition; its log:\n{}",
            tail(&b.log, 30)
        );
        // b has a's table partitions from the changelog: replayed at the
        // takeover, or read all along as their standby replica (then only
        // the tail, possibly nothing, is replayed).
        assert!(
            blog.lines().any(|l| {
                (l.contains("table recovery done") && !l.contains("records=0"))
                    || (l.contains("standby replicas") && l.contains("changelog["))
            }),
            "b neither recovered table records from the changelog after the takeover nor kept them as a standby; its log:\n{}",
            tail(&b.log, 30)
        );
        s.note(&s.check_commits_not_ahead().await);
        b.signal("TERM");
        let status = b.wait(Duration::from_secs(60));
        assert!(status.success(), "b stopped with {status}");
    });
}

#[test]
#[ignore = "needs a real Kafka-protocol broker: run scripts/test.sh"]
fn a_killed_worker_restarts_and_every_word_is_counted_at_least_once() {
    runtime().block_on(async {
        let Some(mut s) = Scenario::new("kill").await else {
            return;
        };
        let (n1, n2) = (800, 800);
        let (mut a, mut b, mut fold) = s.two_workers_counting(n1).await;
        let mut more = s.producer(n1, n2);
        a.signal("KILL");
        let status = a.wait(Duration::from_secs(10));
        assert!(!status.success(), "a was killed: {status}");
        s.note("a killed (SIGKILL)");
        s.note(&format!(
            "after the kill: {}",
            s.check_commits_not_ahead().await
        ));
        let mut a2 = s.worker("a-restarted");
        finish_producer(&s, &mut more);
        let want = expected(0, n1 + n2);
        fold.wait_for(&s, "every word counted at least once", PHASE * 2, |c| {
            missing(c, &want).is_empty()
        })
        .await;
        fold.catch_up().await;
        assert!(missing(&fold.counts, &want).is_empty());
        assert_eq!(
            fold.counts.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "the changelog has words that were never posted"
        );
        let extra: u64 = fold.total() - want.values().sum::<u64>();
        s.note(&format!("{extra} increments counted twice (at-least-once)"));
        s.note(&format!(
            "at the end: {}",
            s.check_commits_not_ahead().await
        ));
        for w in [&mut a2, &mut b] {
            assert!(
                w.running(),
                "{} exited; its log:\n{}",
                w.name,
                tail(&w.log, 30)
            );
            w.signal("TERM");
            let status = w.wait(Duration::from_secs(60));
            assert!(status.success(), "{} stopped with {status}", w.name);
        }
    });
}

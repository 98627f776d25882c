//! The guide examples in `examples/` run as tests, so they never rot: each
//! example's `build` defines the app on a private memory broker and the test
//! checks what the guide says it does, on virtual time.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/stream_basics.rs"]
#[allow(dead_code, unreachable_pub)]
mod stream_basics;

#[path = "../examples/processors.rs"]
#[allow(dead_code, unreachable_pub)]
mod processors;

#[path = "../examples/two_agents.rs"]
#[allow(dead_code, unreachable_pub)]
mod two_agents;

#[path = "../examples/events_and_acks.rs"]
#[allow(dead_code, unreachable_pub)]
mod events_and_acks;

#[path = "../examples/channel.rs"]
#[allow(dead_code, unreachable_pub)]
mod channel;

#[path = "../examples/logs_tasks.rs"]
#[allow(dead_code, unreachable_pub)]
mod logs_tasks;

#[path = "../examples/stream_operations.rs"]
#[allow(dead_code, unreachable_pub)]
mod stream_operations;
#[path = "../examples/windowed_views.rs"]
#[allow(dead_code, unreachable_pub)]
mod windowed_views;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use faustus::TopicPartition;
use faustus_testkit::TestContext;
use support::*;
use tokio::time::{sleep, sleep_until, Instant};

/// Sum of the committed offsets of `topic`'s partitions: how many of its
/// messages the group has committed.
fn committed_total(broker_name: &str, group: &str, topic: &str, partitions: u32) -> i64 {
    let b = broker(broker_name);
    (0..partitions)
        .filter_map(|p| b.committed(group, &TopicPartition::new(topic, p)))
        .sum()
}

// --- stream_basics ----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stream_basics_agent_and_task_see_withdrawals_and_raw_values_stay_bytes() {
    use stream_basics::Withdrawal;
    let name = unique("stream-basics");
    let ex = stream_basics::build(app_on(&name, "stream-basics").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    // The task subscribes when it starts; give the worker time to pick that up.
    sleep(Duration::from_secs(1)).await;

    for (account, amount) in [("alice", 10.0), ("bob", 2.5), ("alice", 5.0)] {
        let w = Withdrawal {
            account: account.into(),
            amount,
        };
        // `put` returns once every stream on the topic (agent and task) processed it.
        ctx.put(&ex.withdrawals, account.into(), w).await.unwrap();
    }
    let totals = ex.seen.totals.lock().clone();
    assert_eq!(
        totals,
        BTreeMap::from([("alice".to_string(), 15.0), ("bob".to_string(), 2.5)])
    );
    assert_eq!(*ex.seen.task_amounts.lock(), vec![10.0, 2.5, 5.0]);

    // Neither JSON nor UTF-8: only a raw topic passes it through untouched.
    let raw = vec![0xff, 0x00, b'{', 0x80];
    ctx.put(&ex.messages, (), raw.clone()).await.unwrap();
    assert_eq!(*ex.seen.raw_messages.lock(), vec![raw]);
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stream_basics_sample_feed_sends_one_withdrawal_and_message_per_second() {
    let name = unique("stream-basics-feed");
    let ex = stream_basics::build(app_on(&name, "stream-basics").build().unwrap()).unwrap();
    stream_basics::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    sleep(Duration::from_millis(3_500)).await;
    ctx.settle().await.unwrap();
    let totals = ex.seen.totals.lock().clone();
    assert_eq!(
        totals,
        BTreeMap::from([
            ("alice".to_string(), 10.0),
            ("bob".to_string(), 20.0),
            ("carol".to_string(), 30.0)
        ])
    );
    assert_eq!(ex.seen.raw_messages.lock().len(), 3);
    ctx.stop().await.unwrap();
}

// --- processors -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn processors_run_in_the_order_added_sync_then_async() {
    use processors::MyModel;
    let name = unique("processors");
    let ex = processors::build(app_on(&name, "processors").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let without_language = MyModel {
        account_id: "a1".into(),
        language: None,
        client: None,
    };
    let german = MyModel {
        account_id: "a2".into(),
        language: Some("DE".into()),
        client: None,
    };
    ctx.put(&ex.accounts, "a1".into(), without_language)
        .await
        .unwrap();
    ctx.put(&ex.accounts, "a2".into(), german).await.unwrap();

    let mut out: Vec<MyModel> = ctx
        .read(&ex.enriched)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    out.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    // The client lookup saw the defaulted language: the sync processor ran first.
    assert_eq!(
        out,
        vec![
            MyModel {
                account_id: "a1".into(),
                language: Some("US".into()),
                client: Some("a1@US".into()),
            },
            MyModel {
                account_id: "a2".into(),
                language: Some("DE".into()),
                client: Some("a2@DE".into()),
            },
        ]
    );
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn processors_sample_feed_is_enriched() {
    let name = unique("processors-feed");
    let ex = processors::build(app_on(&name, "processors").build().unwrap()).unwrap();
    processors::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    sleep(Duration::from_millis(2_500)).await;
    ctx.settle().await.unwrap();
    let mut clients: Vec<String> = ctx
        .read(&ex.enriched)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(_, v)| v.client)
        .collect();
    clients.sort();
    assert_eq!(clients, vec!["account-0@US", "account-1@DE"]);
    ctx.stop().await.unwrap();
}

// --- two_agents -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn two_agents_on_one_topic_both_see_every_order_and_it_is_committed() {
    let name = unique("two-agents-example");
    let ex = two_agents::build(app_on(&name, "two-agents").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let sent: Vec<String> = (0..5).map(|i| format!("order #{i}")).collect();
    for (i, order) in sent.iter().enumerate() {
        ctx.put(&ex.orders, format!("customer-{i}"), order.clone())
            .await
            .unwrap();
    }
    assert_eq!(*ex.seen_by_a.lock(), sent);
    assert_eq!(*ex.seen_by_b.lock(), sent);
    let partitions = ex.orders.partitions();
    eventually("all five orders committed", || {
        committed_total(&name, "two-agents", "orders", partitions) == 5
    })
    .await;
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn two_agents_sample_feed_reaches_both() {
    let name = unique("two-agents-feed");
    let ex = two_agents::build(app_on(&name, "two-agents").build().unwrap()).unwrap();
    two_agents::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    sleep(Duration::from_millis(2_500)).await;
    ctx.settle().await.unwrap();
    let expected = vec!["order #0".to_string(), "order #1".to_string()];
    assert_eq!(*ex.seen_by_a.lock(), expected);
    assert_eq!(*ex.seen_by_b.lock(), expected);
    ctx.stop().await.unwrap();
}

// --- events_and_acks --------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn events_expose_the_message_and_manual_or_scope_acks_let_the_commit_advance() {
    use events_and_acks::Payment;
    let name = unique("events");
    let ex = events_and_acks::build(app_on(&name, "events").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let report = ex.report.clone();

    // Three payments with one key: one partition, offsets 0, 1, 2.
    let payments: Vec<Payment> = (1..=3)
        .map(|n| Payment {
            account: "alice".into(),
            cents: n * 100,
        })
        .collect();
    let mut sent = Vec::new();
    for p in &payments {
        sent.push(
            ex.payments
                .send("alice".into(), p.clone())
                .await
                .unwrap()
                .await
                .unwrap(),
        );
    }
    let tp = TopicPartition::new("payments", sent[0].partition);
    assert_eq!(
        sent.iter().map(|md| md.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );

    // Offset 0 is fully acked although `audit` and `bookkeeper` are still in
    // their follow-up: its processing counts as done.
    ex.app.processed(&tp, 0).await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(report.audit_follow_ups.load(Ordering::SeqCst), 0);
    assert_eq!(report.bookkeeper_follow_ups.load(Ordering::SeqCst), 0);
    let b = broker(&name);
    assert_eq!(
        b.committed("events", &tp),
        Some(1),
        "offset 0 committed, never past offsets 1 and 2 still waiting"
    );

    // The ledger numbered every pair from 0, with its key.
    let ledger = report.ledger.lock().clone();
    assert_eq!(
        ledger,
        payments
            .iter()
            .enumerate()
            .map(|(i, p)| (i, Some("alice".to_string()), p.clone()))
            .collect::<Vec<_>>()
    );

    eventually("all follow-ups done", || {
        report.audit_follow_ups.load(Ordering::SeqCst) == 3
            && report.bookkeeper_follow_ups.load(Ordering::SeqCst) == 3
    })
    .await;
    eventually("everything committed", || {
        b.committed("events", &tp) == Some(3)
    })
    .await;

    // The raw message next to the decoded event.
    let audited = report.audited.lock().clone();
    assert_eq!(audited.len(), 3);
    for (a, (p, md)) in audited.iter().zip(payments.iter().zip(&sent)) {
        assert_eq!(a.topic, "payments");
        assert_eq!(a.partition, md.partition);
        assert_eq!(a.offset, md.offset);
        assert_eq!(
            a.key_bytes.as_deref(),
            Some(serde_json::to_vec("alice").unwrap().as_slice())
        );
        assert_eq!(
            a.value_bytes.as_deref(),
            Some(serde_json::to_vec(p).unwrap().as_slice())
        );
        assert_eq!(a.key.as_deref(), Some("alice"));
        assert_eq!(&a.value, p);
    }
    assert_eq!(*report.booked.lock(), payments);
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn events_sample_feed_is_audited_booked_and_numbered() {
    let name = unique("events-feed");
    let ex = events_and_acks::build(app_on(&name, "events").build().unwrap()).unwrap();
    events_and_acks::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let t0 = Instant::now();
    // Payments are sent at 2 s and 4 s; `audit` and `bookkeeper` spend 5 s on
    // each follow-up, `ledger` none.
    sleep_until(t0 + Duration::from_millis(4_500)).await;
    let numbers: Vec<usize> = ex.report.ledger.lock().iter().map(|l| l.0).collect();
    assert_eq!(numbers, vec![0, 1]);
    assert_eq!(ex.report.audited.lock().len(), 1);
    assert_eq!(ex.report.booked.lock().len(), 1);
    sleep_until(t0 + Duration::from_millis(7_500)).await;
    assert_eq!(ex.report.audited.lock().len(), 2);
    assert_eq!(ex.report.booked.lock().len(), 2);
    ctx.stop().await.unwrap();
}

// --- channel ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn channel_agent_receives_from_the_timer_once_a_second() {
    use channel::MyModel;
    let name = unique("channel");
    let ex = channel::build(app_on(&name, "channel").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let t0 = Instant::now();

    sleep_until(t0 + Duration::from_millis(900)).await;
    assert!(ex.received.lock().is_empty(), "the timer waits an interval");
    sleep_until(t0 + Duration::from_millis(1_100)).await;
    assert_eq!(*ex.received.lock(), vec![MyModel { x: 303 }]);
    sleep_until(t0 + Duration::from_millis(3_100)).await;
    assert_eq!(ex.received.lock().len(), 3);
    assert!(ex.channel.is_empty());
    ctx.stop().await.unwrap();
}

// --- logs_tasks -------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn logs_task_counts_records_and_errors_and_stats_dump_every_30s() {
    use logs_tasks::{LogRecord, DUMP_INTERVAL};
    let name = unique("logs");
    let ex = logs_tasks::build(app_on(&name, "logs").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let t0 = Instant::now();

    let records = [
        ("INFO", "started"),
        ("ERROR", "disk full"),
        ("DEBUG", "tick"),
        ("WARNING", "slow"),
        ("ERROR", "disk still full"),
        ("INFO", "stopping"),
    ];
    for (severity, message) in records {
        let record = LogRecord {
            severity: severity.into(),
            message: message.into(),
        };
        ctx.put(&ex.log_topic, "host-1".into(), record)
            .await
            .unwrap();
    }
    assert_eq!(ex.stats.logs_received.load(Ordering::SeqCst), 6);
    assert_eq!(ex.stats.errors.load(Ordering::SeqCst), 2);

    sleep_until(t0 + DUMP_INTERVAL - Duration::from_millis(500)).await;
    assert!(ex.stats.dumps.lock().is_empty(), "no dump before 30 s");
    sleep_until(t0 + DUMP_INTERVAL + Duration::from_millis(500)).await;
    assert_eq!(*ex.stats.dumps.lock(), vec![6]);
    sleep_until(t0 + DUMP_INTERVAL * 2 + Duration::from_millis(500)).await;
    assert_eq!(*ex.stats.dumps.lock(), vec![6, 6]);
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn logs_sample_feed_sends_one_record_a_second_one_in_five_an_error() {
    let name = unique("logs-feed");
    let ex = logs_tasks::build(app_on(&name, "logs").build().unwrap()).unwrap();
    logs_tasks::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    sleep(Duration::from_millis(5_500)).await;
    ctx.settle().await.unwrap();
    assert_eq!(ex.stats.logs_received.load(Ordering::SeqCst), 5);
    assert_eq!(ex.stats.errors.load(Ordering::SeqCst), 1);
    ctx.stop().await.unwrap();
}

// --- windowed_views ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn windowed_views_count_per_minute_read_relative_to_the_event_and_close_with_the_count() {
    use faustus::SendOptions;
    let name = unique("windowed-views-example");
    let ex = windowed_views::build(
        app_on(&name, "windowed-views")
            .table_cleanup_interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    // Event times in the past (a minute aligned): the wall clock's window
    // holds nothing, the event's window counts, 30 minutes before too.
    let minute = 60_000;
    let t0 = (ex.views.now_ms() / minute - 120) * minute;
    let view = |page: &str, user: &str| windowed_views::PageView {
        page: page.into(),
        user: user.into(),
    };
    let at = |t: i64| SendOptions::new().timestamp_ms(t);
    for (t, page, user) in [
        (t0 + 1_000, "home", "u1"),
        (t0 + 2_000, "home", "u2"),
        (t0 + 3_000, "about", "u1"),
        (t0 + 30 * minute + 5_000, "home", "u3"),
    ] {
        ex.page_views
            .send_with(Some(page.to_string()), view(page, user), at(t))
            .await
            .unwrap();
    }
    ctx.settle().await.unwrap();
    let printed: Vec<(String, u64, u64, u64)> = ex
        .printed
        .lock()
        .iter()
        .map(|p| (p.page.clone(), p.now, p.current, p.delta_30min))
        .collect();
    // In order per page (pages may sit in different partitions).
    let of = |page: &str| -> Vec<(u64, u64, u64)> {
        printed
            .iter()
            .filter(|p| p.0 == page)
            .map(|p| (p.1, p.2, p.3))
            .collect()
    };
    assert_eq!(of("home"), vec![(0, 1, 0), (0, 2, 0), (0, 1, 2)]);
    assert_eq!(of("about"), vec![(0, 1, 0)]);
    // A view two hours later: the first minute's windows expire (an hour
    // after their end) and close with their counts.
    ex.page_views
        .send_with(
            Some("home".into()),
            view("home", "u4"),
            at(t0 + 120 * minute),
        )
        .await
        .unwrap();
    ctx.settle().await.unwrap();
    sleep(Duration::from_secs(2)).await;
    let mut closed = ex.closed.lock().clone();
    closed.sort_by_key(|(_, w, _)| w.start_ms);
    let window = |start: i64| faustus::WindowRange {
        start_ms: start,
        end_ms: start + minute,
    };
    let home: Vec<_> = closed.iter().filter(|c| c.0 == "home").cloned().collect();
    assert_eq!(
        home,
        vec![
            ("home".to_string(), window(t0), 2),
            ("home".to_string(), window(t0 + 30 * minute), 1),
        ]
    );
    ctx.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn windowed_views_sample_feed_counts_the_current_minute() {
    let name = unique("windowed-views-feed");
    let ex = windowed_views::build(app_on(&name, "windowed-views").build().unwrap()).unwrap();
    windowed_views::feed_samples(&ex);
    let ctx = TestContext::start(&ex.app).await.unwrap();
    sleep(Duration::from_millis(3_500)).await;
    ctx.settle().await.unwrap();
    let printed = ex.printed.lock().clone();
    assert_eq!(printed.len(), 3, "{printed:?}");
    assert_eq!(
        printed.iter().map(|p| p.page.as_str()).collect::<Vec<_>>(),
        ["page-0", "page-1", "page-2"]
    );
    ctx.stop().await.unwrap();
}

// --- stream_operations ------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stream_operations_group_by_through_take_echo_enumerate_and_combine() {
    use stream_operations::Order;
    let name = unique("stream-ops");
    let ex = stream_operations::build(app_on(&name, "stream-ops").build().unwrap()).unwrap();
    let ctx = TestContext::start(&ex.app).await.unwrap();
    let order = |i: u32| Order {
        account_id: format!("account-{}", i % 3),
        product_id: format!("product-{}", i % 2),
        amount: i % 4,
        price: 1.5,
    };
    let t0 = tokio::time::Instant::now();
    for i in 0..12u32 {
        let key = format!("order-{i}");
        ctx.put(&ex.orders, key.clone(), order(i)).await.unwrap();
        ctx.put(&ex.source, key.clone(), order(i)).await.unwrap();
        ex.bulk.send(key.clone(), order(i)).await.unwrap();
        ctx.put(&ex.echo_source, key.clone(), order(i))
            .await
            .unwrap();
        ctx.put(&ex.topic1, key.clone(), order(i)).await.unwrap();
        ctx.put(&ex.topic2, key, order(i + 100)).await.unwrap();
    }
    ctx.settle().await.unwrap();

    // group_by: each account's orders on one repartition partition, totals right.
    eventually("grouped", || {
        ex.seen
            .account_partition
            .lock()
            .values()
            .map(Vec::len)
            .sum::<usize>()
            == 12
    })
    .await;
    let totals = ex.seen.totals.lock().clone();
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..12u32 {
        *expected.entry(format!("account-{}", i % 3)).or_default() += i % 4;
    }
    assert_eq!(totals, expected);
    for parts in ex.seen.account_partition.lock().values() {
        assert!(parts.windows(2).all(|w| w[0] == w[1]));
    }
    assert!(broker(&name)
        .topics()
        .contains(&"process-orders-account_id-repartition".to_string()));

    // through('foo') then group_by then items(): empty orders filtered out.
    eventually("forwarded", || ex.seen.forwarded.lock().len() == 9).await;
    for (key, o) in ex.seen.forwarded.lock().iter() {
        assert_eq!(key.as_deref(), Some(o.product_id.as_str()));
        assert!(o.amount > 0);
    }

    // take(100, within=10): the 12 orders come as one batch 10 s after the first.
    sleep_until(t0 + Duration::from_secs(11)).await;
    assert_eq!(*ex.seen.batches.lock(), vec![(1, 12)]);

    // echo: both copies, counted from 1.
    let copied: Vec<u64> = ex.seen.copied.lock().iter().map(|(n, _)| *n).collect();
    assert_eq!(copied, (1..=12).collect::<Vec<u64>>());
    let b = broker(&name);
    for copy in ["source-copy-1", "source-copy-2"] {
        let n: usize = (0..b.partition_count(copy).unwrap())
            .map(|p| b.messages(copy, p).len())
            .sum();
        assert_eq!(n, 12, "{copy}");
    }

    // s1 & s2: the orders of both topics.
    eventually("combined", || ex.seen.combined.lock().len() == 24).await;
    ctx.stop().await.unwrap();
}

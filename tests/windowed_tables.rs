//! Windowed tables on virtual time: updates per window, reads relative to
//! the event, expiry with `on_window_close`, recovery of the windows.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faustus::prelude::*;
use faustus::TopicPartition;
use serde::{Deserialize, Serialize};
use support::*;

/// A multiple of every window size below.
const T0: i64 = 1_700_000_000_000;
const SEC: i64 = 1000;

type Closed = Arc<Mutex<Vec<(String, WindowRange, u64)>>>;
/// (page, and two reads made in the agent after each update).
type Seen = Arc<Mutex<Vec<(String, Option<u64>, Option<u64>)>>>;

/// An `on_window_close` callback that records every close in `closed`.
fn record_closes(closed: &Closed) -> impl Fn(&String, WindowRange, &u64) + Send + Sync + 'static {
    let closed = closed.clone();
    move |k, r, v| closed.lock().unwrap().push((k.clone(), r, *v))
}

struct Views {
    app: App,
    views: Topic<String, u64>,
    tumbling: WindowedTable<String, u64>,
    hopping: WindowedTable<String, u64>,
    closed: Closed,
    /// (page, current(), delta(10 s)) read in the agent after each update.
    seen: Seen,
}

/// Page views counted per 10 s (tumbling, expires 30 s) and per 10 s every 5 s (hopping).
fn views_app(broker_name: &str) -> Views {
    let app = app_on(broker_name, "windows")
        .topic_partitions(2u32)
        .table_cleanup_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let views = app.topic::<String, u64>("views").build().unwrap();
    let closed: Closed = Arc::default();
    let tumbling = app
        .table::<String, u64>("tumbling")
        .with_default()
        .tumbling(Duration::from_secs(10), Duration::from_secs(30))
        .on_window_close(record_closes(&closed))
        .build()
        .unwrap();
    let hopping = app
        .table::<String, u64>("hopping")
        .with_default()
        .hopping(
            Duration::from_secs(10),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
        .build()
        .unwrap();
    let seen: Seen = Arc::default();
    app.agent::<String, u64>("count")
        .on(&views)
        .build({
            let (tumbling, hopping, seen) = (tumbling.clone(), hopping.clone(), seen.clone());
            move |s| {
                let (tumbling, hopping, seen) = (tumbling.clone(), hopping.clone(), seen.clone());
                async move {
                    let mut items = s.items();
                    while let Some((page, n)) = items.next().await {
                        let page = page.unwrap_or_default();
                        tumbling.update(&page, |c| *c += n).await?;
                        hopping.update(&page, |c| *c += n).await?;
                        let w = tumbling.get(&page);
                        let current = w.current().await?;
                        let before = w.delta(Duration::from_secs(10)).await?;
                        seen.lock().unwrap().push((page, current, before));
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    Views {
        app,
        views,
        tumbling,
        hopping,
        closed,
        seen,
    }
}

async fn view_at(v: &Views, page: &str, t: i64) {
    let md = v
        .views
        .send_with(
            Some(page.to_string()),
            1,
            SendOptions::new().timestamp_ms(t),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    v.app
        .processed(&TopicPartition::new("views", md.partition), md.offset)
        .await;
}

fn range(start: i64, end: i64) -> WindowRange {
    WindowRange {
        start_ms: start,
        end_ms: end,
    }
}

#[tokio::test(start_paused = true)]
async fn updates_go_to_every_window_of_the_event_time_and_expired_windows_close_with_their_value() {
    let name = unique("windows");
    let v = views_app(&name);
    let w = start(&v.app).await;
    view_at(&v, "a", T0 + SEC).await;
    view_at(&v, "a", T0 + 2 * SEC).await;
    view_at(&v, "b", T0 + 3 * SEC).await;
    view_at(&v, "a", T0 + 12 * SEC).await;

    // Reads relative to the event: current() is the event's window,
    // delta(10 s) the one before.
    let seen = v.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("a".into(), Some(1), None),
            ("a".into(), Some(2), None),
            ("b".into(), Some(1), None),
            ("a".into(), Some(1), Some(2)),
        ]
    );
    let a = v.tumbling.get(&"a".to_string());
    assert_eq!(a.at(T0 + 5 * SEC).await.unwrap(), Some(2));
    assert_eq!(a.at(T0 + 15 * SEC).await.unwrap(), Some(1));
    assert_eq!(
        v.tumbling.windows(&"a".to_string()).await.unwrap(),
        vec![
            (range(T0, T0 + 10 * SEC), 2),
            (range(T0 + 10 * SEC, T0 + 20 * SEC), 1)
        ]
    );
    // Hopping: each view counts in the two 10 s windows that contain it.
    assert_eq!(
        v.hopping.windows(&"a".to_string()).await.unwrap(),
        vec![
            (range(T0 - 5 * SEC, T0 + 5 * SEC), 2),
            (range(T0, T0 + 10 * SEC), 2),
            (range(T0 + 5 * SEC, T0 + 15 * SEC), 1),
            (range(T0 + 10 * SEC, T0 + 20 * SEC), 1),
        ]
    );

    // Nothing expired yet: the latest event time is T0 + 12 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(v.closed.lock().unwrap().is_empty());

    // Events at T0 + 45 s in both partitions: windows ending by T0 + 15 s
    // expire (30 s after their end).
    for page in ["a", "b", "c", "d"] {
        view_at(&v, page, T0 + 45 * SEC).await;
    }
    eventually("the first windows to close", || {
        v.closed.lock().unwrap().len() == 2
    })
    .await;
    let mut closed = v.closed.lock().unwrap().clone();
    closed.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        closed,
        vec![
            ("a".into(), range(T0, T0 + 10 * SEC), 2),
            ("b".into(), range(T0, T0 + 10 * SEC), 1),
        ]
    );
    assert_eq!(a.at(T0 + 5 * SEC).await.unwrap(), None);
    assert_eq!(a.at(T0 + 15 * SEC).await.unwrap(), Some(1));
    // A late event for an expired window changes nothing.
    view_at(&v, "a", T0 + SEC).await;
    assert_eq!(a.at(T0 + 5 * SEC).await.unwrap(), None);
    w.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn windows_recovered_by_another_worker_still_expire_and_close() {
    let name = unique("windows-recovery");
    let v1 = views_app(&name);
    let w1 = start(&v1.app).await;
    view_at(&v1, "a", T0 + SEC).await;
    view_at(&v1, "a", T0 + 2 * SEC).await;
    // Let a commit write the changelog, then stop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w1.stop().await.unwrap();

    // A fresh worker (memory store: empty) recovers the windows from the
    // changelog; once time moves on, it closes them with their value.
    let v2 = views_app(&name);
    let w2 = start(&v2.app).await;
    assert_eq!(
        v2.tumbling
            .get(&"a".to_string())
            .at(T0 + SEC)
            .await
            .unwrap(),
        Some(2)
    );
    for page in ["a", "b", "c", "d"] {
        view_at(&v2, page, T0 + 100 * SEC).await;
    }
    eventually("the recovered window to close", || {
        v2.closed
            .lock()
            .unwrap()
            .contains(&("a".into(), range(T0, T0 + 10 * SEC), 2))
    })
    .await;
    w2.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn relative_to_now_windows_follow_the_clock() {
    let name = unique("windows-now");
    let app = app_on(&name, "clock")
        .table_cleanup_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let hits = app
        .table::<String, u64>("hits")
        .with_default()
        .tumbling(Duration::from_secs(60), Duration::from_secs(60))
        .relative_to_now()
        .build()
        .unwrap();
    // Table partitions are served along with the app's source partitions.
    let clicks = app.topic::<String, u64>("clicks").build().unwrap();
    app.agent::<String, u64>("ignore")
        .on(&clicks)
        .build(|s| async move {
            let mut items = s.items();
            while items.next().await.is_some() {}
            Ok(())
        })
        .unwrap();
    let w = start(&app).await;
    // Outside a stream the key's partition takes the write.
    hits.update(&"x".to_string(), |n| *n += 1).await.unwrap();
    hits.update(&"x".to_string(), |n| *n += 1).await.unwrap();
    let x = hits.get(&"x".to_string());
    assert_eq!(x.now().await.unwrap(), Some(2));
    assert_eq!(x.value().await.unwrap(), Some(2));
    // Two minutes later the window is gone.
    tokio::time::sleep(Duration::from_secs(130)).await;
    assert_eq!(x.now().await.unwrap(), None);
    assert_eq!(x.delta(Duration::from_secs(130)).await.unwrap(), None);
    assert!(hits.windows(&"x".to_string()).await.unwrap().is_empty());
    w.stop().await.unwrap();
}

#[test]
fn a_zero_window_is_a_clear_error() {
    let app = faustus::app("bad-window")
        .env(Default::default())
        .broker("memory://")
        .store("memory://")
        .build()
        .unwrap();
    let e = app
        .table::<String, u64>("t")
        .tumbling(Duration::ZERO, Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("\"t\""), "{e}");
    assert!(e.to_string().contains("window size"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn sessions_grow_merge_when_bridged_and_close_with_the_merged_value() {
    let name = unique("sessions");
    let app = app_on(&name, "sessions")
        .topic_partitions(1u32)
        .table_cleanup_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let clicks = app.topic::<String, u64>("clicks").build().unwrap();
    let closed: Closed = Arc::default();
    let sessions = app
        .table::<String, u64>("sessions")
        .with_default()
        .session(Duration::from_secs(10), Duration::from_secs(30), |a, b| {
            a + b
        })
        .on_window_close(record_closes(&closed))
        .build()
        .unwrap();
    app.agent::<String, u64>("count")
        .on(&clicks)
        .build({
            let sessions = sessions.clone();
            move |s| {
                let sessions = sessions.clone();
                async move {
                    let mut items = s.items();
                    while let Some((user, n)) = items.next().await {
                        sessions
                            .update(&user.unwrap_or_default(), |c| *c += n)
                            .await?;
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let w = start(&app).await;
    let click = |user: &str, t: i64| {
        let (clicks, app) = (clicks.clone(), app.clone());
        let user = user.to_string();
        async move {
            let md = clicks
                .send_with(Some(user), 1, SendOptions::new().timestamp_ms(t))
                .await
                .unwrap()
                .await
                .unwrap();
            app.processed(&TopicPartition::new("clicks", md.partition), md.offset)
                .await;
        }
    };
    let u = "u".to_string();
    click("u", T0).await;
    click("u", T0 + 5 * SEC).await;
    click("u", T0 + 30 * SEC).await;
    assert_eq!(
        sessions.windows(&u).await.unwrap(),
        vec![
            (range(T0, T0 + 15 * SEC), 2),
            (range(T0 + 30 * SEC, T0 + 40 * SEC), 1)
        ]
    );
    // Within the gap before the second session: it grows backwards.
    click("u", T0 + 22 * SEC).await;
    // Within the gap of both: they merge (2 + 2, plus this click).
    click("u", T0 + 13 * SEC).await;
    assert_eq!(
        sessions.windows(&u).await.unwrap(),
        vec![(range(T0, T0 + 40 * SEC), 5)]
    );
    let set = sessions.get(&u);
    assert_eq!(set.at(T0 + 39 * SEC).await.unwrap(), Some(5));
    assert_eq!(set.at(T0 + 40 * SEC).await.unwrap(), None);
    // The changelog folds to the one merged session.
    let b = broker(&name);
    let mut fold: BTreeMap<(String, i64, i64), Option<u64>> = BTreeMap::new();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in b.messages(sessions.table().changelog_topic(), 0) {
        let k = serde_json::from_slice(m.key.as_deref().unwrap()).unwrap();
        fold.insert(k, m.value.map(|v| serde_json::from_slice(&v).unwrap()));
    }
    fold.retain(|_, v| v.is_some());
    assert_eq!(
        fold,
        BTreeMap::from([(("u".to_string(), T0, T0 + 40 * SEC), Some(5))])
    );
    // Time moves on: the session closes with its merged value.
    click("v", T0 + 100 * SEC).await;
    eventually("the session to close", || {
        closed
            .lock()
            .unwrap()
            .contains(&("u".into(), range(T0, T0 + 40 * SEC), 5))
    })
    .await;
    assert!(sessions.windows(&u).await.unwrap().is_empty());
    w.stop().await.unwrap();
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    page: String,
    created_ms: i64,
}

struct OrdersApp {
    app: App,
    orders: Topic<String, Order>,
    views: WindowedTable<String, u64>,
    closed: Closed,
    /// (page, value(), current()) read in the agent after each update.
    seen: Seen,
}

/// Orders counted per page in 10 s tumbling windows (expiring 30 s after
/// their end) of the order's `created_ms`, not of the message timestamp.
fn orders_app(broker_name: &str) -> OrdersApp {
    let app = app_on(broker_name, "orders")
        .topic_partitions(1u32)
        .table_cleanup_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let orders = app.topic::<String, Order>("orders").build().unwrap();
    let closed: Closed = Arc::default();
    let views = app
        .table::<String, u64>("views")
        .with_default()
        .tumbling(Duration::from_secs(10), Duration::from_secs(30))
        .relative_to_field(|o: &Order| o.created_ms)
        .on_window_close(record_closes(&closed))
        .build()
        .unwrap();
    let seen: Seen = Arc::default();
    app.agent::<String, Order>("count")
        .on(&orders)
        .build({
            let (views, seen) = (views.clone(), seen.clone());
            move |s| {
                let (views, seen) = (views.clone(), seen.clone());
                async move {
                    let mut orders = s;
                    while let Some(order) = orders.next().await {
                        views.update(&order.page, |n| *n += 1).await?;
                        let w = views.get(&order.page);
                        let value = w.value().await?;
                        let current = w.current().await?;
                        seen.lock().unwrap().push((order.page, value, current));
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    OrdersApp {
        app,
        orders,
        views,
        closed,
        seen,
    }
}

/// Send an order created at `created_ms` in a message stamped `message_ms`
/// and wait until it is processed.
async fn order_at(o: &OrdersApp, page: &str, created_ms: i64, message_ms: i64) {
    let order = Order {
        page: page.into(),
        created_ms,
    };
    let md = o
        .orders
        .send_with(
            Some(page.to_string()),
            order,
            SendOptions::new().timestamp_ms(message_ms),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    o.app
        .processed(&TopicPartition::new("orders", md.partition), md.offset)
        .await;
}

#[tokio::test(start_paused = true)]
async fn relative_to_field_updates_and_reads_the_windows_of_the_value_field_not_the_message_timestamp(
) {
    let name = unique("windows-field");
    let o = orders_app(&name);
    let w = start(&o.app).await;
    // Every message is stamped much later than its order was created.
    let stamped = T0 + 500 * SEC;
    order_at(&o, "a", T0 + SEC, stamped).await;
    order_at(&o, "a", T0 + 2 * SEC, stamped).await;
    order_at(&o, "b", T0 + 3 * SEC, stamped).await;
    order_at(&o, "a", T0 + 12 * SEC, stamped).await;

    let a = "a".to_string();
    assert_eq!(
        o.views.windows(&a).await.unwrap(),
        vec![
            (range(T0, T0 + 10 * SEC), 2),
            (range(T0 + 10 * SEC, T0 + 20 * SEC), 1)
        ]
    );
    assert_eq!(
        o.views.windows(&"b".to_string()).await.unwrap(),
        vec![(range(T0, T0 + 10 * SEC), 1)]
    );
    let set = o.views.get(&a);
    assert_eq!(set.at(T0 + 5 * SEC).await.unwrap(), Some(2));
    assert_eq!(set.at(stamped).await.unwrap(), None);
    // value() in the agent read the window of the order's time; current()
    // the window of the message timestamp, where nothing was counted.
    assert_eq!(
        o.seen.lock().unwrap().clone(),
        vec![
            ("a".into(), Some(1), None),
            ("a".into(), Some(2), None),
            ("b".into(), Some(1), None),
            ("a".into(), Some(1), None),
        ]
    );
    // Nothing expired: the latest time seen is the latest order's, T0 + 12 s
    // (the message timestamps would have expired every window).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(o.closed.lock().unwrap().is_empty());
    assert_eq!(o.views.windows(&a).await.unwrap().len(), 2);

    // Outside a stream there is no value: the wall clock is used.
    let z = "z".to_string();
    o.views.update(&z, |n| *n += 1).await.unwrap();
    assert_eq!(o.views.get(&z).now().await.unwrap(), Some(1));
    w.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn relative_to_field_windows_expire_by_the_field_time_and_close_with_their_value() {
    let name = unique("windows-field-expiry");
    let o = orders_app(&name);
    let w = start(&o.app).await;
    // Every message is stamped at T0: only the field time moves on.
    order_at(&o, "a", T0 + SEC, T0).await;
    order_at(&o, "a", T0 + 2 * SEC, T0).await;
    order_at(&o, "a", T0 + 12 * SEC, T0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(o.closed.lock().unwrap().is_empty());

    // An order created at T0 + 45 s: windows ending by T0 + 15 s expire.
    order_at(&o, "b", T0 + 45 * SEC, T0).await;
    eventually("the first window to close", || {
        !o.closed.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        o.closed.lock().unwrap().clone(),
        vec![("a".into(), range(T0, T0 + 10 * SEC), 2)]
    );
    let a = "a".to_string();
    assert_eq!(
        o.views.windows(&a).await.unwrap(),
        vec![(range(T0 + 10 * SEC, T0 + 20 * SEC), 1)]
    );
    // A late order (by its field time) changes nothing.
    order_at(&o, "a", T0 + 3 * SEC, T0 + 1000 * SEC).await;
    assert_eq!(o.views.get(&a).at(T0 + 3 * SEC).await.unwrap(), None);
    w.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_value_without_the_time_field_fails_the_update_naming_table_and_message_and_the_agent_goes_on(
) {
    let name = unique("windows-field-bad");
    let app = app_on(&name, "orders-bad")
        .topic_partitions(1u32)
        .build()
        .unwrap();
    // The stream takes any JSON; the table wants an `Order`'s `created_ms`.
    let orders = app
        .topic::<String, serde_json::Value>("orders")
        .build()
        .unwrap();
    let views = app
        .table::<String, u64>("views")
        .with_default()
        .tumbling(Duration::from_secs(10), Duration::from_secs(30))
        .relative_to_field(|o: &Order| o.created_ms)
        .build()
        .unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    app.agent::<String, serde_json::Value>("count")
        .on(&orders)
        .build({
            let (views, errors) = (views.clone(), errors.clone());
            move |s| {
                let (views, errors) = (views.clone(), errors.clone());
                async move {
                    let mut items = s.items();
                    while let Some((page, _)) = items.next().await {
                        let page = page.unwrap_or_default();
                        if let Err(e) = views.update(&page, |n| *n += 1).await {
                            let kind = if matches!(e, Error::EventTime { .. }) {
                                "EventTime"
                            } else {
                                "other"
                            };
                            errors.lock().unwrap().push(format!("{kind}: {e}"));
                            return Err(e);
                        }
                    }
                    Ok(())
                }
            }
        })
        .unwrap();
    let w = start(&app).await;
    let mut last = None;
    for (i, value) in [
        serde_json::json!({"page": "a", "created_ms": T0 + SEC}),
        serde_json::json!({"page": "a", "created_at": "yesterday"}),
        serde_json::json!({"page": "a", "created_ms": T0 + 2 * SEC}),
    ]
    .into_iter()
    .enumerate()
    {
        let md = orders
            .send_with(
                Some("a".to_string()),
                value,
                SendOptions::new().timestamp_ms(T0 + 500 * SEC + i as i64),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        last = Some(md);
    }
    let last = last.unwrap();
    app.processed(&TopicPartition::new("orders", 0), last.offset)
        .await;

    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 1, "{errors:?}");
    for part in ["EventTime: ", "\"views\"", "orders[0]@1", "created_ms"] {
        assert!(errors[0].contains(part), "{part} in {}", errors[0]);
    }
    let failures = app.monitor().failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].event, "orders[0]@1");
    assert!(
        failures[0].message.contains("created_ms"),
        "{}",
        failures[0].message
    );
    // The agent was restarted and counted the orders around the bad one.
    assert_eq!(
        views.windows(&"a".to_string()).await.unwrap(),
        vec![(range(T0, T0 + 10 * SEC), 2)]
    );
    w.stop().await.unwrap();
}

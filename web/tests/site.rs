//! `faustus_web::site` served by the hyper driver for a running app on the
//! memory broker: the built-in endpoints' paths, statuses, JSON shapes,
//! content types and metric families, and the app's pages winning over
//! built-ins.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use faustus_core::{web, App, Registry, Topic};
use faustus_testkit::web_conformance::{get, request, unique_name, Reply};

fn app() -> (App, Topic<String, u64>) {
    let registry = Registry::new();
    faustus_transport_memory::register(&registry);
    faustus_store_memory::register(&registry);
    faustus_web::register(&registry);
    let app = App::builder("site-app")
        .registry(registry)
        .site(faustus_web::site)
        .env(Default::default())
        .broker(format!("memory://{}", unique_name("site")))
        .store("memory://")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(0u16)
        .broker_commit_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let events = app.topic::<String, u64>("events").build().unwrap();
    let counts = app
        .table::<String, u64>("counts")
        .with_default()
        .build()
        .unwrap();
    app.agent::<String, u64>("count")
        .on(&events)
        .build(move |s| {
            let counts = counts.clone();
            async move {
                let mut items = s.items();
                while let Some((key, n)) = futures::StreamExt::next(&mut items).await {
                    counts.update(&key.unwrap_or_default(), |c| *c += n).await?;
                }
                Ok(())
            }
        })
        .unwrap();
    (app, events)
}

fn addr(app: &App) -> std::net::SocketAddr {
    app.web_url()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

async fn until(app: &App, path: &str, ok: impl Fn(&Reply) -> bool) -> Reply {
    let mut last = None;
    for _ in 0..500 {
        let r = get(addr(app), path).await.unwrap();
        if ok(&r) {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never answered as expected; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_endpoints_over_hyper() {
    let (app, events) = app();
    // The app's page wins over the built-in at the same path.
    app.page("/health", |_app, _r| async { Ok(web::text("mine")) })
        .unwrap();
    // Before the worker runs, handle_request answers with the driver's site.
    let r = app
        .handle_request(
            http::Request::get("/ready")
                .body(bytes::Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    let worker = app.start().await.unwrap();
    worker.ready().await.unwrap();
    let a = addr(&app);
    assert_eq!(get(a, "/health").await.unwrap().text(), "mine");
    assert_eq!(get(a, "/ready").await.unwrap().text(), "ready\n");
    for (k, n) in [("a", 2u64), ("b", 3), ("a", 1)] {
        events.send(k.to_string(), n).await.unwrap();
    }
    let r = until(&app, "/table/counts/a", |r| r.text() == "3").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = get(a, "/table/counts/zebra").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.text().contains("zebra") && r.text().contains("counts"));
    let r = get(a, "/table/nope/a").await.unwrap();
    assert_eq!(
        (r.status, r.text()),
        (404, "no table named \"nope\"\n".into())
    );

    // /stats and / (JSON unless HTML is accepted).
    let stats = until(&app, "/stats", |r| {
        r.text().contains("\"messages_received\":3")
    })
    .await;
    let v: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    for key in [
        "app",
        "ready",
        "leader",
        "agents",
        "assigned",
        "tables",
        "counters",
        "recovery",
        "received_by_topic",
        "sent_by_topic",
        "lag",
        "committed",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["app"], "site-app");
    let agent = app.agents()[0].name.clone();
    assert_eq!(
        v["agents"][0],
        serde_json::json!({"name": agent, "topic": "events"})
    );
    assert_eq!(v["tables"][0]["name"], "counts");
    assert_eq!(v["tables"][0]["changelog"], "site-app-counts-changelog");
    assert_eq!(v["received_by_topic"]["topic=events"], 3);
    let root: serde_json::Value = serde_json::from_slice(&get(a, "/").await.unwrap().body).unwrap();
    assert_eq!(root["app"], "site-app");
    let html = request(a, "GET", "/", &[("accept", "text/html")], b"")
        .await
        .unwrap();
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(html.text().contains("<title>site-app · Faustus</title>"));

    // /router/ (with or without the slash).
    for path in ["/router", "/router/"] {
        let r = until(&app, path, |r| r.text().contains("\"assigned\":[\"events")).await;
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["this_worker"], app.worker_id());
        assert_eq!(v["workers"][0]["id"], app.worker_id());
    }

    // /metrics.
    let m = until(&app, "/metrics", |r| {
        r.text().contains("faustus_commit_seconds_count")
            && r.text().contains("faustus_consumer_lag{")
    })
    .await;
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = m.text();
    let agents_line = format!("# HELP faustus_agents Agents defined, by name and topic.\n# TYPE faustus_agents gauge\nfaustus_agents{{agent=\"{agent}\",topic=\"events\",recent_failures=\"0\"}} 1\n");
    for needle in [
        "# HELP faustus_messages_received_all_total Messages the consumer delivered.\n# TYPE faustus_messages_received_all_total counter\nfaustus_messages_received_all_total 3\n",
        agents_line.as_str(),
        "# TYPE faustus_messages_received_total counter\nfaustus_messages_received_total{topic=\"events\"} 3\n",
        "faustus_agent_events_total{agent=\"count\"} 3\n",
        "faustus_ready 1\n",
        "faustus_leader ",
        "# TYPE faustus_commit_seconds histogram\n",
        "# TYPE faustus_commit_seconds_max gauge\n",
        "faustus_committed_offset{topic=\"events\",partition=\"",
        "# HELP faustus_consumer_lag High watermark minus committed offset, by partition.\n",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // Built-ins answer GET only.
    let r = request(a, "POST", "/metrics", &[], b"").await.unwrap();
    assert_eq!(
        (r.status, r.text()),
        (405, "/metrics only answers GET\n".into())
    );
    assert_eq!(get(a, "/nothing/here").await.unwrap().status, 404);

    worker.stop().await.unwrap();
    assert!(app.web_url().is_none());
    assert!(
        get(a, "/stats").await.is_err(),
        "the server stopped with the worker"
    );
}

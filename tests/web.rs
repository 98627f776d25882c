//! The worker's web server over real HTTP on 127.0.0.1 (random ports): the
//! guide's `/count/` page, path and query parameters, the built-in
//! endpoints, bad input, handler failures and graceful shutdown.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "../examples/word_count.rs"]
#[allow(dead_code, unreachable_pub)]
mod word_count;

use std::time::Duration;

use bytes::Bytes;
use faustus::{http, web, App, HttpClient};
use support::*;

/// The word-count app with its web server on a random local port.
fn word_count_app(broker: &str) -> word_count::WordCount {
    let app = app_on(broker, "web-wc")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(0u16)
        .build()
        .unwrap();
    word_count::build(app).unwrap()
}

async fn get(client: &HttpClient, app: &App, path: &str) -> (http::StatusCode, String) {
    let url = format!("{}{path}", app.web_url().expect("web server running"));
    client.get(&url).await.unwrap()
}

/// Poll (real time: the server is real) until `path` answers `expected`.
async fn until_body(client: &HttpClient, app: &App, path: &str, expected: &str) {
    let mut last = None;
    for _ in 0..500 {
        let r = get(client, app, path).await;
        if r.0 == http::StatusCode::OK && r.1 == expected {
            return;
        }
        last = Some(r);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{path} never answered {expected}; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_tables_and_builtin_endpoints_over_http() {
    let name = unique("web-pages");
    let wc = word_count_app(&name);
    let app = wc.app.clone();
    app.page("/hello/{name}/", |app, request| async move {
        let name = request.param("name")?.to_string();
        let times: usize = request.query_as("times")?.unwrap_or(1);
        Ok(web::json(
            &serde_json::json!({"hello": name.repeat(times), "app": app.id()}),
        ))
    })
    .unwrap();
    app.page("/echo", |_app, request| async move {
        #[derive(serde::Deserialize)]
        struct Echo {
            say: String,
        }
        let body: Echo = request.json()?;
        Ok(web::text(body.say))
    })
    .unwrap();
    app.page("/fails", |_app, _request| async move {
        Err(faustus::Error::State("the database is down".into()).into())
    })
    .unwrap();
    app.page("/panics", |_app, _request| async move {
        if std::hint::black_box(true) {
            panic!("handler bug");
        }
        Ok(web::text("unreachable"))
    })
    .unwrap();
    assert!(app
        .page("/hello/{name}/", |_a, _r| async { Ok(web::text("")) })
        .is_err());
    assert!(app.web_url().is_none(), "no server before the worker runs");

    let worker = start(&app).await;
    let base = app.web_url().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "the real port is known: {base}");
    let client = HttpClient::new();

    assert_eq!(get(&client, &app, "/health").await.0, 200);
    assert_eq!(
        get(&client, &app, "/ready").await,
        (http::StatusCode::OK, "ready\n".into())
    );

    // The guide's page, after the posts are counted.
    for (i, post) in ["the fox", "the dog and the fox"].iter().enumerate() {
        wc.posts
            .send(format!("p{i}"), post.to_string())
            .await
            .unwrap();
    }
    until_body(&client, &app, "/count/?word=the", r#"{"the":3}"#).await;
    until_body(&client, &app, "/count/?word=fox", r#"{"fox":2}"#).await;
    assert_eq!(
        get(&client, &app, "/count/?word=unseen").await.1,
        r#"{"unseen":0}"#
    );
    // The built-in table view.
    assert_eq!(get(&client, &app, "/table/word_counts/dog").await.1, "1");
    let (s, body) = get(&client, &app, "/table/word_counts/zebra").await;
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("zebra"), "{body}");
    let (s, body) = get(&client, &app, "/table/nope/dog").await;
    assert_eq!(s, 404);
    assert!(body.contains("nope"), "{body}");

    // Path and query parameters, percent-decoded.
    let (s, body) = get(&client, &app, "/hello/a%20b/?times=2").await;
    assert_eq!(s, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["hello"], "a ba b");
    assert_eq!(v["app"], "web-wc");

    // Bad input: 400 naming what was wrong.
    let (s, body) = get(&client, &app, "/count/").await;
    assert_eq!(s, 400);
    assert!(body.contains("word"), "{body}");
    let (s, body) = get(&client, &app, "/hello/x/?times=many").await;
    assert_eq!(s, 400);
    assert!(body.contains("times") && body.contains("many"), "{body}");
    let (s, _) = get(&client, &app, "/count/?word=%zz").await;
    assert_eq!(s, 400);
    let post = |body: &'static [u8]| {
        http::Request::post(format!("{base}/echo"))
            .body(Bytes::from_static(body))
            .unwrap()
    };
    let r = client.send(post(br#"{"say":"hi"}"#)).await.unwrap();
    assert_eq!((r.status().as_u16(), r.body().as_ref()), (200, &b"hi"[..]));
    let r = client.send(post(b"{not json")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(String::from_utf8_lossy(r.body()).contains("JSON"));
    // Bodies are size-limited (1 MiB by default).
    let big = http::Request::post(format!("{base}/echo"))
        .body(Bytes::from(vec![b'x'; 2 * 1024 * 1024]))
        .unwrap();
    assert_eq!(client.send(big).await.unwrap().status(), 413);
    assert_eq!(get(&client, &app, "/no/such/page").await.0, 404);
    let r = client
        .send(
            http::Request::delete(format!("{base}/metrics"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // A failing or panicking handler is a 500; the server keeps serving.
    let (s, body) = get(&client, &app, "/fails").await;
    assert_eq!(s, 500);
    assert!(body.contains("database is down"), "{body}");
    let (s, _) = get(&client, &app, "/panics").await;
    assert_eq!(s, 500);
    assert_eq!(get(&client, &app, "/health").await.0, 200);

    // Stats and metrics.
    let (s, body) = get(&client, &app, "/").await;
    assert_eq!(s, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["app"], "web-wc");
    assert_eq!(stats["ready"], true);
    assert!(stats["counters"]["messages_received"].as_u64().unwrap() >= 2 + 7);
    assert!(stats["agents"].as_array().unwrap().len() == 2, "{stats}");
    assert!(!stats["assigned"].as_array().unwrap().is_empty());
    let html = client
        .send(
            http::Request::get(format!("{base}/"))
                .header("accept", "text/html")
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(html.body()).contains("<title>web-wc"));
    let (s, metrics) = get(&client, &app, "/metrics").await;
    assert_eq!(s, 200);
    for needle in [
        "# TYPE faustus_messages_received_total counter",
        "faustus_messages_received_total{topic=\"posts\"} 2",
        "faustus_messages_sent_total{topic=\"web-wc-count_words\"} 7",
        "faustus_decode_errors_total 0",
        "faustus_rebalances_total",
        "faustus_ready 1",
        "faustus_dead_letters_total 0",
        "# TYPE faustus_agent_events_total counter",
        "faustus_agent_events_total{agent=\"shuffle_words\"} 2",
        "faustus_agent_events_total{agent=\"count_words\"} 7",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in\n{metrics}");
    }
    // Commits, committed offsets and lag appear after a commit.
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = get(&client, &app, "/metrics").await.1;
        if metrics.contains("faustus_consumer_lag{")
            && metrics.contains("faustus_commit_seconds_count")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("faustus_committed_offset{topic=\"posts\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("faustus_consumer_lag{topic=\"posts\""),
        "{metrics}"
    );
    // Stored table keys: the table's changes reach its store with the
    // commit that follows their events (a background flush).
    let keys = "faustus_table_keys{table=\"word_counts\"} 4";
    for _ in 0..200 {
        if metrics.contains(keys) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = get(&client, &app, "/metrics").await.1;
    }
    assert!(metrics.contains(keys), "{keys} missing in\n{metrics}");
    // Processing time per topic, and the words' topic was processed too.
    for topic in ["posts", "web-wc-count_words"] {
        let needle = format!("faustus_processing_seconds_count{{topic=\"{topic}\"}}");
        assert!(metrics.contains(&needle), "{needle} missing in\n{metrics}");
    }

    worker.stop().await.unwrap();
    assert!(
        app.web_url().is_none(),
        "the server stopped with the worker"
    );
    assert!(client.get(&format!("{base}/health")).await.is_err());

    // A new worker (its memory store empty) recovers the table from the
    // changelog; /metrics and /stats show that recovery.
    let wc2 = word_count_app(&name);
    let w2 = start(&wc2.app).await;
    let (_, metrics) = get(&client, &wc2.app, "/metrics").await;
    assert!(
        metrics.contains("faustus_recovery_running{table=\"word_counts\"} 0"),
        "{metrics}"
    );
    let (_, body) = get(&client, &wc2.app, "/stats").await;
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &stats["recovery"][0];
    assert_eq!(
        (r["table"].as_str(), r["state"].as_str()),
        (Some("word_counts"), Some("done")),
        "{stats}"
    );
    let total = r["total"].as_u64().unwrap();
    assert!(total >= 4, "{stats}");
    assert_eq!(r["done"].as_u64(), Some(total), "{stats}");
    assert!(
        metrics.contains(&format!(
            "faustus_recovery_records_done{{table=\"word_counts\"}} {total}"
        )),
        "{metrics}"
    );
    w2.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let name = unique("web-drain");
    let app = app_on(&name, "web-drain")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(0u16)
        .build()
        .unwrap();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = std::sync::Mutex::new(Some(entered_tx));
    app.page("/slow", move |_app, _request| {
        if let Some(tx) = entered_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(web::text("done"))
        }
    })
    .unwrap();
    let worker = start(&app).await;
    let url = format!("{}/slow", app.web_url().unwrap());
    let client = HttpClient::new();
    let request = tokio::spawn(async move { client.get(&url).await });
    entered_rx.await.unwrap();
    worker.stop().await.unwrap();
    let (status, body) = request.await.unwrap().unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_fails_the_worker_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let app = app_on(&unique("web-port"), "web-port")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(port)
        .build()
        .unwrap();
    let worker = app.start().await.unwrap();
    let err = worker.ready().await.unwrap_err().to_string();
    assert!(
        err.contains("web_port") && err.contains(&port.to_string()),
        "{err}"
    );
    assert!(worker.wait().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_after_recovery() {
    let name = unique("web-ready");
    let app = app_on(&name, "web-ready")
        .web_enabled(true)
        .web_host("127.0.0.1")
        .web_port(0u16)
        .build()
        .unwrap();
    // Answering without a running server: not ready.
    let r = app
        .handle_request(http::Request::get("/ready").body(Bytes::new()).unwrap())
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let worker = start(&app).await;
    let client = HttpClient::new();
    assert_eq!(get(&client, &app, "/ready").await.0, 200);
    worker.stop().await.unwrap();
    let r = app
        .handle_request(http::Request::get("/ready").body(Bytes::new()).unwrap())
        .await;
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_the_default_port_share_a_host() {
    let name = unique("web-default-port");
    let a = app_on(&name, "web-default")
        .web_enabled(true)
        .build()
        .unwrap();
    let b = app_on(&name, "web-default")
        .web_enabled(true)
        .build()
        .unwrap();
    assert_eq!(a.settings().web_port, 6066);
    let wa = start(&a).await;
    let wb = start(&b).await;
    let (ua, ub) = (a.web_url().unwrap(), b.web_url().unwrap());
    assert_ne!(ua, ub);
    let client = HttpClient::new();
    assert_eq!(client.get(&format!("{ua}/health")).await.unwrap().0, 200);
    assert_eq!(client.get(&format!("{ub}/health")).await.unwrap().0, 200);
    wb.stop().await.unwrap();
    wa.stop().await.unwrap();
}

/// Whether the cluster map shows `workers` workers sharing every partition
/// of the word-count table.
fn table_fully_owned(app: &App, workers: usize) -> bool {
    let map = app.cluster_map();
    map.workers().len() == workers
        && (0..8).all(|p| map.table_owner("word_counts", p).is_some())
        && map.workers().iter().all(|w| !w.tables.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_route_answers_from_the_owner_across_two_workers() {
    let name = unique("web-route");
    let a = word_count_app(&name);
    let b = word_count_app(&name);
    let wa = start(&a.app).await;
    let wb = start(&b.app).await;
    eventually_real("both workers share the table in both maps", || {
        table_fully_owned(&a.app, 2) && table_fully_owned(&b.app, 2)
    })
    .await;
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let post = words
        .iter()
        .enumerate()
        .flat_map(|(i, w)| std::iter::repeat_n(*w, i + 1))
        .collect::<Vec<_>>()
        .join(" ");
    a.posts.send("p".into(), post).await.unwrap();
    let client = HttpClient::new();
    let mut served_by = std::collections::BTreeSet::new();
    let mut forwarded = 0;
    for (i, w) in words.iter().enumerate() {
        let expected = format!(r#"{{"{w}":{}}}"#, i + 1);
        for app in [&a.app, &b.app] {
            until_body(&client, app, &format!("/count/?word={w}"), &expected).await;
            let r = client
                .send(
                    http::Request::get(format!("{}/count/?word={w}", app.web_url().unwrap()))
                        .body(Bytes::new())
                        .unwrap(),
                )
                .await
                .unwrap();
            let by = r.headers()["x-faustus-served-by"]
                .to_str()
                .unwrap()
                .to_string();
            if by != app.worker_id() {
                forwarded += 1;
            }
            served_by.insert(by);
        }
    }
    assert_eq!(
        served_by.len(),
        2,
        "both workers own some words: {served_by:?}"
    );
    assert_eq!(
        forwarded,
        words.len(),
        "each word is served here by one worker and forwarded by the other"
    );
    // A key that does not parse is a 400, before any routing.
    let (s, _) = get(&client, &a.app, "/count/").await;
    assert_eq!(s, 400);
    wb.stop().await.unwrap();
    // After B leaves, A owns everything again and answers alone.
    eventually_real("a owns the whole table", || table_fully_owned(&a.app, 1)).await;
    until_body(&client, &a.app, "/count/?word=theta", r#"{"theta":8}"#).await;
    wa.stop().await.unwrap();
}

/// Poll `cond` on real time (the servers are real) for at most 20 s.
async fn eventually_real(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_route_is_503_while_no_worker_owns_the_key() {
    let name = unique("web-route-none");
    let wc = word_count_app(&name);
    // No worker: the cluster map is empty, so nobody owns any key.
    let r = wc
        .app
        .handle_request(
            http::Request::get("/count/?word=fox")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(String::from_utf8_lossy(r.body()).contains("word_counts"));
}

//! `web-count`: the guide's `/count/?word=` page served by a worker, against
//! a bare hyper server answering the same lookup from a `HashMap`, and the
//! cost of `table_route`'s hop to the key's owner.
//!
//! Setup: a word-count app (table `word_counts`, the `/count/` page routed
//! with `table_route`) on a private `memory://` broker; `VOCABULARY` words
//! are counted first. The load: `CLIENTS` tasks, each on one keep-alive
//! connection, send N requests in all for random words and check every
//! answer is 200. Measured: requests per second.
//!
//! * local: every request answered by the worker that owns the word;
//!   baseline: the bare server (hyper 1 `http1::serve_connection` +
//!   `service_fn`, the same JSON body) on the same machine in the same run.
//!   Target ≥ 50%.
//! * proxy hop: two workers; words owned by worker B asked at worker A
//!   (forwarded) against the same words asked at B directly. Reported as
//!   the ratio (no target).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use faustus::prelude::*;
use faustus::HttpClient;
use http_body_util::Full;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{BenchResult, Row};

const VOCABULARY: usize = 1000;
const CLIENTS: usize = 16;

fn vocabulary() -> Vec<String> {
    (0..VOCABULARY).map(|i| format!("w{i:04}")).collect()
}

/// The app, its counting agent and table, and how many words it counted.
type CountApp = (
    App,
    Agent<String, String>,
    Table<String, u64>,
    Arc<AtomicU64>,
);

/// A word-count worker app with the routed `/count/` page.
fn count_app(broker: &str) -> BenchResult<CountApp> {
    let app = faustus::app("bench-web")
        .broker(format!("memory://{broker}"))
        .store("memory://")
        .web_host("127.0.0.1")
        .web_port(0u16)
        .broker_commit_interval(Duration::from_millis(200))
        .build()?;
    let counts = app
        .table::<String, u64>("word_counts")
        .with_default()
        .build()?;
    let counted = Arc::new(AtomicU64::new(0));
    let agent = app.agent::<String, String>("count_words").build({
        let counts = counts.clone();
        let counted = counted.clone();
        move |mut words| {
            let counts = counts.clone();
            let counted = counted.clone();
            async move {
                while let Some(w) = words.next().await {
                    counts.update(&w, |n| *n += 1).await?;
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    })?;
    app.page(
        "/count/",
        app.table_route(&counts, "word", {
            let counts = counts.clone();
            move |_app, request| {
                let counts = counts.clone();
                async move {
                    let word = request.require("word")?.to_string();
                    let n = counts.get_or_default(&word).await?;
                    Ok(faustus::web::json(&serde_json::json!({ word: n })))
                }
            }
        }),
    )?;
    Ok((app, agent, counts, counted))
}

/// Send `n` GETs of `/count/?word=W` (W from `words`) to `base` over
/// `CLIENTS` connections; requests per second.
async fn load(base: &str, words: &[String], n: u64) -> BenchResult<f64> {
    let words = Arc::new(words.to_vec());
    let per = n / CLIENTS as u64;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (base, words) = (base.to_string(), words.clone());
        tasks.push(tokio::spawn(async move {
            let client = HttpClient::new();
            let mut rng = StdRng::seed_from_u64(c as u64);
            for _ in 0..per {
                let w = &words[rng.gen_range(0..words.len())];
                let (status, body) = client.get(&format!("{base}/count/?word={w}")).await?;
                if status != 200 || !body.contains(w.as_str()) {
                    return Err(format!("{base}: {status} {body}").into());
                }
            }
            Ok::<(), crate::BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((per * CLIENTS as u64) as f64 / began.elapsed().as_secs_f64())
}

/// The bare baseline: hyper answering the lookup from a HashMap.
async fn bare_server(
    counts: HashMap<String, u64>,
) -> BenchResult<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(counts);
    let join = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let counts = counts.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let counts = counts.clone();
                        async move {
                            let word = req
                                .uri()
                                .query()
                                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("word=")))
                                .unwrap_or("")
                                .to_string();
                            let n = counts.get(&word).copied().unwrap_or(0);
                            let body = serde_json::to_vec(&serde_json::json!({ word: n }))
                                .unwrap_or_default();
                            let mut r = http::Response::new(Full::new(Bytes::from(body)));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}"), join))
}

async fn counted_all(counted: &[&Arc<AtomicU64>], n: u64) {
    while counted
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum::<u64>()
        < n
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Feed each word of the vocabulary `i % 7 + 1` times; the expected counts.
async fn feed(agent: &Agent<String, String>) -> BenchResult<(HashMap<String, u64>, u64)> {
    let mut expected = HashMap::new();
    let mut total = 0;
    for (i, w) in vocabulary().into_iter().enumerate() {
        let times = (i % 7 + 1) as u64;
        for _ in 0..times {
            agent.send(w.clone(), w.clone()).await?;
        }
        total += times;
        expected.insert(w, times);
    }
    Ok((expected, total))
}

/// Run both measurements; rows for the table.
pub(crate) async fn web_count(n: u64) -> BenchResult<Vec<Row>> {
    let broker = format!("bench-web-{}", std::process::id());
    let (app, agent, _counts, counted) = count_app(&broker)?;
    let worker = app.start().await?;
    worker.ready().await?;
    let (expected, total) = feed(&agent).await?;
    counted_all(&[&counted], total).await;
    let base = app.web_url().ok_or("no web server")?;
    let words = vocabulary();
    // Warm up both, then measure.
    load(&base, &words, 2_000).await?;
    let ours = load(&base, &words, n).await?;
    let (bare, bare_join) = bare_server(expected.clone()).await?;
    load(&bare, &words, 2_000).await?;
    let baseline = load(&bare, &words, n).await?;
    bare_join.abort();
    println!("web-count: {n} requests over {CLIENTS} connections; local {ours:.0}/s, bare hyper + HashMap {baseline:.0}/s");

    // The proxy hop: a second worker takes half the partitions.
    let (app_b, _agent_b, _counts_b, _counted_b) = count_app(&broker)?;
    let worker_b = app_b.start().await?;
    worker_b.ready().await?;
    let id_b = app_b.worker_id();
    let table = _counts.clone();
    let settle = Instant::now();
    let owned_by_b = loop {
        let map_a = app.cluster_map();
        let map_b = app_b.cluster_map();
        let owners_agree = (0..crate::PARTITIONS).all(|p| {
            let a = map_a.table_owner("word_counts", p).map(|w| w.id.clone());
            a.is_some() && a == map_b.table_owner("word_counts", p).map(|w| w.id.clone())
        });
        if owners_agree && map_a.workers().len() == 2 {
            let mut ws = Vec::new();
            for w in &words {
                let p = table.partition_for(w)?;
                if map_a
                    .table_owner("word_counts", p)
                    .is_some_and(|o| o.id == id_b)
                {
                    ws.push(w.clone());
                }
            }
            break ws;
        }
        if settle.elapsed() > Duration::from_secs(60) {
            return Err("the two workers' cluster maps did not settle in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if owned_by_b.is_empty() {
        return Err("worker B owns no words".into());
    }
    let base_b = app_b.web_url().ok_or("no web server on B")?;
    load(&base, &owned_by_b, 2_000).await?;
    let forwarded = load(&base, &owned_by_b, n / 2).await?;
    let direct = load(&base_b, &owned_by_b, n / 2).await?;
    println!(
        "proxy hop: {} words owned by B; asked at A (forwarded) {forwarded:.0}/s, at B directly {direct:.0}/s",
        owned_by_b.len()
    );
    worker_b.stop().await?;
    worker.stop().await?;
    Ok(vec![
        Row {
            workload: "web-count local /count/?word=",
            ours,
            baseline,
            target: 0.5,
        },
        Row {
            workload: "web-count via proxy hop",
            ours: forwarded,
            baseline: direct,
            target: 0.0,
        },
    ])
}

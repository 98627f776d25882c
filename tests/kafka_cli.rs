//! `send` from a separate process against a real Kafka-protocol broker
//! (`FAUSTUS_TEST_KAFKA`, set by `scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faustus_core::transport::{
    Message, PartitionReaderExt, ReaderConfig, TopicPartition, TopicSpec, Transport,
};
use faustus_core::DriverUrl;
use faustus_transport_kafka::KafkaTransport;
use support::*;

/// Every message of `topic` (partitions `0..partitions`), reading until
/// `want` arrived (at most 60 s).
async fn read(t: &Arc<dyn Transport>, topic: &str, partitions: u32, want: usize) -> Vec<Message> {
    let mut c = t
        .reader(&ReaderConfig::new(unique("kcli-reader")))
        .await
        .unwrap();
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    let starts: Vec<(TopicPartition, i64)> = tps.into_iter().map(|tp| (tp, 0)).collect();
    c.assign_at(&starts).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < want && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(500)).await.unwrap());
    }
    let _ = c.close().await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker: run by scripts/test.sh"]
async fn send_from_another_process_reaches_kafka() {
    let Some(url) = kafka_url() else { return };
    let app_id = unique("kcli");
    let posts = format!("{app_id}-posts");
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::from_url(&DriverUrl::parse("broker", &url).unwrap()).unwrap());
    transport
        .create_topic(&TopicSpec::new(&posts, 4))
        .await
        .unwrap();
    let send = |args: &[&str]| {
        let out = Command::new(example_binary("word_count"))
            .arg("send")
            .args(args)
            .env("FAUSTUS_BROKER", &url)
            .env("FAUSTUS_ID", &app_id)
            .env("FAUSTUS_DEMO_POSTS_TOPIC", &posts)
            .env("FAUSTUS_DEMO_FEED", "0")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = send(&[&posts, "hello kafka", "--key", "k1", "--repeat", "3"]);
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{printed}");
    let partition = lines[0]["partition"].as_u64().unwrap() as u32;
    assert!(lines
        .iter()
        .all(|l| l["partition"] == lines[0]["partition"]));
    let got = read(&transport, &posts, 4, 3).await;
    assert_eq!(got.len(), 3);
    for m in &got {
        assert_eq!(m.partition, partition);
        assert_eq!(m.key.as_deref(), Some(&b"\"k1\""[..]));
        assert_eq!(m.value.as_deref(), Some(&b"\"hello kafka\""[..]));
    }
    // To an agent: its topic, created by the command with the app's partitions.
    send(&["@count_words", r#"{"word":"fox"}"#, "--key", "fox"]);
    let topic = format!("{app_id}-count_words");
    let got = read(&transport, &topic, 8, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value.as_deref(), Some(&br#"{"word":"fox"}"#[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker: run by scripts/test.sh"]
async fn count_page_routes_between_two_worker_processes() {
    let Some(url) = kafka_url() else { return };
    let app_id = unique("kroute");
    let posts = format!("{app_id}-posts");
    let dir = std::env::temp_dir().join(&app_id);
    std::fs::create_dir_all(&dir).unwrap();
    let transport: Arc<dyn Transport> =
        Arc::new(KafkaTransport::from_url(&DriverUrl::parse("broker", &url).unwrap()).unwrap());
    transport
        .create_topic(&TopicSpec::new(&posts, 4))
        .await
        .unwrap();
    let spawn = |name: &str| {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(example_binary("word_count"))
            .args([
                "worker",
                "-l",
                "info",
                "--web-host",
                "127.0.0.1",
                "--web-port",
                "0",
            ])
            .env("FAUSTUS_BROKER", &url)
            .env("FAUSTUS_ID", &app_id)
            .env("FAUSTUS_DEMO_POSTS_TOPIC", &posts)
            .env("FAUSTUS_DEMO_FEED", "0")
            .env("FAUSTUS_BROKER_COMMIT_INTERVAL", "500ms")
            .env("FAUSTUS_DATADIR", dir.join(name))
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        (ChildGuard(child), stdout)
    };
    let (wa, out_a) = spawn("a");
    let (_, url_a) = tokio::task::spawn_blocking(move || banner_and_url(out_a))
        .await
        .unwrap();
    let (wb, out_b) = spawn("b");
    let (_, url_b) = tokio::task::spawn_blocking(move || banner_and_url(out_b))
        .await
        .unwrap();

    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let producer = transport
        .producer(&faustus_core::transport::ProducerConfig::new("kroute-test"))
        .await
        .unwrap();
    for (i, w) in words.iter().enumerate() {
        let body = std::iter::repeat_n(*w, i + 1).collect::<Vec<_>>().join(" ");
        let record = faustus_core::transport::Record::new(
            posts.as_str(),
            Some(format!("\"p{i}\"").into()),
            Some(serde_json::to_vec(&body).unwrap().into()),
        );
        producer.send(record).await.unwrap().await.unwrap();
    }
    let client = faustus::HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut served_by = std::collections::BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        let expected = format!(r#"{{"{w}":{}}}"#, i + 1);
        for base in [&url_a, &url_b] {
            let mut last = None;
            loop {
                let request = faustus::http::Request::get(format!("{base}/count/?word={w}"))
                    .body(bytes::Bytes::new())
                    .unwrap();
                if let Ok(r) = client.send(request).await {
                    let body = String::from_utf8_lossy(r.body()).to_string();
                    if r.status() == 200 && body == expected {
                        break;
                    }
                    last = Some((r.status(), body));
                }
                assert!(
                    Instant::now() < deadline,
                    "{base}/count/?word={w} never answered {expected}; last {last:?}; logs in {}",
                    dir.display()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // Settled: both workers answer each word from the same owner.
    for w in words {
        let mut by = Vec::new();
        for base in [&url_a, &url_b] {
            let request = faustus::http::Request::get(format!("{base}/count/?word={w}"))
                .body(bytes::Bytes::new())
                .unwrap();
            let r = client.send(request).await.unwrap();
            by.push(
                r.headers()["x-faustus-served-by"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(by[0], by[1], "{w}");
        served_by.insert(w, by[0].clone());
    }
    let owners: std::collections::BTreeSet<_> = served_by.values().collect();
    assert_eq!(owners.len(), 2, "both workers own words: {served_by:?}");
    drop(wb);
    drop(wa);
    let _ = std::fs::remove_dir_all(&dir);
}

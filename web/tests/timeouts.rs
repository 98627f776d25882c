//! The hyper server's connection timeouts, on real loopback TCP: a client
//! that sends nothing, one that trickles half a request head, and an idle
//! keep-alive connection after an answer are each closed by the server
//! after the (short, test-set) timeout, while normal requests — a slow
//! handler, a second request on a connection idle for less than the limit —
//! are answered. And the URL options: defaults, errors naming the option.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faustus_core::web::{self, HttpRequest, HttpResponse, WebDriver, WebHandler, WebServer};
use faustus_core::DriverUrl;
use faustus_web::HyperDriver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER: Duration = Duration::from_millis(400);
const IDLE: Duration = Duration::from_millis(1200);
/// Scheduling slack: a close must come no earlier than the limit minus a
/// little (timers may fire a hair early relative to the test's clock) and
/// within the limit plus this.
const SLACK: Duration = Duration::from_secs(3);

/// Answers `ok`, after `?sleep_ms=N` milliseconds when asked.
struct Handler;

#[async_trait::async_trait]
impl WebHandler for Handler {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        if let Some(ms) = request
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("sleep_ms="))
            .and_then(|n| n.parse().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        web::text("ok")
    }
}

async fn serve(url: &str) -> Arc<dyn WebServer> {
    let driver = HyperDriver::from_url(&DriverUrl::parse("web", url).unwrap()).unwrap();
    driver
        .serve("127.0.0.1:0".parse().unwrap(), Arc::new(Handler))
        .await
        .unwrap()
}

async fn short_timeouts() -> (Arc<dyn WebServer>, SocketAddr) {
    let url = format!(
        "hyper://?header_timeout={}ms&idle_timeout={}ms",
        HEADER.as_millis(),
        IDLE.as_millis()
    );
    let server = serve(&url).await;
    let addr = server.local_addr();
    (server, addr)
}

/// Read until the server closes the connection (EOF or reset), up to 10 s;
/// returns what was read and when the close came.
async fn until_closed(stream: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the server did not close the connection within 10 s");
    (got, closed)
}

/// Read one `Content-Length` answer from a keep-alive connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the answer; got {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

fn assert_closed_after(what: &str, elapsed: Duration, limit: Duration) {
    assert!(
        elapsed + Duration::from_millis(50) >= limit && elapsed <= limit + SLACK,
        "{what}: closed after {elapsed:?}, the limit is {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (server, addr) = short_timeouts().await;
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (got, closed) = until_closed(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_closed_after("silent connection", closed - start, HEADER);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_slowly_is_closed_after_the_header_timeout() {
    let (server, addr) = short_timeouts().await;
    let start = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    // Half a head, then a header line every 100 ms (each well within the
    // limit): the limit counts from the head's start, not the last byte.
    let trickle = tokio::spawn(async move {
        if w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.is_err() {
            return;
        }
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let line = format!("X-Slow-{i}: 1\r\n");
            if w.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the slow connection within 10 s");
    assert!(
        got.is_empty(),
        "answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_closed_after("slow head", closed - start, HEADER);
    trickle.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (server, addr) = short_timeouts().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answered = Instant::now();
    // Less than the idle limit but more than the header limit later, the
    // connection still takes a request: idling is not counted as a slow head.
    tokio::time::sleep(HEADER + Duration::from_millis(200)).await;
    s.write_all(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_answer(&mut s).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "second request on the kept-alive connection, {:?} after the first: {answer}",
        answered.elapsed()
    );
    let answered = Instant::now();
    let (got, closed) = until_closed(&mut s).await;
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_closed_after("idle keep-alive connection", closed - answered, IDLE);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_both_timeouts_is_still_answered() {
    let (server, addr) = short_timeouts().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let sleep = (HEADER + IDLE + Duration::from_millis(300)).as_millis();
    let req = format!("GET /?sleep_ms={sleep} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (got, _) = until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
        "{text}"
    );
    // And ordinary one-shot requests.
    let r = faustus_testkit::web_conformance::get(addr, "/")
        .await
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    server.shutdown().await.unwrap();
}

#[test]
fn the_timeouts_have_documented_defaults_and_take_durations() {
    let d = HyperDriver::from_url(&DriverUrl::parse("web", "hyper://").unwrap()).unwrap();
    assert_eq!(d.header_timeout(), Duration::from_secs(10));
    assert_eq!(d.idle_timeout(), Duration::from_secs(60));
    assert_eq!(d.header_timeout(), faustus_web::DEFAULT_HEADER_TIMEOUT);
    assert_eq!(d.idle_timeout(), faustus_web::DEFAULT_IDLE_TIMEOUT);
    let d = HyperDriver::from_url(
        &DriverUrl::parse("web", "hyper://?header_timeout=5s&idle_timeout=2m").unwrap(),
    )
    .unwrap();
    assert_eq!(d.header_timeout(), Duration::from_secs(5));
    assert_eq!(d.idle_timeout(), Duration::from_secs(120));
    let d = HyperDriver::from_url(
        &DriverUrl::parse("web", "hyper://?header_timeout=0.25&max_body=10").unwrap(),
    )
    .unwrap();
    assert_eq!(d.header_timeout(), Duration::from_millis(250));
    assert_eq!(d.max_body(), 10);
}

#[test]
fn bad_or_unknown_options_are_errors_naming_the_option_and_the_url() {
    let err = |url: &str| {
        HyperDriver::from_url(&DriverUrl::parse("web", url).unwrap())
            .unwrap_err()
            .to_string()
    };
    for (url, option, problem) in [
        (
            "hyper://?idle_timout=5s",
            "hyper.idle_timout",
            "unknown option",
        ),
        (
            "hyper://?header_timeout=soon",
            "hyper.header_timeout",
            "expected a duration",
        ),
        (
            "hyper://?idle_timeout=0",
            "hyper.idle_timeout",
            "longer than zero",
        ),
        (
            "hyper://?idle_timeout=-1s",
            "hyper.idle_timeout",
            "expected a duration",
        ),
        (
            "hyper://?header_timeout=99999999999999999999999",
            "hyper.header_timeout",
            "too long",
        ),
        ("hyper://?max_body=lots", "hyper.max_body", "lots"),
    ] {
        let e = err(url);
        assert!(
            e.contains(option) && e.contains(url) && e.contains(problem),
            "{url}: {e}"
        );
    }
    assert!(
        err("hyper://?nope=1")
            .contains("accepted: max_body, max_concurrency, header_timeout, idle_timeout"),
        "the error lists the accepted options"
    );
}

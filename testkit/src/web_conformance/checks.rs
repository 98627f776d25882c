//! The checks of the web driver conformance suite (see the parent module).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::web::{self, HttpRequest, HttpResponse, WebDriver, WebError, WebHandler};
use faustus_core::{http, App, Error, Registry};

use super::client::{get, request, send_raw, Reply};
use super::{unique_name, DEADLINE};

/// A handler made of a closure.
struct FnHandler<F>(F);

#[async_trait]
impl<F> WebHandler for FnHandler<F>
where
    F: Fn(HttpRequest) -> futures::future::BoxFuture<'static, HttpResponse> + Send + Sync + 'static,
{
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        (self.0)(request).await
    }
}

/// A raw handler from a closure returning a future.
pub fn handler<F, Fut>(f: F) -> Arc<dyn WebHandler>
where
    F: Fn(HttpRequest) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = HttpResponse> + Send + 'static,
{
    Arc::new(FnHandler(move |r| {
        Box::pin(f(r)) as futures::future::BoxFuture<'static, HttpResponse>
    }))
}

/// Echo what arrived: `METHOD path?query`, the `x-test` header, the body.
fn echo() -> Arc<dyn WebHandler> {
    handler(|r: HttpRequest| async move {
        let target = r
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let h = r
            .headers()
            .get("x-test")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let mut text = format!("{} {target}\nx-test: {h}\n", r.method()).into_bytes();
        text.extend_from_slice(r.body());
        let mut resp = http::Response::new(Bytes::from(text));
        resp.headers_mut()
            .insert("x-echo", http::HeaderValue::from_static("yes"));
        resp
    })
}

async fn serve(
    driver: &Arc<dyn WebDriver>,
    handler: Arc<dyn WebHandler>,
) -> Arc<dyn web::WebServer> {
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    match tokio::time::timeout(DEADLINE, driver.serve(addr, handler)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{}: serve on {addr} failed: {e}", driver.name()),
        Err(_) => panic!(
            "{}: serve on {addr} took longer than {DEADLINE:?}",
            driver.name()
        ),
    }
}

async fn stop(server: Arc<dyn web::WebServer>) {
    match tokio::time::timeout(DEADLINE, server.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("shutdown failed: {e}"),
        Err(_) => panic!("shutdown took longer than {DEADLINE:?}"),
    }
}

fn must(r: std::io::Result<Reply>, what: &str) -> Reply {
    match r {
        Ok(r) => r,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// An app (never started) with the pages the checks use.
fn app_with_pages(check: &str) -> App {
    let app = match App::builder(unique_name(check))
        .registry(Registry::new())
        .env(Default::default())
        .web_enabled(false)
        .build()
    {
        Ok(a) => a,
        Err(e) => panic!("building the check's app failed: {e}"),
    };
    let defined = [
        app.page("/hello/{name}/", |app, request| async move {
            let name = request.param("name")?.to_string();
            let times: usize = request.query_as("times")?.unwrap_or(1);
            let mut r = web::text(format!("{} from {}", name.repeat(times), app.id()));
            r.headers_mut()
                .insert("x-page", http::HeaderValue::from_static("hello"));
            Ok(r)
        }),
        app.page("/echo", |_app, request| async move {
            if request.method() != http::Method::POST {
                return Err(WebError::new(
                    http::StatusCode::METHOD_NOT_ALLOWED,
                    "POST only",
                ));
            }
            let mut r = web::text(String::from_utf8_lossy(request.body()).into_owned());
            *r.status_mut() = http::StatusCode::CREATED;
            Ok(r)
        }),
        app.page("/fails/{status}", |_app, request| async move {
            match request.param("status")? {
                "400" => Err(WebError::bad_request("the input was wrong")),
                "404" => Err(WebError::not_found("no such thing here")),
                "503" => Err(WebError::unavailable("come back later", 7)),
                _ => Err(Error::State("the database is down".into()).into()),
            }
        }),
        app.page("/panics", |_app, _request| async move {
            if std::hint::black_box(true) {
                panic!("a page's bug (expected by the web conformance check)");
            }
            Ok(web::text("unreachable"))
        }),
    ];
    for d in defined {
        if let Err(e) = d {
            panic!("defining the check's pages failed: {e}");
        }
    }
    app
}

/// Binding to port 0, the bound address, and an address in use.
pub async fn check_binds_and_reports_address(driver: Arc<dyn WebDriver>) {
    let a = serve(&driver, echo()).await;
    let b = serve(&driver, echo()).await;
    let (aa, ba) = (a.local_addr(), b.local_addr());
    for addr in [aa, ba] {
        assert_eq!(addr.ip(), std::net::IpAddr::from([127, 0, 0, 1]), "{addr}");
        assert_ne!(addr.port(), 0, "local_addr must report the real port");
    }
    assert_ne!(aa.port(), ba.port(), "two servers, two ports");
    for addr in [aa, ba] {
        let r = must(get(addr, "/x").await, "GET on the reported address");
        assert_eq!((r.status, r.text()), (200, "GET /x\nx-test: -\n".into()));
    }
    // An address in use: an I/O error of kind AddrInUse.
    match driver.serve(aa, echo()).await {
        Err(Error::Io { source, .. }) => assert_eq!(
            source.kind(),
            std::io::ErrorKind::AddrInUse,
            "serving on {aa} (in use): {source}"
        ),
        Err(e) => panic!("serving on {aa} (in use) must be Error::Io (AddrInUse), got {e}"),
        Ok(s) => panic!("serving on {aa} (in use) succeeded at {}", s.local_addr()),
    }
    stop(a).await;
    stop(b).await;
}

/// The driver serves the app's site (its pages): methods, path and query
/// parameters, bodies, statuses; unknown paths are 404.
pub async fn check_site_serves_app_pages(driver: Arc<dyn WebDriver>) {
    let app = app_with_pages("web-pages");
    let site = app.site();
    let server = serve(&driver, site.clone()).await;
    let addr = server.local_addr();

    let r = must(get(addr, "/hello/a%20b/?times=2").await, "GET a page");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("a ba b from {}", app.id()));
    assert_eq!(r.header("x-page"), Some("hello"));
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    // Without the trailing slash too.
    let r = must(get(addr, "/hello/x?times=3").await, "GET without the slash");
    assert_eq!(
        (r.status, r.text()),
        (200, format!("xxx from {}", app.id()))
    );

    let r = must(
        request(addr, "POST", "/echo", &[], "héllo\0bytes".as_bytes()).await,
        "POST a body",
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (201, "héllo\0bytes".as_bytes())
    );
    let r = must(
        request(addr, "POST", "/echo", &[], b"").await,
        "POST no body",
    );
    assert_eq!((r.status, r.body.len()), (201, 0));
    let r = must(get(addr, "/echo").await, "GET a POST page");
    assert_eq!((r.status, r.text()), (405, "POST only\n".into()));

    for unknown in ["/no/such/page", "/hello", "/hello/a/b/c"] {
        let r = must(get(addr, unknown).await, "GET an unknown path");
        assert_eq!(r.status, 404, "{unknown}: {}", r.text());
    }
    stop(server).await;
    site.close().await;
}

/// Statuses, headers and bodies pass through both ways unchanged.
pub async fn check_statuses_headers_and_bodies(driver: Arc<dyn WebDriver>) {
    let server = serve(
        &driver,
        handler(|r: HttpRequest| async move {
            let path = r.uri().path().to_string();
            let status: u16 = path.trim_start_matches('/').parse().unwrap_or(200);
            let body = match status {
                204 => Bytes::new(),
                _ => Bytes::from(vec![0u8, 1, 2, 255, 254, b'\n']),
            };
            let mut resp = http::Response::new(body);
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            resp.headers_mut()
                .insert("x-status", http::HeaderValue::from(status));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
            resp
        }),
    )
    .await;
    let addr = server.local_addr();
    for status in [200u16, 201, 404, 418, 500, 503] {
        let r = must(get(addr, &format!("/{status}")).await, "GET a status");
        assert_eq!(r.status, status);
        assert_eq!(r.header("x-status"), Some(status.to_string().as_str()));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body, vec![0u8, 1, 2, 255, 254, b'\n'], "{status}");
    }
    let r = must(get(addr, "/204").await, "GET 204");
    assert_eq!((r.status, r.body.len()), (204, 0));
    stop(server).await;

    let server = serve(&driver, echo()).await;
    let addr = server.local_addr();
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = must(
        request(
            addr,
            "PUT",
            "/a/b%2Fc?x=1&y=%20z&x=2",
            &[("x-test", "kept")],
            &body,
        )
        .await,
        "PUT a body with headers",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo"), Some("yes"));
    let mut expected = b"PUT /a/b%2Fc?x=1&y=%20z&x=2\nx-test: kept\n".to_vec();
    expected.extend_from_slice(&body);
    assert!(r.body == expected, "the request did not arrive as sent");
    for method in ["GET", "POST", "DELETE", "PATCH"] {
        let r = must(request(addr, method, "/m", &[], b"").await, method);
        assert_eq!(r.text(), format!("{method} /m\nx-test: -\n"));
    }
    stop(server).await;
}

/// Page errors become their status and message; panics become 500s and
/// the server keeps serving.
pub async fn check_handler_errors_become_status(driver: Arc<dyn WebDriver>) {
    let app = app_with_pages("web-errors");
    let site = app.site();
    let server = serve(&driver, site.clone()).await;
    let addr = server.local_addr();
    for (path, status, message) in [
        ("/fails/400", 400, "the input was wrong"),
        ("/fails/404", 404, "no such thing here"),
        ("/fails/500", 500, "the database is down"),
        ("/fails/503", 503, "come back later"),
    ] {
        let r = must(get(addr, path).await, path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.text().contains(message), "{path}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{path}: {:?}",
            r.headers
        );
    }
    let r = must(get(addr, "/fails/503").await, "503");
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = must(get(addr, "/hello/x/?times=many").await, "a bad query value");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("times") && r.text().contains("many"),
        "{}",
        r.text()
    );
    let r = must(get(addr, "/panics").await, "a panicking page");
    assert_eq!(r.status, 500);
    let r = must(get(addr, "/hello/still/").await, "after the panic");
    assert_eq!(r.status, 200);
    stop(server).await;
    site.close().await;

    // A raw handler that panics: that connection may fail, the server not.
    let server = serve(
        &driver,
        handler(|r: HttpRequest| async move {
            if r.uri().path() == "/boom" && std::hint::black_box(true) {
                panic!("a raw handler's bug (expected by the web conformance check)");
            }
            web::text("fine")
        }),
    )
    .await;
    let addr = server.local_addr();
    if let Ok(r) = get(addr, "/boom").await {
        assert!(r.status >= 500, "a panic answered {}", r.status);
    }
    let r = must(get(addr, "/ok").await, "after a raw handler panicked");
    assert_eq!((r.status, r.text()), (200, "fine".into()));
    stop(server).await;
}

/// Malformed requests are refused and the server keeps serving.
pub async fn check_bad_requests(driver: Arc<dyn WebDriver>) {
    let app = app_with_pages("web-bad");
    let site = app.site();
    let server = serve(&driver, site.clone()).await;
    let addr = server.local_addr();
    for raw in [
        &b"this is not http\r\n\r\n"[..],
        b"GET /hello/x/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /hello/x/ HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ] {
        if let Ok(r) = send_raw(addr, raw).await {
            assert!(
                (400..500).contains(&r.status),
                "{:?} answered {} {}",
                String::from_utf8_lossy(raw),
                r.status,
                r.text()
            );
        }
    }
    let r = must(
        get(addr, "/hello/x/?times=%zz").await,
        "bad percent-encoding",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("%zz"), "{}", r.text());
    let r = must(get(addr, "/hello/%C3%28/").await, "a path not UTF-8");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = must(get(addr, "/hello/fine/").await, "after bad requests");
    assert_eq!(r.status, 200);
    stop(server).await;
    site.close().await;
}

/// Requests are handled concurrently.
pub async fn check_concurrent_requests(driver: Arc<dyn WebDriver>) {
    const N: usize = 4;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let server = serve(
        &driver,
        handler(move |r: HttpRequest| {
            let barrier = barrier.clone();
            async move {
                // Every request waits until all N are in a handler at once.
                barrier.wait().await;
                web::text(r.uri().path().to_string())
            }
        }),
    )
    .await;
    let addr = server.local_addr();
    let requests: Vec<_> = (0..N)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/r{i}")).await }))
        .collect();
    for (i, joined) in requests.into_iter().enumerate() {
        let r = match joined.await {
            Ok(r) => must(r, "a concurrent request"),
            Err(e) => panic!("request task failed: {e}"),
        };
        assert_eq!((r.status, r.text()), (200, format!("/r{i}")));
    }
    stop(server).await;
}

/// `shutdown` drains the request in flight, then nothing is accepted.
pub async fn check_graceful_stop(driver: Arc<dyn WebDriver>) {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = Arc::new(parking_lot::Mutex::new(Some(entered_tx)));
    let finished = Arc::new(AtomicBool::new(false));
    let handler_finished = finished.clone();
    let server = serve(
        &driver,
        handler(move |_r: HttpRequest| {
            let tx = entered.lock().take();
            let finished = handler_finished.clone();
            async move {
                if let Some(tx) = tx {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                finished.store(true, Ordering::SeqCst);
                web::text("done")
            }
        }),
    )
    .await;
    let addr = server.local_addr();
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    if tokio::time::timeout(DEADLINE, entered_rx).await.is_err() {
        panic!("the request never reached the handler");
    }
    let stopping = tokio::spawn(stop(server.clone()));
    // The server stops accepting while the request in flight still runs.
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            !finished.load(Ordering::SeqCst),
            "the server kept accepting connections while draining"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Err(e) = stopping.await {
        panic!("shutdown panicked: {e}");
    }
    assert!(
        finished.load(Ordering::SeqCst),
        "shutdown returned before the request in flight finished"
    );
    let r = match in_flight.await {
        Ok(r) => must(r, "the request in flight at shutdown"),
        Err(e) => panic!("request task failed: {e}"),
    };
    assert_eq!((r.status, r.text()), (200, "done".into()));
    // Nothing accepts on the address any more (a connection that is still
    // accepted by the OS must not get an answer).
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        if let Ok(r) = get(addr, "/after").await {
            panic!("a stopped server answered {} {}", r.status, r.text());
        }
    }
    stop(server).await;
}

/// `forward` delivers the request as it was and returns the answer as it
/// was, or says the driver cannot forward.
pub async fn check_forward(driver: Arc<dyn WebDriver>) {
    let target = serve(&driver, echo()).await;
    let base = format!("http://{}/", target.local_addr());
    let request = match http::Request::post("/p/q%20r?x=1&y=2")
        .header("x-test", "forwarded")
        .body(Bytes::from_static(b"the body"))
    {
        Ok(r) => r,
        Err(e) => panic!("building the request: {e}"),
    };
    match tokio::time::timeout(DEADLINE, driver.forward(&base, request)).await {
        Err(_) => panic!("forward took longer than {DEADLINE:?}"),
        Ok(Err(Error::State(msg))) => {
            assert!(msg.contains(driver.name()), "{msg}");
        }
        Ok(Err(e)) => panic!("forward failed: {e}"),
        Ok(Ok(r)) => {
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.headers().get("x-echo").map(|v| v.as_bytes()),
                Some(&b"yes"[..])
            );
            assert_eq!(
                String::from_utf8_lossy(r.body()),
                "POST /p/q%20r?x=1&y=2\nx-test: forwarded\nthe body"
            );
        }
    }
    stop(target).await;
}

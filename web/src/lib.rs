//! The `hyper://` web driver of Faustus: serves an app's pages and built-in
//! endpoints on hyper 1 (HTTP/1.1) behind a tower concurrency limit.
//!
//! The built-in endpoints live here, not in core: [`site`] is an app's
//! pages followed by `/`, `/stats`, `/router/`, `/table/{name}/{key}`,
//! `/metrics` (Prometheus text through `prometheus-client`), `/health` and
//! `/ready`, plus the dashboard. It is the app's site when the app was
//! built with `.site(faustus_web::site)` (`faustus::app` does that); the
//! worker serves it on [`HyperDriver`] or any other web driver.
//!
//! Modules: `site` (the router: pages, then built-ins), `builtin` (their
//! answers), `metrics` (`/metrics`), `dashboard` (the HTML page), `lag`
//! (the consumer-lag sampler behind `/stats` and `/metrics`).
//!
//! URL options (the `web` setting), e.g.
//! `hyper://?max_body=1048576&max_concurrency=1024&header_timeout=10s&idle_timeout=60s`:
//!
//! - `max_body`: request body limit in bytes (default 1 MiB), larger
//!   bodies get 413;
//! - `max_concurrency`: requests handled at once (default 1024), the rest wait;
//! - `header_timeout`: how long a client may take to send a request's head
//!   (request line and headers), from the connection's start or from the
//!   first byte of a later request on a keep-alive connection (default
//!   [`DEFAULT_HEADER_TIMEOUT`], 10 s); trickling bytes does not extend it;
//! - `idle_timeout`: how long a keep-alive connection may stay idle between
//!   an answer and the next request (default [`DEFAULT_IDLE_TIMEOUT`], 60 s).
//!
//! Connections overrunning either are closed. Handling a request (reading
//! its body, running the handler) has no time limit. Durations take the
//! settings' syntax (`500ms`, `10s`, `2m`, a number of seconds), from 1 ms
//! to 100 years. An unknown option or a bad value is an error naming it
//! (`hyper.idle_timeout`) and the URL, when the worker starts its server.
//! Shutdown stops accepting, lets in-flight requests finish (at most
//! [`DRAIN_TIMEOUT`]), then closes the connections.
//!
//! [`client`] is a small HTTP/1.1 client for tests and for forwarding
//! requests between workers.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use faustus_core::web::{HttpRequest, HttpResponse, WebDriver, WebHandler, WebServer};
use faustus_core::{DriverUrl, Error, Registry, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod builtin;
pub mod client;
mod dashboard;
mod lag;
pub mod metrics;
mod site;
mod timeouts;

pub use site::{site, BUILTIN_PATHS};

/// The URL scheme this driver registers.
pub const SCHEME: &str = "hyper";

/// Default request body limit (bytes).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Default number of requests handled at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 1024;

/// Default `header_timeout`: how long a client may take to send a request's head.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default `idle_timeout`: how long a keep-alive connection may stay idle.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The options `hyper://` URLs take.
const OPTIONS: [&str; 4] = [
    "max_body",
    "max_concurrency",
    "header_timeout",
    "idle_timeout",
];

/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Register `hyper://` into `registry`.
pub fn register(registry: &Registry) {
    registry.register_web(
        SCHEME,
        Arc::new(|url: &DriverUrl| Ok(Arc::new(HyperDriver::from_url(url)?) as Arc<dyn WebDriver>)),
    );
}

/// The hyper web driver.
#[derive(Debug, Clone)]
pub struct HyperDriver {
    max_body: usize,
    max_concurrency: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    client: Arc<std::sync::OnceLock<client::HttpClient>>,
}

impl Default for HyperDriver {
    fn default() -> Self {
        HyperDriver {
            max_body: DEFAULT_MAX_BODY,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            client: Arc::default(),
        }
    }
}

impl HyperDriver {
    /// A driver configured from its URL's options.
    pub fn from_url(url: &DriverUrl) -> Result<Self> {
        let mut d = HyperDriver::default();
        if let Some(key) = url.query().keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(Error::config(
                format!("{SCHEME}.{key}"),
                format!(
                    "unknown option in {:?}; accepted: {}",
                    url.as_str(),
                    OPTIONS.join(", ")
                ),
            ));
        }
        if let Some(t) = duration_option(url, "header_timeout")? {
            d.header_timeout = t;
        }
        if let Some(t) = duration_option(url, "idle_timeout")? {
            d.idle_timeout = t;
        }
        if let Some(n) = url.parse_option::<usize>("max_body")? {
            d.max_body = n;
        }
        if let Some(n) = url.parse_option::<usize>("max_concurrency")? {
            if n == 0 {
                return Err(Error::config("web", "max_concurrency must be at least 1"));
            }
            d.max_concurrency = n;
        }
        Ok(d)
    }

    /// The request body limit in bytes.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// How long a client may take to send a request's head.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// How long a keep-alive connection may stay idle between requests.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

/// A duration option (`header_timeout=5s`): the settings' syntax, above zero.
fn duration_option(url: &DriverUrl, key: &str) -> Result<Option<Duration>> {
    let Some(v) = url.option(key) else {
        return Ok(None);
    };
    let bad = |message: String| {
        Error::config(
            format!("{SCHEME}.{key}"),
            format!("{message} (in {:?})", url.as_str()),
        )
    };
    let d = faustus_core::settings::parse_duration(v).map_err(bad)?;
    if d.is_zero() {
        return Err(bad(format!("must be longer than zero, got {v:?}")));
    }
    Ok(Some(d))
}

fn plain(status: http::StatusCode, message: String) -> HttpResponse {
    faustus_core::web::status(status, message)
}

/// Bodies announced larger than the limit are still read (and dropped) up
/// to this many times the limit before the 413, so the client can read it.
const DRAIN_FACTOR: usize = 8;

/// 413, closing the connection (the rest of the body is not read).
fn too_large(max: usize) -> HttpResponse {
    let mut r = plain(
        http::StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max} bytes\n"),
    );
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// Read the whole body (at most `max` bytes) and hand the request to `handler`.
async fn answer(
    handler: Arc<dyn WebHandler>,
    max: usize,
    request: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let too_big = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64);
    let response = if too_big {
        // Read (and drop) a moderately larger body first, so the client has
        // sent it and reads the 413 instead of failing on a closed socket.
        let _ = Limited::new(body, max.saturating_mul(DRAIN_FACTOR))
            .collect()
            .await;
        too_large(max)
    } else {
        match Limited::new(body, max).collect().await {
            Ok(collected) => {
                let request = http::Request::from_parts(parts, collected.to_bytes());
                handler.handle(request).await
            }
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    too_large(max)
                } else {
                    plain(
                        http::StatusCode::BAD_REQUEST,
                        format!("cannot read the request body: {e}\n"),
                    )
                }
            }
        }
    };
    response.map(Full::new)
}

#[async_trait]
impl WebDriver for HyperDriver {
    fn name(&self) -> &str {
        SCHEME
    }

    async fn serve(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn WebHandler>,
    ) -> Result<Arc<dyn WebServer>> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Io {
                context: format!(
                    "web server cannot listen on {addr} (settings web_host/web_port; use --web-port or --without-web)"
                ),
                source: e,
            })?;
        let local = listener.local_addr().map_err(|e| Error::Io {
            context: format!("web server address of {addr}"),
            source: e,
        })?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let max = self.max_body;
        let service = tower::ServiceBuilder::new()
            .concurrency_limit(self.max_concurrency)
            .service(tower::service_fn(move |req: http::Request<Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(answer(handler, max, req).await) }
            }));
        let timeouts = (self.header_timeout, self.idle_timeout);
        let join = tokio::spawn(accept_loop(listener, service, timeouts, stop_rx));
        Ok(Arc::new(HyperServer {
            local,
            stop: stop_tx,
            join: Mutex::new(Some(join)),
        }))
    }

    async fn forward(&self, base_url: &str, request: HttpRequest) -> Result<HttpResponse> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let target = format!("{}{path}", base_url.trim_end_matches('/'));
        parts.uri = target
            .parse()
            .map_err(|e| Error::config("canonical_url", format!("{target}: {e}")))?;
        // The client sets Host from the URI.
        parts.headers.remove(http::header::HOST);
        let client = self.client.get_or_init(client::HttpClient::new);
        client.send(http::Request::from_parts(parts, body)).await
    }
}

async fn accept_loop<S>(
    listener: tokio::net::TcpListener,
    service: S,
    (header_timeout, idle_timeout): (Duration, Duration),
    mut stop: watch::Receiver<bool>,
) where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn_watch = timeouts::ConnWatch::new();
                    let svc = {
                        let conn_watch = conn_watch.clone();
                        let service = service.clone();
                        hyper::service::service_fn(move |req: http::Request<Incoming>| {
                            // Busy from the complete head until the answer is ready.
                            let busy = conn_watch.busy();
                            let call = tower::ServiceExt::oneshot(service.clone(), req);
                            async move {
                                let answer = call.await;
                                drop(busy);
                                answer
                            }
                        })
                    };
                    let io = TokioIo::new(timeouts::WatchedIo::new(stream, conn_watch.clone()));
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                    let conn = graceful.watch(conn);
                    let dog = timeouts::watchdog(conn_watch, header_timeout, idle_timeout);
                    tokio::spawn(async move {
                        tokio::select! {
                            r = conn => if let Err(e) = r {
                                tracing::debug!(error = %e, %peer, "web connection ended with an error");
                            },
                            overrun = dog => {
                                // Dropping the connection closes the socket.
                                tracing::debug!(%peer, reason = overrun.as_str(), "web connection closed");
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "web server accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "web requests still in flight at shutdown were cut");
    }
}

/// A running hyper server.
#[derive(Debug)]
pub struct HyperServer {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    join: Mutex<Option<JoinHandle<()>>>,
}

#[async_trait]
impl WebServer for HyperServer {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn shutdown(&self) -> Result<()> {
        self.stop.send_replace(true);
        let join = self.join.lock().take();
        if let Some(j) = join {
            j.await.map_err(|e| Error::Task {
                what: "web server".into(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

impl Drop for HyperServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

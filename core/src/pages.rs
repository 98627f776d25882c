//! The app's web side: `app.page(...)`, the router, the built-in endpoints
//! (`/`, `/stats`, `/router/`, `/table/{name}/{key}`, `/metrics`,
//! `/health`, `/ready`)
//! and starting the web driver with the worker.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::{Mutex, RwLock};

use crate::app::App;
use crate::error::{Error, Result};
use crate::monitor::Figure;
use crate::transport::{PartitionReader, ReaderConfig};
use crate::url::DriverUrl;
use crate::web::{
    self, percent_decode, HttpRequest, HttpResponse, Request, WebDriver, WebError, WebHandler,
    WebResult, WebServer,
};

/// A page handler: gets the app and the request.
pub(crate) type PageFn = Arc<dyn Fn(App, Request) -> BoxFuture<'static, WebResult> + Send + Sync>;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

struct Route {
    pattern: String,
    segments: Vec<Segment>,
    handler: PageFn,
}

/// Web state of an app: its pages, the bound address, readiness.
#[derive(Default)]
pub(crate) struct WebState {
    routes: RwLock<Vec<Route>>,
    bound: Mutex<Option<SocketAddr>>,
    driver: Mutex<Option<Arc<dyn WebDriver>>>,
    ready: AtomicBool,
    lag: LagSampler,
}

/// Consumer lag for `/metrics` and `/stats`: high watermarks read by a
/// partition reader (no group) of its own, off the conductor, at most every
/// [`LAG_EVERY`], and only while someone asks for the figures.
#[derive(Default)]
struct LagSampler {
    running: AtomicBool,
    last: Mutex<Option<std::time::Instant>>,
    consumer: tokio::sync::Mutex<Option<Box<dyn PartitionReader>>>,
}

/// How often consumer lag is sampled (when asked for).
const LAG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Start a lag sample in the background unless one ran within [`LAG_EVERY`].
fn sample_lag(app: &App) {
    let lag = &app.inner.web.lag;
    {
        let mut last = lag.last.lock();
        if last.is_some_and(|t| t.elapsed() < LAG_EVERY) {
            return;
        }
        if lag.running.swap(true, Ordering::AcqRel) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = refresh_lag(&app).await {
            tracing::debug!(error = %e, "consumer lag sample failed");
        }
        app.inner.web.lag.running.store(false, Ordering::Release);
    });
}

async fn refresh_lag(app: &App) -> Result<()> {
    let mut guard = app.inner.web.lag.consumer.lock().await;
    if guard.is_none() {
        let transport = app.transport().await?;
        let config = ReaderConfig::new(format!("{}-lag", app.settings().broker_client_id));
        *guard = Some(transport.reader(&config).await?);
    }
    let Some(consumer) = guard.as_mut() else {
        return Ok(());
    };
    let committed: std::collections::HashMap<String, f64> = app
        .monitor()
        .figures()
        .into_iter()
        .filter(|(n, _, _)| *n == "faustus_committed_offset")
        .filter_map(|(_, labels, f)| match f {
            Figure::Gauge(v) => Some((labels, v)),
            _ => None,
        })
        .collect();
    for tp in app.assignment() {
        let labels = crate::monitor::tp_labels(&tp);
        let hw = consumer.high_watermark(&tp).await?;
        let done = committed.get(&labels).copied().unwrap_or(0.0);
        app.monitor()
            .gauge("faustus_consumer_lag", labels, (hw as f64 - done).max(0.0));
    }
    Ok(())
}

impl WebState {
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>> {
    if !pattern.starts_with('/') {
        return Err(Error::config(
            format!("page {pattern:?}"),
            "a page path starts with '/'",
        ));
    }
    split_path(pattern)
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.is_empty() => Ok(Segment::Param(name.to_string())),
                Some(_) => Err(Error::config(
                    format!("page {pattern:?}"),
                    "a path parameter needs a name: {name}",
                )),
                None => Ok(Segment::Literal(s.to_string())),
            },
        )
        .collect()
}

/// Match `path` against `segments`; the path parameters when it matches.
fn matches(
    segments: &[Segment],
    path: &str,
) -> Option<std::result::Result<Vec<(String, String)>, WebError>> {
    let parts: Vec<&str> = split_path(path).collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (seg, part) in segments.iter().zip(&parts) {
        match seg {
            Segment::Literal(l) => {
                if l != part {
                    return None;
                }
            }
            Segment::Param(name) => match percent_decode(part, false) {
                Ok(v) => params.push((name.clone(), v)),
                Err(e) => return Some(Err(e)),
            },
        }
    }
    Some(Ok(params))
}

impl App {
    /// Serve `handler` at `path` on the worker's web server, like Faust's
    /// `@app.page`. `{name}` segments are path parameters
    /// (`request.param("name")`); query parameters come from `request.query`.
    /// The handler gets the app; it answers with [`web::json`], [`web::text`],
    /// [`web::html`], or a [`WebError`] (400/404/500 … with a message).
    ///
    /// ```
    /// use faustus_core::{App, web};
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// app.page("/hello/{name}/", |_app, request| async move {
    ///     let name = request.param("name")?.to_string();
    ///     let times: u32 = request.query_as("times")?.unwrap_or(1);
    ///     Ok(web::json(&serde_json::json!({"hello": name.repeat(times as usize)})))
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn page<F, Fut>(&self, path: &str, handler: F) -> Result<()>
    where
        F: Fn(App, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WebResult> + Send + 'static,
    {
        let segments = parse_pattern(path)?;
        let mut routes = self.inner.web.routes.write();
        if routes.iter().any(|r| r.segments == segments) {
            return Err(Error::config(
                format!("page {path:?}"),
                "a page with this path is already defined",
            ));
        }
        routes.push(Route {
            pattern: path.to_string(),
            segments,
            handler: Arc::new(move |app, req| Box::pin(handler(app, req))),
        });
        Ok(())
    }

    /// Paths of the pages the app defined.
    pub fn pages(&self) -> Vec<String> {
        self.inner
            .web
            .routes
            .read()
            .iter()
            .map(|r| r.pattern.clone())
            .collect()
    }

    /// The URL the worker's web server listens on (`http://host:port`, with
    /// the real port when `web_port` was 0); `None` when it is not running.
    pub fn web_url(&self) -> Option<String> {
        let addr = (*self.inner.web.bound.lock())?;
        Some(format!("http://{addr}"))
    }

    /// Answer one request as the worker's web server would (pages first,
    /// then the built-in endpoints). Never fails: errors become 4xx/5xx.
    pub async fn handle_request(&self, request: HttpRequest) -> HttpResponse {
        Router { app: self.clone() }.handle(request).await
    }
}

use crate::web::{FORWARDED_BY, SERVED_BY};

impl App {
    /// Route a page to the worker that owns the key, like Faust's
    /// `@app.table_route(table, shard_param)`: the key is the query (or path)
    /// parameter `shard_param`; when this worker serves the key's table
    /// partition `handler` runs here, when another worker does the request
    /// is forwarded to its canonical URL (method, headers and body kept) and
    /// its answer returned; when the cluster map names no owner, the handler
    /// runs here if this worker serves the partition, else the answer is 503
    /// with `Retry-After` (a rebalance). Responses name the worker that answered in
    /// `x-faustus-served-by`.
    ///
    /// ```
    /// use faustus_core::{App, web};
    /// # fn demo(app: App) -> faustus_core::Result<()> {
    /// let counts = app.table::<String, u64>("word_counts").with_default().build()?;
    /// let table = counts.clone();
    /// app.page("/count/", app.table_route(&counts, "word", move |_app, request| {
    ///     let table = table.clone();
    ///     async move {
    ///         let word = request.require("word")?.to_string();
    ///         let n = table.get_or_default(&word).await?;
    ///         Ok(web::json(&serde_json::json!({ word: n })))
    ///     }
    /// }))?;
    /// # Ok(()) }
    /// ```
    pub fn table_route<K, V, F, Fut>(
        &self,
        table: &crate::Table<K, V>,
        shard_param: &str,
        handler: F,
    ) -> impl Fn(App, Request) -> BoxFuture<'static, WebResult> + Send + Sync + 'static
    where
        K: serde::Serialize
            + serde::de::DeserializeOwned
            + std::hash::Hash
            + Eq
            + Clone
            + Send
            + Sync
            + 'static,
        V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(App, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = WebResult> + Send + 'static,
    {
        let table = table.clone();
        let param = shard_param.to_string();
        let handler = Arc::new(handler);
        move |app: App, request: Request| {
            let table = table.clone();
            let param = param.clone();
            let handler = handler.clone();
            Box::pin(async move {
                let text = match request.query(&param) {
                    Some(v) => v.to_string(),
                    None => request
                        .param(&param)
                        .map_err(|_| {
                            WebError::bad_request(format!("missing query parameter {param:?}"))
                        })?
                        .to_string(),
                };
                let key: K = web::parse_text(&text).map_err(|e| {
                    WebError::bad_request(format!(
                        "{param:?} = {text:?} is not a key of table {:?}: {e}",
                        table.name()
                    ))
                })?;
                let partition = table.partition_for(&key)?;
                let me = app.worker_id();
                let owner = app
                    .cluster_map()
                    .table_owner(table.name(), partition)
                    .map(|w| (w.id.clone(), w.url.clone()));
                let mut response = match owner {
                    Some((id, _)) if id == me => handler(app.clone(), request).await?,
                    Some((id, url)) => {
                        if request.headers().contains_key(FORWARDED_BY) {
                            // The sender's map disagrees with ours: no loops.
                            return Err(WebError::unavailable(
                                format!("table {:?} partition {partition} is moving (forwarded here, owned by {id})", table.name()),
                                1,
                            ));
                        }
                        forward(&app, &url, request).await?
                    }
                    // Not in the map (yet), but served here: answer.
                    None if table.active_partitions().contains(&partition) => {
                        handler(app.clone(), request).await?
                    }
                    None => {
                        return Err(WebError::unavailable(
                            format!(
                            "no worker serves table {:?} partition {partition} now (rebalancing)",
                            table.name()
                        ),
                            1,
                        ))
                    }
                };
                if !response.headers().contains_key(SERVED_BY) {
                    if let Ok(v) = http::HeaderValue::from_str(&me) {
                        response.headers_mut().insert(SERVED_BY, v);
                    }
                }
                Ok(response)
            })
        }
    }
}

/// Forward `request` to the worker at `url` through the running web driver.
async fn forward(app: &App, url: &str, request: Request) -> WebResult {
    let driver = app
        .inner
        .web
        .driver
        .lock()
        .clone()
        .ok_or_else(|| WebError::unavailable("the web server is not running", 1))?;
    let mut http = request.http().clone();
    if let Ok(v) = http::HeaderValue::from_str(&app.worker_id()) {
        http.headers_mut().insert(FORWARDED_BY, v);
    }
    driver.forward(url, http).await.map_err(|e| {
        tracing::warn!(to = %url, error = %e, "forwarding a table_route request failed");
        WebError::unavailable(format!("the owner at {url} did not answer: {e}"), 1)
    })
}

/// The app's pages plus the built-in endpoints.
struct Router {
    app: App,
}

#[async_trait]
impl WebHandler for Router {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let outcome = std::panic::AssertUnwindSafe(self.route(request))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if e.status.is_server_error() {
                    tracing::error!(%method, %uri, status = %e.status, error = %e.message, "web request failed");
                }
                e.into_response()
            }
            Err(panic) => {
                let msg = crate::agent::panic_message(&panic);
                tracing::error!(%method, %uri, panic = %msg, "web handler panicked");
                WebError::internal(format!("the handler of {} failed", uri.path())).into_response()
            }
        }
    }
}

impl Router {
    async fn route(&self, request: HttpRequest) -> WebResult {
        let path = request.uri().path().to_string();
        let found = {
            let routes = self.app.inner.web.routes.read();
            routes
                .iter()
                .find_map(|r| matches(&r.segments, &path).map(|params| (r.handler.clone(), params)))
        };
        if let Some((handler, params)) = found {
            let req = Request::new(request, params?)?;
            return handler(self.app.clone(), req).await;
        }
        let builtin = [
            "/",
            "/stats",
            "/health",
            "/ready",
            "/metrics",
            "/router",
            "/table/{name}/{key}",
        ];
        for pattern in builtin {
            let segments = parse_pattern(pattern).map_err(|e| WebError::internal(e.to_string()))?;
            if let Some(params) = matches(&segments, &path) {
                let req = Request::new(request, params?)?;
                if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
                    return Err(WebError::new(
                        http::StatusCode::METHOD_NOT_ALLOWED,
                        format!("{} only answers GET", pattern),
                    ));
                }
                return self.builtin(pattern, req).await;
            }
        }
        Err(WebError::not_found(format!("no page at {path}")))
    }

    async fn builtin(&self, pattern: &str, req: Request) -> WebResult {
        let app = &self.app;
        match pattern {
            "/" => {
                let wants_html = req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/html"));
                if wants_html {
                    Ok(web::html(
                        DASHBOARD.replace("{{app}}", &html_escape(app.id())),
                    ))
                } else {
                    Ok(web::json(&stats(app).await))
                }
            }
            "/stats" => Ok(web::json(&stats(app).await)),
            "/router" => Ok(web::json(&router(app))),
            "/health" => Ok(web::text("ok\n")),
            "/ready" => {
                if app.inner.web.ready.load(Ordering::Acquire) {
                    Ok(web::text("ready\n"))
                } else {
                    Err(WebError::unavailable(
                        "not ready: the worker is starting or recovering its tables",
                        1,
                    ))
                }
            }
            "/metrics" => {
                let mut r = web::text(metrics(app).await);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(r)
            }
            _ => {
                let name = req.param("name")?;
                let key = req.param("key")?;
                let table = app
                    .inner
                    .defs
                    .lock()
                    .tables
                    .iter()
                    .find(|t| t.name() == name)
                    .cloned()
                    .ok_or_else(|| WebError::not_found(format!("no table named {name:?}")))?;
                match table.get_text(key).await? {
                    Some(v) => Ok(web::json(&v)),
                    None => Err(WebError::not_found(format!(
                        "key {key:?} is not in table {name:?} on this worker"
                    ))),
                }
            }
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The JSON behind `/` and `/stats`.
async fn stats(app: &App) -> serde_json::Value {
    use serde_json::json;
    sample_lag(app);
    let snap = app.monitor().snapshot();
    let figures = app.monitor().figures();
    let by = |name: &str| -> serde_json::Map<String, serde_json::Value> {
        figures
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, labels, f)| {
                let v = match f {
                    Figure::Counter(c) => json!(c),
                    Figure::Gauge(g) => json!(g),
                    Figure::Timing { count, sum, max } => {
                        json!({"count": count, "sum_seconds": sum, "max_seconds": max})
                    }
                };
                (labels.replace('"', ""), v)
            })
            .collect()
    };
    let tables = app.inner.defs.lock().tables.clone();
    let mut table_rows = Vec::new();
    for t in &tables {
        table_rows.push(json!({
            "name": t.name(),
            "changelog": t.changelog().name.to_string(),
            "keys_here": t.local_len().await.ok(),
        }));
    }
    json!({
        "app": app.id(),
        "ready": app.inner.web.ready.load(Ordering::Acquire),
        "leader": app.is_leader(),
        "agents": app.agents().into_iter().map(|a| json!({"name": a.name, "topic": a.topic})).collect::<Vec<_>>(),
        "assigned": app.assignment().iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
        "tables": table_rows,
        "counters": {
            "messages_received": snap.messages_received,
            "events_acked": snap.events_acked,
            "messages_sent": snap.messages_sent,
            "decode_errors": snap.decode_errors,
            "agent_errors": snap.agent_errors,
            "commits": snap.commits,
            "rebalances": snap.rebalances,
            "recovered_records": snap.recovered_records,
            "dead_letters": snap.dead_letters,
        },
        "recovery": app.monitor().recovery_progress().iter().map(|r| json!({
            "table": r.table,
            "partitions": r.partitions,
            "state": format!("{:?}", r.state).to_lowercase(),
            "done": r.done,
            "total": r.total,
            "remaining": r.remaining,
            "rate": r.rate,
            "eta_seconds": r.eta.map(|d| d.as_secs_f64()),
        })).collect::<Vec<_>>(),
        "received_by_topic": by("faustus_messages_received_total"),
        "sent_by_topic": by("faustus_messages_sent_total"),
        "lag": by("faustus_consumer_lag"),
        "committed": by("faustus_committed_offset"),
    })
}

/// `/router/`: the cluster map (which worker holds which partitions, and
/// where to reach it).
fn router(app: &App) -> serde_json::Value {
    use serde_json::json;
    let map = app.cluster_map();
    json!({
        "this_worker": app.worker_id(),
        "workers": map.workers().iter().map(|w| json!({
            "id": w.id,
            "url": w.url,
            "assigned": w.assigned.iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
            "tables": w.tables,
            "standbys": w.standbys,
        })).collect::<Vec<_>>(),
    })
}

/// `/metrics` in the Prometheus text format.
async fn metrics(app: &App) -> String {
    sample_lag(app);
    let snap = app.monitor().snapshot();
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let simple: [(&str, &str, u64, &str); 10] = [
        (
            "faustus_messages_received_all_total",
            "counter",
            snap.messages_received,
            "Messages the consumer delivered.",
        ),
        (
            "faustus_events_acked_total",
            "counter",
            snap.events_acked,
            "Events acknowledged by streams.",
        ),
        (
            "faustus_messages_sent_all_total",
            "counter",
            snap.messages_sent,
            "Records sent through topics.",
        ),
        (
            "faustus_decode_errors_total",
            "counter",
            snap.decode_errors,
            "Messages whose key or value could not be decoded.",
        ),
        (
            "faustus_agent_errors_total",
            "counter",
            snap.agent_errors,
            "Agent failures (errors and panics).",
        ),
        (
            "faustus_commits_total",
            "counter",
            snap.commits,
            "Offset commits.",
        ),
        (
            "faustus_rebalances_total",
            "counter",
            snap.rebalances,
            "Rebalances seen.",
        ),
        (
            "faustus_recovered_records_total",
            "counter",
            snap.recovered_records,
            "Changelog records applied during table recovery.",
        ),
        (
            "faustus_dead_letters_total",
            "counter",
            snap.dead_letters,
            "Events sent to a dead-letter topic.",
        ),
        (
            "faustus_livelock_warnings_total",
            "counter",
            snap.livelock_warnings,
            "Warnings that a committed offset stalled while processing.",
        ),
    ];
    for (name, kind, v, help) in simple {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    let agent_failures: Vec<_> = app.monitor().failures();
    family(
        &mut out,
        "faustus_agents",
        "gauge",
        "Agents defined, by name and topic.",
    );
    for a in app.agents() {
        let failures = agent_failures.iter().filter(|f| f.agent == a.name).count();
        let _ = writeln!(
            out,
            "faustus_agents{{agent=\"{}\",topic=\"{}\",recent_failures=\"{failures}\"}} 1",
            crate::monitor::escape_label(&a.name),
            crate::monitor::escape_label(&a.topic)
        );
    }
    family(
        &mut out,
        "faustus_assigned_partitions",
        "gauge",
        "Partitions this worker holds.",
    );
    let _ = writeln!(
        out,
        "faustus_assigned_partitions {}",
        app.assignment().len()
    );
    family(
        &mut out,
        "faustus_ready",
        "gauge",
        "1 once the worker has recovered and is processing.",
    );
    let _ = writeln!(
        out,
        "faustus_ready {}",
        u8::from(app.inner.web.ready.load(Ordering::Acquire))
    );
    family(
        &mut out,
        "faustus_leader",
        "gauge",
        "1 while this worker is the leader.",
    );
    let _ = writeln!(out, "faustus_leader {}", u8::from(app.is_leader()));
    let tables = app.inner.defs.lock().tables.clone();
    family(
        &mut out,
        "faustus_table_keys",
        "gauge",
        "Keys of each table in the partitions this worker serves.",
    );
    for t in &tables {
        if let Ok(n) = t.local_len().await {
            let _ = writeln!(
                out,
                "faustus_table_keys{{table=\"{}\"}} {n}",
                crate::monitor::escape_label(t.name())
            );
        }
    }
    let recovery = app.monitor().recovery_progress();
    for (name, help) in [
        (
            "faustus_recovery_records_total",
            "Changelog records the latest recovery of each table has to replay.",
        ),
        (
            "faustus_recovery_records_done",
            "Changelog records that recovery replayed so far.",
        ),
        (
            "faustus_recovery_running",
            "1 while the table's recovery runs.",
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for r in &recovery {
            let v = match name {
                "faustus_recovery_records_total" => r.total,
                "faustus_recovery_records_done" => r.done,
                _ => u64::from(r.state == crate::monitor::RecoveryState::Running),
            };
            let _ = writeln!(
                out,
                "{name}{{table=\"{}\"}} {v}",
                crate::monitor::escape_label(&r.table)
            );
        }
    }
    let figures = app.monitor().figures();
    let helps = [
        (
            "faustus_messages_received_total",
            "Messages received, by topic.",
        ),
        ("faustus_messages_sent_total", "Records sent, by topic."),
        (
            "faustus_agent_events_total",
            "Events an agent finished processing, by agent.",
        ),
        (
            "faustus_committed_offset",
            "Last committed offset, by partition.",
        ),
        (
            "faustus_consumer_lag",
            "High watermark minus committed offset, by partition.",
        ),
        ("faustus_commit_seconds", "Time to flush and commit."),
        (
            "faustus_processing_seconds",
            "Time from delivery of a batch until every stream processed it, by topic.",
        ),
        ("faustus_timer_seconds", "Timer run time, by timer."),
        (
            "faustus_timer_overruns_total",
            "Timer runs longer than their interval, by timer.",
        ),
    ];
    let mut last = "";
    for (name, labels, f) in &figures {
        if *name != last {
            let help = helps
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| *h)
                .unwrap_or("Faustus figure.");
            let kind = match f {
                Figure::Counter(_) => "counter",
                Figure::Gauge(_) => "gauge",
                Figure::Timing { .. } => "summary",
            };
            family(&mut out, name, kind, help);
            last = name;
        }
        let braced = |extra: &str| -> String {
            match (labels.is_empty(), extra.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!("{{{extra}}}"),
                (false, true) => format!("{{{labels}}}"),
                (false, false) => format!("{{{labels},{extra}}}"),
            }
        };
        match f {
            Figure::Counter(c) => {
                let _ = writeln!(out, "{name}{} {c}", braced(""));
            }
            Figure::Gauge(g) => {
                let _ = writeln!(out, "{name}{} {g}", braced(""));
            }
            Figure::Timing { count, sum, max } => {
                let _ = writeln!(out, "{name}_count{} {count}", braced(""));
                let _ = writeln!(out, "{name}_sum{} {sum}", braced(""));
                let _ = writeln!(out, "{name}{} {max}", braced("quantile=\"1\""));
            }
        }
    }
    out
}

/// The default `web_port`; when it is in use the server takes any free port.
const DEFAULT_WEB_PORT: u16 = 6066;

/// Start the web server of `app` when `web_enabled` and a driver for the
/// `web` URL's scheme is registered; records the bound address.
pub(crate) async fn start(app: &App) -> Result<Option<Arc<dyn WebServer>>> {
    let settings = app.settings();
    if !settings.web_enabled {
        return Ok(None);
    }
    let url = DriverUrl::parse("web", &settings.web)?;
    if !app
        .registry()
        .web_schemes()
        .iter()
        .any(|s| s == url.scheme())
    {
        tracing::info!(web = %settings.web, "web server off: no web driver registered for this scheme");
        return Ok(None);
    }
    let driver = app.registry().web(&url)?;
    let addr = resolve(&settings.web_host, settings.web_port).await?;
    let handler: Arc<dyn WebHandler> = Arc::new(Router { app: app.clone() });
    let server = match driver.serve(addr, handler.clone()).await {
        // Several workers (or test apps) on one host with the default port:
        // the later ones take any free port, published as their URL.
        Err(Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AddrInUse
                && settings.web_port == DEFAULT_WEB_PORT =>
        {
            let any = SocketAddr::new(addr.ip(), 0);
            let server = driver.serve(any, handler).await?;
            tracing::warn!(default = %addr, bound = %server.local_addr(), "the default web port is in use; serving on another port (set web_port to choose)");
            server
        }
        r => r?,
    };
    *app.inner.web.driver.lock() = Some(driver);
    *app.inner.web.bound.lock() = Some(server.local_addr());
    app.set_web_url(format!("http://{}", server.local_addr()));
    tracing::info!(url = %format!("http://{}", server.local_addr()), "web server listening");
    Ok(Some(server))
}

/// `host:port` as a socket address (names resolved off the runtime).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let target = format!("{host}:{port}");
    let found = tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        target.to_socket_addrs().map(|mut a| a.next())
    })
    .await
    .map_err(|e| Error::config("web_host", format!("resolving {host:?}: {e}")))?;
    match found {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(Error::config(
            "web_host",
            format!("{host:?} resolves to no address"),
        )),
        Err(e) => Err(Error::config(
            "web_host",
            format!("cannot resolve {host:?}: {e}"),
        )),
    }
}

/// Stop the web server (drains in-flight requests) and forget its address.
pub(crate) async fn stop(app: &App, server: Option<Arc<dyn WebServer>>) {
    app.inner.web.set_ready(false);
    if let Some(server) = server {
        if let Err(e) = server.shutdown().await {
            tracing::warn!(error = %e, "web server did not shut down cleanly");
        }
    }
    *app.inner.web.bound.lock() = None;
    *app.inner.web.driver.lock() = None;
    // After the server: no request can start another lag sample.
    let lag_consumer = app.inner.web.lag.consumer.lock().await.take();
    if let Some(mut c) = lag_consumer {
        if let Err(e) = c.close().await {
            tracing::debug!(error = %e, "closing the lag consumer failed");
        }
    }
    *app.inner.web.lag.last.lock() = None;
}

const DASHBOARD: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{{app}} · Faustus</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}
</style></head>
<body>
<h1>{{app}}</h1>
<p>Status: <b id="status">loading…</b> · leader: <b id="leader">?</b> · updated <span id="updated">never</span></p>
<h2>Events</h2>
<table>
<tr><th>received</th><td class="num" id="messages_received">–</td><th>rate /s</th><td class="num" id="rate">–</td></tr>
<tr><th>acked</th><td class="num" id="events_acked">–</td><th>sent</th><td class="num" id="messages_sent">–</td></tr>
<tr><th>commits</th><td class="num" id="commits">–</td><th>rebalances</th><td class="num" id="rebalances">–</td></tr>
<tr><th>decode errors</th><td class="num" id="decode_errors">–</td><th>agent errors</th><td class="num" id="agent_errors">–</td></tr>
<tr><th>recovered records</th><td class="num" id="recovered_records">–</td><th>dead letters</th><td class="num" id="dead_letters">–</td></tr>
</table>
<h2>Agents</h2><table id="agents"></table>
<h2>Assigned partitions</h2><p id="assigned">–</p>
<h2>Lag</h2><table id="lag"></table>
<h2>Tables</h2><table id="tables"></table>
<h2>Recovery</h2><table id="recovery"></table>
<script>
let last = null;
function rows(id, list) {
  const t = document.getElementById(id);
  t.innerHTML = '';
  for (const cells of list) {
    const tr = document.createElement('tr');
    for (const c of cells) { const td = document.createElement('td'); td.textContent = String(c); tr.appendChild(td); }
    t.appendChild(tr);
  }
}
async function refresh() {
  try {
    const r = await fetch('/stats', {headers: {'Accept': 'application/json'}});
    const s = await r.json();
    document.getElementById('status').textContent = s.ready ? 'ready' : 'starting';
    document.getElementById('leader').textContent = s.leader ? 'yes' : 'no';
    for (const [k, v] of Object.entries(s.counters)) {
      const el = document.getElementById(k);
      if (el) el.textContent = String(v);
    }
    const now = Date.now();
    if (last) {
      const dt = (now - last.at) / 1000;
      const rate = dt > 0 ? (s.counters.messages_received - last.received) / dt : 0;
      document.getElementById('rate').textContent = rate.toFixed(1);
    }
    last = {at: now, received: s.counters.messages_received};
    rows('agents', s.agents.map(a => [a.name, a.topic]));
    document.getElementById('assigned').textContent = s.assigned.join(', ') || 'none';
    rows('lag', Object.entries(s.lag));
    rows('tables', s.tables.map(t => [t.name, t.changelog, t.keys_here ?? '?']));
    rows('recovery', s.recovery.map(r => [r.table, r.state, r.done + ' / ' + r.total,
      r.eta_seconds == null ? '' : 'ETA ' + r.eta_seconds.toFixed(0) + ' s']));
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('status').textContent = 'unreachable: ' + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_params() {
        let segs = parse_pattern("/table/{name}/{key}").unwrap();
        assert_eq!(
            matches(&segs, "/table/counts/h%C3%A9llo").unwrap().unwrap(),
            vec![
                ("name".to_string(), "counts".to_string()),
                ("key".to_string(), "héllo".to_string())
            ]
        );
        assert!(matches(&segs, "/table/counts").is_none());
        assert!(matches(&segs, "/table/counts/%zz").unwrap().is_err());
        let count = parse_pattern("/count/").unwrap();
        assert!(matches(&count, "/count").is_some());
        assert!(matches(&count, "/count/").is_some());
        assert!(parse_pattern("count").is_err());
        assert!(parse_pattern("/a/{}").is_err());
    }
}

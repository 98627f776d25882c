//! The app's web side in core: `app.page(...)` (a definition), the app's
//! page router, `table_route`, the read API the built-in pages use, and
//! starting/stopping the web driver with the worker.
//!
//! The built-in endpoints (`/`, `/stats`, `/router/`, `/table/{name}/{key}`,
//! `/metrics`, `/health`, `/ready`), the dashboard and the Prometheus text
//! live in the `faustus-web` crate: the worker serves the app's site
//! ([`AppBuilder::site`](crate::AppBuilder::site); `faustus::app` sets
//! `faustus_web::site`: those pages after the app's own) on the driver the
//! `web` setting names.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};

use crate::app::App;
use crate::drivers::url::DriverUrl;
use crate::drivers::web::{
    self, HttpRequest, HttpResponse, PathPattern, Request, WebDriver, WebError, WebHandler,
    WebResult, WebServer,
};
use crate::error::{Error, Result};

/// A page handler: gets the app and the request.
pub(crate) type PageFn = Arc<dyn Fn(App, Request) -> BoxFuture<'static, WebResult> + Send + Sync>;

struct Route {
    pattern: PathPattern,
    handler: PageFn,
}

/// Web state of an app: its pages, the bound address, readiness.
#[derive(Default)]
pub(crate) struct WebState {
    routes: RwLock<Vec<Route>>,
    bound: Mutex<Option<SocketAddr>>,
    driver: Mutex<Option<Arc<dyn WebDriver>>>,
    /// The site the running server serves (what `handle_request` uses then).
    site: Mutex<Option<Arc<dyn WebHandler>>>,
    ready: AtomicBool,
}

impl WebState {
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}

/// A page the app defined, matched against a request path
/// ([`App::match_page`]); `faustus_core::web::PageMatch`.
pub struct PageMatch {
    handler: PageFn,
    params: std::result::Result<Vec<(String, String)>, WebError>,
}

impl std::fmt::Debug for PageMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageMatch")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PageMatch {
    /// Run the page's handler on `request` (400 when the path or query is
    /// badly percent-encoded).
    pub async fn answer(self, app: &App, request: HttpRequest) -> WebResult {
        let req = Request::new(request, self.params?)?;
        (self.handler)(app.clone(), req).await
    }
}

/// The app's pages and nothing else ([`App::pages_handler`]).
struct PagesOnly {
    app: App,
}

#[async_trait]
impl WebHandler for PagesOnly {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        web::respond(&method, &uri, async {
            match self.app.match_page(uri.path()) {
                Some(page) => page.answer(&self.app, request).await,
                None => Err(WebError::not_found(format!("no page at {}", uri.path()))),
            }
        })
        .await
    }
}

/// The read API of the built-in pages (`faustus-web` builds `/stats`,
/// `/metrics`, `/ready`, `/table/…` on it; other pages may use it too).
/// Everything else they show comes from public accessors that exist for
/// other reasons: [`App::monitor`] (counters, labelled figures, failures,
/// recovery progress), [`App::agents`], [`App::tables`], [`App::assignment`],
/// [`App::is_leader`], [`App::cluster_map`], [`App::worker_id`].
impl App {
    /// Whether the worker has recovered its tables and is processing (what
    /// `/ready` and the `faustus_ready` metric report). False before the
    /// first assignment is recovered, after the worker stopped, and while a
    /// component has a problem ([`not_ready_reasons`](Self::not_ready_reasons)):
    /// brokers unreachable, a store failing its writes, the conductor
    /// restarting.
    pub fn is_ready(&self) -> bool {
        self.inner.state::<WebState>().ready.load(Ordering::Acquire) && self.health().is_healthy()
    }

    /// Why the worker is not ready, one line per reason (empty when ready).
    ///
    /// ```
    /// # use faustus_core::App;
    /// let app = App::builder("ready-doc").build().unwrap();
    /// // Not started yet.
    /// assert_eq!(app.not_ready_reasons(), vec!["starting: the worker has not recovered its first assignment yet".to_string()]);
    /// ```
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.inner.state::<WebState>().ready.load(Ordering::Acquire) {
            out.push("starting: the worker has not recovered its first assignment yet".to_string());
        }
        for (component, reason) in self.health().problems() {
            out.push(format!("{component}: {reason}"));
        }
        out
    }

    /// The worker's health: the components that currently keep it from
    /// being ready, with their reasons. Drivers and services may report
    /// their own (a component name of their choice).
    pub fn health(&self) -> std::sync::Arc<crate::lifecycle::Health> {
        self.inner.state::<crate::lifecycle::Health>()
    }

    /// Keys of table `table` in the partitions this worker serves (reads the
    /// store). `Error::NotFound` when the app has no such table.
    pub async fn table_local_len(&self, table: &str) -> Result<u64> {
        self.table_ops(table)?.local_len().await
    }

    /// The value of `key` in table `table` on this worker, as JSON: the key
    /// text is parsed as the table's key type ([`web::parse_text`]); `None`
    /// when this worker has no value for it. `Error::NotFound` when the app
    /// has no such table.
    pub async fn table_lookup(&self, table: &str, key: &str) -> Result<Option<serde_json::Value>> {
        self.table_ops(table)?.get_text(key).await
    }

    fn table_ops(&self, table: &str) -> Result<Arc<dyn crate::table::TableOps>> {
        self.inner
            .defs
            .lock()
            .tables
            .iter()
            .find(|t| t.name() == table)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "table",
                name: table.to_string(),
            })
    }

    /// The page the app defined for `path`, if any (pages are tried in the
    /// order they were defined).
    pub fn match_page(&self, path: &str) -> Option<PageMatch> {
        let state = self.inner.state::<WebState>();
        let routes = state.routes.read();
        routes.iter().find_map(|r| {
            r.pattern.matches(path).map(|params| PageMatch {
                handler: r.handler.clone(),
                params,
            })
        })
    }

    /// A handler serving the pages the app defined and answering 404 for
    /// every other path: the site of an app without one.
    pub fn pages_handler(&self) -> Arc<dyn WebHandler> {
        Arc::new(PagesOnly { app: self.clone() })
    }

    /// The handler the worker's web server serves: the app's site
    /// ([`AppBuilder::site`](crate::AppBuilder::site)), else its pages only.
    pub fn site(&self) -> Arc<dyn WebHandler> {
        match &self.inner.site {
            Some(site) => site(self),
            None => self.pages_handler(),
        }
    }
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
        let pattern = PathPattern::parse(path)?;
        let state = self.inner.state::<WebState>();
        let mut routes = state.routes.write();
        if routes.iter().any(|r| r.pattern.same_route(&pattern)) {
            return Err(Error::config(
                format!("page {path:?}"),
                "a page with this path is already defined",
            ));
        }
        routes.push(Route {
            pattern,
            handler: Arc::new(move |app, req| Box::pin(handler(app, req))),
        });
        Ok(())
    }

    /// Paths of the pages the app defined.
    pub fn pages(&self) -> Vec<String> {
        self.inner
            .state::<WebState>()
            .routes
            .read()
            .iter()
            .map(|r| r.pattern.as_str().to_string())
            .collect()
    }

    /// The URL the worker's web server listens on (`http://host:port`, with
    /// the real port when `web_port` was 0); `None` when it is not running.
    pub fn web_url(&self) -> Option<String> {
        let addr = (*self.inner.state::<WebState>().bound.lock())?;
        Some(format!("http://{addr}"))
    }

    /// Answer one request as the worker's web server would: with the site
    /// the running server serves, else with a one-off [`site`](App::site).
    /// Never fails: errors become 4xx/5xx.
    pub async fn handle_request(&self, request: HttpRequest) -> HttpResponse {
        let running = self.inner.state::<WebState>().site.lock().clone();
        if let Some(site) = running {
            return site.handle(request).await;
        }
        let site = self.site();
        let response = site.handle(request).await;
        site.close().await;
        response
    }
}

use crate::drivers::web::{FORWARDED_BY, SERVED_BY};

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
        .state::<WebState>()
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
    let handler = app.site();
    let server = match driver.serve(addr, handler.clone()).await {
        // Several workers (or test apps) on one host with the default port:
        // the later ones take any free port, published as their URL.
        Err(Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AddrInUse
                && settings.web_port == DEFAULT_WEB_PORT =>
        {
            let any = SocketAddr::new(addr.ip(), 0);
            let server = driver.serve(any, handler.clone()).await?;
            tracing::warn!(default = %addr, bound = %server.local_addr(), "the default web port is in use; serving on another port (set web_port to choose)");
            server
        }
        r => r?,
    };
    *app.inner.state::<WebState>().driver.lock() = Some(driver);
    *app.inner.state::<WebState>().site.lock() = Some(handler);
    *app.inner.state::<WebState>().bound.lock() = Some(server.local_addr());
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

/// Stop the web server (drains in-flight requests), close its site and
/// forget its address.
pub(crate) async fn stop(app: &App, server: Option<Arc<dyn WebServer>>) {
    app.inner.state::<WebState>().set_ready(false);
    if let Some(server) = server {
        if let Err(e) = server.shutdown().await {
            tracing::warn!(error = %e, "web server did not shut down cleanly");
        }
    }
    *app.inner.state::<WebState>().bound.lock() = None;
    *app.inner.state::<WebState>().driver.lock() = None;
    // After the server: no request reaches the site any more.
    let site = app.inner.state::<WebState>().site.lock().take();
    if let Some(site) = site {
        site.close().await;
    }
}

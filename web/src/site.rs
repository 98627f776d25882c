//! The built-in site: the app's pages first, then the built-in endpoints.
//! An app has it as its site through `AppBuilder::site(faustus_web::site)`;
//! any web driver serves it.

use std::sync::Arc;

use async_trait::async_trait;
use faustus_core::web::{
    self, HttpRequest, HttpResponse, PathPattern, Request, WebError, WebHandler, WebResult,
};
use faustus_core::App;

use crate::builtin;
use crate::lag::LagSampler;

/// The built-in endpoints, in the order they are tried (after the app's pages).
pub const BUILTIN_PATHS: [&str; 7] = [
    "/",
    "/stats",
    "/health",
    "/ready",
    "/metrics",
    "/router",
    "/table/{name}/{key}",
];

/// The app's pages, then Faustus' built-in endpoints:
///
/// | path | answer |
/// |---|---|
/// | `/` | the dashboard (HTML) when the request accepts `text/html`, else the `/stats` JSON |
/// | `/stats` | JSON: app, ready, leader, agents, assigned partitions, tables, counters, recovery, per-topic/partition figures, lag |
/// | `/router/` | JSON: this worker's id and the cluster map (workers, URLs, partitions, tables, standbys) |
/// | `/table/{name}/{key}` | the key's value in the table on this worker as JSON; 404 naming the table or key |
/// | `/metrics` | the Prometheus text format (0.0.4) |
/// | `/health` | `ok` |
/// | `/ready` | `ready` once the worker recovered and is processing, else 503 with `Retry-After: 1` |
///
/// The built-ins answer GET (and HEAD) only: other methods get 405. A page
/// the app defined at one of these paths wins. Errors become their status
/// with the message as a plain-text body; a panicking handler is a 500.
///
/// It is the app's site when the app was built with
/// `.site(faustus_web::site)` (`faustus::app` does that): the worker then
/// serves it on whichever web driver the `web` setting names, and closes it
/// when its server stopped.
pub fn site(app: &App) -> Arc<dyn WebHandler> {
    let builtins = BUILTIN_PATHS
        .iter()
        .filter_map(|p| PathPattern::parse(p).ok())
        .collect();
    Arc::new(Site {
        app: app.clone(),
        builtins,
        lag: Arc::default(),
    })
}

/// One run's site: the app, the built-in routes and the lag sampler.
struct Site {
    app: App,
    builtins: Vec<PathPattern>,
    lag: Arc<LagSampler>,
}

#[async_trait]
impl WebHandler for Site {
    async fn handle(&self, request: HttpRequest) -> HttpResponse {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        web::respond(&method, &uri, self.route(request)).await
    }

    async fn close(&self) {
        self.lag.close().await;
    }
}

impl Site {
    async fn route(&self, request: HttpRequest) -> WebResult {
        let path = request.uri().path().to_string();
        if let Some(page) = self.app.match_page(&path) {
            return page.answer(&self.app, request).await;
        }
        for pattern in &self.builtins {
            if let Some(params) = pattern.matches(&path) {
                let req = Request::new(request, params?)?;
                if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
                    return Err(WebError::new(
                        http::StatusCode::METHOD_NOT_ALLOWED,
                        format!("{} only answers GET", pattern.as_str()),
                    ));
                }
                return builtin::answer(&self.app, &self.lag, pattern.as_str(), req).await;
            }
        }
        Err(WebError::not_found(format!("no page at {path}")))
    }
}

//! The `WebDriver` trait: serving the app's HTTP routes.
//!
//! Requests and responses are `http` crate types with whole bodies, so any
//! server (hyper, axum, a test harness) can implement it.
//!
//! Core holds the contract only: the traits, [`Request`], [`WebError`], the
//! response helpers, [`PathPattern`] (route matching) and [`respond`] (a
//! route's result as a response, panics caught). The built-in endpoints
//! (`/`, `/stats`, `/router/`, `/table/{name}/{key}`, `/metrics`, `/health`,
//! `/ready`) and the dashboard live in the `faustus-web` crate: they are
//! the app's *site* (`AppBuilder::site`, set by `faustus::app`), which the
//! worker serves on whatever driver the `web` setting names. A driver only
//! serves a handler.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;

use crate::drivers::url::DriverUrl;
use crate::error::{Error, Result};

/// An HTTP request with its whole body.
pub type HttpRequest = http::Request<Bytes>;
/// An HTTP response with its whole body.
pub type HttpResponse = http::Response<Bytes>;

/// Answers requests: the app's site (its pages, plus the built-in ones when
/// the app has them; see `AppBuilder::site`).
#[async_trait]
pub trait WebHandler: Send + Sync + 'static {
    /// Answer one request. Never fails: errors become 4xx/5xx responses.
    async fn handle(&self, request: HttpRequest) -> HttpResponse;

    /// The server that served this handler stopped (or the one-off request
    /// of `App::handle_request` was answered): release what the handler
    /// holds (a consumer, say). The default holds nothing.
    async fn close(&self) {}
}

/// A running server.
#[async_trait]
pub trait WebServer: Send + Sync + fmt::Debug + 'static {
    /// The address it listens on (the real port when 0 was asked for).
    fn local_addr(&self) -> SocketAddr;
    /// Stop accepting, let in-flight requests finish, then return.
    async fn shutdown(&self) -> Result<()>;
}

/// An HTTP server driver.
#[async_trait]
pub trait WebDriver: Send + Sync + fmt::Debug + 'static {
    /// Driver name, e.g. `"hyper"`.
    fn name(&self) -> &str;

    /// Start serving `handler` on `addr`.
    async fn serve(
        &self,
        addr: SocketAddr,
        handler: Arc<dyn WebHandler>,
    ) -> Result<Arc<dyn WebServer>>;

    /// Send `request` (method, headers and body kept; its URI's path and
    /// query appended to `base_url`) to another worker and return its
    /// response, for `table_route`. Drivers that cannot forward say so.
    async fn forward(&self, base_url: &str, request: HttpRequest) -> Result<HttpResponse> {
        let _ = request;
        Err(Error::State(format!(
            "web driver {} cannot forward requests (to {base_url})",
            self.name()
        )))
    }
}

/// One route's path pattern: literal segments and `{name}` parameters,
/// e.g. `/table/{name}/{key}`. Empty segments are ignored, so `/count` and
/// `/count/` match `/count/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    pattern: String,
    segments: Vec<Segment>,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl PathPattern {
    /// Parse a pattern; it starts with `/` and every `{…}` segment has a name.
    pub fn parse(pattern: &str) -> Result<Self> {
        if !pattern.starts_with('/') {
            return Err(Error::config(
                format!("page {pattern:?}"),
                "a page path starts with '/'",
            ));
        }
        let segments = split_path(pattern)
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
            .collect::<Result<_>>()?;
        Ok(PathPattern {
            pattern: pattern.to_string(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether two patterns match the same paths (`/a/{x}` and `/a/{y}` do not
    /// count as the same: parameter names differ).
    pub fn same_route(&self, other: &PathPattern) -> bool {
        self.segments == other.segments
    }

    /// Match `path`: `None` when it does not match, else its path parameters
    /// (percent-decoded; a 400 when a segment is badly encoded).
    pub fn matches(&self, path: &str) -> Option<Result<Vec<(String, String)>, WebError>> {
        let parts: Vec<&str> = split_path(path).collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (seg, part) in self.segments.iter().zip(&parts) {
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
}

/// Turn what a route answered into the response: a [`WebError`] becomes its
/// status and message (server errors logged with `method` and `uri`), and a
/// panic in the route becomes a 500 naming the path (logged), so one bad
/// handler never takes the server down. Sites (the app's pages, the
/// built-in pages of `faustus-web`) answer every request through it.
pub async fn respond<F>(method: &http::Method, uri: &http::Uri, route: F) -> HttpResponse
where
    F: Future<Output = WebResult>,
{
    match std::panic::AssertUnwindSafe(route).catch_unwind().await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            match failure_log_level(e.status) {
                Some(tracing::Level::ERROR) => {
                    tracing::error!(%method, %uri, status = %e.status, error = %e.message, "web request failed")
                }
                Some(_) => {
                    tracing::debug!(%method, %uri, status = %e.status, error = %e.message, "web request answered: retry later")
                }
                None => {}
            }
            e.into_response()
        }
        Err(panic) => {
            let msg = crate::lifecycle::panic_message(&panic);
            tracing::error!(%method, %uri, panic = %msg, "web handler panicked");
            WebError::internal(format!("the handler of {} failed", uri.path())).into_response()
        }
    }
}

/// The level [`respond`] logs a route's error answer at: a 503 (not ready,
/// retry later — `/ready` while the worker starts or recovers, a table key
/// whose owner is rebalancing) is an expected answer, logged at debug; any
/// other server error at error; client errors (4xx) not at all.
fn failure_log_level(status: http::StatusCode) -> Option<tracing::Level> {
    if status == http::StatusCode::SERVICE_UNAVAILABLE {
        Some(tracing::Level::DEBUG)
    } else if status.is_server_error() {
        Some(tracing::Level::ERROR)
    } else {
        None
    }
}

/// Header naming the worker that answered a `table_route` request.
pub const SERVED_BY: &str = "x-faustus-served-by";
/// Header a worker adds when it forwards a request to the key's owner.
pub const FORWARDED_BY: &str = "x-faustus-forwarded-by";

/// Text from a URL as a typed value: JSON when it parses as `T`, else the
/// text as a JSON string (so `word=fox` and `n=42` both work).
pub fn parse_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    match serde_json::from_str::<T>(text) {
        Ok(v) => Ok(v),
        Err(_) => serde_json::from_value(serde_json::Value::String(text.to_string())),
    }
}

/// Builds a web driver from its URL.
pub type WebFactory = Arc<dyn Fn(&DriverUrl) -> Result<Arc<dyn WebDriver>> + Send + Sync + 'static>;

/// What a page handler gets: the request with its path and query parameters.
#[derive(Debug, Clone)]
pub struct Request {
    request: HttpRequest,
    params: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Request {
    /// Wrap a request; `params` are the path parameters the route matched.
    /// Fails (400) when the query string is not valid percent-encoding.
    pub fn new(request: HttpRequest, params: Vec<(String, String)>) -> Result<Self, WebError> {
        let query = match request.uri().query() {
            Some(q) => parse_query(q)?,
            None => Vec::new(),
        };
        Ok(Request {
            request,
            params,
            query,
        })
    }

    /// The HTTP method.
    pub fn method(&self) -> &http::Method {
        self.request.method()
    }

    /// The request URI.
    pub fn uri(&self) -> &http::Uri {
        self.request.uri()
    }

    /// The request headers.
    pub fn headers(&self) -> &http::HeaderMap {
        self.request.headers()
    }

    /// The whole body.
    pub fn body(&self) -> &Bytes {
        self.request.body()
    }

    /// The underlying `http` request.
    pub fn http(&self) -> &HttpRequest {
        &self.request
    }

    /// A path parameter (`{name}` in the route), percent-decoded.
    pub fn param(&self, name: &str) -> Result<&str, WebError> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| WebError::internal(format!("the route has no parameter {name:?}")))
    }

    /// A query parameter, if given (the first when repeated).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter that must be given: 400 naming it otherwise.
    pub fn require(&self, name: &str) -> Result<&str, WebError> {
        self.query(name)
            .ok_or_else(|| WebError::bad_request(format!("missing query parameter {name:?}")))
    }

    /// A query parameter parsed as `T`: `None` when absent, 400 when it does not parse.
    pub fn query_as<T>(&self, name: &str) -> Result<Option<T>, WebError>
    where
        T: std::str::FromStr,
        T::Err: fmt::Display,
    {
        match self.query(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| {
                WebError::bad_request(format!("query parameter {name:?} = {v:?}: {e}"))
            }),
        }
    }

    /// All query parameters, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// The body as JSON of type `T`: 400 with the parse error otherwise.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, WebError> {
        serde_json::from_slice(self.body()).map_err(|e| {
            WebError::bad_request(format!("request body is not the JSON expected: {e}"))
        })
    }
}

/// Percent-decode `s` (`+` as a space when `plus` is set).
pub fn percent_decode(s: &str, plus: bool) -> Result<String, WebError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        WebError::bad_request(format!("bad percent-encoding in {s:?}"))
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| WebError::bad_request(format!("{s:?} does not decode to UTF-8")))
}

/// Percent-encode a path segment or query value.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_query(q: &str) -> Result<Vec<(String, String)>, WebError> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

/// An error answered as an HTTP status with a plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    /// The status.
    pub status: http::StatusCode,
    /// The message (the response body).
    pub message: String,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl WebError {
    /// An error with this status.
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Self {
        WebError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::NOT_FOUND, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(http::StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 503 Service Unavailable with `Retry-After: seconds`.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> Self {
        let mut e = Self::new(http::StatusCode::SERVICE_UNAVAILABLE, message);
        e.headers
            .push((http::header::RETRY_AFTER, retry_after_secs.to_string()));
        e
    }

    /// The response for this error.
    pub fn into_response(self) -> HttpResponse {
        let mut r = text(format!("{}\n", self.message));
        *r.status_mut() = self.status;
        for (name, value) in self.headers {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

impl fmt::Display for WebError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl std::error::Error for WebError {}

impl From<crate::Error> for WebError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::NotFound { .. } => WebError::not_found(e.to_string()),
            _ => WebError::internal(e.to_string()),
        }
    }
}

/// What a page handler returns.
pub type WebResult = std::result::Result<HttpResponse, WebError>;

fn with_type(body: impl Into<Bytes>, content_type: &'static str) -> HttpResponse {
    let mut r = http::Response::new(body.into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// A `200 OK` JSON response (`web.json(...)` in Faust).
///
/// ```
/// let r = faustus_core::web::json(&serde_json::json!({"count": 3}));
/// assert_eq!(r.body().as_ref(), br#"{"count":3}"#);
/// assert_eq!(r.headers()["content-type"], "application/json");
/// ```
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(v) => with_type(v, "application/json"),
        Err(e) => {
            WebError::internal(format!("cannot encode the response as JSON: {e}")).into_response()
        }
    }
}

/// A `200 OK` plain-text response.
pub fn text(body: impl Into<String>) -> HttpResponse {
    with_type(body.into(), "text/plain; charset=utf-8")
}

/// A `200 OK` HTML response.
pub fn html(body: impl Into<String>) -> HttpResponse {
    with_type(body.into(), "text/html; charset=utf-8")
}

/// A response with `status` and a plain-text body.
pub fn status(status: http::StatusCode, body: impl Into<String>) -> HttpResponse {
    let mut r = text(body);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_params() {
        let segs = PathPattern::parse("/table/{name}/{key}").unwrap();
        assert_eq!(
            segs.matches("/table/counts/h%C3%A9llo").unwrap().unwrap(),
            vec![
                ("name".to_string(), "counts".to_string()),
                ("key".to_string(), "héllo".to_string())
            ]
        );
        assert!(segs.matches("/table/counts").is_none());
        assert!(segs.matches("/table/counts/%zz").unwrap().is_err());
        let count = PathPattern::parse("/count/").unwrap();
        assert!(count.matches("/count").is_some());
        assert!(count.matches("/count/").is_some());
        assert!(PathPattern::parse("count").is_err());
        assert!(PathPattern::parse("/a/{}").is_err());
    }

    #[test]
    fn a_503_is_logged_at_debug_other_server_errors_at_error() {
        use http::StatusCode;
        use tracing::Level;
        assert_eq!(
            failure_log_level(StatusCode::SERVICE_UNAVAILABLE),
            Some(Level::DEBUG)
        );
        for s in [500, 501, 502, 504, 599] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(failure_log_level(s), Some(Level::ERROR), "{s}");
        }
        for s in [200, 301, 400, 404, 429] {
            let s = StatusCode::from_u16(s).unwrap();
            assert_eq!(failure_log_level(s), None, "{s}");
        }
    }

    /// Records the level of every event (a minimal subscriber: core has no
    /// tracing-subscriber).
    #[derive(Default)]
    struct Levels(std::sync::Mutex<Vec<tracing::Level>>);

    impl tracing::Subscriber for Levels {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if let Ok(mut v) = self.0.lock() {
                v.push(*event.metadata().level());
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    /// The levels `respond` logged at while answering with `error`.
    fn levels_of(error: WebError) -> (http::StatusCode, Vec<tracing::Level>) {
        let levels = Arc::new(Levels::default());
        let method = http::Method::GET;
        let uri: http::Uri = "/ready".parse().unwrap();
        let response = tracing::subscriber::with_default(levels.clone(), || {
            futures::executor::block_on(respond(&method, &uri, async { Err(error) }))
        });
        let got = levels.0.lock().unwrap().clone();
        (response.status(), got)
    }

    #[test]
    fn respond_logs_not_ready_at_debug_and_a_failure_at_error() {
        let (status, levels) = levels_of(WebError::unavailable("not ready: starting", 1));
        assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(levels, vec![tracing::Level::DEBUG]);
        let (status, levels) = levels_of(WebError::internal("the store failed"));
        assert_eq!(status, http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(levels, vec![tracing::Level::ERROR]);
        let (status, levels) = levels_of(WebError::new(http::StatusCode::NOT_FOUND, "no page"));
        assert_eq!(status, http::StatusCode::NOT_FOUND);
        assert!(levels.is_empty(), "{levels:?}");
    }
}

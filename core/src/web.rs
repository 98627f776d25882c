//! The `WebDriver` trait: serving the app's HTTP routes.
//!
//! Requests and responses are `http` crate types with whole bodies, so any
//! server (hyper, axum, a test harness) can implement it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::url::DriverUrl;

/// An HTTP request with its whole body.
pub type HttpRequest = http::Request<Bytes>;
/// An HTTP response with its whole body.
pub type HttpResponse = http::Response<Bytes>;

/// Answers requests: the app's router (its pages plus the built-in ones).
#[async_trait]
pub trait WebHandler: Send + Sync + 'static {
    /// Answer one request. Never fails: errors become 4xx/5xx responses.
    async fn handle(&self, request: HttpRequest) -> HttpResponse;
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
}

/// Builds a web driver from its URL.
pub type WebFactory = Arc<dyn Fn(&DriverUrl) -> Result<Arc<dyn WebDriver>> + Send + Sync + 'static>;

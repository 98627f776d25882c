//! A small pooled HTTP/1.1 client (hyper), for tests and for forwarding
//! requests between workers.

use bytes::Bytes;
use faustus_core::web::{HttpRequest, HttpResponse};
use faustus_core::{Error, Result};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTP client keeping connections open between requests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A new client (create it inside the runtime that uses it).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Send `request` (its URI must be absolute) and read the whole response.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse> {
        let uri = request.uri().clone();
        let response = self
            .inner
            .request(request.map(Full::new))
            .await
            .map_err(|e| {
                use std::error::Error as _;
                let mut msg = format!("{uri}: {e}");
                let mut source = e.source();
                while let Some(s) = source {
                    msg.push_str(&format!(": {s}"));
                    source = s.source();
                }
                Error::retryable("http", msg)
            })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Error::retryable("http", format!("{uri}: reading the response: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }

    /// `GET url`: the status and the body as text.
    pub async fn get(&self, url: &str) -> Result<(http::StatusCode, String)> {
        let request = http::Request::get(url)
            .body(Bytes::new())
            .map_err(|e| Error::config("url", format!("{url}: {e}")))?;
        let r = self.send(request).await?;
        Ok((r.status(), String::from_utf8_lossy(r.body()).into_owned()))
    }
}

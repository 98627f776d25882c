//! The contract of the [`WebDriver`](faustus_core::web::WebDriver) trait, as runnable checks.
//!
//! Every web driver runs this suite in its own tests, in one line:
//!
//! ```ignore
//! // tests/conformance.rs of a web driver crate (needs tokio as a
//! // dev-dependency with the `macros` and `rt-multi-thread` features)
//! use std::sync::Arc;
//! use faustus_core::web::WebDriver;
//!
//! faustus_testkit::web_conformance!(Arc::new(my_web::MyDriver::default()) as Arc<dyn WebDriver>);
//! ```
//!
//! The checks are also public `async fn`s taking an `Arc<dyn WebDriver>`.
//! They talk to the server over plain TCP with a small HTTP/1.1 client of
//! their own ([`send_raw`], [`request`]), so they can also send what no
//! well-behaved client would. Every wait is bounded by [`DEADLINE`]. Each
//! check binds its own servers to `127.0.0.1:0`, so they run in parallel.
//!
//! What the contract says, check by check:
//!
//! - [`check_binds_and_reports_address`]: serving on port 0 binds a free
//!   port and `local_addr` reports the real one (never port 0), two servers
//!   get two ports, and serving on an address in use fails with
//!   `Error::Io` of kind `AddrInUse` (the worker falls back to a free port
//!   on that error when `web_port` is the default).
//! - [`check_site_serves_app_pages`]: the driver's `site(app)` answers the
//!   app's pages: GET and POST reach them with path parameters, query
//!   parameters (percent-decoded) and the body; their status, headers and
//!   body come back unchanged; a path no page (nor built-in) has is 404.
//! - [`check_statuses_headers_and_bodies`]: whatever a handler answers
//!   reaches the client as it was (statuses such as 201, 418 and 503,
//!   response headers, binary and empty bodies); the request's method, path,
//!   query, headers and body reach the handler as sent.
//! - [`check_handler_errors_become_status`]: a page's `WebError` is its
//!   status with the message as body (and its extra headers: `Retry-After`);
//!   a page that panics is a 500, and the server keeps serving; a raw
//!   `WebHandler` that panics costs at most its own connection.
//! - [`check_bad_requests`]: a malformed request is never answered with a
//!   success (a 4xx, or the connection is closed), a badly percent-encoded
//!   query is a 400 naming it, and the server keeps serving afterwards.
//! - [`check_concurrent_requests`]: several requests are handled at once (a
//!   handler waiting for the others does not block them).
//! - [`check_graceful_stop`]: `shutdown` stops accepting connections at
//!   once, lets a request in flight finish (its answer is delivered) and
//!   returns only after that; then nothing answers on its address, and a
//!   second `shutdown` is harmless.
//! - [`check_forward`]: `forward` (for `table_route`) either says the driver
//!   cannot forward (`Error::State`) or delivers method, path, query,
//!   headers and body to the other server and returns its answer as it was.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod checks;
mod client;

pub use checks::{
    check_bad_requests, check_binds_and_reports_address, check_concurrent_requests, check_forward,
    check_graceful_stop, check_handler_errors_become_status, check_site_serves_app_pages,
    check_statuses_headers_and_bodies, handler,
};
pub use client::{get, request, send_raw, Reply};

#[doc(hidden)]
pub use faustus_core::web::WebDriver as __WebDriver;

/// The longest any step of a check may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A name no other check (or run) uses.
pub fn unique_name(check: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{check}-{}-{micros}-{n}", std::process::id())
}

/// Expand the web driver conformance suite into one test per check.
///
/// `$make` is an expression of type `Arc<dyn WebDriver>`; it is evaluated
/// once per test, inside the test's runtime. The tests are named after the
/// checks, so invoke the macro once per module.
#[macro_export]
macro_rules! web_conformance {
    (@each $make:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let driver: ::std::sync::Arc<dyn $crate::web_conformance::__WebDriver> = $make;
                $crate::web_conformance::$check(driver).await;
            }
        )+
    };
    ($make:expr) => {
        $crate::web_conformance!(@each $make;
            check_binds_and_reports_address,
            check_site_serves_app_pages,
            check_statuses_headers_and_bodies,
            check_handler_errors_become_status,
            check_bad_requests,
            check_concurrent_requests,
            check_graceful_stop,
            check_forward,
        );
    };
}

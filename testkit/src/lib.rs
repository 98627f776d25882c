//! Faustus testkit: the agent test context ([`TestContext`]) for unit-testing
//! agents without a broker, and the conformance suites every `Transport`,
//! `Store` and `WebDriver` driver and every codec runs.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codec_conformance;
pub mod context;
pub mod sim;
pub mod store_conformance;
pub mod transport_conformance;
pub mod web_conformance;

pub use context::TestContext;

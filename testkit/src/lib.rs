//! Faustus testkit: the agent test context ([`TestContext`]) for unit-testing
//! agents without a broker, the conformance suites every `Transport`,
//! `Store` and `WebDriver` driver and every codec runs, and fault injection
//! for stores ([`faults::FaultyStore`]).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod codec_conformance;
pub mod context;
pub mod faults;
pub mod sim;
pub mod store_conformance;
pub mod transport_conformance;
pub mod web_conformance;

pub use context::TestContext;

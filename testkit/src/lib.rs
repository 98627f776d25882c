//! Faustus testkit: driver conformance suites, and (coming) the agent test
//! context and the cluster simulator.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod store_conformance;
pub mod transport_conformance;

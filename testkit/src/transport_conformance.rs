//! Transport conformance suite (being written).

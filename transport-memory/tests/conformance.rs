//! The transport conformance suite on private and named memory brokers.

use std::sync::Arc;

use faustus_core::transport::Transport;
use faustus_transport_memory::MemoryTransport;

faustus_testkit::transport_conformance!(Arc::new(MemoryTransport::new()) as Arc<dyn Transport>);

/// Every check again on one process-wide named broker shared by all tests,
/// like several apps of one process on `memory://NAME`.
mod named {
    use super::*;

    faustus_testkit::transport_conformance!(
        Arc::new(MemoryTransport::named("conformance-shared")) as Arc<dyn Transport>
    );
}

/// Every check through the forwarding `impl Transport for Arc<T>`: the
/// transport is an `Arc<MemoryTransport>`.
mod forwarded {
    use super::*;

    faustus_testkit::transport_conformance!(
        Arc::new(Arc::new(MemoryTransport::new())) as Arc<dyn Transport>
    );
}

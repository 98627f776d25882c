//! The hyper driver against the WebDriver conformance suite.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use faustus_core::web::WebDriver;

faustus_testkit::web_conformance!(
    Arc::new(faustus_web::HyperDriver::default()) as Arc<dyn WebDriver>
);

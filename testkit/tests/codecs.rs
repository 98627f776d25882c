#![allow(clippy::unwrap_used)]
//! The codec conformance suite on the built-in codecs and chains, on a user
//! codec registered by name, and against broken codecs it must catch.

use std::sync::Arc;

use bytes::Bytes;
use faustus_core::codec::{Codec, CodecChain};
use faustus_core::Registry;

fn builtin(name: &str) -> CodecChain {
    Registry::new().codec(name).unwrap()
}

mod json {
    faustus_testkit::codec_conformance!(faustus_core::codec::CodecChain::json());
}

mod raw {
    faustus_testkit::codec_conformance!(faustus_core::codec::CodecChain::raw());
}

mod binary {
    faustus_testkit::codec_conformance!(super::builtin("binary"));
}

mod json_binary {
    faustus_testkit::codec_conformance!(super::builtin("json|binary"));
}

mod raw_binary_binary {
    faustus_testkit::codec_conformance!(super::builtin("raw|binary|binary"));
}

/// A user's byte transform: reverses the bytes.
#[derive(Debug)]
struct Reverse;

impl Codec for Reverse {
    fn encode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(data.iter().rev().copied().collect::<Vec<u8>>().into())
    }

    fn decode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(data.iter().rev().copied().collect::<Vec<u8>>().into())
    }
}

fn user_chain(name: &str) -> CodecChain {
    let registry = Registry::new();
    registry.register_codec("reverse", Arc::new(Reverse));
    registry.codec(name).unwrap()
}

mod user_codec {
    faustus_testkit::codec_conformance!(super::user_chain("json|reverse|binary"));
}

mod user_codec_own_garbage {
    faustus_testkit::codec_conformance!(
        super::user_chain("json|reverse"),
        garbage = vec![bytes::Bytes::from_static(b"}{"), bytes::Bytes::new()]
    );
}

/// Loses the last byte: round trips must catch it.
#[derive(Debug)]
struct Lossy;

impl Codec for Lossy {
    fn encode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(data.slice(..data.len().saturating_sub(1)))
    }

    fn decode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(data)
    }
}

/// Panics on input it does not expect: the garbage check must catch it.
#[derive(Debug)]
struct Panicky;

impl Codec for Panicky {
    fn encode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(data)
    }

    fn decode(&self, data: Bytes) -> Result<Bytes, String> {
        if data.first() == Some(&0xff) {
            panic!("unexpected marker byte");
        }
        Ok(data)
    }
}

fn chain_with(codec: Arc<dyn Codec>, name: &str) -> CodecChain {
    let registry = Registry::new();
    registry.register_codec("broken", codec);
    registry.codec(name).unwrap()
}

#[test]
#[should_panic(expected = "round trip")]
fn a_lossy_codec_fails_the_round_trip() {
    faustus_testkit::codec_conformance::check_round_trip(chain_with(Arc::new(Lossy), "raw|broken"));
}

#[test]
#[should_panic(expected = "panicked decoding garbage")]
fn a_codec_that_panics_on_garbage_fails() {
    faustus_testkit::codec_conformance::check_rejects_garbage(
        chain_with(Arc::new(Panicky), "json|broken"),
        None,
    );
}

#[test]
#[should_panic(expected = "decoded garbage")]
fn garbage_that_decodes_fails() {
    // `raw` decodes any bytes into `Bytes`; as a `String` checked against
    // valid UTF-8 it must be reported as not rejected.
    faustus_testkit::codec_conformance::check_rejects_garbage(
        CodecChain::raw(),
        Some(vec![Bytes::from_static(b"valid text")]),
    );
}

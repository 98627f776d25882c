//! The contract of codecs, as runnable checks on a [`CodecChain`].
//!
//! A codec (a [`Codec`](faustus_core::codec::Codec) byte transform, or a
//! whole chain such as `json|binary`) is checked in one line:
//!
//! ```ignore
//! // tests/codecs.rs of a crate with its own codec
//! fn chain() -> faustus_core::codec::CodecChain {
//!     let registry = faustus_core::Registry::new();
//!     registry.register_codec("gzip", std::sync::Arc::new(my_codecs::Gzip));
//!     registry.codec("json|gzip").unwrap()
//! }
//!
//! faustus_testkit::codec_conformance!(chain());
//! ```
//!
//! What the contract says, check by check:
//!
//! - [`check_round_trip`]: representative values come back equal after
//!   `encode` then `decode`, and `encode_in` gives the same bytes as
//!   `encode`. A chain with the `json` format carries typed values (a struct
//!   with empty, Unicode, quoted and control-character strings, integer
//!   extremes, floats, options, lists, maps, nesting; numbers; strings;
//!   every byte value; a large value); one with the `raw` format carries
//!   `Bytes`, `Vec<u8>` and `String` (empty, every byte value, Unicode,
//!   large).
//! - [`check_rejects_garbage`]: decoding input that is no encoding of the
//!   expected type fails with an error — it never panics and never invents
//!   a value — and the error the app reports for it names the codec chain
//!   ([`CodecChain::decode_named`]). The garbage is [`garbage_for`] the
//!   chain's format unless the caller gives its own.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use faustus_core::codec::{CodecChain, Format};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub use faustus_core::codec::CodecChain as __CodecChain;

/// A typed value with every kind of field JSON-like formats must carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Strings: empty, Unicode, quotes, backslashes, control characters.
    pub texts: Vec<String>,
    /// Signed integer extremes.
    pub signed: Vec<i64>,
    /// The largest unsigned integer.
    pub unsigned: u64,
    /// Floats with short exact decimal forms.
    pub floats: Vec<f64>,
    /// A flag.
    pub flag: bool,
    /// An absent value.
    pub missing: Option<String>,
    /// A present value.
    pub present: Option<u32>,
    /// A map with string keys.
    pub map: BTreeMap<String, i32>,
    /// Nested lists.
    pub nested: Vec<Vec<String>>,
}

impl Sample {
    /// The representative sample.
    pub fn representative() -> Self {
        Sample {
            texts: vec![
                String::new(),
                "plain".into(),
                "Grüße, 世界 🎉".into(),
                "quote \" backslash \\ slash /".into(),
                "tab\tnewline\ncarriage\rnul\u{0}bell\u{7}".into(),
            ],
            signed: vec![i64::MIN, -1, 0, 1, i64::MAX],
            unsigned: u64::MAX,
            floats: vec![0.0, -1.5, 0.25, 1024.5, 3.0e10],
            flag: true,
            missing: None,
            present: Some(7),
            map: [("a".to_string(), 1), ("ключ".to_string(), -2)].into(),
            nested: vec![vec![], vec!["x".into(), "y".into()]],
        }
    }
}

fn every_byte() -> Vec<u8> {
    (0..=255u8).collect()
}

fn large_text() -> String {
    "faustus ✓ ".repeat(8 * 1024)
}

/// Encode then decode `value`, expecting it back, and `encode_in` to give
/// the same bytes as `encode`.
fn round_trip<T>(chain: &CodecChain, what: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let name = chain.name();
    let encoded = match chain.encode(&value) {
        Ok(b) => b,
        Err(e) => panic!("codec {name}: cannot encode {what}: {e}"),
    };
    let mut buf = BytesMut::new();
    match chain.encode_in(&value, &mut buf) {
        Ok(b) => assert_eq!(
            b, encoded,
            "codec {name}: encode_in and encode disagree on {what}"
        ),
        Err(e) => panic!("codec {name}: encode_in fails on {what}: {e}"),
    }
    match chain.decode::<T>(encoded.clone()) {
        Ok(back) => assert_eq!(
            back, value,
            "codec {name}: {what} changed in a round trip (encoded as {encoded:?})"
        ),
        Err(e) => panic!("codec {name}: cannot decode its own encoding of {what}: {e}"),
    }
}

/// Representative values survive `encode` then `decode` (see the module docs).
pub fn check_round_trip(chain: CodecChain) {
    match chain.format() {
        Format::Json => {
            round_trip(
                &chain,
                "a struct of every kind of field",
                Sample::representative(),
            );
            round_trip(
                &chain,
                "a list of structs",
                vec![Sample::representative(); 3],
            );
            round_trip(&chain, "a number", 42u32);
            round_trip(&chain, "a negative number", -7i64);
            round_trip(&chain, "a string", "Grüße, 世界 🎉".to_string());
            round_trip(&chain, "an empty string", String::new());
            round_trip(&chain, "every byte value", every_byte());
            round_trip(&chain, "a unit", ());
            round_trip(&chain, "an absent option", None::<String>);
            round_trip(&chain, "a large string", large_text());
        }
        Format::Raw => {
            round_trip(&chain, "empty bytes", Bytes::new());
            round_trip(&chain, "every byte value", Bytes::from(every_byte()));
            round_trip(&chain, "a byte vector", every_byte());
            round_trip(&chain, "large bytes", Bytes::from(large_text()));
            round_trip(&chain, "a string", "Grüße, 世界 🎉".to_string());
            round_trip(&chain, "an empty string", String::new());
        }
    }
}

/// Inputs that are no encoding of the checked type for a chain of `format`:
/// for `json`, a [`Sample`]; for `raw`, a `String` (so invalid UTF-8).
pub fn garbage_for(format: Format) -> Vec<Bytes> {
    let json: &[&[u8]] = &[
        b"",
        b"\xff\xfe\xfd",
        b"{\"unterminated",
        b"not json at all \x00",
        b"[1, 2",
        b"42",
    ];
    let raw: &[&[u8]] = &[b"\xff\xfe\xfd", b"\xc3\x28", b"abc\x80", b"\xed\xa0\x80"];
    let list = match format {
        Format::Json => json,
        Format::Raw => raw,
    };
    list.iter().map(|b| Bytes::copy_from_slice(b)).collect()
}

fn rejects<T: DeserializeOwned + Debug + 'static>(chain: &CodecChain, input: &Bytes) {
    let name = chain.name();
    let outcome = catch_unwind(AssertUnwindSafe(|| chain.decode_named::<T>(input.clone())));
    match outcome {
        Err(_) => {
            panic!("codec {name} panicked decoding garbage {input:?}; it must return an error")
        }
        Ok(Ok(v)) => panic!("codec {name} decoded garbage {input:?} into {v:?}; it must fail"),
        Ok(Err(e)) => assert!(
            e.contains(name),
            "codec {name}: the error for garbage {input:?} must name the codec: {e:?}"
        ),
    }
}

/// Decoding garbage fails with an error naming the chain, without panicking.
/// `garbage`: inputs to try; `None` for [`garbage_for`] the chain's format.
pub fn check_rejects_garbage(chain: CodecChain, garbage: Option<Vec<Bytes>>) {
    let garbage = garbage.unwrap_or_else(|| garbage_for(chain.format()));
    for input in &garbage {
        match chain.format() {
            Format::Json => rejects::<Sample>(&chain, input),
            Format::Raw => rejects::<String>(&chain, input),
        }
    }
}

/// Expand the codec conformance suite into one `#[test]` per check.
///
/// `$make` is an expression of type [`CodecChain`], evaluated once per test.
/// Optionally `garbage = expr` gives the inputs to reject (a `Vec<Bytes>`)
/// instead of [`garbage_for`] the chain's format — for a codec whose
/// decoding accepts some of those. The tests are named after the checks, so
/// invoke the macro once per module.
///
/// ```ignore
/// mod json_binary {
///     faustus_testkit::codec_conformance!(
///         faustus_core::Registry::new().codec("json|binary").unwrap()
///     );
/// }
/// ```
#[macro_export]
macro_rules! codec_conformance {
    (@tests $make:expr, $garbage:expr) => {
        #[test]
        fn check_round_trip() {
            let chain: $crate::codec_conformance::__CodecChain = $make;
            $crate::codec_conformance::check_round_trip(chain);
        }

        #[test]
        fn check_rejects_garbage() {
            let chain: $crate::codec_conformance::__CodecChain = $make;
            $crate::codec_conformance::check_rejects_garbage(chain, $garbage);
        }
    };
    ($make:expr) => {
        $crate::codec_conformance!(@tests $make, ::std::option::Option::None);
    };
    ($make:expr, garbage = $garbage:expr) => {
        $crate::codec_conformance!(@tests $make, ::std::option::Option::Some($garbage));
    };
}

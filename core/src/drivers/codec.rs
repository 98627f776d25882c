//! Codecs: how keys and values become bytes and back.
//!
//! A codec name is a chain separated by `|`, read left to right when encoding:
//! `"json"`, `"raw"`, `"binary"` (base64), `"json|binary"`, or names a user
//! registered with [`Registry::register_codec`](crate::Registry::register_codec).
//! The first element may be a *format* that turns typed values into bytes
//! through serde (`json`) or passes bytes/strings through (`raw`); the rest are
//! byte transforms ([`Codec`]). A chain that starts with a transform has the
//! `raw` format in front of it, as in Faust.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A byte-to-byte transform in a codec chain (compression, encoding, encryption…).
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// Encode bytes (applied in chain order).
    fn encode(&self, data: Bytes) -> Result<Bytes, String>;
    /// Decode bytes (applied in reverse chain order).
    fn decode(&self, data: Bytes) -> Result<Bytes, String>;
}

/// `binary`: base64 (standard alphabet, padded), as Faust's `binary` codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Base64Codec;

impl Codec for Base64Codec {
    fn encode(&self, data: Bytes) -> Result<Bytes, String> {
        Ok(base64::engine::general_purpose::STANDARD
            .encode(&data)
            .into_bytes()
            .into())
    }

    fn decode(&self, data: Bytes) -> Result<Bytes, String> {
        base64::engine::general_purpose::STANDARD
            .decode(&data)
            .map(Bytes::from)
            .map_err(|e| format!("invalid base64: {e}"))
    }
}

/// The serde step at the head of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// serde_json.
    Json,
    /// Bytes and strings as they are.
    Raw,
}

/// A resolved codec chain, ready to encode and decode typed values.
#[derive(Clone)]
pub struct CodecChain {
    name: Arc<str>,
    format: Format,
    transforms: Arc<[Arc<dyn Codec>]>,
}

impl fmt::Debug for CodecChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodecChain({:?})", self.name)
    }
}

impl CodecChain {
    /// A chain from its parts (see [`Registry::codec`](crate::Registry::codec) to resolve a name).
    pub fn new(name: impl Into<Arc<str>>, format: Format, transforms: Vec<Arc<dyn Codec>>) -> Self {
        CodecChain {
            name: name.into(),
            format,
            transforms: transforms.into(),
        }
    }

    /// Plain JSON.
    pub fn json() -> Self {
        CodecChain::new("json", Format::Json, Vec::new())
    }

    /// Raw bytes / strings.
    pub fn raw() -> Self {
        CodecChain::new("raw", Format::Raw, Vec::new())
    }

    /// The chain's name as configured, e.g. `json|binary`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The serde format at its head.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Encode a typed value.
    pub fn encode<T: Serialize + 'static>(&self, value: &T) -> Result<Bytes, String> {
        let mut bytes = match self.format {
            Format::Json => Bytes::from(serde_json::to_vec(value).map_err(|e| e.to_string())?),
            Format::Raw => raw_encode(value)?,
        };
        for t in self.transforms.iter() {
            bytes = t.encode(bytes)?;
        }
        Ok(bytes)
    }

    /// [`encode`](Self::encode) into the free capacity of `buf`: many small
    /// values encoded one after another share one allocation.
    pub fn encode_in<T: Serialize + 'static>(
        &self,
        value: &T,
        buf: &mut BytesMut,
    ) -> Result<Bytes, String> {
        if self.format != Format::Json || !self.transforms.is_empty() {
            return self.encode(value);
        }
        if buf.capacity() - buf.len() < 64 {
            buf.reserve(16 * 1024);
        }
        let mut writer = buf.writer();
        match serde_json::to_writer(&mut writer, value) {
            Ok(()) => Ok(writer.into_inner().split().freeze()),
            Err(e) => {
                writer.into_inner().clear();
                Err(e.to_string())
            }
        }
    }

    /// Decode a typed value.
    pub fn decode<T: DeserializeOwned + 'static>(&self, bytes: Bytes) -> Result<T, String> {
        let mut bytes = bytes;
        for t in self.transforms.iter().rev() {
            bytes = t.decode(bytes)?;
        }
        match self.format {
            Format::Json => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            Format::Raw => raw_decode(bytes),
        }
    }

    /// [`decode`](Self::decode), with the error naming this chain as the app
    /// reports an undecodable message: `"{the codec's message} (codec {name})"`.
    pub fn decode_named<T: DeserializeOwned + 'static>(&self, bytes: Bytes) -> Result<T, String> {
        self.decode(bytes)
            .map_err(|message| format!("{message} (codec {})", self.name))
    }
}

fn raw_encode<T: Serialize + 'static>(value: &T) -> Result<Bytes, String> {
    let any = value as &dyn Any;
    if let Some(b) = any.downcast_ref::<Bytes>() {
        return Ok(b.clone());
    }
    if let Some(s) = any.downcast_ref::<String>() {
        return Ok(Bytes::copy_from_slice(s.as_bytes()));
    }
    if let Some(v) = any.downcast_ref::<Vec<u8>>() {
        return Ok(Bytes::copy_from_slice(v));
    }
    if let Some(s) = any.downcast_ref::<&'static str>() {
        return Ok(Bytes::from_static(s.as_bytes()));
    }
    Err(format!(
        "the raw codec carries Bytes, Vec<u8> or String values, not {}; use `json`",
        std::any::type_name::<T>()
    ))
}

fn raw_decode<T: 'static>(bytes: Bytes) -> Result<T, String> {
    let id = TypeId::of::<T>();
    let boxed: Box<dyn Any> = if id == TypeId::of::<Bytes>() {
        Box::new(bytes)
    } else if id == TypeId::of::<String>() {
        Box::new(String::from_utf8(bytes.to_vec()).map_err(|e| format!("not UTF-8: {e}"))?)
    } else if id == TypeId::of::<Vec<u8>>() {
        Box::new(bytes.to_vec())
    } else {
        return Err(format!(
            "the raw codec decodes into Bytes, Vec<u8> or String, not {}; use `json`",
            std::any::type_name::<T>()
        ));
    };
    boxed
        .downcast::<T>()
        .map(|b| *b)
        .map_err(|_| "raw codec type mismatch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Word {
        word: String,
    }

    #[test]
    fn json_round_trip() {
        let c = CodecChain::json();
        let b = c.encode(&Word { word: "hi".into() }).unwrap();
        assert_eq!(&b[..], br#"{"word":"hi"}"#);
        assert_eq!(c.decode::<Word>(b).unwrap(), Word { word: "hi".into() });
    }

    #[test]
    fn raw_passes_bytes_without_copy() {
        let c = CodecChain::raw();
        let original = Bytes::from_static(b"hello");
        let out: Bytes = c.decode(original.clone()).unwrap();
        assert_eq!(out.as_ptr(), original.as_ptr());
        assert_eq!(c.decode::<String>(original.clone()).unwrap(), "hello");
        assert!(c.decode::<u32>(original).unwrap_err().contains("json"));
        assert!(c.decode::<String>(Bytes::from_static(&[0xff])).is_err());
    }

    #[test]
    fn json_then_binary() {
        let c = CodecChain::new("json|binary", Format::Json, vec![Arc::new(Base64Codec)]);
        let b = c.encode(&42u32).unwrap();
        assert_eq!(&b[..], b"NDI=");
        assert_eq!(c.decode::<u32>(b).unwrap(), 42);
        assert!(c.decode::<u32>(Bytes::from_static(b"!!")).is_err());
    }
}

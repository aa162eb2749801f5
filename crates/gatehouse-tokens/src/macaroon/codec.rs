//! V2 binary and V2 JSON (libmacaroons `doc/format.txt`), and the base64 text forms.
//!
//! Every parse checks the whole input against [`Limits`] before looking inside it, reads
//! varints of at most four bytes, and refuses fields out of order, unknown field types,
//! trailing bytes and fields over the limit: a token is either exactly well formed or rejected.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use super::{Caveat, Error, Limits, Macaroon, Signature};

const V2: u8 = 2;
const EOS: u8 = 0;
const LOCATION: u8 = 1;
const IDENTIFIER: u8 = 2;
const VID: u8 = 4;
const SIGNATURE: u8 = 6;
/// 4 varint bytes reach 2^28: far beyond any field a [`Limits`] allows.
const MAX_VARINT_BYTES: usize = 4;

/// Text forms of a macaroon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// V2 binary, URL-safe base64 without padding (what libmacaroons and pymacaroons emit).
    Base64Url,
    /// V2 binary, standard base64 with padding.
    Base64Std,
    /// V2 JSON.
    Json,
}

const LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT_PADDING);
const STD_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT_PADDING);

/// Base64 in either alphabet, padded or not (libmacaroons accepts both; so do we).
pub(crate) fn b64_decode(text: &str) -> Result<Vec<u8>, Error> {
    let url = text.contains(['-', '_']);
    let std = text.contains(['+', '/']);
    let engine = match (url, std) {
        (true, true) => return Err(Error::Malformed("mixed base64 alphabets")),
        (false, true) => &STD_ANY,
        _ => &URL_ANY,
    };
    engine.decode(text).map_err(|_| Error::Malformed("bad base64"))
}

impl Macaroon {
    pub fn encode(&self, encoding: Encoding) -> String {
        match encoding {
            Encoding::Base64Url => URL_SAFE_NO_PAD.encode(self.to_binary()),
            Encoding::Base64Std => STANDARD.encode(self.to_binary()),
            Encoding::Json => self.to_json(),
        }
    }

    /// Reads any text form: JSON if it starts with `{`, otherwise base64 (either alphabet,
    /// padding optional) of the V2 binary form.
    pub fn decode(text: &str, limits: &Limits) -> Result<Macaroon, Error> {
        let text = text.trim();
        // base64 inflates by 4/3: bound the text before decoding it.
        if text.len() > limits.max_bytes.saturating_mul(4) / 3 + 4 {
            return Err(Error::TooLarge("token"));
        }
        if text.starts_with('{') {
            Macaroon::from_json(text, limits)
        } else {
            Macaroon::from_binary(&b64_decode(text)?, limits)
        }
    }

    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.identifier.len() + self.caveats.len() * 48);
        out.push(V2);
        if let Some(l) = &self.location {
            put_field(&mut out, LOCATION, l.as_bytes());
        }
        put_field(&mut out, IDENTIFIER, &self.identifier);
        out.push(EOS);
        for c in &self.caveats {
            if let Some(l) = &c.location {
                put_field(&mut out, LOCATION, l.as_bytes());
            }
            put_field(&mut out, IDENTIFIER, &c.id);
            if let Some(v) = &c.vid {
                put_field(&mut out, VID, v);
            }
            out.push(EOS);
        }
        out.push(EOS);
        put_field(&mut out, SIGNATURE, &self.signature.0);
        out
    }

    pub fn from_binary(buf: &[u8], limits: &Limits) -> Result<Macaroon, Error> {
        if buf.len() > limits.max_bytes {
            return Err(Error::TooLarge("token"));
        }
        let mut r = Reader { buf, pos: 0, limits };
        if r.byte()? != V2 {
            return Err(Error::Malformed("not a V2 macaroon"));
        }
        let (location, identifier) = match r.section()?.as_slice() {
            [(LOCATION, l), (IDENTIFIER, i)] => (Some(utf8(l)?), i.to_vec()),
            [(IDENTIFIER, i)] => (None, i.to_vec()),
            _ => return Err(Error::Malformed("header")),
        };
        let mut caveats = Vec::new();
        loop {
            let section = r.section()?;
            if section.is_empty() {
                break;
            }
            if caveats.len() == limits.max_caveats {
                return Err(Error::TooLarge("caveats"));
            }
            caveats.push(match section.as_slice() {
                [(IDENTIFIER, i)] => Caveat { location: None, id: i.to_vec(), vid: None },
                [(LOCATION, l), (IDENTIFIER, i), (VID, v)] => {
                    Caveat { location: Some(utf8(l)?), id: i.to_vec(), vid: Some(v.to_vec()) }
                }
                [(IDENTIFIER, i), (VID, v)] => Caveat { location: None, id: i.to_vec(), vid: Some(v.to_vec()) },
                _ => return Err(Error::Malformed("caveat fields")),
            });
        }
        let (kind, sig) = r.field()?;
        if kind != SIGNATURE {
            return Err(Error::Malformed("signature expected"));
        }
        let signature = Signature(sig.try_into().map_err(|_| Error::Malformed("signature length"))?);
        if r.pos != buf.len() {
            return Err(Error::Malformed("trailing bytes"));
        }
        Ok(Macaroon { location, identifier, caveats, signature })
    }

    pub fn to_json(&self) -> String {
        let (i, i64) = text_or_b64(&self.identifier);
        let doc = JsonOut {
            v: 2,
            l: self.location.as_deref(),
            i,
            i64,
            c: self
                .caveats
                .iter()
                .map(|c| {
                    let (i, i64) = text_or_b64(&c.id);
                    let (v, v64) = c.vid.as_deref().map(text_or_b64).unwrap_or((None, None));
                    JsonCaveatOut { l: c.location.as_deref(), i, i64, v, v64 }
                })
                .collect(),
            s64: URL_SAFE_NO_PAD.encode(self.signature.0),
        };
        // Serializing plain strings and numbers into a String cannot fail.
        serde_json::to_string(&doc).unwrap_or_default()
    }

    pub fn from_json(text: &str, limits: &Limits) -> Result<Macaroon, Error> {
        if text.len() > limits.max_bytes {
            return Err(Error::TooLarge("token"));
        }
        let doc: JsonIn = serde_json::from_str(text).map_err(|_| Error::Malformed("json"))?;
        if doc.v.is_some_and(|v| v != 2) {
            return Err(Error::Malformed("json version"));
        }
        let caveats = doc.c.unwrap_or_default();
        if caveats.len() > limits.max_caveats {
            return Err(Error::TooLarge("caveats"));
        }
        let location = opt_text_field(doc.l, doc.l64, limits)?;
        let identifier = binary_field(doc.i, doc.i64, limits)?.ok_or(Error::Malformed("identifier"))?;
        let caveats = caveats
            .into_iter()
            .map(|c| {
                let id = binary_field(c.i, c.i64, limits)?.ok_or(Error::Malformed("caveat identifier"))?;
                let vid = binary_field(c.v, c.v64, limits)?;
                let location = opt_text_field(c.l, c.l64, limits)?;
                if vid.is_none() && location.is_some() {
                    return Err(Error::Malformed("location on a first-party caveat"));
                }
                Ok(Caveat { location, id, vid })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let sig = binary_field(doc.s, doc.s64, limits)?.ok_or(Error::Malformed("signature"))?;
        let signature = Signature(sig.try_into().map_err(|_| Error::Malformed("signature length"))?);
        Ok(Macaroon { location, identifier, caveats, signature })
    }
}

fn put_field(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    let mut n = data.len();
    loop {
        // Truncation is the point: seven bits per varint byte.
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
    out.extend_from_slice(data);
}

fn utf8(b: &[u8]) -> Result<String, Error> {
    String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed("location is not UTF-8"))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or(Error::Malformed("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<usize, Error> {
        let mut n = 0usize;
        for i in 0..MAX_VARINT_BYTES {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(Error::TooLarge("varint"))
    }

    /// One field; field types are single-byte varints in V2.
    fn field(&mut self) -> Result<(u8, &'a [u8]), Error> {
        let kind = self.byte()?;
        if kind == EOS {
            return Ok((EOS, &[]));
        }
        if !matches!(kind, LOCATION | IDENTIFIER | VID | SIGNATURE) {
            return Err(Error::Malformed("unknown field type"));
        }
        let len = self.varint()?;
        if len > self.limits.max_field {
            return Err(Error::TooLarge("field"));
        }
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or(Error::Malformed("truncated"))?;
        let data = &self.buf[self.pos..end];
        self.pos = end;
        Ok((kind, data))
    }

    /// Fields up to an end-of-section marker, in strictly increasing type order.
    fn section(&mut self) -> Result<Vec<(u8, &'a [u8])>, Error> {
        let mut fields: Vec<(u8, &'a [u8])> = Vec::with_capacity(3);
        loop {
            let (kind, data) = self.field()?;
            if kind == EOS {
                return Ok(fields);
            }
            if fields.last().is_some_and(|(prev, _)| *prev >= kind) || fields.len() == 3 {
                return Err(Error::Malformed("fields out of order"));
            }
            fields.push((kind, data));
        }
    }
}

/// JSON carries a field as text when it is UTF-8 and as `<name>64` base64 otherwise.
fn text_or_b64(b: &[u8]) -> (Option<&str>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s), None),
        Err(_) => (None, Some(URL_SAFE_NO_PAD.encode(b))),
    }
}

fn binary_field(text: Option<String>, b64: Option<String>, limits: &Limits) -> Result<Option<Vec<u8>>, Error> {
    let v = match (text, b64) {
        (Some(_), Some(_)) => return Err(Error::Malformed("field given twice")),
        (Some(t), None) => t.into_bytes(),
        (None, Some(b)) => b64_decode(&b)?,
        (None, None) => return Ok(None),
    };
    if v.len() > limits.max_field {
        return Err(Error::TooLarge("field"));
    }
    Ok(Some(v))
}

fn opt_text_field(text: Option<String>, b64: Option<String>, limits: &Limits) -> Result<Option<String>, Error> {
    binary_field(text, b64, limits)?.map(|b| utf8(&b)).transpose()
}

#[derive(Serialize)]
struct JsonOut<'a> {
    v: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    i64: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    c: Vec<JsonCaveatOut<'a>>,
    s64: String,
}

#[derive(Serialize)]
struct JsonCaveatOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    i64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    l: Option<&'a str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonIn {
    v: Option<u8>,
    l: Option<String>,
    l64: Option<String>,
    i: Option<String>,
    i64: Option<String>,
    c: Option<Vec<JsonCaveatIn>>,
    s: Option<String>,
    s64: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCaveatIn {
    l: Option<String>,
    l64: Option<String>,
    i: Option<String>,
    i64: Option<String>,
    v: Option<String>,
    v64: Option<String>,
}

//! Turning bytes into [`Event`]s and back.
//!
//! * [`wire`]: the Confluent framing (magic byte 0, 4-byte big-endian schema id).
//! * [`avro`]: the schema store (local schema directory) and the Avro body codec.
//! * [`direct`]: Avro bodies decoded straight into events by a reader compiled
//!   from each writer schema (the hot path; apache-avro's `Value` path is the reference);
//!   `reader` reads its bytes (varints, strings, symbols, unions).
//! * [`fields`]: record fields -> [`Event`], shared by both decoders.
//! * [`json`]: the JSON mapping used by replay files (NDJSON).
//!
//! Every failure is a [`DecodeError`] whose [`DecodeError::reason`] is a short,
//! bounded label used for the `peakguard_decode_errors_total{reason}` counter and
//! the dead-letter header. Decoding never panics on input.

pub mod avro;
pub mod direct;
pub mod fields;
pub mod json;
mod reader;
pub mod registry;
pub mod wire;

use crate::event::Event;

pub use avro::{SchemaStore, SchemaStoreError};

/// Why a record could not become an [`Event`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record is {len} bytes, shorter than the 5-byte Confluent header (magic byte + schema id)")]
    Truncated { len: usize },
    #[error("first byte is {0:#04x}, expected the Confluent magic byte 0x00; is the producer using the Confluent Avro serializer?")]
    BadMagic(u8),
    #[error("schema id {0} is not known; add its writer schema to the schema directory's ids.toml")]
    UnknownSchemaId(u32),
    #[error("{message}")]
    Registry { schema_id: u32, reason: &'static str, message: String },
    #[error("Avro body does not match writer schema {schema_id}: {message}")]
    Avro { schema_id: u32, message: String },
    #[error("{extra} bytes left after the Avro body of schema {schema_id}; wrong schema id?")]
    TrailingBytes { schema_id: u32, extra: usize },
    #[error("field `{field}` is missing or has the wrong type")]
    MissingField { field: &'static str },
    #[error("field `{field}` is empty")]
    EmptyField { field: &'static str },
    #[error("field `{field}` = {value} is out of range ({why})")]
    InvalidField { field: &'static str, value: String, why: &'static str },
    #[error("not a JSON event: {message}")]
    Json { message: String },
}

impl DecodeError {
    /// A bounded label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::BadMagic(_) => "bad_magic",
            DecodeError::UnknownSchemaId(_) => "unknown_schema_id",
            DecodeError::Registry { reason, .. } => reason,
            DecodeError::Avro { .. } => "avro_body",
            DecodeError::TrailingBytes { .. } => "trailing_bytes",
            DecodeError::MissingField { .. } => "missing_field",
            DecodeError::EmptyField { field: "shop_id" } => "missing_shop_id",
            DecodeError::EmptyField { .. } => "empty_field",
            DecodeError::InvalidField { field: "event_time" | "order_paid_at" | "promised_by", .. } => {
                "invalid_timestamp"
            }
            DecodeError::InvalidField { field: "amount_minor" | "currency", .. } => "invalid_amount",
            DecodeError::InvalidField { .. } => "invalid_field",
            DecodeError::Json { .. } => "bad_json",
        }
    }

    /// Every label [`reason`](Self::reason) can return, so counters can be
    /// registered before the first error.
    pub const REASONS: &'static [&'static str] = &[
        "schema_registry_unavailable",
        "unusable_schema",
        "truncated",
        "bad_magic",
        "unknown_schema_id",
        "avro_body",
        "trailing_bytes",
        "missing_field",
        "missing_shop_id",
        "empty_field",
        "invalid_timestamp",
        "invalid_amount",
        "invalid_field",
        "bad_json",
    ];
}

/// Decodes one Confluent-framed Avro record.
pub fn decode(store: &SchemaStore, bytes: &[u8]) -> Result<Event, DecodeError> {
    let (schema_id, body) = wire::split(bytes)?;
    store.decode_body(schema_id, body)
}

/// [`decode`] into `out`, reusing its strings' allocations: the hot path
/// decodes every record into one buffer. On error `out` is left partly
/// written and must not be used.
pub fn decode_into(store: &SchemaStore, bytes: &[u8], out: &mut Event) -> Result<(), DecodeError> {
    let (schema_id, body) = wire::split(bytes)?;
    store.decode_body_into(schema_id, body, out)
}

/// The event id's and shop id's bytes of a Confluent-framed Avro record,
/// read without decoding it: the hot path passes them to
/// `Engine::prefetch` before it decodes. Not validated (the decode does
/// that); `None` when they cannot be read ahead.
#[inline]
pub fn peek_ids<'a>(store: &'a SchemaStore, bytes: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let (schema_id, body) = wire::split(bytes).ok()?;
    store.peek_ids(schema_id, body)
}

/// Where in `bytes` [`peek_ids`] found the event id and the shop id, as
/// byte ranges: kept by a caller that prefetches for a record one step and
/// folds it the next, and must not read its ids twice.
#[inline]
pub fn peek_id_spans(store: &SchemaStore, bytes: &[u8]) -> Option<IdSpans> {
    let (event_id, shop_id) = peek_ids(store, bytes)?;
    let base = bytes.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize).wrapping_sub(base);
        start..start + s.len()
    };
    Some(IdSpans { event_id: span(event_id), shop_id: span(shop_id) })
}

/// The byte ranges of a record's event id and shop id ([`peek_id_spans`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdSpans {
    pub event_id: std::ops::Range<usize>,
    pub shop_id: std::ops::Range<usize>,
}

/// Encodes an event with the store's current (reader) schema for its kind,
/// Confluent-framed. Used by the generator, tests and benches.
pub fn encode(store: &SchemaStore, event: &Event) -> Result<Vec<u8>, DecodeError> {
    store.encode(event)
}

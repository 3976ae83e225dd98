//! Avro bodies: the schema store (writer schemas by id, one reader schema per
//! event kind) and the mapping between Avro values and [`Event`].
//!
//! A writer schema is resolved against the reader schema of its kind with
//! apache-avro's schema resolution, so records written with an older or newer
//! version of a schema still decode (new enum symbols become the enum's
//! default, new fields with defaults are filled in).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use apache_avro::types::Value;
use apache_avro::Schema;
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::direct::Program;
use super::fields::{build_event, FieldSource, Raw};
use super::{wire, DecodeError};
use crate::event::*;

pub use super::fields::{MAX_PLAUSIBLE_MS, MIN_PLAUSIBLE_MS};

/// The schemas shipped in `schemas/`, compiled in so that `peakguard demo`
/// and the tests run from any directory.
const EMBEDDED: &[(&str, &str)] = &[
    ("ids.toml", include_str!("../../schemas/ids.toml")),
    ("order.avsc", include_str!("../../schemas/order.avsc")),
    ("shipment.avsc", include_str!("../../schemas/shipment.avsc")),
    ("return.avsc", include_str!("../../schemas/return.avsc")),
    ("refund.avsc", include_str!("../../schemas/refund.avsc")),
    ("dispute.avsc", include_str!("../../schemas/dispute.avsc")),
    ("chargeback.avsc", include_str!("../../schemas/chargeback.avsc")),
];

/// Why a schema directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaStoreError {
    #[error("cannot read {path}: {cause}; check [schemas].dir in the config")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not a valid ids.toml: {message}")]
    Ids { path: PathBuf, message: String },
    #[error("{path} is not a valid Avro schema: {message}")]
    Schema { path: PathBuf, message: String },
    #[error("{path}: record name `{name}` is not one of OrderEvent, ShipmentEvent, ReturnEvent, RefundEvent, DisputeEvent, ChargebackEvent")]
    UnknownRecord { path: PathBuf, name: String },
    #[error("schema id {id} is listed twice in ids.toml; ids are never reused")]
    DuplicateId { id: u32 },
    #[error("no reader schema for `{kind}`: ids.toml must list `{kind}.avsc`")]
    MissingReader { kind: EventKind },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsFile {
    schema: Vec<IdEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdEntry {
    id: u32,
    file: String,
}

/// A writer schema, resolved against the reader schema of its kind.
pub struct Writer {
    schema: Schema,
    kind: EventKind,
    /// True when this writer schema is the reader schema (no resolution needed).
    is_reader: bool,
    /// The direct reader, when the schema pair is in its subset.
    program: Option<Program>,
}

/// Writer schemas by id and the reader schema of each event kind.
pub struct SchemaStore {
    /// By schema id; FxHash: a SipHash of the id was 6% of a record's decode.
    writers: FxHashMap<u32, Writer>,
    /// Indexed by `EventKind as usize`: (schema id, schema).
    readers: Vec<(u32, Schema)>,
}

impl std::fmt::Debug for SchemaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<_> = self.writers.keys().collect();
        ids.sort();
        f.debug_struct("SchemaStore").field("schema_ids", &ids).finish()
    }
}

fn kind_of_record(name: &str) -> Option<EventKind> {
    Some(match name {
        "OrderEvent" => EventKind::Order,
        "ShipmentEvent" => EventKind::Shipment,
        "ReturnEvent" => EventKind::Return,
        "RefundEvent" => EventKind::Refund,
        "DisputeEvent" => EventKind::Dispute,
        "ChargebackEvent" => EventKind::Chargeback,
        _ => return None,
    })
}

impl SchemaStore {
    /// The schemas compiled into the binary (a copy of `schemas/`).
    pub fn embedded() -> SchemaStore {
        let files: HashMap<&str, &str> = EMBEDDED.iter().copied().collect();
        Self::build(Path::new("<embedded>"), |name| {
            files.get(name).map(|s| s.to_string()).ok_or_else(|| std::io::ErrorKind::NotFound.into())
        })
        .expect("embedded schemas are valid (checked by tests)")
    }

    /// Loads `ids.toml` and the schema files it names from `dir`.
    pub fn load(dir: &Path) -> Result<SchemaStore, SchemaStoreError> {
        Self::build(dir, |name| std::fs::read_to_string(dir.join(name)))
    }

    fn build(dir: &Path, read: impl Fn(&str) -> std::io::Result<String>) -> Result<SchemaStore, SchemaStoreError> {
        // Keep allocations driven by corrupt length prefixes small: no record
        // we accept is anywhere near 16 MiB. (Set once per process.)
        let _ = apache_avro::max_allocation_bytes(16 << 20);
        let ids_path = dir.join("ids.toml");
        let ids_text = read("ids.toml").map_err(|cause| SchemaStoreError::Read { path: ids_path.clone(), cause })?;
        let ids: IdsFile = toml::from_str(&ids_text)
            .map_err(|e| SchemaStoreError::Ids { path: ids_path.clone(), message: e.to_string() })?;
        let mut writers = FxHashMap::default();
        let mut readers: Vec<Option<(u32, Schema)>> = vec![None; EventKind::ALL.len()];
        for entry in ids.schema {
            let path = dir.join(&entry.file);
            let text = read(&entry.file).map_err(|cause| SchemaStoreError::Read { path: path.clone(), cause })?;
            let schema = Schema::parse_str(&text)
                .map_err(|e| SchemaStoreError::Schema { path: path.clone(), message: e.to_string() })?;
            let name = match &schema {
                Schema::Record(r) => r.name.name.clone(),
                _ => String::from("<not a record>"),
            };
            let kind = kind_of_record(&name).ok_or(SchemaStoreError::UnknownRecord { path, name })?;
            let is_reader = entry.file == format!("{kind}.avsc");
            if is_reader {
                readers[kind as usize] = Some((entry.id, schema.clone()));
            }
            if writers.insert(entry.id, Writer { schema, kind, is_reader, program: None }).is_some() {
                return Err(SchemaStoreError::DuplicateId { id: entry.id });
            }
        }
        let readers = readers
            .into_iter()
            .zip(EventKind::ALL)
            .map(|(r, kind)| r.ok_or(SchemaStoreError::MissingReader { kind: *kind }))
            .collect::<Result<Vec<_>, _>>()?;
        for w in writers.values_mut() {
            w.program = Program::compile(w.kind, &w.schema, &readers[w.kind as usize].1);
        }
        Ok(SchemaStore { writers, readers })
    }

    /// Parses a writer schema fetched from elsewhere (a schema registry)
    /// and compiles its reader against this store's reader schema of the
    /// same kind, so records written with it decode like any other.
    pub fn writer_from_text(&self, text: &str) -> Result<Writer, String> {
        let schema = Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
        let kind = kind_of_schema(&schema).ok_or_else(|| {
            let name = match &schema {
                Schema::Record(r) => r.name.name.clone(),
                _ => "<not a record>".to_string(),
            };
            format!("record `{name}` is not one of OrderEvent, ShipmentEvent, ReturnEvent, RefundEvent, DisputeEvent, ChargebackEvent")
        })?;
        let reader = &self.readers[kind as usize].1;
        let is_reader = schema.canonical_form() == reader.canonical_form();
        let program = Program::compile(kind, &schema, reader);
        Ok(Writer { schema, kind, is_reader, program })
    }

    /// Decodes a body written with `writer` (see [`writer_from_text`](Self::writer_from_text)).
    pub fn decode_with(&self, writer: &Writer, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        match &writer.program {
            Some(program) => program.decode(schema_id, body),
            None => self.generic(writer, schema_id, body),
        }
    }

    /// [`SchemaStore::decode_with`] into `out`, reusing its strings'
    /// allocations (the direct reader; the generic path replaces `out`).
    pub fn decode_with_into(
        &self,
        writer: &Writer,
        schema_id: u32,
        body: &[u8],
        out: &mut Event,
    ) -> Result<(), DecodeError> {
        match &writer.program {
            Some(program) => program.decode_into(schema_id, body, out),
            None => {
                *out = self.generic(writer, schema_id, body)?;
                Ok(())
            }
        }
    }

    /// [`SchemaStore::decode_body`] into `out`; see [`SchemaStore::decode_with_into`].
    pub fn decode_body_into(&self, schema_id: u32, body: &[u8], out: &mut Event) -> Result<(), DecodeError> {
        let writer = self.writers.get(&schema_id).ok_or(DecodeError::UnknownSchemaId(schema_id))?;
        self.decode_with_into(writer, schema_id, body, out)
    }

    /// The event id's and shop id's bytes of a body written with
    /// `schema_id`, read ahead of decoding it (see [`Program::ids`]); `None`
    /// when the schema is unknown or takes apache-avro's path.
    #[inline]
    pub fn peek_ids<'a>(&'a self, schema_id: u32, body: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        self.writers.get(&schema_id)?.program.as_ref()?.ids(body)
    }

    /// The id of the current (reader) schema of `kind`.
    pub fn reader_id(&self, kind: EventKind) -> u32 {
        self.readers[kind as usize].0
    }

    /// The event kind written with `schema_id`, if known.
    pub fn kind_of(&self, schema_id: u32) -> Option<EventKind> {
        self.writers.get(&schema_id).map(|w| w.kind)
    }

    /// Decodes an Avro body written with `schema_id`: with the direct reader
    /// compiled for that schema, else with apache-avro.
    pub fn decode_body(&self, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        let writer = self.writers.get(&schema_id).ok_or(DecodeError::UnknownSchemaId(schema_id))?;
        self.decode_with(writer, schema_id, body)
    }

    /// Whether records of `schema_id` take the direct reader.
    pub fn is_direct(&self, schema_id: u32) -> bool {
        self.writers.get(&schema_id).is_some_and(|w| w.program.is_some())
    }

    /// Decodes an Avro body with apache-avro's generic `Value` path and
    /// schema resolution: the reference the direct reader is checked against.
    pub fn decode_body_generic(&self, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        let writer = self.writers.get(&schema_id).ok_or(DecodeError::UnknownSchemaId(schema_id))?;
        self.generic(writer, schema_id, body)
    }

    fn generic(&self, writer: &Writer, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        let reader_schema = if writer.is_reader { None } else { Some(&self.readers[writer.kind as usize].1) };
        let mut cursor = body;
        let value = apache_avro::from_avro_datum(&writer.schema, &mut cursor, reader_schema)
            .map_err(|e| DecodeError::Avro { schema_id, message: e.to_string() })?;
        if !cursor.is_empty() {
            return Err(DecodeError::TrailingBytes { schema_id, extra: cursor.len() });
        }
        event_from_value(writer.kind, value)
    }

    /// Encodes `event` with the reader schema of its kind, Confluent-framed.
    pub fn encode(&self, event: &Event) -> Result<Vec<u8>, DecodeError> {
        let (id, schema) = &self.readers[event.kind() as usize];
        let body = apache_avro::to_avro_datum(schema, event_to_value(event))
            .map_err(|e| DecodeError::Avro { schema_id: *id, message: e.to_string() })?;
        let mut out = Vec::with_capacity(wire::HEADER_LEN + body.len());
        wire::write_header(&mut out, *id);
        out.extend_from_slice(&body);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Value -> Event

struct Fields(Vec<(String, Value)>);

impl FieldSource for Fields {
    fn raw(&self, name: &'static str) -> Option<Raw<'_>> {
        let v = self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)?;
        let v = match v {
            Value::Union(_, inner) => inner,
            other => other,
        };
        Some(match v {
            Value::Null => Raw::Null,
            Value::String(s) => Raw::Str(s),
            Value::Long(x) | Value::TimestampMillis(x) => Raw::Long(*x),
            Value::Int(x) => Raw::Long(i64::from(*x)),
            Value::Enum(_, s) => Raw::Symbol(s),
            _ => Raw::Other,
        })
    }
}

/// The event kind of a record schema (by its name), if it is one of ours.
pub fn kind_of_schema(schema: &Schema) -> Option<EventKind> {
    match schema {
        Schema::Record(r) => kind_of_record(&r.name.name),
        _ => None,
    }
}

/// An [`Event`] from a decoded Avro record of `kind`.
pub fn event_from_value(kind: EventKind, value: Value) -> Result<Event, DecodeError> {
    match value {
        Value::Record(fields) => build_event(kind, &Fields(fields)),
        _ => Err(DecodeError::MissingField { field: "<record>" }),
    }
}

// ---------------------------------------------------------------------------
// Event -> Value (field order follows schemas/*.avsc)

fn sym<T: std::fmt::Display>(index: usize, s: T) -> Value {
    Value::Enum(index as u32, s.to_string())
}

fn enum_value<T: Copy + PartialEq + std::fmt::Display>(all: &[T], v: T) -> Value {
    let index = all.iter().position(|x| *x == v).unwrap_or(0);
    sym(index, v)
}

fn opt<T>(v: Option<T>, some: impl FnOnce(T) -> Value) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(x) => Value::Union(1, Box::new(some(x))),
    }
}

/// The Avro record of an event, in the field order of `schemas/*.avsc`.
pub fn event_to_value(e: &Event) -> Value {
    let mut fields: Vec<(String, Value)> = vec![
        ("event_id".into(), Value::String(e.event_id.clone())),
        ("shop_id".into(), Value::String(e.shop_id.clone())),
        ("order_id".into(), Value::String(e.order_id.clone())),
        ("sub_order_id".into(), opt(e.sub_order_id.clone(), Value::String)),
        ("event_time".into(), Value::TimestampMillis(e.event_time)),
        ("category".into(), Value::String(e.category.clone())),
    ];
    let money = |m: &Money| {
        [
            ("amount_minor".to_string(), Value::Long(m.amount_minor)),
            ("currency".to_string(), Value::String(m.currency_str().to_string())),
        ]
    };
    let paid_at = |t: Millis| ("order_paid_at".to_string(), Value::TimestampMillis(t));
    let reason = |r: Reason| ("reason".to_string(), enum_value(Reason::ALL, r));
    match &e.body {
        EventBody::Order { step, cancelled_by, money: m } => {
            fields.push(("type".into(), enum_value(OrderStep::ALL, *step)));
            fields.push(("cancelled_by".into(), opt(*cancelled_by, |c| enum_value(CancelledBy::ALL, c))));
            fields.extend(money(m));
        }
        EventBody::Shipment { step, promised_by } => {
            fields.push(("type".into(), enum_value(ShipmentStep::ALL, *step)));
            fields.push(("promised_by".into(), opt(*promised_by, Value::TimestampMillis)));
        }
        EventBody::Return { step, reason: r, order_paid_at } => {
            fields.push(("type".into(), enum_value(ReturnStep::ALL, *step)));
            fields.push(reason(*r));
            fields.push(paid_at(*order_paid_at));
        }
        EventBody::Refund { step, refund_type, stage, reason: r, money: m, order_paid_at, requested_at } => {
            fields.push(("type".into(), enum_value(RefundStep::ALL, *step)));
            fields.push(("refund_type".into(), enum_value(RefundType::ALL, *refund_type)));
            fields.push(("stage".into(), enum_value(RefundStage::ALL, *stage)));
            fields.push(reason(*r));
            fields.extend(money(m));
            fields.push(paid_at(*order_paid_at));
            fields.push(("requested_at".into(), opt(*requested_at, Value::TimestampMillis)));
        }
        EventBody::Dispute { step, reason: r, money: m, order_paid_at } => {
            fields.push(("type".into(), enum_value(DisputeStep::ALL, *step)));
            fields.push(reason(*r));
            fields.extend(money(m));
            fields.push(paid_at(*order_paid_at));
        }
        EventBody::Chargeback { step, category, reason: r, money: m, order_paid_at } => {
            fields.push(("type".into(), enum_value(ChargebackStep::ALL, *step)));
            fields.push(("chargeback_category".into(), enum_value(ChargebackCategory::ALL, *category)));
            fields.push(reason(*r));
            fields.extend(money(m));
            fields.push(paid_at(*order_paid_at));
        }
    }
    Value::Record(fields)
}

//! Avro bodies decoded straight into events. For each writer schema a small
//! program is compiled once: per writer field, how to read it (string, long,
//! enum symbol, nullable union) and into which event field, or how to skip
//! it (a field this build does not know). Decoding then borrows strings from
//! the record bytes and builds the [`Event`] through the same
//! [`build_event`] as apache-avro's generic path, with the same errors.
//! The bytes themselves are read by `reader.rs`.
//!
//! The schema resolution rules applied are the subset our schemas use:
//! fields matched by name, writer-only fields skipped, reader-only fields
//! taken from their default, `int` promoted to `long`, enum symbols
//! matched by name (unknown ones become the enum's default), a plain writer
//! type read into a nullable reader field. A writer schema outside that
//! subset is not compiled, and its records take apache-avro's path.
//! `tests/codec.rs` checks both paths give the same event for random events
//! of every kind and every evolution of the schemas, and that on random or
//! damaged bytes the direct reader never accepts what apache-avro rejects nor
//! returns another event. It is stricter on one point: apache-avro reads a
//! string, a boolean or a union index cut off by the end of the record as
//! null, so a truncated record can still decode there; here a truncated
//! record is an `avro_body` error and goes to the dead-letter topic.

use apache_avro::Schema;

use super::fields::{build_event_into, FieldSource, Raw};
use super::reader::{Op, Reader};
use super::DecodeError;
use crate::event::{Event, EventKind};

/// The event fields a record can fill, in slot order.
const KNOWN: [&str; 17] = [
    "event_id",
    "shop_id",
    "order_id",
    "sub_order_id",
    "event_time",
    "category",
    "type",
    "cancelled_by",
    "amount_minor",
    "currency",
    "promised_by",
    "reason",
    "order_paid_at",
    "refund_type",
    "stage",
    "requested_at",
    "chargeback_category",
];

/// The slot of a field name: a `match` (a switch on the length, then one
/// compare) rather than a scan of [`KNOWN`], as lookups whose name the
/// compiler cannot see run per record.
fn slot_of(name: &str) -> Option<usize> {
    let slot = match name {
        "event_id" => 0,
        "shop_id" => 1,
        "order_id" => 2,
        "sub_order_id" => 3,
        "event_time" => 4,
        "category" => 5,
        "type" => 6,
        "cancelled_by" => 7,
        "amount_minor" => 8,
        "currency" => 9,
        "promised_by" => 10,
        "reason" => 11,
        "order_paid_at" => 12,
        "refund_type" => 13,
        "stage" => 14,
        "requested_at" => 15,
        "chargeback_category" => 16,
        _ => return None,
    };
    debug_assert_eq!(KNOWN[slot], name);
    Some(slot)
}

/// One writer field: its op, and the slot it fills (`None`: skipped).
#[derive(Clone, Debug)]
struct Step {
    op: Op,
    slot: Option<usize>,
}

/// The reader for records of one writer schema.
#[derive(Clone, Debug)]
pub struct Program {
    kind: EventKind,
    steps: Vec<Step>,
    /// The steps that read `event_id` and `shop_id`, when both are plain
    /// strings (see [`Program::ids`]).
    id_steps: Option<(usize, usize)>,
    /// Reader fields the writer lacks, with their defaults.
    defaults: Vec<(usize, Default)>,
}

#[derive(Clone, Debug)]
enum Default {
    Null,
    Symbol(String),
    Str(String),
    Long(i64),
}

/// The shape of a field's type, for matching writer against reader.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Str,
    Long,
    Int,
    Enum,
    Nullable,
}

fn shape(s: &Schema) -> Option<(Shape, Option<Shape>)> {
    let base = |s: &Schema| match s {
        Schema::String => Some(Shape::Str),
        Schema::Long | Schema::TimestampMillis => Some(Shape::Long),
        Schema::Int => Some(Shape::Int),
        Schema::Enum(_) => Some(Shape::Enum),
        _ => None,
    };
    match s {
        Schema::Union(u) => {
            let v = u.variants();
            match v {
                [Schema::Null, x] | [x, Schema::Null] => Some((Shape::Nullable, Some(base(x)?))),
                _ => None,
            }
        }
        other => Some((base(other)?, None)),
    }
}

fn op_of(s: &Schema) -> Option<Op> {
    Some(match s {
        Schema::Null => Op::Null,
        Schema::Boolean => Op::Bool,
        Schema::Int
        | Schema::Long
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Op::Long,
        Schema::Float => Op::Float,
        Schema::Double => Op::Double,
        Schema::Bytes => Op::Bytes,
        Schema::String | Schema::Uuid => Op::Str,
        Schema::Fixed(f) => Op::Fixed(f.size),
        Schema::Enum(e) => Op::Enum(e.symbols.clone()),
        Schema::Union(u) => Op::Union(u.variants().iter().map(op_of).collect::<Option<_>>()?),
        Schema::Array(a) => Op::Array(Box::new(op_of(&a.items)?)),
        Schema::Map(m) => Op::Map(Box::new(op_of(&m.types)?)),
        Schema::Record(r) => Op::Record(r.fields.iter().map(|f| op_of(&f.schema)).collect::<Option<_>>()?),
        _ => return None,
    })
}

impl Program {
    /// Compiles the reader of `writer` records into the event of `kind`
    /// whose reader schema is `reader`; `None` when the pair is outside the
    /// supported subset.
    pub fn compile(kind: EventKind, writer: &Schema, reader: &Schema) -> Option<Program> {
        let (Schema::Record(w), Schema::Record(r)) = (writer, reader) else { return None };
        let mut steps = Vec::with_capacity(w.fields.len());
        for wf in &w.fields {
            let op = op_of(&wf.schema)?;
            let Some(rf) = r.fields.iter().find(|f| f.name == wf.name) else {
                steps.push(Step { op, slot: None });
                continue;
            };
            let slot = slot_of(&rf.name)?;
            let (ws, wi) = shape(&wf.schema)?;
            let (rs, ri) = shape(&rf.schema)?;
            let promote = |w: Shape, r: Shape| w == r || (w == Shape::Int && r == Shape::Long);
            let fits = match (ws, rs) {
                (Shape::Nullable, Shape::Nullable) => promote(wi?, ri?),
                (Shape::Nullable, _) => false,
                (w, Shape::Nullable) => promote(w, ri?),
                (w, r) => promote(w, r),
            };
            if !fits {
                return None;
            }
            steps.push(Step { op, slot: Some(slot) });
        }
        let mut defaults = Vec::new();
        for rf in &r.fields {
            if w.fields.iter().any(|f| f.name == rf.name) {
                continue;
            }
            let slot = slot_of(&rf.name)?;
            let default = match (&rf.default, &rf.schema) {
                (Some(serde_json::Value::Null), _) => Default::Null,
                (Some(serde_json::Value::String(s)), Schema::Enum(_)) => Default::Symbol(s.clone()),
                (Some(serde_json::Value::String(s)), Schema::String) => Default::Str(s.clone()),
                (Some(serde_json::Value::Number(n)), Schema::Long | Schema::Int) => Default::Long(n.as_i64()?),
                _ => return None,
            };
            defaults.push((slot, default));
        }
        let step_of = |slot| steps.iter().position(|s: &Step| s.slot == Some(slot) && matches!(s.op, Op::Str));
        let id_steps = step_of(0).zip(step_of(1));
        Some(Program { kind, steps, id_steps, defaults })
    }

    /// The bytes of a record's event id and shop id, read without decoding
    /// the rest (only the fields written before them are stepped over), so
    /// the caller can start loading what folding the record touches while
    /// it decodes: see `Engine::prefetch`. Not checked as UTF-8, nor the
    /// record as a whole; `None` when they cannot be read this way.
    #[inline]
    pub fn ids<'a>(&'a self, body: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (event_at, shop_at) = self.id_steps?;
        let mut r = Reader { buf: body, pos: 0 };
        let (mut event_id, mut shop_id) = (None, None);
        for (i, step) in self.steps[..=event_at.max(shop_at)].iter().enumerate() {
            if i == event_at {
                event_id = Some(r.bytes().ok()?);
            } else if i == shop_at {
                shop_id = Some(r.bytes().ok()?);
            } else {
                r.skip(&step.op).ok()?;
            }
        }
        event_id.zip(shop_id)
    }

    /// Decodes one record body (no framing).
    pub fn decode(&self, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        let mut event = Event::buffer();
        self.decode_into(schema_id, body, &mut event)?;
        Ok(event)
    }

    /// [`Program::decode`] into `out`, reusing its strings' allocations.
    pub fn decode_into(&self, schema_id: u32, body: &[u8], out: &mut Event) -> Result<(), DecodeError> {
        let err = |message: &str| DecodeError::Avro { schema_id, message: message.to_string() };
        let mut r = Reader { buf: body, pos: 0 };
        let mut slots = Slots { raw: [None; KNOWN.len()] };
        for step in &self.steps {
            let value = r.read_inline(&step.op).map_err(err)?;
            if let Some(slot) = step.slot {
                slots.raw[slot] = Some(value);
            }
        }
        if r.pos != body.len() {
            return Err(DecodeError::TrailingBytes { schema_id, extra: body.len() - r.pos });
        }
        for (slot, d) in &self.defaults {
            slots.raw[*slot] = Some(match d {
                Default::Null => Raw::Null,
                Default::Symbol(s) => Raw::Symbol(s),
                Default::Str(s) => Raw::Str(s),
                Default::Long(v) => Raw::Long(*v),
            });
        }
        build_event_into(self.kind, &slots, out)
    }
}

struct Slots<'a> {
    raw: [Option<Raw<'a>>; KNOWN.len()],
}

impl FieldSource for Slots<'_> {
    fn raw(&self, name: &'static str) -> Option<Raw<'_>> {
        self.raw[slot_of(name)?]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_field_has_its_slot() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(slot_of(name), Some(i), "{name}");
        }
        assert_eq!(slot_of("shop"), None);
    }
}

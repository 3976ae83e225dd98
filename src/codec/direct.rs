//! Avro bodies decoded straight into events. For each writer schema a small
//! program is compiled once: per writer field, how to read it (string, long,
//! enum symbol, nullable union) and into which event field, or how to skip
//! it (a field this build does not know). Decoding then borrows strings from
//! the record bytes and builds the [`Event`] through the same
//! [`build_event`] as apache-avro's generic path, with the same errors.
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

/// How one value is read (and what it becomes).
#[derive(Clone, Debug)]
enum Op {
    Null,
    Bool,
    /// int or long (zig-zag varint), dates and times included.
    Long,
    Float,
    Double,
    /// bytes, or a string that is not kept.
    Bytes,
    Str,
    Fixed(usize),
    Enum(Vec<String>),
    Union(Vec<Op>),
    Array(Box<Op>),
    Map(Box<Op>),
    Record(Vec<Op>),
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
        Some(Program { kind, steps, defaults })
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

/// A zig-zag encoded value.
#[inline(always)]
fn zigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("unexpected end of record")?;
        self.pos += 1;
        Ok(b)
    }

    /// A zig-zag varint of at most 10 bytes. One-byte values (enum and
    /// union indices, string lengths) are read inline; longer ones with ten
    /// bytes of record left (timestamps, amounts) without a bounds check a
    /// byte.
    #[inline(always)]
    fn long(&mut self) -> Result<i64, &'static str> {
        if let Some(&b) = self.buf.get(self.pos) {
            if b & 0x80 == 0 {
                self.pos += 1;
                return Ok(zigzag(u64::from(b)));
            }
        }
        self.long_multi()
    }

    #[inline(never)]
    fn long_multi(&mut self) -> Result<i64, &'static str> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, ..] = rest else { return self.long_near_end() };
        let bytes = [*b0, *b1, *b2, *b3, *b4, *b5, *b6, *b7, *b8, *b9];
        let mut n: u64 = 0;
        for (i, b) in bytes.into_iter().enumerate() {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(zigzag(n));
            }
        }
        Err("varint longer than 10 bytes")
    }

    /// [`Reader::long`] within ten bytes of the record's end.
    #[cold]
    fn long_near_end(&mut self) -> Result<i64, &'static str> {
        let mut n: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(zigzag(n));
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or("length beyond the record")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len(&mut self) -> Result<usize, &'static str> {
        usize::try_from(self.long()?).map_err(|_| "negative length")
    }

    /// A string field.
    #[inline(always)]
    fn str(&mut self) -> Result<&'a str, &'static str> {
        let n = self.len()?;
        utf8(self.take(n)?)
    }

    /// An enum symbol, by its index in the writer's `symbols`.
    #[inline(always)]
    fn symbol<'p>(&mut self, symbols: &'p [String]) -> Result<&'a str, &'static str>
    where
        'p: 'a,
    {
        let i = usize::try_from(self.long()?).map_err(|_| "negative enum index")?;
        Ok(symbols.get(i).ok_or("enum index out of range")?)
    }

    /// [`Reader::read`] with the values event fields are made of (strings,
    /// longs, enums, and unions of those with null) read inline: the record
    /// loop calls this for every field, and a call of the general reader
    /// per field was a quarter of the decode.
    #[inline(always)]
    fn read_inline<'p>(&mut self, op: &'p Op) -> Result<Raw<'a>, &'static str>
    where
        'p: 'a,
    {
        let leaf = |r: &mut Self, op: &'p Op| match op {
            Op::Null => Ok(Raw::Null),
            Op::Str => r.str().map(Raw::Str),
            Op::Long => r.long().map(Raw::Long),
            Op::Enum(symbols) => r.symbol(symbols).map(Raw::Symbol),
            other => r.read(other),
        };
        match op {
            Op::Union(branches) => {
                let i = usize::try_from(self.long()?).map_err(|_| "negative union index")?;
                leaf(self, branches.get(i).ok_or("union index out of range")?)
            }
            other => leaf(self, other),
        }
    }

    /// Reads one value of `op`; what is not an event field comes back as `Other`.
    fn read<'p>(&mut self, op: &'p Op) -> Result<Raw<'a>, &'static str>
    where
        'p: 'a,
    {
        Ok(match op {
            Op::Null => Raw::Null,
            Op::Bool => match self.byte()? {
                0 | 1 => Raw::Other,
                _ => return Err("invalid boolean"),
            },
            Op::Long => Raw::Long(self.long()?),
            Op::Float => {
                self.take(4)?;
                Raw::Other
            }
            Op::Double => {
                self.take(8)?;
                Raw::Other
            }
            Op::Bytes => {
                let n = self.len()?;
                self.take(n)?;
                Raw::Other
            }
            Op::Str => Raw::Str(self.str()?),
            Op::Fixed(n) => {
                self.take(*n)?;
                Raw::Other
            }
            Op::Enum(symbols) => Raw::Symbol(self.symbol(symbols)?),
            Op::Union(branches) => {
                let i = usize::try_from(self.long()?).map_err(|_| "negative union index")?;
                self.read(branches.get(i).ok_or("union index out of range")?)?
            }
            Op::Record(fields) => {
                for f in fields {
                    self.read(f)?;
                }
                Raw::Other
            }
            Op::Array(item) | Op::Map(item) => {
                let is_map = matches!(op, Op::Map(_));
                loop {
                    let mut count = self.long()?;
                    if count == 0 {
                        break;
                    }
                    if count < 0 {
                        count = count.checked_neg().ok_or("invalid block count")?;
                        self.len()?; // block size in bytes
                    }
                    // Every item but a null takes at least a byte: a count
                    // beyond the bytes left is corrupt (and must not spin).
                    if count as u64 > (self.buf.len() - self.pos) as u64 {
                        if matches!(**item, Op::Null) && !is_map {
                            continue;
                        }
                        return Err("block count beyond the record");
                    }
                    for _ in 0..count {
                        if is_map {
                            let n = self.len()?;
                            self.take(n)?;
                        }
                        self.read(item)?;
                    }
                }
                Raw::Other
            }
        })
    }
}

/// `bytes` as a string, when they are UTF-8. Ids, categories and currencies
/// are nearly always ASCII, which a word-at-a-time check proves valid for a
/// fraction of what the general validation costs on short strings (it was
/// 11% of the hot path's instructions).
#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, &'static str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Avro's zig-zag varint of `v`.
    fn encode(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn every_known_field_has_its_slot() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(slot_of(name), Some(i), "{name}");
        }
        assert_eq!(slot_of("shop"), None);
    }

    proptest! {
        /// Every path of `Reader::long` (one byte, ten bytes left, near the
        /// end) reads what was written, with anything after it, and leaves
        /// the position just past it.
        #[test]
        fn longs_read_back_wherever_they_sit(v in any::<i64>(), small in -64i64..64, after in 0usize..12) {
            for v in [v, small, i64::MIN, i64::MAX, 1_794_326_400_000] {
                let mut bytes = encode(v);
                let len = bytes.len();
                bytes.extend(std::iter::repeat_n(0x81, after));
                let mut r = Reader { buf: &bytes, pos: 0 };
                prop_assert_eq!(r.long(), Ok(v));
                prop_assert_eq!(r.pos, len);
            }
        }

        /// A varint cut off by the record's end, or longer than ten bytes,
        /// is an error on every path.
        #[test]
        fn bad_varints_are_errors(cut in 1usize..10, after in 0usize..12) {
            let mut r = Reader { buf: &vec![0x80; cut], pos: 0 };
            prop_assert_eq!(r.long(), Err("unexpected end of record"));
            let mut long = vec![0x80; 10];
            long.extend(std::iter::repeat_n(0x00, after));
            let mut r = Reader { buf: &long, pos: 0 };
            prop_assert_eq!(r.long(), Err("varint longer than 10 bytes"));
        }
    }
}

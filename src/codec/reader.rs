//! The byte-level reader of Avro record bodies for the direct decoder
//! (`direct.rs`): zig-zag varints, lengths, strings, enum symbols, unions,
//! and skipping whatever an event does not keep ([`Op`] says how each
//! value is read). Strings are borrowed from the record; every read checks
//! the record's bounds, and a record cut short or malformed is an error
//! with a message, never a panic.

use super::fields::Raw;

/// How one value is read (and what it becomes).
#[derive(Clone, Debug)]
pub(super) enum Op {
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

/// A zig-zag encoded value.
#[inline(always)]
fn zigzag(n: u64) -> i64 {
    (n >> 1) as i64 ^ -((n & 1) as i64)
}

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
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

    /// A length-prefixed run of bytes (a string not checked as UTF-8).
    #[inline(always)]
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.len()?;
        self.take(n)
    }

    /// Steps over one value of `op` (strings not checked as UTF-8).
    #[inline]
    pub(super) fn skip<'p>(&mut self, op: &'p Op) -> Result<(), &'static str>
    where
        'p: 'a,
    {
        match op {
            Op::Str | Op::Bytes => self.bytes().map(drop),
            other => self.read(other).map(drop),
        }
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
    pub(super) fn read_inline<'p>(&mut self, op: &'p Op) -> Result<Raw<'a>, &'static str>
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

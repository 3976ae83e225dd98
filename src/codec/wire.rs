//! The Confluent Schema Registry wire format: `0x00`, a 4-byte big-endian
//! schema id, then the Avro binary body.

use super::DecodeError;

/// Length of the Confluent header.
pub const HEADER_LEN: usize = 5;

/// Splits a framed record into its schema id and Avro body.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated { len: bytes.len() });
    }
    if bytes[0] != 0 {
        return Err(DecodeError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Writes the header for `schema_id` into `out`.
pub fn write_header(out: &mut Vec<u8>, schema_id: u32) {
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_header() {
        let mut buf = Vec::new();
        write_header(&mut buf, 0x0102_0304);
        buf.extend_from_slice(b"body");
        assert_eq!(split(&buf), Ok((0x0102_0304, &b"body"[..])));
    }

    #[test]
    fn rejects_short_and_bad_magic() {
        assert_eq!(split(&[0, 0, 1]), Err(DecodeError::Truncated { len: 3 }));
        assert_eq!(split(&[7, 0, 0, 0, 1, 2]), Err(DecodeError::BadMagic(7)));
    }
}

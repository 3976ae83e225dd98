//! Checkpoints: the state of one partition number (its shops, dedup ids,
//! event-time clocks) together with the next offset of every topic's
//! partition of that number, written atomically, so that restoring it and
//! seeking to those offsets counts every record exactly once.
//!
//! * this file: the format (magic, version, CRC-32 of the body, postcard
//!   body) and which of two copies is newer;
//! * [`local`]: a directory, one file per partition, replaced by rename;
//! * [`topic`]: a compacted Kafka topic, so a partition that moves to
//!   another host restores there.
//!
//! The worker writes every assigned partition at `[checkpoint].interval`,
//! when a partition is revoked and at shutdown; on assignment it restores the
//! newer of the local and topic copies and seeks to its offsets.

pub mod local;
pub mod topic;

use serde::{Deserialize, Serialize};

use crate::engine::ShardSnapshot;
use crate::event::Millis;

const MAGIC: &[u8; 4] = b"PGCK";
const VERSION: u32 = 1;
const HEADER: usize = 12;

/// Where one topic's partition stood.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    /// Offset of the first record not folded into the checkpoint.
    pub next_offset: i64,
    /// Newest event time folded from it.
    pub max_event: Option<Millis>,
}

/// One partition number's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub group: String,
    pub partition: i32,
    /// Wall-clock time of writing, ms since the epoch.
    pub written_at_ms: i64,
    /// The process's watermark when it was taken.
    pub watermark: Option<Millis>,
    pub sources: Vec<SourcePosition>,
    pub state: ShardSnapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a peakguard checkpoint (bad magic bytes)")]
    Magic,
    #[error("checkpoint format version {0} is not known to this build (it reads version {VERSION})")]
    Version(u32),
    #[error("checkpoint is damaged: CRC-32 mismatch")]
    Checksum,
    #[error("checkpoint body cannot be decoded: {0}")]
    Body(#[from] postcard::Error),
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("checkpoint types serialize");
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Checkpoint, FormatError> {
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(FormatError::Magic);
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        let body = &bytes[HEADER..];
        if crc32fast::hash(body) != crc {
            return Err(FormatError::Checksum);
        }
        Ok(postcard::from_bytes(body)?)
    }

    /// How far the checkpoint has read: the sum of its next offsets. Offsets
    /// only grow, so of two checkpoints of one partition the one further on
    /// is the newer.
    pub fn progress(&self) -> i64 {
        self.sources.iter().map(|s| s.next_offset).sum()
    }

    pub fn next_offset(&self, topic: &str) -> Option<i64> {
        self.sources.iter().find(|s| s.topic == topic).map(|s| s.next_offset)
    }
}

/// The newer of two copies of a partition's checkpoint.
pub fn newer(a: Option<Checkpoint>, b: Option<Checkpoint>) -> Option<Checkpoint> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.progress() > a.progress() { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Wall-clock ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offset: i64) -> Checkpoint {
        Checkpoint {
            group: "g".into(),
            partition: 3,
            written_at_ms: 1,
            watermark: Some(5),
            sources: vec![SourcePosition { topic: "t".into(), next_offset: offset, max_event: Some(9) }],
            state: ShardSnapshot { shard: 3, windows: vec![(300_000, 60_000)], shops: vec![], dedup: None },
        }
    }

    #[test]
    fn round_trip_and_damage_is_detected() {
        let c = sample(42);
        let bytes = c.encode();
        assert_eq!(Checkpoint::decode(&bytes).unwrap(), c);
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(Checkpoint::decode(&bad), Err(FormatError::Checksum)));
        assert!(matches!(Checkpoint::decode(b"nope"), Err(FormatError::Magic)));
        let mut v2 = bytes;
        v2[4] = 2;
        assert!(matches!(Checkpoint::decode(&v2), Err(FormatError::Version(2))));
    }

    #[test]
    fn newer_is_the_one_further_on() {
        assert_eq!(newer(Some(sample(1)), Some(sample(7))).unwrap().progress(), 7);
        assert_eq!(newer(Some(sample(9)), Some(sample(7))).unwrap().progress(), 9);
        assert_eq!(newer(None, Some(sample(7))).unwrap().progress(), 7);
        assert!(newer(None, None).is_none());
    }
}

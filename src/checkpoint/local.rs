//! Checkpoints in a local directory: `<dir>/<group>/partition-<n>.ckpt`,
//! written to a temporary file, synced, and renamed over the old one, so a
//! crash at any point leaves the old or the new checkpoint, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Checkpoint;

pub struct LocalStore {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("checkpoint file {path}: {cause}")]
pub struct LocalError {
    pub path: PathBuf,
    pub cause: String,
}

impl LocalStore {
    /// A store under `dir/<group>`; the directory is created when missing.
    pub fn open(dir: &Path, group: &str) -> Result<LocalStore, LocalError> {
        let safe: String =
            group.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let dir = dir.join(safe);
        fs::create_dir_all(&dir).map_err(|e| LocalError { path: dir.clone(), cause: e.to_string() })?;
        Ok(LocalStore { dir })
    }

    fn path(&self, partition: i32) -> PathBuf {
        self.dir.join(format!("partition-{partition}.ckpt"))
    }

    /// Writes the encoded checkpoint ([`Checkpoint::encode`]) of `partition`.
    pub fn write(&self, partition: i32, bytes: &[u8]) -> Result<usize, LocalError> {
        let path = self.path(partition);
        // Unique per process: two processes sharing a directory (a shared
        // volume, or a test) must not write into one temporary file.
        let tmp = path.with_extension(format!("ckpt.{}.tmp", std::process::id()));
        let err = |e: std::io::Error| LocalError { path: path.clone(), cause: e.to_string() };
        let mut f = fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &path).map_err(err)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(bytes.len())
    }

    /// The partition's checkpoint; `Ok(None)` when there is none.
    pub fn read(&self, partition: i32) -> Result<Option<Checkpoint>, LocalError> {
        let path = self.path(partition);
        match fs::read(&path) {
            Ok(bytes) => Checkpoint::decode(&bytes).map(Some).map_err(|e| LocalError { path, cause: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalError { path, cause: e.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ShardSnapshot;

    #[test]
    fn write_then_read_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), "group/a b").unwrap();
        assert!(store.read(0).unwrap().is_none());
        let mut c = Checkpoint {
            group: "g".into(),
            partition: 0,
            written_at_ms: 0,
            watermark: None,
            sources: vec![],
            state: ShardSnapshot { shard: 0, windows: vec![], shops: vec![], dedup: None },
        };
        store.write(0, &c.encode()).unwrap();
        c.written_at_ms = 7;
        store.write(0, &c.encode()).unwrap();
        assert_eq!(store.read(0).unwrap().unwrap().written_at_ms, 7);
        let names: Vec<_> =
            fs::read_dir(dir.path().join("group_a_b")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("partition-0.ckpt")], "no temporary file left");
        fs::write(dir.path().join("group_a_b/partition-0.ckpt"), b"garbage").unwrap();
        assert!(store.read(0).is_err(), "damage is an error, not an empty state");
    }
}

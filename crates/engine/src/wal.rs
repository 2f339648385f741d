//! The write-ahead log and snapshots of one shard, in its own directory.
//!
//! Log: segment files `wal-<first lsn>.log` of records
//! `[u32 length][u32 crc32 of payload][payload]`, the payload being one batch
//! (`lsn`, `now_ms`, the commands) encoded with postcard. A batch is written and `fdatasync`ed
//! before any of its replies leaves the shard (group commit: one sync per batch).
//!
//! Snapshot: `snapshot-<lsn>.bin` = `[magic][u64 lsn][u32 crc32][u64 length][state]`, written to a
//! temporary name, synced, renamed and the directory synced. After a snapshot a new segment
//! starts and older segments and snapshots are deleted.
//!
//! Recovery loads the newest snapshot and replays the records after it. The first record that
//! is short, fails its checksum, does not decode or breaks the lsn sequence ends the log: it and
//! everything after it is cut off (a torn write from a crash), never replayed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::Command;
use crate::state::StateMachine;

const SNAPSHOT_MAGIC: &[u8; 8] = b"CPSNAP01";
/// Largest record accepted on replay; a length above it is corruption.
pub const RECORD_LEN_MAX: u32 = 64 * 1024 * 1024;

#[derive(Serialize)]
struct RecordRef<'a> {
    lsn: u64,
    now_ms: u64,
    commands: &'a [Command],
}

#[derive(Deserialize)]
pub struct Record {
    pub lsn: u64,
    pub now_ms: u64,
    pub commands: Vec<Command>,
}

fn crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Files in `dir` named `<prefix><20-digit number><suffix>`, sorted by number.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(n) = name.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix)).and_then(|n| n.parse().ok()) {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("wal-{first_lsn:020}.log"))
}

/// What recovery did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub snapshot_lsn: u64,
    pub records_replayed: u64,
    pub commands_replayed: u64,
    /// Bytes cut from the end of the log (a torn or corrupt tail).
    pub bytes_truncated: u64,
}

pub struct Wal {
    dir: PathBuf,
    file: File,
    next_lsn: u64,
    buf: Vec<u8>,
    /// Whether to fdatasync each batch (off only for in-memory benchmarks).
    sync: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("log I/O: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot {path} is corrupt: {why}")]
    CorruptSnapshot { path: String, why: String },
}

impl Wal {
    /// Recover the shard in `dir` (created if missing): newest snapshot, then the log after it.
    /// `fresh` makes the state machine used when there is no snapshot.
    pub fn recover(
        dir: &Path,
        sync: bool,
        fresh: impl FnOnce() -> StateMachine,
    ) -> Result<(StateMachine, Wal, RecoveryReport), WalError> {
        fs::create_dir_all(dir)?;
        let mut report = RecoveryReport::default();
        let mut sm = match numbered(dir, "snapshot-", ".bin")?.pop() {
            Some((lsn, path)) => {
                report.snapshot_lsn = lsn;
                read_snapshot(&path)?
            }
            None => fresh(),
        };
        let mut last_lsn = report.snapshot_lsn;
        let segments = numbered(dir, "wal-", ".log")?;
        let mut append_to: Option<PathBuf> = None;
        for (i, (_, path)) in segments.iter().enumerate() {
            let bytes = fs::read(path)?;
            let (good_len, stopped) = replay_segment(&bytes, &mut sm, &mut last_lsn, &mut report);
            if stopped {
                report.bytes_truncated += (bytes.len() - good_len) as u64;
                OpenOptions::new().write(true).open(path)?.set_len(good_len as u64)?;
                for (_, later) in &segments[i + 1..] {
                    report.bytes_truncated += fs::metadata(later)?.len();
                    fs::remove_file(later)?;
                }
                append_to = Some(path.clone());
                break;
            }
            append_to = Some(path.clone());
        }
        let path = append_to.unwrap_or_else(|| segment_path(dir, last_lsn + 1));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok((sm, Wal { dir: dir.to_path_buf(), file, next_lsn: last_lsn + 1, buf: Vec::new(), sync }, report))
    }

    /// The lsn the next batch gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Append one batch and make it durable. Returns its lsn.
    pub fn append(&mut self, now_ms: u64, commands: &[Command]) -> io::Result<u64> {
        let lsn = self.next_lsn;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 8]);
        let record = RecordRef { lsn, now_ms, commands };
        let buf = std::mem::take(&mut self.buf);
        let mut buf = postcard::to_extend(&record, buf).map_err(io::Error::other)?;
        let len = (buf.len() - 8) as u32;
        assert!(len <= RECORD_LEN_MAX, "batch of {} commands too large for one record", commands.len());
        let checksum = crc(&buf[8..]);
        buf[0..4].copy_from_slice(&len.to_le_bytes());
        buf[4..8].copy_from_slice(&checksum.to_le_bytes());
        let written = self.file.write_all(&buf).and_then(|_| if self.sync { self.file.sync_data() } else { Ok(()) });
        self.buf = buf;
        written?;
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Write a snapshot of `sm` (which has applied everything up to `next_lsn - 1`), start a
    /// new segment, and delete what the snapshot makes unnecessary.
    pub fn snapshot(&mut self, sm: &StateMachine) -> io::Result<u64> {
        let lsn = self.next_lsn - 1;
        let state = postcard::to_stdvec(sm).map_err(io::Error::other)?;
        let mut bytes = Vec::with_capacity(state.len() + 28);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&lsn.to_le_bytes());
        bytes.extend_from_slice(&crc(&state).to_le_bytes());
        bytes.extend_from_slice(&(state.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&state);
        let path = self.dir.join(format!("snapshot-{lsn:020}.bin"));
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        // New segment from here on; everything older is covered by the snapshot.
        let seg = segment_path(&self.dir, lsn + 1);
        self.file = OpenOptions::new().create(true).append(true).open(&seg)?;
        self.file.sync_all()?;
        sync_dir(&self.dir)?;
        for (first, old) in numbered(&self.dir, "wal-", ".log")? {
            if first <= lsn {
                fs::remove_file(old)?;
            }
        }
        for (at, old) in numbered(&self.dir, "snapshot-", ".bin")? {
            if at < lsn {
                fs::remove_file(old)?;
            }
        }
        Ok(lsn)
    }
}

fn read_snapshot(path: &Path) -> Result<StateMachine, WalError> {
    let corrupt = |why: &str| WalError::CorruptSnapshot { path: path.display().to_string(), why: why.into() };
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < 28 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad header"));
    }
    let checksum = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes")) as usize;
    let state = bytes.get(28..28 + len).ok_or_else(|| corrupt("short"))?;
    if crc(state) != checksum {
        return Err(corrupt("checksum mismatch"));
    }
    postcard::from_bytes(state).map_err(|e| corrupt(&e.to_string()))
}

/// Replay the records of one segment into `sm`. Returns the length of the good prefix and
/// whether a bad record stopped the replay.
fn replay_segment(
    bytes: &[u8],
    sm: &mut StateMachine,
    last_lsn: &mut u64,
    report: &mut RecoveryReport,
) -> (usize, bool) {
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 8) else { return (at, true) };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > RECORD_LEN_MAX {
            return (at, true);
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else { return (at, true) };
        if crc(payload) != checksum {
            return (at, true);
        }
        let Ok(record) = postcard::from_bytes::<Record>(payload) else { return (at, true) };
        if record.lsn <= *last_lsn {
            // Already in the snapshot.
            at += 8 + len as usize;
            continue;
        }
        if record.lsn != *last_lsn + 1 {
            return (at, true);
        }
        sm.apply(&record.commands, record.now_ms);
        *last_lsn = record.lsn;
        report.records_replayed += 1;
        report.commands_replayed += record.commands.len() as u64;
        at += 8 + len as usize;
    }
    (at, false)
}

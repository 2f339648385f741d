//! The write-ahead log and snapshots of one shard, in its own directory.
//!
//! Log: segment files `wal-<first lsn>.log` of records
//! `[u32 length][u32 crc32 of payload][payload]`, the payload being one batch
//! (`lsn`, `now_ms`, the commands) encoded with postcard. A batch is written and `fdatasync`ed
//! before any of its replies leaves the shard (group commit: one sync per batch).
//!
//! A segment is closed and the next one started once it passes `SEGMENT_LEN_MAX`, so that the
//! log after a snapshot can be cut at segment boundaries.
//!
//! Snapshot: `snapshot-<lsn>.bin` = `[magic][u64 lsn][u32 crc32][u64 length][state]`, written to a
//! temporary name, synced, renamed and the directory synced, by the snapshotter thread
//! (`crate::snapshot`) from its own replica of the state, which it brings up to date by
//! reading this log ([`LogReader`]). Then segments the snapshot covers and older snapshots go.
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

const SNAPSHOT_MAGIC: &[u8; 8] = b"CPSNAP02";
/// A segment past this length is closed and a new one started (by default).
pub const SEGMENT_LEN_MAX: u64 = 64 * 1024 * 1024;
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
    /// Time reading the snapshot, and replaying the log after it, ms.
    pub snapshot_ms: u64,
    pub replay_ms: u64,
}

pub struct Wal {
    dir: PathBuf,
    file: File,
    /// Bytes in `file`.
    file_len: u64,
    segment_len_max: u64,
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
        let started = std::time::Instant::now();
        let mut sm = match numbered(dir, "snapshot-", ".bin")?.pop() {
            Some((lsn, path)) => {
                report.snapshot_lsn = lsn;
                read_snapshot(&path)?
            }
            None => fresh(),
        };
        report.snapshot_ms = started.elapsed().as_millis() as u64;
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
        report.replay_ms = started.elapsed().as_millis() as u64 - report.snapshot_ms;
        let path = append_to.unwrap_or_else(|| segment_path(dir, last_lsn + 1));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        file.sync_all()?;
        sync_dir(dir)?;
        let file_len = file.metadata()?.len();
        let wal = Wal {
            dir: dir.to_path_buf(),
            file,
            file_len,
            segment_len_max: SEGMENT_LEN_MAX,
            next_lsn: last_lsn + 1,
            buf: Vec::new(),
            sync,
        };
        Ok((sm, wal, report))
    }

    /// Close segments past `len` bytes (default [`SEGMENT_LEN_MAX`]).
    pub fn set_segment_len_max(&mut self, len: u64) {
        assert!(len >= 1);
        self.segment_len_max = len;
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
        self.file_len += buf.len() as u64;
        self.buf = buf;
        written?;
        self.next_lsn += 1;
        if self.file_len >= self.segment_len_max {
            self.roll()?;
        }
        Ok(lsn)
    }

    /// Close the current segment and start the next, named after the next lsn.
    fn roll(&mut self) -> io::Result<()> {
        let path = segment_path(&self.dir, self.next_lsn);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.file.sync_all()?;
        sync_dir(&self.dir)?;
        self.file_len = 0;
        Ok(())
    }
}

/// Write a snapshot of `sm`, which has applied everything up to `lsn`, then delete the
/// segments and snapshots it makes unnecessary. The state is streamed to the file, so a
/// snapshot costs no second copy of it in memory.
pub fn write_snapshot(dir: &Path, lsn: u64, sm: &StateMachine) -> io::Result<()> {
    let path = snapshot_path(dir, lsn);
    let tmp = path.with_extension("tmp");
    let inner = io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut out = CrcWriter { inner, crc: crc32fast::Hasher::new(), len: 0, synced_at: 0 };
    out.inner.write_all(&[0; 28])?;
    postcard::to_io(sm, &mut out).map_err(io::Error::other)?;
    let (crc, len) = (out.crc.finalize(), out.len);
    let mut f = out.inner.into_inner().map_err(|e| e.into_error())?;
    let mut header = Vec::with_capacity(28);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&lsn.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&header)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    prune(dir, lsn)
}

/// Delete the segments whose every record is at or before `lsn` (the next segment starts at
/// or before `lsn + 1`; the newest segment is never deleted) and snapshots older than `lsn`.
fn prune(dir: &Path, lsn: u64) -> io::Result<()> {
    let segments = numbered(dir, "wal-", ".log")?;
    for pair in segments.windows(2) {
        if pair[1].0 <= lsn + 1 {
            fs::remove_file(&pair[0].1)?;
        }
    }
    for (at, old) in numbered(dir, "snapshot-", ".bin")? {
        if at < lsn {
            fs::remove_file(old)?;
        }
    }
    Ok(())
}

/// Bytes of a snapshot written between syncs: a snapshot of hundreds of megabytes synced only
/// at its end would flush them all at once, and the shard's log syncs would queue behind.
const SNAPSHOT_SYNC_EVERY: u64 = 4 * 1024 * 1024;

/// A writer that checksums and counts what goes through it, syncing as it goes.
struct CrcWriter {
    inner: io::BufWriter<File>,
    crc: crc32fast::Hasher,
    len: u64,
    synced_at: u64,
}

impl Write for CrcWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        if self.len - self.synced_at >= SNAPSHOT_SYNC_EVERY {
            self.inner.flush()?;
            self.inner.get_ref().sync_data()?;
            self.synced_at = self.len;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the log forward from a position, for a replica that follows the shard (the
/// snapshotter). It only reads records up to an lsn the shard reports durable, so it never
/// meets a record being written.
pub struct LogReader {
    dir: PathBuf,
    /// The last lsn applied.
    last_lsn: u64,
    /// The segment being read (its first lsn) and the offset of the next record in it.
    at: Option<(u64, u64)>,
}

impl LogReader {
    /// A reader that continues after `last_lsn`.
    pub fn new(dir: &Path, last_lsn: u64) -> LogReader {
        LogReader { dir: dir.to_path_buf(), last_lsn, at: None }
    }

    pub fn last_lsn(&self) -> u64 {
        self.last_lsn
    }

    /// Apply to `sm` every record after the last one applied, up to `target` inclusive.
    pub fn apply_until(&mut self, target: u64, sm: &mut StateMachine) -> io::Result<()> {
        while self.last_lsn < target {
            let (first, offset) = match self.at {
                Some(at) => at,
                None => (self.segment_holding(self.last_lsn + 1)?, 0),
            };
            let mut f = match File::open(segment_path(&self.dir, first)) {
                Ok(f) => f,
                // A snapshot deleted the segment this reader had read to its end: what comes
                // next is in a later one.
                Err(e) if e.kind() == io::ErrorKind::NotFound && self.at.is_some() => {
                    self.at = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(offset))?;
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            let used = self.apply_bytes(&bytes, target, sm)?;
            self.at = Some((first, offset + used as u64));
            if self.last_lsn >= target {
                break;
            }
            if used < bytes.len() {
                let at = offset + used as u64;
                return Err(io::Error::other(format!("segment {first}: no whole record at offset {at}")));
            }
            // The segment is read to its end: the next record is in the next segment.
            let next = self.segment_holding(self.last_lsn + 1)?;
            if next == first {
                return Err(io::Error::other(format!("lsn {} is not in the log", self.last_lsn + 1)));
            }
            self.at = Some((next, 0));
        }
        Ok(())
    }

    /// The first lsn of the segment that holds `lsn`.
    fn segment_holding(&self, lsn: u64) -> io::Result<u64> {
        let segments = numbered(&self.dir, "wal-", ".log")?;
        segments
            .iter()
            .rev()
            .map(|(first, _)| *first)
            .find(|first| *first <= lsn)
            .ok_or_else(|| io::Error::other(format!("no segment holds lsn {lsn}")))
    }

    /// Apply the whole records in `bytes` up to `target`; how many bytes they took.
    fn apply_bytes(&mut self, bytes: &[u8], target: u64, sm: &mut StateMachine) -> io::Result<usize> {
        let mut at = 0;
        while self.last_lsn < target {
            let Some((record, len)) = decode_record(&bytes[at..]) else { break };
            if record.lsn > self.last_lsn + 1 {
                return Err(io::Error::other(format!("log gap: lsn {} after {}", record.lsn, self.last_lsn)));
            }
            if record.lsn == self.last_lsn + 1 {
                sm.apply(&record.commands, record.now_ms);
                self.last_lsn = record.lsn;
            }
            at += len;
        }
        Ok(at)
    }
}

/// The record at the start of `bytes` and its length with header, if it is whole and sound.
fn decode_record(bytes: &[u8]) -> Option<(Record, usize)> {
    let header = bytes.get(0..8)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let checksum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > RECORD_LEN_MAX {
        return None;
    }
    let payload = bytes.get(8..8 + len as usize)?;
    if crc(payload) != checksum {
        return None;
    }
    let record = postcard::from_bytes::<Record>(payload).ok()?;
    Some((record, 8 + len as usize))
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
        let Some((record, len)) = decode_record(&bytes[at..]) else { return (at, true) };
        if record.lsn <= *last_lsn {
            // Already in the snapshot.
            at += len;
            continue;
        }
        if record.lsn != *last_lsn + 1 {
            return (at, true);
        }
        sm.apply(&record.commands, record.now_ms);
        *last_lsn = record.lsn;
        report.records_replayed += 1;
        report.commands_replayed += record.commands.len() as u64;
        at += len;
    }
    (at, false)
}

/// The newest snapshot in `dir`, if any: its lsn and path (a replicated shard keeps only
/// snapshots in its directory; the log is elsewhere).
pub fn newest_snapshot(dir: &Path) -> io::Result<Option<(u64, PathBuf)>> {
    match numbered(dir, "snapshot-", ".bin") {
        Ok(mut all) => Ok(all.pop()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Load the snapshot at `path` (checked: header, length and checksum).
pub fn load_snapshot(path: &Path) -> Result<StateMachine, WalError> {
    read_snapshot(path)
}

/// Where a snapshot of `lsn` is kept in `dir` (a snapshot fetched from elsewhere is written
/// here, then checked by [`load_snapshot`] before it is used).
pub fn snapshot_path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join(format!("snapshot-{lsn:020}.bin"))
}

/// The lsn a snapshot file says it holds (its header), without loading it.
pub fn snapshot_lsn(path: &Path) -> io::Result<u64> {
    let mut header = [0u8; 16];
    File::open(path)?.read_exact(&mut header)?;
    if &header[..8] != SNAPSHOT_MAGIC {
        return Err(io::Error::other(format!("{}: not a snapshot", path.display())));
    }
    Ok(u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")))
}

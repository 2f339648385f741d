//! Snapshots shared through the JetStream object store, and the log's retention tied to them.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::object_store::ObjectMetadata;
use chepiao_engine::wal::{newest_snapshot, snapshot_lsn, snapshot_path};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{ClusterError, ClusterLog, Result, err};

/// A snapshot download that receives nothing for this long is given up and started over. A
/// chunk is 128 KiB; a healthy download gets one in milliseconds.
pub const FETCH_STALL_MAX: Duration = Duration::from_secs(10);
/// Downloads of one snapshot tried before the node's start fails.
pub const FETCH_ATTEMPTS_MAX: u32 = 6;
const FETCH_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Bytes read at a time while downloading.
const FETCH_BUFFER_LEN: usize = 1 << 20;

/// Copy `from` into `to` until its end; an error when a read brings nothing for `stall_max`.
/// The bytes copied.
async fn copy_unless_stalled(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    stall_max: Duration,
) -> Result<u64> {
    let mut buffer = vec![0u8; FETCH_BUFFER_LEN];
    let mut copied = 0u64;
    loop {
        let n = tokio::time::timeout(stall_max, from.read(&mut buffer))
            .await
            .map_err(|_| ClusterError(format!("snapshot download: nothing received for {stall_max:?}")))?
            .map_err(|e| err("snapshot download")(&e))?;
        if n == 0 {
            return Ok(copied);
        }
        to.write_all(&buffer[..n]).await.map_err(|e| err("snapshot download")(&e))?;
        copied += n as u64;
    }
}

fn shard_dir(dir: &Path, shard: u8) -> PathBuf {
    dir.join(format!("shard-{shard}"))
}

impl ClusterLog {
    /// Before the engine opens on `dir`: give each shard a snapshot it can continue from with
    /// the log as it stands. Its own newest snapshot when the log still holds what follows it;
    /// the shared one when that is newer, or when the node is new or was wiped.
    pub async fn prepare(&self, dir: &Path) -> Result<()> {
        for shard in 0..self.config.shards {
            let sdir = shard_dir(dir, shard);
            std::fs::create_dir_all(&sdir).map_err(|e| err(sdir.display())(&e))?;
            let mut local = newest_snapshot(&sdir).map_err(|e| err(sdir.display())(&e))?.map_or(0, |(s, _)| s);
            let (first, last) = self.bounds(shard).await?;
            let usable = |s: u64| s + 1 >= first && s <= last;
            let shared = self.shared_seq(shard).await?;
            if let Some(seq) = shared.filter(|&seq| seq > local || !usable(local)) {
                local = self.fetch(shard, &sdir).await?;
                tracing::info!(shard, seq, local, "starting from the shared snapshot");
            }
            if !usable(local) {
                return Err(ClusterError(format!(
                    "shard {shard}: this node's state is at log position {local}, but the log holds {first}..={last} \
                     and no shared snapshot covers the gap; if the log was made anew, empty {}",
                    dir.display()
                )));
            }
            tracing::info!(shard, from = local, log_last = last, "engine shard will replay the log after its snapshot");
        }
        Ok(())
    }

    /// Download the shared snapshot of `shard` into `sdir`; its position. A download that fails
    /// or stalls is started over, up to [`FETCH_ATTEMPTS_MAX`] times: right after a NATS server
    /// restarts, the object's stream may be changing leader, and a download begun then can wait
    /// forever for chunks that never come (seen in the cluster test: a wiped node that never
    /// started, its log ending at "connected").
    async fn fetch(&self, shard: u8, sdir: &Path) -> Result<u64> {
        let mut attempt = 1;
        loop {
            // async-nats's object reader unwraps the creation of its consumer: a panic there is
            // one failed attempt, not a node that dies starting.
            let once = AssertUnwindSafe(self.fetch_once(shard, sdir)).catch_unwind().await;
            let error = match once {
                Ok(Ok(seq)) => return Ok(seq),
                Ok(Err(e)) => e,
                Err(_) => ClusterError("snapshot download: the NATS client panicked".into()),
            };
            if attempt >= FETCH_ATTEMPTS_MAX {
                return Err(error);
            }
            tracing::warn!(shard, attempt, %error, "downloading the shared snapshot failed; starting it over");
            attempt += 1;
            tokio::time::sleep(FETCH_RETRY_AFTER).await;
        }
    }

    async fn fetch_once(&self, shard: u8, sdir: &Path) -> Result<u64> {
        let get = tokio::time::timeout(FETCH_STALL_MAX, self.snapshots.get(Self::object_name(shard)));
        let mut object = get
            .await
            .map_err(|_| ClusterError(format!("snapshot get: no answer in {FETCH_STALL_MAX:?}")))?
            .map_err(|e| err("snapshot get")(&e))?;
        let tmp = sdir.join("shared.tmp");
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| err(tmp.display())(&e))?;
        copy_unless_stalled(&mut object, &mut file, FETCH_STALL_MAX).await?;
        file.sync_all().await.map_err(|e| err(tmp.display())(&e))?;
        drop(file);
        let seq = snapshot_lsn(&tmp).map_err(|e| err(tmp.display())(&e))?;
        std::fs::rename(&tmp, snapshot_path(sdir, seq)).map_err(|e| err(tmp.display())(&e))?;
        Ok(seq)
    }

    /// Upload each shard's newest local snapshot when it is newer than the shared one, then
    /// purge the log up to the snapshot shared before (one node does this: the caller holds
    /// the cluster's lease). The position shared per shard.
    pub async fn share_snapshots(&self, dir: &Path) -> Result<Vec<Option<u64>>> {
        let mut shared = Vec::new();
        for shard in 0..self.config.shards {
            let sdir = shard_dir(dir, shard);
            let before = self.shared_seq(shard).await?;
            let Some((seq, path)) = newest_snapshot(&sdir).map_err(|e| err(sdir.display())(&e))? else {
                shared.push(before);
                continue;
            };
            if before.is_some_and(|b| b >= seq) {
                shared.push(before);
                continue;
            }
            let mut file = tokio::fs::File::open(&path).await.map_err(|e| err(path.display())(&e))?;
            let meta = ObjectMetadata {
                name: Self::object_name(shard),
                description: Some(seq.to_string()),
                ..Default::default()
            };
            self.snapshots.put(meta, &mut file).await.map_err(|e| err("snapshot upload")(&e))?;
            if let Some(b) = before {
                // Entries up to the previous shared snapshot: every start point needs only
                // what follows it (or the newer snapshot just shared).
                let stream = self.stream(shard).await?;
                stream.purge().sequence(b + 1).await.map_err(|e| err("log purge")(&e))?;
            }
            tracing::info!(shard, seq, purged_through = before, "engine snapshot shared");
            shared.push(Some(seq));
        }
        Ok(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_download_that_stops_sending_is_given_up() {
        let (mut sender, mut receiver) = tokio::io::duplex(64);
        sender.write_all(b"the first bytes").await.unwrap();
        let mut out = Vec::new();
        // The sender stays open and sends nothing more: without the limit this waits forever.
        let copy = copy_unless_stalled(&mut receiver, &mut out, Duration::from_millis(50));
        let stalled = tokio::time::timeout(Duration::from_secs(5), copy).await.expect("given up, not waiting on");
        assert!(stalled.unwrap_err().0.contains("nothing received"));
        assert_eq!(out, b"the first bytes");
        sender.write_all(b", the rest").await.unwrap();
        drop(sender);
        let mut out = Vec::new();
        assert_eq!(copy_unless_stalled(&mut receiver, &mut out, Duration::from_millis(50)).await.unwrap(), 10);
        assert_eq!(out, b", the rest");
    }
}

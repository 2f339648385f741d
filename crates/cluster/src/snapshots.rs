//! Snapshots shared through the JetStream object store, and the log's retention tied to them.

use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::ObjectMetadata;
use chepiao_engine::wal::{newest_snapshot, snapshot_lsn, snapshot_path};

use crate::{ClusterError, ClusterLog, Result, err};

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

    /// Download the shared snapshot of `shard` into `sdir`; its position.
    async fn fetch(&self, shard: u8, sdir: &Path) -> Result<u64> {
        let mut object = self.snapshots.get(Self::object_name(shard)).await.map_err(|e| err("snapshot get")(&e))?;
        let tmp = sdir.join("shared.tmp");
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| err(tmp.display())(&e))?;
        tokio::io::copy(&mut object, &mut file).await.map_err(|e| err("snapshot download")(&e))?;
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

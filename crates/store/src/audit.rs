//! The append-only, hash-chained audit log: payments, refunds and admin actions.
//!
//! Each entry holds SHA-256 over the previous entry's hash and its own fields; the chain's end
//! is one row (`audit_head`) that every append locks, so writers on several nodes never fork
//! the chain. [`chain`] computes the records an append writes; [`verify_chain`] checks them.

use sha2::{Digest, Sha256};

use crate::error::Result;

/// An entry to append to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// e.g. `payment.notify`, `payment.refund`.
    pub kind: String,
    /// What it is about (a payment number).
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The hash of the first entry's predecessor.
pub const AUDIT_GENESIS: [u8; 32] = [0; 32];

/// SHA-256 over the previous hash and every field, each length-prefixed so that no two
/// different entries hash alike.
pub fn audit_hash(prev: &[u8], seq: i64, e: &AuditEntry) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(e.at_ms.to_be_bytes());
    for field in [&e.kind, &e.subject, &e.detail] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

/// The records that append `entries` after the chain's end (`head_seq`, `head_hash`).
pub fn chain(head_seq: i64, head_hash: &[u8], entries: &[AuditEntry]) -> Vec<AuditRecord> {
    let mut prev = head_hash.to_vec();
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let seq = head_seq + 1 + i as i64;
        let hash = audit_hash(&prev, seq, e);
        out.push(AuditRecord { seq, entry: e.clone(), prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
    }
    out
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit entry {seq}: its hash does not match its contents (edited)")]
    BadHash { seq: i64 },
    #[error("audit entry {seq}: it does not follow the entry before it (removed or reordered)")]
    BadLink { seq: i64 },
}

/// Check `records` (in sequence order) continue from `prev` (hash, seq); returns the new end.
pub fn verify_chain(prev: (Vec<u8>, i64), records: &[AuditRecord]) -> Result<(Vec<u8>, i64), ChainError> {
    let (mut hash, mut seq) = prev;
    for r in records {
        if r.seq != seq + 1 || r.prev_hash != hash {
            return Err(ChainError::BadLink { seq: r.seq });
        }
        if audit_hash(&r.prev_hash, r.seq, &r.entry) != r.hash {
            return Err(ChainError::BadHash { seq: r.seq });
        }
        (hash, seq) = (r.hash.clone(), r.seq);
    }
    Ok((hash, seq))
}

#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Append one entry; returns its sequence number.
    async fn audit_append(&self, e: &AuditEntry) -> Result<i64>;
    /// Audit entries after `after_seq`, in order.
    async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_detects_edits_and_gaps() {
        let entries: Vec<AuditEntry> = (1..=3)
            .map(|seq| AuditEntry { at_ms: seq, kind: "k".into(), subject: "s".into(), detail: format!("d{seq}") })
            .collect();
        let records = chain(0, &AUDIT_GENESIS, &entries);
        let start = (AUDIT_GENESIS.to_vec(), 0);
        assert_eq!(verify_chain(start.clone(), &records).unwrap().1, 3);
        let mut edited = records.clone();
        edited[1].entry.detail = "forged".into();
        assert_eq!(verify_chain(start.clone(), &edited), Err(ChainError::BadHash { seq: 2 }));
        let mut gap = records.clone();
        gap.remove(1);
        assert_eq!(verify_chain(start, &gap), Err(ChainError::BadLink { seq: 3 }));
        // Appending in two steps gives the same chain as in one.
        let first = chain(0, &AUDIT_GENESIS, &entries[..1]);
        let rest = chain(1, &first[0].hash, &entries[1..]);
        assert_eq!([first, rest].concat(), records);
    }
}

//! The process's resident memory, read from `/proc` (the benchmarks report it).

/// Resident set size in bytes; 0 where `/proc/self/statm` is unreadable.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

//! Limits on the waiting room's Server-Sent Events streams. Once a stream's headers are sent,
//! the concurrency limit and the time limit no longer hold it, so it is bounded here: at most
//! `sse_streams_max` open at once (503 beyond), one per user and sale (a new one ends the older
//! one: a client that reconnects is not refused for the stream its dead connection left), and
//! every stream ends when the server shuts down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::http::error::ApiError;

pub struct Streams {
    open: AtomicUsize,
    max: usize,
    /// The newest stream's number per (user, sale).
    newest: Mutex<HashMap<(i64, String), u64>>,
    next: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

/// An open stream's place; dropping it frees the place.
pub struct Slot {
    streams: Arc<Streams>,
    key: (i64, String),
    number: u64,
}

impl Streams {
    pub fn new(max: usize, shutdown: watch::Receiver<bool>) -> Streams {
        Streams {
            open: AtomicUsize::new(0),
            max,
            newest: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(1),
            shutdown,
        }
    }

    /// A place for a new stream of `user` on `sale`, or 503 when all are taken.
    pub fn open(self: &Arc<Self>, user: i64, sale: &str) -> Result<Slot, ApiError> {
        if self.open.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.open.fetch_sub(1, Ordering::SeqCst);
            metrics::counter!("chepiao_shed_total", "reason" => "sse_streams").increment(1);
            return Err(ApiError::overloaded("too many status streams open: poll the status instead"));
        }
        let number = self.next.fetch_add(1, Ordering::SeqCst) as u64;
        let key = (user, sale.to_string());
        self.newest.lock().expect("never poisoned").insert(key.clone(), number);
        Ok(Slot { streams: self.clone(), key, number })
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot {
    /// Whether the stream should go on: not superseded by a newer one of its user and sale,
    /// and the server not shutting down.
    pub fn live(&self) -> bool {
        let newest = self.streams.newest.lock().expect("never poisoned").get(&self.key) == Some(&self.number);
        newest && !*self.streams.shutdown.borrow()
    }

    /// Resolves when the server starts shutting down.
    pub async fn shutdown(&self) {
        let mut rx = self.streams.shutdown.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.streams.open.fetch_sub(1, Ordering::SeqCst);
        let mut newest = self.streams.newest.lock().expect("never poisoned");
        if newest.get(&self.key) == Some(&self.number) {
            newest.remove(&self.key);
        }
    }
}

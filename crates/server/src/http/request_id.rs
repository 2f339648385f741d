//! Request ids: a client's `x-request-id` is kept when it is sane, otherwise one is made; the
//! id of the request a task serves is in a task-local, so an error body can carry it.

/// Longest request id accepted from a client's `x-request-id`; longer ones are replaced.
const REQUEST_ID_LEN_MAX: usize = 64;
pub const REQUEST_ID_HEADER: &str = chepiao_api::headers::REQUEST_ID;

tokio::task_local! {
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request this task is serving (empty outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The client's request id, if it is 1 to 64 of `[A-Za-z0-9._-]`.
pub fn from_client(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= REQUEST_ID_LEN_MAX
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    ok.then(|| v.to_string())
}

/// A new request id: this process's random prefix and a sequence number. Unique without a
/// call to the OS's random source per request (a v4 UUID each cost a `getrandom` system call).
pub fn new_id() -> String {
    static PREFIX: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}{:08x}", *PREFIX, SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

//! The join storm of the rush: every user presses "join" at once.
//!
//! The load generator shares the server's two cores, so what it spends per request is taken
//! from the server: measured through reqwest (a pool, a task hand-off per request) and then
//! through hyper's connection API, it used 18 to 24 µs of CPU per join, about half of what the
//! server spent, and the figure was partly the client's. So the storm does what wrk does: each
//! request's bytes are written before the clock starts, keep-alive HTTP/1.1 connections on one
//! thread of their own send them, and the answers are parsed with `httparse` (hyper's own
//! parser). The later steps of the rush (polls, orders) stay on reqwest, where the cost does
//! not matter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chepiao_api::ErrorBody;
use chepiao_api::queue::QueueStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What one user's join got, as read off the wire during the storm.
struct Answer {
    rank: u64,
    latency_us: u32,
    /// The status and body, or why there is none.
    answer: Result<(u16, Vec<u8>), &'static str>,
}

impl Answer {
    /// Parsed after the storm, so that the parsing is not counted in it.
    fn parse(self) -> Joined {
        let answer = match self.answer {
            Ok((200, body)) => serde_json::from_slice(&body).map_err(|_| "join 200 unreadable".to_string()),
            Ok((status, body)) => {
                let code =
                    serde_json::from_slice::<ErrorBody>(&body).map_or_else(|_| "?".into(), |b| b.code.to_string());
                Err(format!("join {status} {code}"))
            }
            Err(e) => Err(format!("join {e}")),
        };
        Joined { rank: self.rank, latency_us: self.latency_us, answer }
    }
}

/// What one user's join got.
pub struct Joined {
    /// The order in which the answers arrived (0 first).
    pub rank: u64,
    pub latency_us: u32,
    /// The status body on 200, or the refusal (`join <status> <code>`).
    pub answer: Result<QueueStatus, String>,
}

/// The whole storm must be over within this (one deadline: a timer per request would cost the
/// load generator more than the reading).
const STORM_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest answer read (a join answer is under 1 KiB).
const ANSWER_LEN_MAX: usize = 64 * 1024;

/// The bytes of one join request, built before the storm.
pub fn request(authority: &str, sale: &str, token: &str, ip: &str, device: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/queue/{sale}/join HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {token}\r\n\
         x-real-ip: {ip}\r\nx-device-id: {device}\r\ncontent-length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// `host:port` of `url`, for [`request`] and the connections.
pub fn authority(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).context("--url")?;
    let host = parsed.host_str().context("--url has no host")?;
    let port = parsed.port_or_known_default().context("--url has no port")?;
    Ok(format!("{host}:{port}"))
}

/// Send every request of `requests` over `connections` connections to `authority`; the
/// answers come back in `requests`' order, with how long the storm took from the first request
/// to the last answer.
pub async fn run(
    authority: &str,
    requests: Vec<Vec<u8>>,
    connections: usize,
) -> anyhow::Result<(Vec<Joined>, Duration)> {
    let n = requests.len();
    let authority = authority.to_string();
    let start = Instant::now();
    // All connections on one thread of their own (as wrk does): no hand-off between threads
    // per request, and the other core is left to the server.
    let answers = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let storm = async move {
            let (requests, next, answered) =
                (Arc::new(requests), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
            let mut workers = Vec::with_capacity(connections);
            for _ in 0..connections.max(1) {
                let (requests, next, answered, authority) =
                    (requests.clone(), next.clone(), answered.clone(), authority.clone());
                workers.push(tokio::spawn(async move { worker(&authority, &requests, &next, &answered).await }));
            }
            let mut answers = Vec::with_capacity(requests.len());
            for w in workers {
                answers.extend(w.await??);
            }
            anyhow::Ok(answers)
        };
        runtime.block_on(async move {
            tokio::time::timeout(STORM_TIMEOUT, storm)
                .await
                .map_err(|_| anyhow::anyhow!("the storm took over {STORM_TIMEOUT:?}"))?
        })
    })
    .await??;
    let took = start.elapsed();
    let mut out: Vec<Option<Joined>> = (0..n).map(|_| None).collect();
    for (i, a) in answers {
        out[i] = Some(a.parse());
    }
    // A request no worker got to (every connection failed) counts as not sent.
    let not_sent = || Joined { rank: u64::MAX, latency_us: 0, answer: Err("join not sent".to_string()) };
    Ok((out.into_iter().map(|j| j.unwrap_or_else(not_sent)).collect(), took))
}

async fn worker(
    authority: &str,
    requests: &[Vec<u8>],
    next: &AtomicUsize,
    answered: &AtomicU64,
) -> anyhow::Result<Vec<(usize, Answer)>> {
    let mut stream =
        tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut mine = Vec::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(r) = requests.get(i) else { break };
        let sent = Instant::now();
        let answer = exchange(&mut stream, r, &mut buf).await.map(|(status, body)| (status, body.to_vec()));
        let latency_us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let rank = answered.fetch_add(1, Ordering::Relaxed);
        let failed = answer.is_err();
        mine.push((i, Answer { rank, latency_us, answer: answer.map_err(|_| "transport error") }));
        if failed {
            // The connection is gone or out of step: the other workers take the rest.
            break;
        }
    }
    Ok(mine)
}

/// Write one request and read its answer: the status and the body.
async fn exchange<'b>(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buf: &'b mut Vec<u8>,
) -> anyhow::Result<(u16, &'b [u8])> {
    stream.write_all(request).await?;
    buf.clear();
    loop {
        if buf.len() >= ANSWER_LEN_MAX {
            bail!("answer longer than {ANSWER_LEN_MAX} bytes");
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("the server closed the connection");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = response.parse(buf)? else { continue };
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .context("an answer without Content-Length")?;
        if buf.len() >= head_len + length {
            let status = response.code.context("no status")?;
            return Ok((status, &buf[head_len..head_len + length]));
        }
    }
}

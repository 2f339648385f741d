//! Group commit for PostgreSQL. One thread owns one write connection and a runtime of its own
//! (a socket only progresses while the runtime that registered it runs, so the connection is
//! opened on that thread). Write jobs queue to it; it takes whatever is queued (up to
//! [`BATCH_LEN_MAX`]), runs the jobs in one transaction, commits once, and only then answers
//! every job: many small transactions become few, which keeps a durable path off the
//! one-commit-per-request ceiling.
//!
//! Jobs run optimistically with no savepoint each (each one would cost a round trip). If one
//! fails or panics, the batch is rolled back and every job runs again in a transaction of its
//! own, so a failure is its job's alone; jobs are therefore closures that can run twice. A
//! commit that fails fails every job of its batch: none is acknowledged.
//!
//! A writer outlives its connection: after a batch that failed, it pings the connection, and
//! if that fails too (PostgreSQL restarted, the backend was terminated, the network dropped)
//! it reconnects before the next batch, with backoff; jobs that arrive while it cannot connect
//! fail at once with a database error (503 to a client), so nothing waits on a dead socket.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use chepiao_store::StoreError;
use futures_util::FutureExt;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot};

/// Jobs waiting for the writer before callers wait for room.
pub const QUEUE_LEN_MAX: usize = 8_192;
/// Jobs per transaction.
pub const BATCH_LEN_MAX: usize = 1_024;
/// Waits between reconnection attempts: doubling from the first to the second.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A job's future, borrowing the connection.
pub type JobFuture<'c, T> = Pin<Box<dyn Future<Output = sqlx::Result<T>> + Send + 'c>>;

type Output = Box<dyn Any + Send>;
type JobFn = Box<dyn for<'c> FnMut(&'c mut PgConnection) -> JobFuture<'c, Output> + Send>;

struct Job {
    run: JobFn,
    reply: oneshot::Sender<Result<Output, StoreError>>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError::Database("the PostgreSQL writer stopped".into())
}

pub fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl Writer {
    /// Start a writer on its own thread, connected with `options`.
    pub async fn connect(name: &str, options: sqlx::postgres::PgConnectOptions) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let (ready, connected) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| stopped_with(&e))?;
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                rt.block_on(async move {
                    match PgConnection::connect_with(&options).await {
                        Ok(conn) => {
                            let _ = ready.send(Ok(()));
                            run(options, conn, rx).await;
                        }
                        Err(e) => {
                            let _ = ready.send(Err(db(e)));
                        }
                    }
                })
            })
            .map_err(|e| stopped_with(&e))?;
        connected.await.map_err(|_| stopped())??;
        Ok(Writer { tx })
    }

    /// Run `job` in the next batch; resolves once its batch is committed. `job` may run twice
    /// (see the module doc), so it must not consume what it captures.
    pub async fn write<T, F>(&self, mut job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut PgConnection) -> JobFuture<'c, T> + Send + 'static,
    {
        let run: JobFn = Box::new(move |conn| {
            let fut = job(conn);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Output) })
        });
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { run, reply }).await.map_err(|_| stopped())?;
        let out = answer.await.map_err(|_| stopped())??;
        Ok(*out.downcast::<T>().expect("a job answers with its own type"))
    }
}

fn stopped_with(e: &std::io::Error) -> StoreError {
    StoreError::Database(format!("starting a PostgreSQL writer: {e}"))
}

async fn run(options: sqlx::postgres::PgConnectOptions, first: PgConnection, mut rx: mpsc::Receiver<Job>) {
    let mut conn = Some(first);
    let mut backoff = RECONNECT_BACKOFF.0;
    let mut batch: Vec<Job> = Vec::with_capacity(BATCH_LEN_MAX);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH_LEN_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match PgConnection::connect_with(&options).await {
                Ok(c) => {
                    tracing::info!("PostgreSQL writer reconnected");
                    backoff = RECONNECT_BACKOFF.0;
                    conn = Some(c);
                }
                Err(e) => {
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(StoreError::Database(format!("PostgreSQL unreachable: {e}"))));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if !commit_batch(c, &mut batch).await && c.ping().await.is_err() {
            tracing::warn!("PostgreSQL writer lost its connection; reconnecting");
            conn = None;
        }
    }
}

/// Run and answer one batch; false when anything in it failed (the connection may be gone).
async fn commit_batch(conn: &mut PgConnection, batch: &mut Vec<Job>) -> bool {
    match in_transaction(conn, batch).await {
        Ok(Ok(results)) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(Ok(result));
            }
            true
        }
        Ok(Err(_)) => {
            // The batch was rolled back: each job again, in a transaction of its own.
            let mut all_ok = true;
            for mut job in batch.drain(..) {
                let result = match in_transaction(conn, std::slice::from_mut(&mut job)).await {
                    Ok(Ok(mut r)) => Ok(r.pop().expect("one job, one result")),
                    Ok(Err(e)) | Err(e) => Err(e),
                };
                all_ok &= result.is_ok();
                let _ = job.reply.send(result);
            }
            all_ok
        }
        Err(e) => {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(StoreError::Database(format!("transaction failed: {e}"))));
            }
            false
        }
    }
}

async fn exec(conn: &mut PgConnection, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(conn).await.map(drop).map_err(db)
}

/// Run `jobs` in one transaction: Ok(Ok(results)) committed, Ok(Err) a job failed and the
/// transaction was rolled back, Err when beginning or committing failed.
async fn in_transaction(
    conn: &mut PgConnection,
    jobs: &mut [Job],
) -> Result<Result<Vec<Output>, StoreError>, StoreError> {
    exec(conn, "BEGIN").await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        let outcome = match AssertUnwindSafe((job.run)(conn)).catch_unwind().await {
            Ok(r) => r.map_err(db),
            Err(_) => Err(StoreError::Panicked("a write job panicked".into())),
        };
        match outcome {
            Ok(v) => results.push(v),
            Err(e) => {
                exec(conn, "ROLLBACK").await?;
                return Ok(Err(e));
            }
        }
    }
    if let Err(e) = exec(conn, "COMMIT").await {
        let _ = exec(conn, "ROLLBACK").await;
        return Err(e);
    }
    Ok(Ok(results))
}

//! Group commit, for every backend. One thread owns one write connection. Write jobs queue to
//! it; it takes whatever is queued (up to `BATCH_LEN_MAX`), runs the jobs in one transaction,
//! commits once (one fsync for the whole batch), and only then answers every job. For SQLite
//! this is the only writer (SQLite serialises writers anyway); for PostgreSQL it turns many
//! small transactions into few, which is what keeps a durable path off the 1-sync-per-request
//! ceiling.
//!
//! Jobs are run optimistically with no per-job savepoint (each extra statement costs a round
//! trip to SQLite's worker thread). If any job fails, the whole batch is rolled back and every
//! job is run again in a transaction of its own, so a failure is its job's alone. Jobs are
//! therefore closures that can run more than once. A commit that fails fails every job of its
//! batch: none of them is acknowledged.
//!
//! Jobs are closures given the connection, so a store method's SQL stays in the store method.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

/// A statement's future.
pub type ExecFuture<'a> = Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// How the writer drives its connection: it only runs the transaction's own statements.
pub struct TxControl<C> {
    /// The statement that opens a write transaction (`BEGIN IMMEDIATE` for SQLite, so the write
    /// lock is taken up front).
    pub begin: &'static str,
    /// Run one statement without parameters.
    pub exec: for<'a> fn(&'a mut C, &'static str) -> ExecFuture<'a>,
}

impl<C> Clone for TxControl<C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<C> Copy for TxControl<C> {}

/// Jobs waiting for the writer before callers wait for room.
pub const QUEUE_LEN_MAX: usize = 8_192;
/// Jobs per transaction.
pub const BATCH_LEN_MAX: usize = 1_024;

type Output = Box<dyn Any + Send>;
type JobFuture<'c> = Pin<Box<dyn Future<Output = Result<Output, sqlx::Error>> + Send + 'c>>;
type JobFn<C> = Box<dyn for<'c> FnMut(&'c mut C) -> JobFuture<'c> + Send>;

struct Job<C> {
    run: JobFn<C>,
    reply: oneshot::Sender<Result<Output, sqlx::Error>>,
}

pub struct GroupWriter<C> {
    tx: mpsc::Sender<Job<C>>,
}

impl<C> Clone for GroupWriter<C> {
    fn clone(&self) -> Self {
        GroupWriter { tx: self.tx.clone() }
    }
}

impl<C: Send + 'static> GroupWriter<C> {
    /// Start the writer on `conn`, on a thread of its own (like an engine shard) with a
    /// single-threaded runtime. It stops when the last `GroupWriter` clone is dropped.
    pub fn start(name: &str, conn: C, control: TxControl<C>) -> std::io::Result<GroupWriter<C>> {
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(name.into()).spawn(move || rt.block_on(run(conn, control, rx)))?;
        Ok(GroupWriter { tx })
    }

    /// Like `start`, but the connection is opened by `connect` on the writer's own thread. A
    /// connection whose socket belongs to another runtime only makes progress while that
    /// runtime runs; a network connection must therefore be born where it is driven.
    pub async fn connect<F, Fut>(name: &str, connect: F, control: TxControl<C>) -> Result<GroupWriter<C>, sqlx::Error>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<C, sqlx::Error>>,
    {
        let (tx, rx) = mpsc::channel(QUEUE_LEN_MAX);
        let (ready, connected) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new().name(name.into()).spawn(move || {
            rt.block_on(async move {
                match connect().await {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        run(conn, control, rx).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            })
        })?;
        connected.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(GroupWriter { tx })
    }

    /// Run `job` in the next batch; resolves once its batch is committed. `job` may be run
    /// twice (see the module doc), so it must not consume what it captures.
    pub async fn write<T, F>(&self, mut job: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnMut(&'c mut C) -> Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>
            + Send
            + 'static,
    {
        let run: JobFn<C> = Box::new(move |conn| {
            let fut = job(conn);
            Box::pin(async move { fut.await.map(|v| Box::new(v) as Output) })
        });
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { run, reply }).await.map_err(|_| sqlx::Error::PoolClosed)?;
        let out = answer.await.map_err(|_| sqlx::Error::PoolClosed)??;
        Ok(*out.downcast::<T>().expect("a job answers with its own type"))
    }
}

async fn run<C>(mut conn: C, control: TxControl<C>, mut rx: mpsc::Receiver<Job<C>>) {
    let mut batch: Vec<Job<C>> = Vec::with_capacity(BATCH_LEN_MAX);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH_LEN_MAX {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, control, &mut batch).await;
    }
}

async fn commit_batch<C>(conn: &mut C, control: TxControl<C>, batch: &mut Vec<Job<C>>) {
    match run_in_transaction(conn, control, batch).await {
        Ok(Outcome::Committed(results)) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(Ok(result));
            }
        }
        Ok(Outcome::JobFailed(_)) => {
            // The batch was rolled back: each job again, in a transaction of its own.
            for mut job in batch.drain(..) {
                let result = match run_in_transaction(conn, control, std::slice::from_mut(&mut job)).await {
                    Ok(Outcome::Committed(mut r)) => Ok(r.pop().expect("one job, one result")),
                    Ok(Outcome::JobFailed(e)) | Err(e) => Err(e),
                };
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(sqlx::Error::Protocol(format!("transaction failed: {e}"))));
            }
        }
    }
}

enum Outcome {
    /// Every job succeeded and the commit did.
    Committed(Vec<Output>),
    /// A job failed; the transaction was rolled back.
    JobFailed(sqlx::Error),
}

/// Run `jobs` in one transaction. Err only when beginning or committing fails.
async fn run_in_transaction<C>(
    conn: &mut C,
    control: TxControl<C>,
    jobs: &mut [Job<C>],
) -> Result<Outcome, sqlx::Error> {
    let exec = control.exec;
    exec(conn, control.begin).await?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        match (job.run)(conn).await {
            Ok(v) => results.push(v),
            Err(e) => {
                exec(conn, "ROLLBACK").await?;
                return Ok(Outcome::JobFailed(e));
            }
        }
    }
    if let Err(e) = exec(conn, "COMMIT").await {
        let _ = exec(conn, "ROLLBACK").await;
        return Err(e);
    }
    Ok(Outcome::Committed(results))
}

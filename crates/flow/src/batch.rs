//! Batching in front of the store: calls made at the same moment share one store call. Orders
//! placed together share a multi-row INSERT, notifies arriving together share one transaction
//! of a fixed number of statements. Up to `BATCHES_IN_FLIGHT_MAX` batches are at the store at
//! once, so one batch's commit never waits for the previous one's (the store's group writer
//! then shares the commit among them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::FlowError;

/// Items waiting before callers wait for room.
pub const QUEUE_LEN_MAX: usize = 8_192;
const BATCHES_IN_FLIGHT_MAX: usize = 4;

type Reply<O> = oneshot::Sender<Result<O, String>>;
pub type BatchFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, String>> + Send>>;

pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start the batching task on the current runtime. `run` gets up to `batch_len_max` items
    /// and answers one output per item, in order.
    pub fn start(batch_len_max: usize, run: impl Fn(Vec<I>) -> BatchFuture<O> + Send + Sync + 'static) -> Self {
        assert!(batch_len_max >= 1);
        let (tx, mut rx) = mpsc::channel::<(I, Reply<O>)>(QUEUE_LEN_MAX);
        let run = Arc::new(run);
        let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let permit = in_flight.clone().acquire_owned().await.expect("never closed");
                let mut batch = vec![first];
                while batch.len() < batch_len_max {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let run = run.clone();
                tokio::spawn(async move {
                    let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
                    let n = items.len();
                    match run(items).await {
                        Ok(outs) => {
                            assert_eq!(outs.len(), n, "one output per item");
                            for (reply, out) in replies.into_iter().zip(outs) {
                                let _ = reply.send(Ok(out));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Batcher { tx }
    }

    /// Queue `item` for the next batch and wait for its output.
    pub async fn submit(&self, item: I) -> Result<O, FlowError> {
        let (reply, answer) = oneshot::channel();
        let closed = || FlowError::Unavailable("the batching task stopped".into());
        self.tx.send((item, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?.map_err(FlowError::Unavailable)
    }
}

/// A store call over a batch, as `async_trait` methods return it.
pub type StoreCall<'a, O> = Pin<Box<dyn Future<Output = Result<Vec<O>, chepiao_store::StoreError>> + Send + 'a>>;

/// A batcher whose batches (up to [`chepiao_store::CREATE_BATCH_MAX`]) each go to one call of
/// `call` on `store`.
pub fn store_batcher<I, O>(
    store: &Arc<dyn chepiao_store::Store>,
    call: for<'a> fn(&'a dyn chepiao_store::Store, &'a [I]) -> StoreCall<'a, O>,
) -> Batcher<I, O>
where
    I: Send + Sync + 'static,
    O: Send + 'static,
{
    let store = store.clone();
    Batcher::start(chepiao_store::CREATE_BATCH_MAX, move |items: Vec<I>| {
        let store = store.clone();
        Box::pin(async move { call(store.as_ref(), &items).await.map_err(|e| e.to_string()) })
    })
}

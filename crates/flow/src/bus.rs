//! The event bus between the outbox relay and the issuer.
//!
//! The outbox row is the truth about an event until it is handled: the bus only carries it.
//!
//! - [`InProcessBus`] (the default): the relay hands each event to the issuer and waits for
//!   the outcome of each; the relay deletes what was handled and schedules a retry of what
//!   failed. A crash loses nothing (the rows are still there on restart, and SENT ones are put
//!   back to PENDING at start).
//! - [`NatsBus`] (`--nats-url`): events go to a JetStream stream (file storage, deduplicated
//!   by outbox id and attempt) once JetStream has stored them. A durable pull consumer feeds the
//!   issuer; when the issuer has handled an event the consumer deletes its row, when it failed
//!   the consumer records the failure (the relay retries it after a backoff, or it goes DEAD),
//!   and only then acks. A message JetStream gives up on (after `max_deliver`, or discarded at
//!   its limits) is not lost: its row is still SENT and the relay hands it over again when its
//!   redelivery time passes.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, stream::StorageType};
use async_trait::async_trait;
use chepiao_store::{OutboxEvent, OutboxFailure, OutboxRow, RetryPolicy};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::issuer::Issuer;

/// Events one bus handles at once.
pub const IN_FLIGHT_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(pub String);

/// What became of one event handed to the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The issuer handled it: the row can go.
    Handled,
    /// The issuer failed it: retry later.
    Failed(String),
    /// The bus has it; its consumer reports the outcome to the store itself.
    Queued,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether what the bus holds dies with this process (then SENT rows are put back at start).
    fn in_process(&self) -> bool;
    /// Hand `rows` over. Err when the bus took none (it is down: not the events' fault);
    /// otherwise one outcome per row, in order.
    async fn publish(&self, rows: &[OutboxRow]) -> Result<Vec<Delivery>, BusError>;
    /// A round trip to the bus, for `/readyz`.
    async fn ping(&self) -> Result<(), BusError>;
}

pub struct InProcessBus {
    pub issuer: Arc<Issuer>,
}

#[async_trait]
impl EventBus for InProcessBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    fn in_process(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn publish(&self, rows: &[OutboxRow]) -> Result<Vec<Delivery>, BusError> {
        let events: Vec<OutboxEvent> = rows.iter().map(|r| r.event.clone()).collect();
        let outcomes = self.issuer.handle_batch(&events).await;
        Ok(outcomes
            .into_iter()
            .map(|r| match r {
                Ok(()) => Delivery::Handled,
                Err(e) => Delivery::Failed(e.to_string()),
            })
            .collect())
    }
}

/// An event as it travels over NATS.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    id: i64,
    kind: String,
    subject: String,
}

pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
    /// Copies JetStream keeps of the stream (3 in a cluster: any one NATS server may be lost).
    replicas: usize,
}

const CONSUMER: &str = "issuer";
/// Stream limits: events are small and consumed within seconds. A message past them is
/// dropped by JetStream, not lost: its outbox row is handed over again.
const STREAM_BYTES_MAX: i64 = 1 << 30;
const STREAM_AGE_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// Deliveries of one message before JetStream gives up on it (a consumer that died before
/// acking); the outbox row then comes round again as a new message.
const DELIVER_MAX: i64 = 5;

impl NatsBus {
    /// Connect and make sure the stream and the durable consumer exist.
    pub async fn connect(url: &str, stream: &str, replicas: usize) -> Result<NatsBus, BusError> {
        let servers: Vec<&str> = url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|e| BusError(format!("connecting to {url}: {e}")))?;
        let bus = NatsBus { js: jetstream::new(client), stream: stream.to_string(), replicas };
        bus.ensure_stream().await?;
        Ok(bus)
    }

    /// Make sure the stream and the durable consumer exist (again, after a NATS server lost
    /// its store: the outbox rows of what it held are handed over again in time).
    async fn ensure_stream(&self) -> Result<jetstream::stream::Stream, BusError> {
        let config = jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.events.>", self.stream.to_lowercase())],
            storage: StorageType::File,
            max_bytes: STREAM_BYTES_MAX,
            max_age: STREAM_AGE_MAX,
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.replicas,
            ..Default::default()
        };
        let s =
            self.js.get_or_create_stream(config).await.map_err(|e| BusError(format!("stream {}: {e}", self.stream)))?;
        s.get_or_create_consumer(CONSUMER, consumer_config())
            .await
            .map_err(|e| BusError(format!("consumer {CONSUMER}: {e}")))?;
        Ok(s)
    }

    /// Feed the issuer from the durable consumer until the connection is dropped for good.
    /// Reconnects are the client's business; a failed pull is retried after a pause.
    pub async fn consume_forever(self: Arc<Self>, issuer: Arc<Issuer>, policy: RetryPolicy) {
        loop {
            if let Err(e) = self.consume(&issuer, policy).await {
                tracing::warn!(error = %e, "NATS consumer stopped; restarting in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn consume(&self, issuer: &Arc<Issuer>, policy: RetryPolicy) -> Result<(), BusError> {
        let stream = self.ensure_stream().await?;
        let consumer: jetstream::consumer::PullConsumer =
            stream.get_or_create_consumer(CONSUMER, consumer_config()).await.map_err(|e| BusError(e.to_string()))?;
        let messages = consumer.messages().await.map_err(|e| BusError(e.to_string()))?;
        messages
            .for_each_concurrent(IN_FLIGHT_MAX, |m| async move {
                match m {
                    Ok(m) => handle_message(issuer, policy, m).await,
                    Err(e) => tracing::warn!(error = %e, "NATS: receiving failed"),
                }
            })
            .await;
        Ok(())
    }
}

/// Handle one message: the outcome goes to the outbox row first, then the ack. If recording the
/// outcome fails, the message is nak'ed and comes again.
async fn handle_message(issuer: &Issuer, policy: RetryPolicy, m: jetstream::Message) {
    let Some(wire) = serde_json::from_slice::<Wire>(&m.payload).ok() else {
        tracing::error!("NATS: undecodable message dropped (no outbox row to name)");
        let _ = m.ack_with(jetstream::AckKind::Term).await;
        return;
    };
    let recorded = match OutboxEvent::from_parts(&wire.kind, &wire.subject) {
        Some(event) => match issuer.handle(&event).await {
            Ok(()) => issuer.store.outbox_done(&[wire.id]).await,
            Err(e) => failed(issuer, policy, wire.id, e.to_string()).await,
        },
        None => failed(issuer, policy, wire.id, format!("unknown event kind {:?}", wire.kind)).await,
    };
    let ack = match recorded {
        Ok(()) => jetstream::AckKind::Ack,
        Err(e) => {
            tracing::warn!(error = %e, outbox_id = wire.id, "recording an event's outcome failed; redelivery in 1 s");
            jetstream::AckKind::Nak(Some(Duration::from_secs(1)))
        }
    };
    if let Err(e) = m.ack_with(ack).await {
        tracing::warn!(error = %e, "NATS: ack failed; the message will be redelivered");
    }
}

async fn failed(issuer: &Issuer, policy: RetryPolicy, id: i64, error: String) -> chepiao_store::Result<()> {
    tracing::warn!(outbox_id = id, %error, "event failed; retried after a backoff");
    metrics::counter!("chepiao_events_failed_total").increment(1);
    let dead = issuer.store.outbox_failed(&[OutboxFailure { id, error }], policy, issuer.now_ms()).await?;
    metrics::counter!("chepiao_events_dead_total").increment(dead.len() as u64);
    Ok(())
}

fn consumer_config() -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 4_096,
        max_deliver: DELIVER_MAX,
        ..Default::default()
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn name(&self) -> &'static str {
        "nats-jetstream"
    }

    fn in_process(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.js.get_stream(&self.stream).await.map(drop).map_err(|e| BusError(format!("stream {}: {e}", self.stream)))
    }

    async fn publish(&self, rows: &[OutboxRow]) -> Result<Vec<Delivery>, BusError> {
        let prefix = self.stream.to_lowercase();
        let mut acks = Vec::with_capacity(rows.len());
        for r in rows {
            let wire = Wire { id: r.id, kind: r.event.kind().into(), subject: r.event.subject().into() };
            let payload = serde_json::to_vec(&wire).expect("an event serialises");
            let msg = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                // One message per attempt: a hand-off after a lost one is not deduplicated away.
                .message_id(format!("outbox-{}-{}", r.id, r.attempts));
            let subject = format!("{prefix}.events.{}", r.event.kind());
            acks.push(self.js.send_publish(subject, msg).await.map_err(|e| BusError(e.to_string()))?);
        }
        for ack in acks {
            if let Err(e) = ack.await {
                // No stream to take them (a NATS server that lost its store): make it again,
                // and let the relay retry.
                let _ = self.ensure_stream().await;
                return Err(BusError(e.to_string()));
            }
        }
        Ok(vec![Delivery::Queued; rows.len()])
    }
}

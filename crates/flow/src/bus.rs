//! The event bus between the outbox relay and the issuer.
//!
//! - [`InProcessBus`] (the default): the relay hands each event to the issuer and waits for it
//!   to finish; an event counts as delivered only once handled, so a crash loses nothing (the
//!   outbox row is still there on restart).
//! - [`NatsBus`] (`--nats-url`): events go to a JetStream stream (file storage, deduplicated
//!   by outbox id) and count as delivered once JetStream has stored them. A durable pull
//!   consumer feeds the issuer and acks each message only after the issuer finished; a failure
//!   is nak'ed and redelivered.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::AckPolicy, stream::StorageType};
use async_trait::async_trait;
use chepiao_store::{OutboxEvent, OutboxRow};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::issuer::Issuer;

/// Events one bus handles at once.
pub const IN_FLIGHT_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("event bus: {0}")]
pub struct BusError(pub String);

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Deliver `rows`; Ok once every one is safe with the bus (see the module doc).
    async fn publish(&self, rows: &[OutboxRow]) -> Result<(), BusError>;
}

pub struct InProcessBus {
    pub issuer: Arc<Issuer>,
}

#[async_trait]
impl EventBus for InProcessBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, rows: &[OutboxRow]) -> Result<(), BusError> {
        let events: Vec<OutboxEvent> = rows.iter().map(|r| r.event.clone()).collect();
        self.issuer.handle_batch(&events).await.map_err(|e| BusError(e.to_string()))
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
}

const CONSUMER: &str = "issuer";
/// Stream limits: events are small and consumed within seconds.
const STREAM_BYTES_MAX: i64 = 1 << 30;
const STREAM_AGE_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

impl NatsBus {
    /// Connect and make sure the stream and the durable consumer exist.
    pub async fn connect(url: &str, stream: &str) -> Result<NatsBus, BusError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| BusError(format!("connecting to {url}: {e}")))?;
        let js = jetstream::new(client);
        let config = jetstream::stream::Config {
            name: stream.to_string(),
            subjects: vec![format!("{}.events.>", stream.to_lowercase())],
            storage: StorageType::File,
            max_bytes: STREAM_BYTES_MAX,
            max_age: STREAM_AGE_MAX,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let s = js.get_or_create_stream(config).await.map_err(|e| BusError(format!("stream {stream}: {e}")))?;
        s.get_or_create_consumer(CONSUMER, consumer_config())
            .await
            .map_err(|e| BusError(format!("consumer {CONSUMER}: {e}")))?;
        Ok(NatsBus { js, stream: stream.to_string() })
    }

    /// Feed the issuer from the durable consumer until the connection is dropped for good.
    /// Reconnects are the client's business; a failed pull is retried after a pause.
    pub async fn consume_forever(self: Arc<Self>, issuer: Arc<Issuer>) {
        loop {
            if let Err(e) = self.consume(&issuer).await {
                tracing::warn!(error = %e, "NATS consumer stopped; restarting in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn consume(&self, issuer: &Arc<Issuer>) -> Result<(), BusError> {
        let stream = self.js.get_stream(&self.stream).await.map_err(|e| BusError(e.to_string()))?;
        let consumer: jetstream::consumer::PullConsumer =
            stream.get_or_create_consumer(CONSUMER, consumer_config()).await.map_err(|e| BusError(e.to_string()))?;
        let messages = consumer.messages().await.map_err(|e| BusError(e.to_string()))?;
        messages
            .for_each_concurrent(IN_FLIGHT_MAX, |m| async move {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => return tracing::warn!(error = %e, "NATS: receiving failed"),
                };
                let event = serde_json::from_slice::<Wire>(&m.payload)
                    .ok()
                    .and_then(|w| OutboxEvent::from_parts(&w.kind, &w.subject));
                let Some(event) = event else {
                    tracing::error!("NATS: undecodable event dropped");
                    let _ = m.ack_with(jetstream::AckKind::Term).await;
                    return;
                };
                let ack = match issuer.handle(&event).await {
                    Ok(()) => jetstream::AckKind::Ack,
                    Err(e) => {
                        tracing::warn!(error = %e, "issuer failed; redelivery in 1 s");
                        jetstream::AckKind::Nak(Some(Duration::from_secs(1)))
                    }
                };
                if let Err(e) = m.ack_with(ack).await {
                    tracing::warn!(error = %e, "NATS: ack failed; the message will be redelivered");
                }
            })
            .await;
        Ok(())
    }
}

fn consumer_config() -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(CONSUMER.to_string()),
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 4_096,
        ..Default::default()
    }
}

#[async_trait]
impl EventBus for NatsBus {
    fn name(&self) -> &'static str {
        "nats-jetstream"
    }

    async fn publish(&self, rows: &[OutboxRow]) -> Result<(), BusError> {
        let prefix = self.stream.to_lowercase();
        let mut acks = Vec::with_capacity(rows.len());
        for r in rows {
            let wire = Wire { id: r.id, kind: r.event.kind().into(), subject: r.event.subject().into() };
            let payload = serde_json::to_vec(&wire).expect("an event serialises");
            let msg = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("outbox-{}", r.id));
            let subject = format!("{prefix}.events.{}", r.event.kind());
            acks.push(self.js.send_publish(subject, msg).await.map_err(|e| BusError(e.to_string()))?);
        }
        for ack in acks {
            ack.await.map_err(|e| BusError(e.to_string()))?;
        }
        Ok(())
    }
}

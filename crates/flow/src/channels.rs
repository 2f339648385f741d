//! Payment channels: a pay page for a payment, a signed notify back, and refunds. `mockpay` is
//! built in and behaves like a real provider: its pay page is an HTTP endpoint
//! (`POST /mockpay/pay/{payment_no}`) that answers at once and then sends the notify from a
//! background task, retrying until it is answered 200, with a fresh `ts` and `nonce` on every
//! attempt (as providers do). Real channels plug in beside it with their own keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chepiao_api::payments::NotifyBody;
use chepiao_engine::Clock;
use chepiao_store::PaymentRecord;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Attempts mockpay makes to deliver one notify.
const NOTIFY_ATTEMPTS_MAX: u32 = 8;

#[derive(Debug, thiserror::Error)]
#[error("payment channel: {0}")]
pub struct ChannelError(pub String);

#[async_trait]
pub trait PaymentChannel: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether `signature` (hex, from `X-Chepiao-Signature`) signs `body`.
    fn verify(&self, body: &[u8], signature: &str) -> bool;
    /// The page where the payer pays `payment`; `base_url` is how clients reach this server.
    fn pay_url(&self, base_url: &str, payment: &PaymentRecord) -> String;
    /// Give `amount_fen` of a captured payment back, as refund `refund_no`. Idempotent per
    /// `refund_no`: a second call returns the same channel refund id and moves no more money.
    async fn refund(&self, payment: &PaymentRecord, amount_fen: i64, refund_no: &str) -> Result<String, ChannelError>;
}

/// The channels this server accepts, by name.
#[derive(Clone, Default)]
pub struct Channels(HashMap<&'static str, Arc<dyn PaymentChannel>>);

impl Channels {
    pub fn with(mut self, channel: Arc<dyn PaymentChannel>) -> Channels {
        self.0.insert(channel.name(), channel);
        self
    }
    pub fn get(&self, name: &str) -> Option<&Arc<dyn PaymentChannel>> {
        self.0.get(name)
    }
}

/// Hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time check of a hex HMAC.
pub fn verify_hmac(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(bytes) = decode_hex(signature.trim()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Notifies the mock provider has in flight at most (each retries for a while).
pub const MOCKPAY_IN_FLIGHT_MAX: usize = 1_024;

/// The built-in mock provider: a development channel (on by default only with the embedded
/// store). Its notifies go to the server's own address, never to one a request names.
pub struct Mockpay {
    secret: Vec<u8>,
    http: reqwest::Client,
    clock: Clock,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Mockpay {
    pub fn new(secret: Vec<u8>, clock: Clock) -> Mockpay {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a plain HTTP client");
        Mockpay { secret, http, clock, in_flight: Arc::new(tokio::sync::Semaphore::new(MOCKPAY_IN_FLIGHT_MAX)) }
    }

    /// The payer pressed pay: send the signed notify to `notify_url` in the background, retrying
    /// with backoff until it is answered 200 (or a 4xx says it never will be). False when
    /// [`MOCKPAY_IN_FLIGHT_MAX`] notifies are already on their way.
    pub fn press_pay(&self, payment: &PaymentRecord, notify_url: String, success: bool) -> bool {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else { return false };
        let (secret, http, clock) = (self.secret.clone(), self.http.clone(), self.clock.clone());
        let (payment_no, amount_fen) = (payment.payment_no.clone(), payment.amount_fen);
        let txn_id = format!("M{}", uuid::Uuid::new_v4().simple());
        tokio::spawn(async move {
            let _permit = permit;
            let mut backoff = Duration::from_millis(100);
            for attempt in 1..=NOTIFY_ATTEMPTS_MAX {
                let body = serde_json::to_vec(&NotifyBody {
                    out_trade_no: payment_no.clone(),
                    payment_no: payment_no.clone(),
                    amount_fen,
                    status: if success { "SUCCESS" } else { "FAILED" }.into(),
                    txn_id: txn_id.clone(),
                    ts: clock.as_ref()() as i64 / 1000,
                    nonce: uuid::Uuid::new_v4().simple().to_string(),
                })
                .expect("a notify always serialises");
                let signature = sign(&secret, &body);
                let sent = http
                    .post(&notify_url)
                    .header("content-type", "application/json")
                    .header("x-chepiao-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) if r.status().is_client_error() => {
                        tracing::warn!(%payment_no, status = %r.status(), "mockpay: notify refused; giving up");
                        return;
                    }
                    Ok(r) => tracing::warn!(%payment_no, attempt, status = %r.status(), "mockpay: notify failed"),
                    Err(e) => tracing::warn!(%payment_no, attempt, error = %e, "mockpay: notify not delivered"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
        true
    }
}

#[async_trait]
impl PaymentChannel for Mockpay {
    fn name(&self) -> &'static str {
        "mockpay"
    }

    fn verify(&self, body: &[u8], signature: &str) -> bool {
        verify_hmac(&self.secret, body, signature)
    }

    fn pay_url(&self, base_url: &str, payment: &PaymentRecord) -> String {
        format!("{}/mockpay/pay/{}", base_url.trim_end_matches('/'), payment.payment_no)
    }

    async fn refund(&self, payment: &PaymentRecord, amount_fen: i64, refund_no: &str) -> Result<String, ChannelError> {
        // The mock moves no money; its refund id is derived from ours, so a repeated call
        // answers the same.
        if !(0..=payment.amount_fen).contains(&amount_fen) {
            return Err(ChannelError(format!("refund of {amount_fen} fen on a payment of {}", payment.amount_fen)));
        }
        Ok(format!("M{refund_no}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_constant_time_and_refuse_what_they_must() {
        let sig = sign(b"k", b"{}");
        assert!(verify_hmac(b"k", b"{}", &sig));
        assert!(!verify_hmac(b"k", b"{ }", &sig));
        assert!(!verify_hmac(b"other", b"{}", &sig));
        assert!(!verify_hmac(b"k", b"{}", "zz"));
    }
}

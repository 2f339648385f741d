//! A channel's notify, received: the signature over the raw body, the body's checks (fields,
//! `ts` within 5 minutes), then one transaction through the notify batcher. And the mock
//! provider's pay page being pressed. (The channels themselves: `crate::channels`.)

use chepiao_api::payments::NotifyBody;
use chepiao_store::{Notify, NotifyOutcome, PaymentStatus};

use crate::context::Flow;
use crate::error::{FlowError, Result};

/// How far a notify's `ts` may be from our clock.
pub const NOTIFY_SKEW_S: i64 = 300;
/// Longest field of a notify.
const NOTIFY_FIELD_LEN_MAX: usize = 64;

/// Parse and check a notify whose signature was verified. `now_s` is our clock.
pub fn parse_notify(channel: &str, raw: &[u8], now_s: i64) -> Result<Notify> {
    let body: NotifyBody =
        serde_json::from_slice(raw).map_err(|e| FlowError::MalformedNotify(format!("notify body: {e}")))?;
    for (name, v) in [("out_trade_no", &body.out_trade_no), ("payment_no", &body.payment_no), ("txn_id", &body.txn_id)]
        .into_iter()
        .chain([("nonce", &body.nonce)])
    {
        if v.is_empty() || v.len() > NOTIFY_FIELD_LEN_MAX {
            return Err(FlowError::BadParameter(format!("notify `{name}` must be 1 to {NOTIFY_FIELD_LEN_MAX} bytes")));
        }
    }
    if body.out_trade_no != body.payment_no {
        return Err(FlowError::BadParameter("notify `out_trade_no` must equal `payment_no`".into()));
    }
    let success = match body.status.as_str() {
        "SUCCESS" => true,
        "FAILED" => false,
        _ => return Err(FlowError::BadParameter("notify `status` must be SUCCESS or FAILED".into())),
    };
    if (body.ts - now_s).abs() > NOTIFY_SKEW_S {
        return Err(FlowError::StaleNotify(format!(
            "notify `ts` {} is more than {NOTIFY_SKEW_S} s from the server's clock",
            body.ts
        )));
    }
    Ok(Notify {
        channel: channel.to_string(),
        payment_no: body.payment_no,
        amount_fen: body.amount_fen,
        success,
        txn_id: body.txn_id,
        nonce: body.nonce,
        raw: String::from_utf8_lossy(raw).into_owned(),
        received_at_ms: now_s * 1000,
    })
}

/// What a verified notify did, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyResult {
    Paid,
    RefundDue,
    Duplicate,
    Failed,
}

impl NotifyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyResult::Paid => "PAID",
            NotifyResult::RefundDue => "REFUND_DUE",
            NotifyResult::Duplicate => "DUPLICATE",
            NotifyResult::Failed => "FAILED",
        }
    }
}

/// A channel's notify: the signature over the raw body, then the body, then one transaction
/// (see the crate doc). An outbox row committed by it is published at once.
pub async fn receive_notify(flow: &Flow, channel: &str, raw: &[u8], signature: &str) -> Result<NotifyResult> {
    let ch = flow.channels.get(channel).ok_or_else(|| FlowError::UnknownChannel(format!("no channel {channel:?}")))?;
    if !ch.verify(raw, signature) {
        metrics::counter!("chepiao_notifies_total", "result" => "bad_signature").increment(1);
        return Err(FlowError::BadSignature("X-Chepiao-Signature does not sign this body".into()));
    }
    let n = parse_notify(ch.name(), raw, flow.now_ms() / 1000)?;
    let outcome = flow.batchers.notifies.submit(n.clone()).await?;
    let (label, result) = match outcome {
        NotifyOutcome::UnknownPayment => {
            ("unknown_payment", Err(FlowError::UnknownPayment(format!("no payment {}", n.payment_no))))
        }
        NotifyOutcome::Replayed => {
            ("replayed", Err(FlowError::NotifyReplayed(format!("nonce {:?} was seen before", n.nonce))))
        }
        NotifyOutcome::AmountMismatch { expected_fen } => (
            "amount_mismatch",
            Err(FlowError::AmountMismatch(format!(
                "payment {} is {expected_fen} fen, the notify says {}",
                n.payment_no, n.amount_fen
            ))),
        ),
        NotifyOutcome::Duplicate { .. } => ("DUPLICATE", Ok(NotifyResult::Duplicate)),
        NotifyOutcome::Failed => ("FAILED", Ok(NotifyResult::Failed)),
        NotifyOutcome::Paid { .. } => ("PAID", Ok(NotifyResult::Paid)),
        NotifyOutcome::RefundDue { .. } => ("REFUND_DUE", Ok(NotifyResult::RefundDue)),
    };
    metrics::counter!("chepiao_notifies_total", "result" => label).increment(1);
    if matches!(result, Ok(NotifyResult::Paid | NotifyResult::RefundDue)) {
        // An outbox row was committed: publish it now rather than at the next poll.
        flow.relay.wake();
    }
    result
}

/// The mock provider's pay page: the payer of `payment_no` pressed pay; the signed notify goes
/// to `notify_url` in the background.
pub async fn press_mockpay(flow: &Flow, payment_no: &str, success: bool, notify_url: String) -> Result<()> {
    let payment = flow
        .store
        .payment(payment_no)
        .await?
        .filter(|p| p.channel == "mockpay")
        .ok_or_else(|| FlowError::UnknownPayment(format!("no mockpay payment {payment_no}")))?;
    if payment.status != PaymentStatus::Created {
        return Err(FlowError::NotPayable(format!("payment {payment_no} is {}", payment.status)));
    }
    let mockpay = flow.mockpay.as_ref().ok_or_else(|| FlowError::UnknownChannel("mockpay is off here".into()))?;
    if !mockpay.press_pay(&payment, notify_url, success) {
        return Err(FlowError::Busy("too many mock payments in flight: retry shortly".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_checks() {
        let body = |ts: i64, status: &str| {
            format!(
                r#"{{"out_trade_no":"P1","payment_no":"P1","amount_fen":100,"status":"{status}","txn_id":"T","ts":{ts},"nonce":"n"}}"#
            )
        };
        let n = parse_notify("mockpay", body(1000, "SUCCESS").as_bytes(), 1100).unwrap();
        assert!(n.success && n.amount_fen == 100 && n.received_at_ms == 1_100_000);
        let refused = |raw: &[u8], now_s| parse_notify("mockpay", raw, now_s).unwrap_err();
        assert!(matches!(refused(body(1000, "SUCCESS").as_bytes(), 1400), FlowError::StaleNotify(_)));
        assert!(matches!(refused(body(1000, "MAYBE").as_bytes(), 1000), FlowError::BadParameter(_)));
        assert!(matches!(refused(b"{", 1000), FlowError::MalformedNotify(_)));
    }
}

//! The checks the buy path runs before any work of the flow: the risk checks, then, for runs
//! sold through a waiting room, the caller's queue token for that sale.

use crate::hotsale::risk::{Decision, Risk, Subject};
use crate::hotsale::room::{Lane, WaitingRoom};
use crate::hotsale::token::{QueueTokens, TokenError};
use crate::http::error::{ApiError, hidden};

/// Run the risk checks for `check` (`join`, `order`); the lane to join in, or the refusal.
pub fn risk_check(risk: &Risk, check: &'static str, subject: &Subject) -> Result<Lane, ApiError> {
    match risk.check(check, subject) {
        Decision::Pass => Ok(Lane::Normal),
        Decision::Slow { .. } => Ok(Lane::Slow),
        Decision::Refuse { reason } => Err(ApiError::risk_refused(format!("refused ({reason})"))),
        Decision::Limited { what } => Err(ApiError::rate_limited(format!("slow down ({what})"))),
    }
}

/// A queue token a request was admitted by: its id and expiry (for spending it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub token_id: String,
    pub until_ms: i64,
}

/// Every run of `run_ids` sold through a waiting room needs the caller's queue token for its
/// sale, valid at `now_ms`; the token, when one was needed.
pub fn check_queue_token<'a>(
    room: &WaitingRoom,
    user_id: i64,
    token: Option<&str>,
    run_ids: impl IntoIterator<Item = &'a str>,
    now_ms: i64,
) -> Result<Option<Admitted>, ApiError> {
    let mut admitted = None;
    for run_id in run_ids {
        let Some(sale) = room.sale_of_run(run_id) else { continue };
        let Some(token) = token else {
            return Err(ApiError::queue_token_required(format!("{run_id} is sold through sale {}", sale.sale_id)));
        };
        let checked = room.tokens.check(token, &sale.sale_id, user_id, now_ms);
        metrics::counter!("chepiao_queue_token_checks_total", "result" => checked.map_or_else(|e| e.label(), |_| "ok"))
            .increment(1);
        match checked {
            Ok(until_ms) => admitted = Some(Admitted { token_id: QueueTokens::id(token).to_string(), until_ms }),
            Err(TokenError::Forged) => return Err(ApiError::queue_token_invalid("the queue token is not genuine")),
            Err(TokenError::Expired) => return Err(ApiError::queue_token_expired("join the queue again")),
            Err(TokenError::NotYours) => {
                return Err(ApiError::queue_token_not_yours(format!(
                    "the token is not yours for sale {}",
                    sale.sale_id
                )));
            }
        }
    }
    Ok(admitted)
}

/// Spend the token that admitted an order with idempotency key `key` (a retry of that order
/// finds it spent on itself and goes on). Refused when another order spent it.
pub async fn spend(room: &WaitingRoom, admitted: &Admitted, key: &str, now_ms: i64) -> Result<(), ApiError> {
    let ours =
        room.backend.spend(&admitted.token_id, key, admitted.until_ms, now_ms).await.map_err(|e| hidden(&e, true))?;
    if !ours {
        return Err(ApiError::queue_token_spent("this queue token admitted another order: join the queue again"));
    }
    Ok(())
}

/// Give a token back after its order was refused and made nothing (a sold-out answer does
/// not spend the admission). Errors are logged: the token then stays spent.
pub async fn unspend(room: &WaitingRoom, admitted: &Admitted, key: &str) {
    if let Err(e) = room.backend.unspend(&admitted.token_id, key).await {
        tracing::warn!(error = %e, "giving a queue token back failed");
    }
}

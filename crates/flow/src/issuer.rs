//! The issuer: consumes outbox events (at least once, so every step is idempotent).
//!
//! - `ticket`: the order is PAID. Confirm each of its holds in the engine (a confirm is keyed by
//!   the hold, so a redelivery repeats it harmlessly), sign one QR per passenger and leg, and in
//!   one transaction store the tickets and move the order to TICKETED. If a hold can no longer
//!   be confirmed (it expired while the bus was down longer than `hold_grace_s`), the seats of
//!   any part already confirmed go back on sale and the order is refunded: money is never kept
//!   without a ticket (I2).
//! - `refund`: give a captured payment back through its channel, then mark it REFUNDED.
//! - `ticket_refund`: a refunded (or rebooked) ticket's seat back to the engine, then its money.
//!
//! A rebook's order first swaps out the ticket it replaces (see `flow::rebook`); a wish's order
//! is PAID with no seats until the waitlist finds some, so its event has nothing to do yet.
//! Whenever seats go back on sale, `seats_back` wakes the waitlist.

use std::collections::HashMap;
use std::sync::Arc;

use chepiao_api::qr::QrPayload;
use chepiao_engine::{Clock, Engine, Reject, Reply};
use chepiao_store::{
    OrderRecord, OrderStatus, OrderTickets, OutboxEvent, PaymentStatus, RebookSwap, RefundDone, RefundStatus, Store,
    TicketRecord, TicketRefundDone, TicketRefundRecord, TicketStatus, Unticketable,
};

use crate::channels::Channels;
use crate::passengers::PassengerCache;
use crate::signing::TicketSigner;
use crate::stored::{StoredLeg, funding_payment, funding_payments, holds_of, legs_of, new_number};

/// How long after arrival a ticket's code stays valid (how long before departure it becomes
/// valid is `ticket_valid_before_s`).
pub const QR_VALID_AFTER_S: i64 = 3600;

#[derive(Debug, thiserror::Error)]
#[error("issuer: {0}")]
pub struct IssueError(pub String);

fn err(e: impl std::fmt::Display) -> IssueError {
    IssueError(e.to_string())
}

pub struct Issuer {
    pub store: Arc<dyn Store>,
    /// The users' passengers (the flow's cache): the masked names the QR codes carry.
    pub passengers: Arc<PassengerCache>,
    pub engine: Arc<Engine>,
    pub signer: Arc<TicketSigner>,
    pub channels: Channels,
    pub clock: Clock,
    pub valid_before_s: i64,
    /// Signalled when seats go back on sale (the waitlist matcher waits on it).
    pub seats_back: Arc<tokio::sync::Notify>,
}

impl Issuer {
    pub fn now_ms(&self) -> i64 {
        self.clock.as_ref()() as i64
    }

    /// Handle one event. Ok means done (or nothing left to do); Err means retry later.
    pub async fn handle(&self, event: &OutboxEvent) -> Result<(), IssueError> {
        self.handle_batch(std::slice::from_ref(event)).await.pop().expect("one outcome per event")
    }

    /// Handle a batch, one outcome per event in order: each event succeeds or fails alone. The
    /// ticket events share their reads and one write transaction (if that fails, each order is
    /// written on its own, so one bad order cannot hold the others back).
    pub async fn handle_batch(&self, events: &[OutboxEvent]) -> Vec<Result<(), IssueError>> {
        let mut out: Vec<Option<Result<(), IssueError>>> = events.iter().map(|_| None).collect();
        let mut order_nos = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match e {
                OutboxEvent::Ticket { order_no } => order_nos.push(order_no.clone()),
                OutboxEvent::Refund { payment_no } => out[i] = Some(self.refund(payment_no).await),
                OutboxEvent::TicketRefund { refund_no } => out[i] = Some(self.ticket_refund(refund_no).await),
            }
        }
        let mut ticketed = self.ticket_orders(order_nos).await;
        for (i, e) in events.iter().enumerate() {
            if let OutboxEvent::Ticket { order_no } = e {
                out[i] = Some(match ticketed.get_mut(order_no) {
                    Some(r) => std::mem::replace(r, Ok(())),
                    None => Err(IssueError(format!("order {order_no} was not handled"))),
                });
            }
        }
        out.into_iter().map(|r| r.expect("every event has an outcome")).collect()
    }

    /// Ticket the PAID orders among `order_nos`; the outcome per order.
    async fn ticket_orders(&self, mut order_nos: Vec<String>) -> HashMap<String, Result<(), IssueError>> {
        order_nos.sort();
        order_nos.dedup();
        let mut outcome: HashMap<String, Result<(), IssueError>> = HashMap::new();
        if order_nos.is_empty() {
            return outcome;
        }
        let orders = match self.store.orders_in(&order_nos).await {
            Ok(orders) => orders,
            Err(e) => return order_nos.into_iter().map(|no| (no, Err(err(&e)))).collect(),
        };
        for no in &order_nos {
            if !orders.iter().any(|o| &o.order_no == no) {
                outcome.insert(no.clone(), Err(IssueError(format!("ticket event for unknown order {no}"))));
            }
        }
        // Ticketed (or refunded) by an earlier delivery: nothing to do.
        let (paid, done): (Vec<_>, Vec<_>) = orders.into_iter().partition(|o| o.status == OrderStatus::Paid);
        outcome.extend(done.into_iter().map(|o| (o.order_no, Ok(()))));
        let confirmed = futures_util::future::join_all(paid.iter().map(|o| self.confirm_then_swap(o))).await;
        let mut batch = Vec::new();
        for (order, legs) in paid.iter().zip(confirmed) {
            match self.tickets_for(order, legs).await {
                Ok(Some(tickets)) => batch.push(tickets),
                Ok(None) => drop(outcome.insert(order.order_no.clone(), Ok(()))),
                Err(e) => drop(outcome.insert(order.order_no.clone(), Err(e))),
            }
        }
        outcome.extend(self.write_tickets(batch).await);
        outcome
    }

    /// The tickets of a confirmed order (None: nothing to issue, it was refunded or waits).
    async fn tickets_for(
        &self,
        order: &OrderRecord,
        legs: Result<Option<Vec<StoredLeg>>, IssueError>,
    ) -> Result<Option<OrderTickets>, IssueError> {
        let Some(legs) = legs? else { return Ok(None) };
        let wanted: Vec<i64> = legs.iter().flat_map(|l| &l.seats).map(|s| s.passenger_id).collect();
        let own = self.passengers.of(self.store.as_ref(), order.user_id, &wanted).await.map_err(err)?;
        let tickets = self.make_tickets(&order.order_no, order.user_id, &legs, &own.masked);
        Ok(Some(OrderTickets { order_no: order.order_no.clone(), tickets }))
    }

    /// Store the tickets in one transaction; if it fails, each order in one of its own.
    async fn write_tickets(&self, batch: Vec<OrderTickets>) -> HashMap<String, Result<(), IssueError>> {
        let now = self.now_ms();
        let mut outcome = HashMap::new();
        let written = match self.store.issue_tickets(&batch, now).await {
            Ok(moved) => vec![(batch, Ok(moved))],
            Err(e) if batch.len() == 1 => vec![(batch, Err(e))],
            Err(_) => {
                let mut each = Vec::with_capacity(batch.len());
                for one in batch {
                    let r = self.store.issue_tickets(std::slice::from_ref(&one), now).await;
                    each.push((vec![one], r));
                }
                each
            }
        };
        for (orders, result) in written {
            match result {
                Ok(moved) => {
                    let issued: usize =
                        orders.iter().filter(|o| moved.contains(&o.order_no)).map(|o| o.tickets.len()).sum();
                    metrics::counter!("chepiao_tickets_issued_total").increment(issued as u64);
                    outcome.extend(orders.into_iter().map(|o| (o.order_no, Ok(()))));
                }
                Err(e) => outcome.extend(orders.into_iter().map(|o| (o.order_no, Err(err(&e))))),
            }
        }
        outcome
    }

    /// Confirm the order's seats; then a rebook's order swaps out the ticket it replaces (after
    /// the confirm, so that a failed confirm never costs the passenger the old ticket). A wish's
    /// order has no seats yet: it waits.
    async fn confirm_then_swap(&self, order: &OrderRecord) -> Result<Option<Vec<StoredLeg>>, IssueError> {
        let legs = legs_of(order).map_err(err)?;
        if legs.iter().all(|l| l.seats.is_empty()) {
            // A paid wish: the matcher may find seats for it right away.
            self.seats_back.notify_one();
            return Ok(None);
        }
        let Some(legs) = self.confirm(order).await? else { return Ok(None) };
        let Some((leg, old_sn)) = legs.iter().find_map(|l| l.replaces.as_ref().map(|sn| (l, sn))) else {
            return Ok(Some(legs));
        };
        match self.swap(order, leg, old_sn).await? {
            RebookSwap::Swapped | RebookSwap::AlreadyOurs => Ok(Some(legs)),
            lost => {
                let reason = format!("ticket {old_sn} being rebooked: {lost:?}");
                tracing::warn!(order_no = order.order_no, %reason, "rebook lost its ticket; refunding");
                let holds: Vec<u64> = holds_of(&legs).map_err(err)?.into_iter().map(|(h, _)| h).collect();
                self.return_confirmed(&legs, &holds).await?;
                self.unticketable(order, reason).await?;
                Ok(None)
            }
        }
    }

    async fn unticketable(&self, order: &OrderRecord, reason: String) -> Result<(), IssueError> {
        let u = Unticketable { order_no: order.order_no.clone(), reason, now_ms: self.now_ms() };
        self.store.refund_unticketable(&u).await.map_err(err)?;
        Ok(())
    }

    /// The old ticket REBOOKED, its seat and any fare difference going back (one transaction).
    async fn swap(&self, order: &OrderRecord, leg: &StoredLeg, old_sn: &str) -> Result<RebookSwap, IssueError> {
        let Some(old) = self.store.ticket(old_sn).await.map_err(err)? else { return Ok(RebookSwap::Unknown) };
        let old_order = self.store.order(&old.order_no).await.map_err(err)?;
        let old_order = old_order.ok_or_else(|| IssueError(format!("ticket {old_sn} has no order")))?;
        let payment = funding_payment(self.store.as_ref(), &old_order).await.map_err(err)?;
        let new_price: i64 = leg.seats.iter().map(|s| s.price_fen).sum();
        let refund = TicketRefundRecord {
            refund_no: new_number('R', self.now_ms()),
            ticket_sn: old_sn.to_string(),
            order_no: old.order_no.clone(),
            payment_no: payment.payment_no,
            refund_fen: (old.price_fen - new_price).max(0),
            fee_fen: 0,
            status: RefundStatus::Pending,
            created_at_ms: self.now_ms(),
        };
        self.store.rebook_swap(&order.order_no, &refund).await.map_err(err)
    }

    /// Confirm an order's holds. Some(legs) when its seats are sold to it; None when they could
    /// not be (the order was refunded instead).
    async fn confirm(&self, order: &OrderRecord) -> Result<Option<Vec<StoredLeg>>, IssueError> {
        let legs = legs_of(order).map_err(err)?;
        let holds = holds_of(&legs).map_err(err)?;
        let mut confirmed = Vec::new();
        for (hold, run) in holds {
            match self.engine.confirm(hold, run).await.map_err(err)? {
                Reply::Confirmed => confirmed.push(hold),
                Reply::Rejected(r @ (Reject::HoldEnded | Reject::UnknownHold | Reject::RunRetired)) => {
                    self.return_confirmed(&legs, &confirmed).await?;
                    let reason = format!("hold {hold}: {r}");
                    tracing::warn!(order_no = order.order_no, %reason, "paid order cannot be ticketed; refunding");
                    self.unticketable(order, reason).await?;
                    return Ok(None);
                }
                other => return Err(IssueError(format!("confirming hold {hold}: {other:?}"))),
            }
        }
        Ok(Some(legs))
    }

    /// Put back on sale the seats of holds confirmed before another part of the order failed.
    async fn return_confirmed(&self, legs: &[StoredLeg], confirmed: &[u64]) -> Result<(), IssueError> {
        for leg in legs.iter().filter(|l| confirmed.contains(&l.hold)) {
            let run = leg.run().map_err(err)?;
            for p in 0..leg.seats.len() as u8 {
                match self.engine.return_seat(leg.hold, run.clone(), leg.hold_leg, p).await.map_err(err)? {
                    Reply::Returned | Reply::Rejected(Reject::RunRetired) => {}
                    other => return Err(IssueError(format!("returning hold {}: {other:?}", leg.hold))),
                }
            }
        }
        self.seats_back.notify_one();
        Ok(())
    }

    fn make_tickets(
        &self,
        order_no: &str,
        user_id: i64,
        legs: &[StoredLeg],
        hints: &HashMap<i64, String>,
    ) -> Vec<TicketRecord> {
        let issued_at_ms = self.now_ms();
        let mut tickets = Vec::new();
        for (li, leg) in legs.iter().enumerate() {
            let (nbf, exp) = validity(leg, self.valid_before_s);
            for (pi, seat) in leg.seats.iter().enumerate() {
                let ticket_sn = format!("{order_no}{li}{pi}");
                let payload = QrPayload {
                    sn: ticket_sn.clone(),
                    run: leg.run_id.clone(),
                    from: leg.from.clone(),
                    to: leg.to.clone(),
                    class: leg.class.as_str().to_string(),
                    coach: seat.coach,
                    seat: seat.seat.clone(),
                    pax: hints.get(&seat.passenger_id).cloned().unwrap_or_default(),
                    nbf,
                    exp,
                    kid: self.signer.kid().to_string(),
                };
                tickets.push(TicketRecord {
                    ticket_sn,
                    order_no: order_no.to_string(),
                    user_id,
                    leg: li as i64,
                    passenger_idx: pi as i64,
                    passenger_id: seat.passenger_id,
                    run_id: leg.run_id.clone(),
                    from_station: leg.from.clone(),
                    to_station: leg.to.clone(),
                    class: leg.class.as_str().to_string(),
                    coach: i64::from(seat.coach),
                    seat: seat.seat.clone(),
                    price_fen: seat.price_fen,
                    status: TicketStatus::Issued,
                    qr: self.signer.sign(&payload),
                    issued_at_ms,
                });
            }
        }
        tickets
    }

    async fn refund(&self, payment_no: &str) -> Result<(), IssueError> {
        let Some(p) = self.store.payment(payment_no).await.map_err(err)? else {
            tracing::error!(payment_no, "refund event for an unknown payment");
            return Ok(());
        };
        if p.status != PaymentStatus::RefundPending {
            return Ok(());
        }
        let channel = self.channels.get(&p.channel).ok_or_else(|| IssueError(format!("no channel {}", p.channel)))?;
        let refund_id = channel.refund(&p, p.amount_fen, &p.payment_no).await.map_err(err)?;
        let done = RefundDone { payment_no: payment_no.to_string(), refund_id, now_ms: self.now_ms() };
        if self.store.complete_refund(&done).await.map_err(err)? {
            metrics::counter!("chepiao_payments_refunded_total").increment(1);
        }
        Ok(())
    }
}

impl Issuer {
    /// A refunded ticket: its seat back on sale (keyed by the ticket, so exactly once, I3),
    /// then the money back through the channel.
    async fn ticket_refund(&self, refund_no: &str) -> Result<(), IssueError> {
        let Some(r) = self.store.ticket_refund(refund_no).await.map_err(err)? else {
            tracing::error!(refund_no, "ticket_refund event for an unknown refund");
            return Ok(());
        };
        if r.status == RefundStatus::Done {
            return Ok(());
        }
        let (ticket, order) =
            tokio::try_join!(self.store.ticket(&r.ticket_sn), self.store.order(&r.order_no)).map_err(err)?;
        let (Some(ticket), Some(order)) = (ticket, order) else {
            return Err(IssueError(format!("refund {refund_no}: its ticket or order is missing")));
        };
        let legs = legs_of(&order).map_err(err)?;
        let leg = legs
            .get(ticket.leg as usize)
            .ok_or_else(|| IssueError(format!("refund {refund_no}: no leg {}", ticket.leg)))?;
        let passenger = ticket.passenger_idx as u8;
        // Returned exactly once by the engine's state (I3); a run that has left has no seat to
        // give back, and the money still goes back.
        match self.engine.return_seat(leg.hold, leg.run().map_err(err)?, leg.hold_leg, passenger).await.map_err(err)? {
            Reply::Returned => self.seats_back.notify_one(),
            Reply::Rejected(Reject::RunRetired) => {}
            other => return Err(IssueError(format!("returning the seat of {}: {other:?}", r.ticket_sn))),
        }
        let channel_refund_id = self.pay_back(&order, &r).await?;
        let done = TicketRefundDone { refund_no: refund_no.to_string(), channel_refund_id, now_ms: self.now_ms() };
        if self.store.complete_ticket_refund(&done).await.map_err(err)? {
            metrics::counter!("chepiao_tickets_refunded_total").increment(1);
        }
        Ok(())
    }
}

impl Issuer {
    /// Give `r.refund_fen` back through the payments the ticket was paid with, newest first,
    /// each up to its amount (a rebooked ticket was paid in parts). Each part's refund id is
    /// derived from the refund's, so a redelivery asks the channel for the same parts again.
    async fn pay_back(&self, order: &OrderRecord, r: &TicketRefundRecord) -> Result<String, IssueError> {
        let mut left = r.refund_fen;
        if left == 0 {
            return Ok("none".into()); // a rebook to a fare no cheaper gives only the seat back
        }
        let payments = funding_payments(self.store.as_ref(), order).await.map_err(err)?;
        let mut ids = Vec::new();
        for (i, p) in payments.iter().enumerate() {
            if left == 0 {
                break;
            }
            let part = left.min(p.amount_fen);
            let channel =
                self.channels.get(&p.channel).ok_or_else(|| IssueError(format!("no channel {}", p.channel)))?;
            ids.push(channel.refund(p, part, &format!("{}-{i}", r.refund_no)).await.map_err(err)?);
            left -= part;
        }
        if left > 0 {
            return Err(IssueError(format!("refund {}: {left} fen more than was paid", r.refund_no)));
        }
        Ok(ids.join(","))
    }
}

/// (not before, expires) of a leg's tickets, Unix seconds.
fn validity(leg: &StoredLeg, valid_before_s: i64) -> (i64, i64) {
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()).unwrap_or(0);
    (at(&leg.departs_at) - valid_before_s, at(&leg.arrives_at) + QR_VALID_AFTER_S)
}

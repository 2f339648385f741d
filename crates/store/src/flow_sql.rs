//! The purchase flow's SQL, shared by both backends.
//!
//! SQLite and PostgreSQL agree on everything this SQL uses (`$n` parameters, `RETURNING`,
//! `ON CONFLICT`, partial indexes, 64-bit integers and byte strings), so the statements are
//! written once. The Rust around them names concrete driver types, so it cannot be a generic
//! function without a wall of trait bounds; [`impl_flow_store!`] instead expands the same
//! code once per backend. Each backend still owns its migrations (`0003_flow.sql`), and each
//! runs the shared store suite.
//!
//! A backend provides `fn reader(&self) -> &sqlx::Pool<DB>` and `fn writer(&self) ->
//! &GroupWriter<Conn>` (the group writer the next write job goes to), then calls the macro with its store type, connection type, row type
//! and the row-locking suffix it supports (`" FOR UPDATE"` on PostgreSQL; SQLite's writer is
//! alone, so `""`).

/// The columns of an order, in the order `order_row` reads them.
pub const ORDER_COLS: &str = "order_no, user_id, idem_key, request_hash, status, version, amount_fen, pay_before_ms, \
     created_at_ms, updated_at_ms, legs_json, seats_released";

pub const PAYMENT_COLS: &str =
    "payment_no, order_no, channel, amount_fen, status, txn_id, created_at_ms, updated_at_ms";

pub const TICKET_COLS: &str = "ticket_sn, order_no, user_id, leg, passenger_idx, passenger_id, run_id, from_station, \
     to_station, class, coach, seat, price_fen, status, qr, issued_at_ms";

/// Values in one `IN (...)` list or multi-row statement: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters.
pub const IN_LIST_MAX: usize = 2_000;

/// A write job's future, as a backend's group writer runs it.
pub type TxFuture<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

pub fn decode_error(table: &str, what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{table}: unexpected value {what:?}").into())
}

#[macro_export]
macro_rules! impl_flow_store {
    ($store:ty, $conn:ty, $row:ty, $for_update:literal) => {
        // Write jobs take `&D` of the owned data `write_tx` keeps (a Vec, a String).
        #[allow(clippy::ptr_arg)]
        const _: () = {
            use sqlx::Row as _;
            use $crate::flow::*;
            use $crate::flow_sql::{IN_LIST_MAX, ORDER_COLS, PAYMENT_COLS, TICKET_COLS, TxFuture, decode_error};
            use $crate::{FlowStore, Result, StoreError};

            fn db(e: sqlx::Error) -> StoreError {
                StoreError::Database(e.to_string())
            }

            fn order_row(r: &$row) -> sqlx::Result<OrderRecord> {
                let status: String = r.try_get("status")?;
                Ok(OrderRecord {
                    order_no: r.try_get("order_no")?,
                    user_id: r.try_get("user_id")?,
                    idem_key: r.try_get("idem_key")?,
                    request_hash: r.try_get("request_hash")?,
                    status: OrderStatus::parse(&status).ok_or_else(|| decode_error("orders", &status))?,
                    version: r.try_get("version")?,
                    amount_fen: r.try_get("amount_fen")?,
                    pay_before_ms: r.try_get("pay_before_ms")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                    legs_json: r.try_get("legs_json")?,
                    seats_released: r.try_get::<i64, _>("seats_released")? != 0,
                })
            }

            fn payment_row(r: &$row) -> sqlx::Result<PaymentRecord> {
                let status: String = r.try_get("status")?;
                Ok(PaymentRecord {
                    payment_no: r.try_get("payment_no")?,
                    order_no: r.try_get("order_no")?,
                    channel: r.try_get("channel")?,
                    amount_fen: r.try_get("amount_fen")?,
                    status: PaymentStatus::parse(&status).ok_or_else(|| decode_error("payments", &status))?,
                    txn_id: r.try_get("txn_id")?,
                    created_at_ms: r.try_get("created_at_ms")?,
                    updated_at_ms: r.try_get("updated_at_ms")?,
                })
            }

            fn ticket_row(r: &$row) -> sqlx::Result<TicketRecord> {
                let status: String = r.try_get("status")?;
                Ok(TicketRecord {
                    ticket_sn: r.try_get("ticket_sn")?,
                    order_no: r.try_get("order_no")?,
                    user_id: r.try_get("user_id")?,
                    leg: r.try_get("leg")?,
                    passenger_idx: r.try_get("passenger_idx")?,
                    passenger_id: r.try_get("passenger_id")?,
                    run_id: r.try_get("run_id")?,
                    from_station: r.try_get("from_station")?,
                    to_station: r.try_get("to_station")?,
                    class: r.try_get("class")?,
                    coach: r.try_get("coach")?,
                    seat: r.try_get("seat")?,
                    price_fen: r.try_get("price_fen")?,
                    status: TicketStatus::parse(&status).ok_or_else(|| decode_error("tickets", &status))?,
                    qr: r.try_get("qr")?,
                    issued_at_ms: r.try_get("issued_at_ms")?,
                })
            }

            fn audit_row(r: &$row) -> sqlx::Result<AuditRecord> {
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    entry: AuditEntry {
                        at_ms: r.try_get("at_ms")?,
                        kind: r.try_get("kind")?,
                        subject: r.try_get("subject")?,
                        detail: r.try_get("detail")?,
                    },
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            }

            /// Append to the hash chain. The head row is locked for the rest of the
            /// transaction, so chains written from several nodes never fork. Returns the last seq.
            async fn append_audit(c: &mut $conn, entries: &[AuditEntry]) -> sqlx::Result<i64> {
                let head = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1", $for_update))
                    .fetch_one(&mut *c)
                    .await?;
                let (mut seq, mut hash): (i64, Vec<u8>) = (head.try_get("seq")?, head.try_get("hash")?);
                if entries.is_empty() {
                    return Ok(seq);
                }
                // (seq, entry, prev_hash, hash)
                let mut rows = Vec::with_capacity(entries.len());
                for e in entries {
                    seq += 1;
                    let own = audit_hash(&hash, seq, e);
                    rows.push((seq, e, std::mem::replace(&mut hash, own.clone()), own));
                }
                for chunk in rows.chunks(IN_LIST_MAX / 7) {
                    let values: Vec<String> = (0..chunk.len()).map(|i| format!("({})", placeholders(i * 7 + 1, 7))).collect();
                    let sql = format!(
                        "INSERT INTO audit_log (seq, at_ms, kind, subject, detail, prev_hash, hash) VALUES {}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for (seq, e, prev, own) in chunk {
                        q = q.bind(seq).bind(e.at_ms).bind(&e.kind).bind(&e.subject).bind(&e.detail).bind(prev).bind(own);
                    }
                    q.execute(&mut *c).await?;
                }
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&hash)
                    .execute(&mut *c)
                    .await?;
                Ok(seq)
            }

            /// Append `entry` when a guarded update changed a row; answers whether it did. The
            /// transitions that end in an audit entry all take this shape.
            async fn audit_if(c: &mut $conn, changed: bool, entry: AuditEntry) -> sqlx::Result<bool> {
                if changed {
                    append_audit(c, std::slice::from_ref(&entry)).await?;
                }
                Ok(changed)
            }

            async fn insert_outbox(c: &mut $conn, events: &[OutboxEvent], now_ms: i64) -> sqlx::Result<()> {
                for chunk in events.chunks(IN_LIST_MAX / 2) {
                    let values: Vec<String> =
                        (0..chunk.len()).map(|i| format!("({}, $1)", placeholders(i * 2 + 2, 2))).collect();
                    let sql = format!("INSERT INTO outbox (kind, subject, created_at_ms) VALUES {}", values.join(", "));
                    let mut q = sqlx::query(&sql).bind(now_ms);
                    for e in chunk {
                        q = q.bind(e.kind()).bind(e.subject());
                    }
                    q.execute(&mut *c).await?;
                }
                Ok(())
            }

            fn tx_create_orders<'c>(c: &'c mut $conn, orders: &'c Vec<NewOrder>) -> TxFuture<'c, Vec<CreateOrder>> {
                Box::pin(async move {
                    let values: Vec<String> = (0..orders.len())
                        .map(|i| {
                            let p = |k: usize| format!("${}", i * 8 + k);
                            format!(
                                "({}, {}, {}, {}, 'PENDING_PAYMENT', 0, {}, {}, {}, {}, {}, 0)",
                                p(1), p(2), p(3), p(4), p(5), p(6), p(7), p(7), p(8)
                            )
                        })
                        .collect();
                    let sql = format!(
                        "INSERT INTO orders ({ORDER_COLS}) VALUES {}
                         ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING {ORDER_COLS}",
                        values.join(", ")
                    );
                    let mut q = sqlx::query(&sql);
                    for o in orders {
                        q = q
                            .bind(&o.order_no)
                            .bind(o.user_id)
                            .bind(&o.idem_key)
                            .bind(&o.request_hash)
                            .bind(o.amount_fen)
                            .bind(o.pay_before_ms)
                            .bind(o.created_at_ms)
                            .bind(&o.legs_json);
                    }
                    let rows = q.fetch_all(&mut *c).await?;
                    let mut created: std::collections::HashMap<String, OrderRecord> = std::collections::HashMap::new();
                    for r in &rows {
                        let o = order_row(r)?;
                        created.insert(o.order_no.clone(), o);
                    }
                    let mut out = Vec::with_capacity(orders.len());
                    for o in orders {
                        match created.remove(&o.order_no) {
                            Some(rec) => out.push(CreateOrder::Created(rec)),
                            None => {
                                // The user's key was taken, before or earlier in this batch.
                                let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE user_id = $1 AND idem_key = $2");
                                let row = sqlx::query(&sql).bind(o.user_id).bind(&o.idem_key).fetch_one(&mut *c).await?;
                                out.push(CreateOrder::Existing(order_row(&row)?));
                            }
                        }
                    }
                    Ok(out)
                })
            }

            /// (order_no, from, version, to, now_ms)
            type Transition = (String, OrderStatus, i64, OrderStatus, i64);

            fn tx_transition<'c>(c: &'c mut $conn, t: &'c Transition) -> TxFuture<'c, Option<OrderRecord>> {
                Box::pin(async move {
                    let (order_no, from, version, to, now_ms) = t;
                    let sql = format!(
                        "UPDATE orders SET status = $1, version = version + 1, updated_at_ms = $2
                         WHERE order_no = $3 AND status = $4 AND version = $5 RETURNING {ORDER_COLS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(to.as_str())
                        .bind(now_ms)
                        .bind(order_no)
                        .bind(from.as_str())
                        .bind(version)
                        .fetch_optional(&mut *c)
                        .await?;
                    row.as_ref().map(order_row).transpose()
                })
            }

            fn tx_expire<'c>(c: &'c mut $conn, a: &'c (i64, i64)) -> TxFuture<'c, Vec<OrderRecord>> {
                Box::pin(async move {
                    let sql = format!(
                        "UPDATE orders SET status = 'EXPIRED', version = version + 1, updated_at_ms = $1
                         WHERE order_no IN (SELECT order_no FROM orders WHERE status = 'PENDING_PAYMENT'
                                            AND pay_before_ms <= $1 ORDER BY pay_before_ms LIMIT $2)
                         AND status = 'PENDING_PAYMENT' RETURNING {ORDER_COLS}"
                    );
                    let rows = sqlx::query(&sql).bind(a.0).bind(a.1).fetch_all(&mut *c).await?;
                    rows.iter().map(order_row).collect()
                })
            }

            fn tx_mark_released<'c>(c: &'c mut $conn, order_no: &'c String) -> TxFuture<'c, ()> {
                Box::pin(async move {
                    sqlx::query("UPDATE orders SET seats_released = 1 WHERE order_no = $1")
                        .bind(order_no)
                        .execute(&mut *c)
                        .await?;
                    Ok(())
                })
            }

            fn tx_create_payments<'c>(c: &'c mut $conn, ps: &'c Vec<NewPayment>) -> TxFuture<'c, ()> {
                Box::pin(async move {
                    for chunk in ps.chunks(IN_LIST_MAX / 5) {
                        let values: Vec<String> = (0..chunk.len())
                            .map(|i| {
                                let k = i * 5;
                                format!("(${}, ${}, ${}, ${}, 'CREATED', ${}, ${})", k + 1, k + 2, k + 3, k + 4, k + 5, k + 5)
                            })
                            .collect();
                        let sql = format!(
                            "INSERT INTO payments (payment_no, order_no, channel, amount_fen, status, created_at_ms, updated_at_ms)
                             VALUES {}",
                            values.join(", ")
                        );
                        let mut q = sqlx::query(&sql);
                        for p in chunk {
                            q = q.bind(&p.payment_no).bind(&p.order_no).bind(&p.channel).bind(p.amount_fen).bind(p.created_at_ms);
                        }
                        q.execute(&mut *c).await?;
                    }
                    Ok(())
                })
            }

            /// Apply a batch of notifies in one transaction with a fixed number of statements:
            /// nonces, one read of the payments and orders, then one statement each for the
            /// payments, the orders, the outbox and the audit log. Notifies are decided in
            /// order against the state as the earlier ones of the batch left it.
            fn tx_notifies<'c>(c: &'c mut $conn, ns: &'c Vec<Notify>) -> TxFuture<'c, Vec<NotifyOutcome>> {
                Box::pin(async move {
                    use std::collections::{HashMap, HashSet};
                    let mut fresh: HashSet<(String, String)> = HashSet::new();
                    for chunk in ns.chunks(IN_LIST_MAX / 3) {
                        let values: Vec<String> =
                            (0..chunk.len()).map(|i| format!("({})", placeholders(i * 3 + 1, 3))).collect();
                        let sql = format!(
                            "INSERT INTO notify_nonces (channel, nonce, seen_at_ms) VALUES {} ON CONFLICT DO NOTHING
                             RETURNING channel, nonce",
                            values.join(", ")
                        );
                        let mut q = sqlx::query(&sql);
                        for n in chunk {
                            q = q.bind(&n.channel).bind(&n.nonce).bind(n.received_at_ms);
                        }
                        for r in q.fetch_all(&mut *c).await? {
                            fresh.insert((r.try_get("channel")?, r.try_get("nonce")?));
                        }
                    }
                    let mut payment_nos: Vec<&String> = ns.iter().map(|n| &n.payment_no).collect();
                    payment_nos.sort();
                    payment_nos.dedup();
                    let mut payments: HashMap<String, PaymentRecord> = HashMap::new();
                    let mut orders: HashMap<String, OrderStatus> = HashMap::new();
                    for chunk in payment_nos.chunks(IN_LIST_MAX) {
                        let sql = format!(
                            "SELECT p.payment_no, p.order_no, p.channel, p.amount_fen, p.status, p.txn_id, p.created_at_ms,
                                    p.updated_at_ms, o.status AS order_status
                             FROM payments p JOIN orders o ON o.order_no = p.order_no
                             WHERE p.payment_no IN ({}){}",
                            placeholders(1, chunk.len()),
                            $for_update
                        );
                        let mut q = sqlx::query(&sql);
                        for no in chunk {
                            q = q.bind(*no);
                        }
                        for r in q.fetch_all(&mut *c).await? {
                            let s: String = r.try_get("order_status")?;
                            let order = OrderStatus::parse(&s).ok_or_else(|| decode_error("orders", &s))?;
                            let p = payment_row(&r)?;
                            orders.insert(p.order_no.clone(), order);
                            payments.insert(p.payment_no.clone(), p);
                        }
                    }
                    let mut outcomes = Vec::with_capacity(ns.len());
                    let mut changed: Vec<String> = Vec::new();
                    let mut paid_orders: Vec<String> = Vec::new();
                    let mut outbox: Vec<OutboxEvent> = Vec::new();
                    let mut audit: Vec<AuditEntry> = Vec::new();
                    for n in ns {
                        let outcome = if !fresh.remove(&(n.channel.clone(), n.nonce.clone())) {
                            NotifyOutcome::Replayed
                        } else {
                            let payment = payments.get_mut(&n.payment_no).filter(|p| p.channel == n.channel);
                            let order = payment.as_ref().and_then(|p| orders.get(&p.order_no).copied());
                            let effect = decide_notify(n, payment.as_deref(), order);
                            if let Some(p) = payment {
                                if let Some(to) = effect.payment_to {
                                    p.status = to;
                                    p.txn_id = Some(n.txn_id.clone());
                                    changed.push(p.payment_no.clone());
                                }
                                if let Some(to) = effect.order_to {
                                    debug_assert_eq!(to, OrderStatus::Paid);
                                    // Shared by the order's other payments later in the batch.
                                    orders.insert(p.order_no.clone(), to);
                                    paid_orders.push(p.order_no.clone());
                                }
                            }
                            outbox.extend(effect.outbox);
                            effect.outcome
                        };
                        audit.push(AuditEntry {
                            at_ms: n.received_at_ms,
                            kind: format!("payment.notify.{}", n.channel),
                            subject: n.payment_no.clone(),
                            detail: format!("{outcome:?} {}", n.raw),
                        });
                        outcomes.push(outcome);
                    }
                    let now_ms = ns.iter().map(|n| n.received_at_ms).max().unwrap_or(0);
                    changed.sort();
                    changed.dedup();
                    for chunk in changed.chunks(IN_LIST_MAX / 3) {
                        let (mut status, mut txn) = (String::new(), String::new());
                        for i in 0..chunk.len() {
                            let k = 2 + i * 3;
                            status += &format!(" WHEN ${k} THEN ${}", k + 1);
                            txn += &format!(" WHEN ${k} THEN ${}", k + 2);
                        }
                        let keys: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 2 + i * 3)).collect();
                        let sql = format!(
                            "UPDATE payments SET status = CASE payment_no{status} END, txn_id = CASE payment_no{txn} END,
                             updated_at_ms = $1 WHERE payment_no IN ({})",
                            keys.join(", ")
                        );
                        let mut q = sqlx::query(&sql).bind(now_ms);
                        for no in chunk {
                            let p = &payments[no];
                            q = q.bind(&p.payment_no).bind(p.status.as_str()).bind(&p.txn_id);
                        }
                        q.execute(&mut *c).await?;
                    }
                    for chunk in paid_orders.chunks(IN_LIST_MAX) {
                        let sql = format!(
                            "UPDATE orders SET status = 'PAID', version = version + 1, updated_at_ms = $1
                             WHERE status = 'PENDING_PAYMENT' AND order_no IN ({})",
                            placeholders(2, chunk.len())
                        );
                        let mut q = sqlx::query(&sql).bind(now_ms);
                        for no in chunk {
                            q = q.bind(no);
                        }
                        let done = q.execute(&mut *c).await?;
                        // The rows were read (and, on PostgreSQL, locked) in this transaction.
                        assert_eq!(done.rows_affected(), chunk.len() as u64, "orders changed under their lock");
                    }
                    insert_outbox(c, &outbox, now_ms).await?;
                    append_audit(c, &audit).await?;
                    Ok(outcomes)
                })
            }

            /// `$first, $first+1, ...` for `n` values.
            fn placeholders(first: usize, n: usize) -> String {
                (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
            }

            fn tx_outbox_done<'c>(c: &'c mut $conn, ids: &'c Vec<i64>) -> TxFuture<'c, ()> {
                Box::pin(async move {
                    for chunk in ids.chunks(IN_LIST_MAX) {
                        let sql = format!("DELETE FROM outbox WHERE id IN ({})", placeholders(1, chunk.len()));
                        let mut q = sqlx::query(&sql);
                        for id in chunk {
                            q = q.bind(id);
                        }
                        q.execute(&mut *c).await?;
                    }
                    Ok(())
                })
            }

            /// PAID -> TICKETED for every order of the batch still PAID, and their tickets:
            /// one UPDATE and multi-row INSERTs for the whole batch. Returns the orders moved.
            fn tx_issue<'c>(c: &'c mut $conn, a: &'c (Vec<(String, Vec<TicketRecord>)>, i64)) -> TxFuture<'c, Vec<String>> {
                Box::pin(async move {
                    let (batch, now_ms) = a;
                    let mut moved = Vec::new();
                    for chunk in batch.chunks(IN_LIST_MAX) {
                        let sql = format!(
                            "UPDATE orders SET status = 'TICKETED', version = version + 1, updated_at_ms = $1
                             WHERE status = 'PAID' AND order_no IN ({}) RETURNING order_no",
                            placeholders(2, chunk.len())
                        );
                        let mut q = sqlx::query(&sql).bind(now_ms);
                        for (order_no, _) in chunk {
                            q = q.bind(order_no);
                        }
                        for r in q.fetch_all(&mut *c).await? {
                            moved.push(r.try_get::<String, _>("order_no")?);
                        }
                    }
                    let moved_set: std::collections::HashSet<&String> = moved.iter().collect();
                    let tickets: Vec<&TicketRecord> = batch
                        .iter()
                        .filter(|(no, _)| moved_set.contains(no))
                        .flat_map(|(_, t)| t.iter())
                        .collect();
                    for chunk in tickets.chunks(IN_LIST_MAX / 16) {
                        let values: Vec<String> =
                            (0..chunk.len()).map(|i| format!("({})", placeholders(i * 16 + 1, 16))).collect();
                        let sql = format!("INSERT INTO tickets ({TICKET_COLS}) VALUES {}", values.join(", "));
                        let mut q = sqlx::query(&sql);
                        for t in chunk {
                            q = q
                                .bind(&t.ticket_sn)
                                .bind(&t.order_no)
                                .bind(t.user_id)
                                .bind(t.leg)
                                .bind(t.passenger_idx)
                                .bind(t.passenger_id)
                                .bind(&t.run_id)
                                .bind(&t.from_station)
                                .bind(&t.to_station)
                                .bind(&t.class)
                                .bind(t.coach)
                                .bind(&t.seat)
                                .bind(t.price_fen)
                                .bind(t.status.as_str())
                                .bind(&t.qr)
                                .bind(t.issued_at_ms);
                        }
                        q.execute(&mut *c).await?;
                    }
                    Ok(moved)
                })
            }

            /// (ticket_sn, gate_id, station, at_ms)
            type CheckInArgs = (String, String, String, i64);

            fn tx_check_in<'c>(c: &'c mut $conn, a: &'c CheckInArgs) -> TxFuture<'c, CheckIn> {
                Box::pin(async move {
                    let (sn, gate_id, station, at_ms) = a;
                    let done = sqlx::query("UPDATE tickets SET status = 'CHECKED_IN' WHERE ticket_sn = $1 AND status = 'ISSUED'")
                        .bind(sn)
                        .execute(&mut *c)
                        .await?;
                    if done.rows_affected() == 1 {
                        sqlx::query("INSERT INTO checkins (ticket_sn, gate_id, station, at_ms) VALUES ($1, $2, $3, $4)")
                            .bind(sn)
                            .bind(gate_id)
                            .bind(station)
                            .bind(at_ms)
                            .execute(&mut *c)
                            .await?;
                        return Ok(CheckIn::Accepted);
                    }
                    let row = sqlx::query(
                        "SELECT t.status, k.gate_id, k.at_ms FROM tickets t LEFT JOIN checkins k ON k.ticket_sn = t.ticket_sn
                         WHERE t.ticket_sn = $1",
                    )
                    .bind(sn)
                    .fetch_optional(&mut *c)
                    .await?;
                    let Some(row) = row else { return Ok(CheckIn::Unknown) };
                    let status: String = row.try_get("status")?;
                    match TicketStatus::parse(&status).ok_or_else(|| decode_error("tickets", &status))? {
                        TicketStatus::CheckedIn => Ok(CheckIn::AlreadyCheckedIn {
                            gate_id: row.try_get::<Option<String>, _>("gate_id")?.unwrap_or_default(),
                            at_ms: row.try_get::<Option<i64>, _>("at_ms")?.unwrap_or_default(),
                        }),
                        other => Ok(CheckIn::Revoked(other)),
                    }
                })
            }

            fn refund_row(r: &$row) -> sqlx::Result<TicketRefundRecord> {
                let status: String = r.try_get("status")?;
                Ok(TicketRefundRecord {
                    refund_no: r.try_get("refund_no")?,
                    ticket_sn: r.try_get("ticket_sn")?,
                    order_no: r.try_get("order_no")?,
                    payment_no: r.try_get("payment_no")?,
                    refund_fen: r.try_get("refund_fen")?,
                    fee_fen: r.try_get("fee_fen")?,
                    status: RefundStatus::parse(&status).ok_or_else(|| decode_error("ticket_refunds", &status))?,
                    created_at_ms: r.try_get("created_at_ms")?,
                })
            }

            const REFUND_COLS: &str =
                "refund_no, ticket_sn, order_no, payment_no, refund_fen, fee_fen, status, created_at_ms";

            /// A refund row (PENDING), the ticket's revocation and the outbox event that gives
            /// its seat and money back: what a refund and a rebook both write.
            async fn insert_ticket_refund(c: &mut $conn, r: &TicketRefundRecord, reason: &str) -> sqlx::Result<()> {
                let sql = format!("INSERT INTO ticket_refunds ({REFUND_COLS}) VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7)");
                sqlx::query(&sql)
                    .bind(&r.refund_no)
                    .bind(&r.ticket_sn)
                    .bind(&r.order_no)
                    .bind(&r.payment_no)
                    .bind(r.refund_fen)
                    .bind(r.fee_fen)
                    .bind(r.created_at_ms)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("INSERT INTO revocations (ticket_sn, reason, revoked_at_ms) VALUES ($1, $2, $3)")
                    .bind(&r.ticket_sn)
                    .bind(reason)
                    .bind(r.created_at_ms)
                    .execute(&mut *c)
                    .await?;
                insert_outbox(c, &[OutboxEvent::TicketRefund { refund_no: r.refund_no.clone() }], r.created_at_ms).await
            }

            fn tx_refund_ticket<'c>(c: &'c mut $conn, r: &'c TicketRefundRecord) -> TxFuture<'c, RefundTicket> {
                Box::pin(async move {
                    let done = sqlx::query("UPDATE tickets SET status = 'REFUNDED' WHERE ticket_sn = $1 AND status = 'ISSUED'")
                        .bind(&r.ticket_sn)
                        .execute(&mut *c)
                        .await?;
                    if done.rows_affected() == 0 {
                        let row = sqlx::query("SELECT status FROM tickets WHERE ticket_sn = $1")
                            .bind(&r.ticket_sn)
                            .fetch_optional(&mut *c)
                            .await?;
                        let Some(row) = row else { return Ok(RefundTicket::Unknown) };
                        let status: String = row.try_get("status")?;
                        let status = TicketStatus::parse(&status).ok_or_else(|| decode_error("tickets", &status))?;
                        if status != TicketStatus::Refunded {
                            // A rebooked ticket has a refund row too (its seat went back), but
                            // it was not refunded: it is simply not refundable.
                            return Ok(RefundTicket::NotRefundable(status));
                        }
                        let sql = format!("SELECT {REFUND_COLS} FROM ticket_refunds WHERE ticket_sn = $1");
                        let row = sqlx::query(&sql).bind(&r.ticket_sn).fetch_one(&mut *c).await?;
                        return Ok(RefundTicket::Existing(refund_row(&row)?));
                    }
                    insert_ticket_refund(c, r, "REFUNDED").await?;
                    sqlx::query(
                        "UPDATE orders SET version = version + 1, updated_at_ms = $2, status = CASE WHEN EXISTS
                           (SELECT 1 FROM tickets WHERE order_no = $1 AND status IN ('ISSUED', 'CHECKED_IN'))
                         THEN 'PARTIALLY_REFUNDED' ELSE 'REFUNDED' END
                         WHERE order_no = $1 AND status IN ('TICKETED', 'PARTIALLY_REFUNDED')",
                    )
                    .bind(&r.order_no)
                    .bind(r.created_at_ms)
                    .execute(&mut *c)
                    .await?;
                    let entry = AuditEntry {
                        at_ms: r.created_at_ms,
                        kind: "ticket.refund".into(),
                        subject: r.ticket_sn.clone(),
                        detail: format!("{} payment {} refund {} fee {}", r.refund_no, r.payment_no, r.refund_fen, r.fee_fen),
                    };
                    append_audit(c, std::slice::from_ref(&entry)).await?;
                    let mut started = r.clone();
                    started.status = RefundStatus::Pending;
                    Ok(RefundTicket::Started(started))
                })
            }

            fn tx_complete_ticket_refund<'c>(c: &'c mut $conn, a: &'c (String, String, i64)) -> TxFuture<'c, bool> {
                Box::pin(async move {
                    let (refund_no, channel_refund_id, now_ms) = a;
                    let done = sqlx::query("UPDATE ticket_refunds SET status = 'DONE' WHERE refund_no = $1 AND status = 'PENDING'")
                        .bind(refund_no)
                        .execute(&mut *c)
                        .await?;
                    let entry = AuditEntry {
                        at_ms: *now_ms,
                        kind: "ticket.refund.done".into(),
                        subject: refund_no.clone(),
                        detail: format!("channel refund {channel_refund_id}"),
                    };
                    audit_if(c, done.rows_affected() == 1, entry).await
                })
            }

            fn tx_unticketable<'c>(c: &'c mut $conn, a: &'c (String, String, i64)) -> TxFuture<'c, bool> {
                Box::pin(async move {
                    let (order_no, reason, now_ms) = a;
                    let done = sqlx::query(
                        "UPDATE orders SET status = 'REFUNDED', version = version + 1, updated_at_ms = $1
                         WHERE order_no = $2 AND status = 'PAID'",
                    )
                    .bind(now_ms)
                    .bind(order_no)
                    .execute(&mut *c)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    let rows = sqlx::query(
                        "UPDATE payments SET status = 'REFUND_PENDING', updated_at_ms = $1
                         WHERE order_no = $2 AND status = 'SUCCESS' RETURNING payment_no",
                    )
                    .bind(now_ms)
                    .bind(order_no)
                    .fetch_all(&mut *c)
                    .await?;
                    for r in &rows {
                        let payment_no: String = r.try_get("payment_no")?;
                        insert_outbox(c, &[OutboxEvent::Refund { payment_no }], *now_ms).await?;
                    }
                    let entry = AuditEntry {
                        at_ms: *now_ms,
                        kind: "order.unticketable".into(),
                        subject: order_no.clone(),
                        detail: reason.clone(),
                    };
                    audit_if(c, true, entry).await
                })
            }

            fn tx_complete_refund<'c>(c: &'c mut $conn, a: &'c (String, String, i64)) -> TxFuture<'c, bool> {
                Box::pin(async move {
                    let (payment_no, refund_id, now_ms) = a;
                    let done = sqlx::query(
                        "UPDATE payments SET status = 'REFUNDED', updated_at_ms = $1
                         WHERE payment_no = $2 AND status = 'REFUND_PENDING'",
                    )
                    .bind(now_ms)
                    .bind(payment_no)
                    .execute(&mut *c)
                    .await?;
                    let entry = AuditEntry {
                        at_ms: *now_ms,
                        kind: "payment.refund".into(),
                        subject: payment_no.clone(),
                        detail: format!("refund {refund_id}"),
                    };
                    audit_if(c, done.rows_affected() == 1, entry).await
                })
            }

            fn tx_audit<'c>(c: &'c mut $conn, e: &'c AuditEntry) -> TxFuture<'c, i64> {
                Box::pin(append_audit(c, std::slice::from_ref(e)))
            }

            fn tx_prune_nonces<'c>(c: &'c mut $conn, before_ms: &'c i64) -> TxFuture<'c, u64> {
                Box::pin(async move {
                    let done = sqlx::query("DELETE FROM notify_nonces WHERE seen_at_ms < $1")
                        .bind(before_ms)
                        .execute(&mut *c)
                        .await?;
                    Ok(done.rows_affected())
                })
            }

            impl $store {
                /// Run `f` with `data` in the group writer's next batch.
                async fn write_tx<D, T>(&self, data: D, f: for<'c> fn(&'c mut $conn, &'c D) -> TxFuture<'c, T>) -> Result<T>
                where
                    D: Send + Sync + 'static,
                    T: Send + 'static,
                {
                    let data = std::sync::Arc::new(data);
                    self.writer()
                        .write(move |conn| {
                            let data = data.clone();
                            Box::pin(async move { f(conn, &data).await })
                        })
                        .await
                        .map_err(db)
                }
            }

            #[async_trait::async_trait]
            impl FlowStore for $store {
                async fn create_order(&self, o: &NewOrder) -> Result<CreateOrder> {
                    let mut out = self.write_tx(vec![o.clone()], tx_create_orders).await?;
                    Ok(out.pop().expect("one answer per order"))
                }

                async fn create_orders(&self, orders: &[NewOrder]) -> Result<Vec<CreateOrder>> {
                    if orders.is_empty() {
                        return Ok(Vec::new());
                    }
                    if orders.len() > CREATE_BATCH_MAX {
                        return Err(StoreError::Limit(format!("at most {CREATE_BATCH_MAX} orders per call")));
                    }
                    self.write_tx(orders.to_vec(), tx_create_orders).await
                }

                async fn order(&self, order_no: &str) -> Result<Option<OrderRecord>> {
                    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE order_no = $1");
                    let row = sqlx::query(&sql).bind(order_no).fetch_optional(self.reader()).await.map_err(db)?;
                    row.as_ref().map(order_row).transpose().map_err(db)
                }

                async fn orders_after(&self, after_no: &str, limit: u32) -> Result<Vec<OrderRecord>> {
                    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE order_no > $1 ORDER BY order_no LIMIT $2");
                    let rows = sqlx::query(&sql)
                        .bind(after_no)
                        .bind(i64::from(limit.min(PAGE_SIZE_MAX * 100)))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db)?;
                    rows.iter().map(order_row).collect::<sqlx::Result<_>>().map_err(db)
                }

                async fn order_by_key(&self, user_id: i64, idem_key: &str) -> Result<Option<OrderRecord>> {
                    let sql = format!("SELECT {ORDER_COLS} FROM orders WHERE user_id = $1 AND idem_key = $2");
                    let row = sqlx::query(&sql)
                        .bind(user_id)
                        .bind(idem_key)
                        .fetch_optional(self.reader())
                        .await
                        .map_err(db)?;
                    row.as_ref().map(order_row).transpose().map_err(db)
                }

                async fn orders_of(
                    &self,
                    user_id: i64,
                    status: Option<OrderStatus>,
                    page: u32,
                    page_size: u32,
                ) -> Result<OrderPage> {
                    if page == 0 || !(1..=PAGE_SIZE_MAX).contains(&page_size) {
                        return Err(StoreError::Limit(format!("page from 1, page_size 1 to {PAGE_SIZE_MAX}")));
                    }
                    let status = status.map(|s| s.as_str()).unwrap_or("");
                    let filter = "user_id = $1 AND ($2 = '' OR status = $2)";
                    let sql = format!(
                        "SELECT {ORDER_COLS} FROM orders WHERE {filter}
                         ORDER BY created_at_ms DESC, order_no DESC LIMIT $3 OFFSET $4"
                    );
                    let offset = i64::from(page - 1) * i64::from(page_size);
                    let rows = sqlx::query(&sql)
                        .bind(user_id)
                        .bind(status)
                        .bind(i64::from(page_size))
                        .bind(offset)
                        .fetch_all(self.reader())
                        .await
                        .map_err(db)?;
                    let items = rows.iter().map(order_row).collect::<sqlx::Result<_>>().map_err(db)?;
                    let total: i64 = sqlx::query(&format!("SELECT count(*) AS n FROM orders WHERE {filter}"))
                        .bind(user_id)
                        .bind(status)
                        .fetch_one(self.reader())
                        .await
                        .and_then(|r| r.try_get("n"))
                        .map_err(db)?;
                    Ok(OrderPage { items, total: total as u64 })
                }

                async fn transition_order(
                    &self,
                    order: &OrderRecord,
                    to: OrderStatus,
                    now_ms: i64,
                ) -> Result<Option<OrderRecord>> {
                    assert!(order.status.can_become(to), "{} -> {to} is not a transition", order.status);
                    let t = (order.order_no.clone(), order.status, order.version, to, now_ms);
                    self.write_tx(t, tx_transition).await
                }

                async fn expire_orders(&self, now_ms: i64, limit: u32) -> Result<Vec<OrderRecord>> {
                    self.write_tx((now_ms, i64::from(limit)), tx_expire).await
                }

                async fn unreleased_orders(&self, limit: u32) -> Result<Vec<OrderRecord>> {
                    let sql = format!(
                        "SELECT {ORDER_COLS} FROM orders
                         WHERE seats_released = 0 AND status IN ('CANCELLED', 'EXPIRED') LIMIT $1"
                    );
                    let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(self.reader()).await.map_err(db)?;
                    rows.iter().map(order_row).collect::<sqlx::Result<_>>().map_err(db)
                }

                async fn mark_seats_released(&self, order_no: &str) -> Result<()> {
                    self.write_tx(order_no.to_string(), tx_mark_released).await
                }

                async fn create_payment(&self, p: &NewPayment) -> Result<()> {
                    self.write_tx(vec![p.clone()], tx_create_payments).await
                }

                async fn create_payments(&self, ps: &[NewPayment]) -> Result<()> {
                    if ps.len() > CREATE_BATCH_MAX {
                        return Err(StoreError::Limit(format!("at most {CREATE_BATCH_MAX} payments per call")));
                    }
                    self.write_tx(ps.to_vec(), tx_create_payments).await
                }

                async fn payment(&self, payment_no: &str) -> Result<Option<PaymentRecord>> {
                    let sql = format!("SELECT {PAYMENT_COLS} FROM payments WHERE payment_no = $1");
                    let row = sqlx::query(&sql).bind(payment_no).fetch_optional(self.reader()).await.map_err(db)?;
                    row.as_ref().map(payment_row).transpose().map_err(db)
                }

                async fn payments_of(&self, order_no: &str) -> Result<Vec<PaymentRecord>> {
                    let sql =
                        format!("SELECT {PAYMENT_COLS} FROM payments WHERE order_no = $1 ORDER BY created_at_ms, payment_no");
                    let rows = sqlx::query(&sql).bind(order_no).fetch_all(self.reader()).await.map_err(db)?;
                    rows.iter().map(payment_row).collect::<sqlx::Result<_>>().map_err(db)
                }

                async fn apply_notify(&self, n: &Notify) -> Result<NotifyOutcome> {
                    let mut out = self.write_tx(vec![n.clone()], tx_notifies).await?;
                    Ok(out.pop().expect("one outcome per notify"))
                }

                async fn apply_notifies(&self, ns: &[Notify]) -> Result<Vec<NotifyOutcome>> {
                    if ns.len() > CREATE_BATCH_MAX {
                        return Err(StoreError::Limit(format!("at most {CREATE_BATCH_MAX} notifies per call")));
                    }
                    self.write_tx(ns.to_vec(), tx_notifies).await
                }

                async fn prune_nonces(&self, before_ms: i64) -> Result<u64> {
                    self.write_tx(before_ms, tx_prune_nonces).await
                }

                async fn outbox_pending(&self, limit: u32) -> Result<Vec<OutboxRow>> {
                    let limit = limit.min(OUTBOX_BATCH_MAX);
                    let rows = sqlx::query("SELECT id, kind, subject, created_at_ms FROM outbox ORDER BY id LIMIT $1")
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db)?;
                    rows.iter()
                        .map(|r| {
                            let (kind, subject): (String, String) =
                                (r.try_get("kind").map_err(db)?, r.try_get("subject").map_err(db)?);
                            Ok(OutboxRow {
                                id: r.try_get("id").map_err(db)?,
                                event: OutboxEvent::from_parts(&kind, &subject).ok_or_else(|| StoreError::Corrupt {
                                    table: "outbox",
                                    detail: format!("kind {kind:?}"),
                                })?,
                                created_at_ms: r.try_get("created_at_ms").map_err(db)?,
                            })
                        })
                        .collect()
                }

                async fn outbox_done(&self, ids: &[i64]) -> Result<()> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    self.write_tx(ids.to_vec(), tx_outbox_done).await
                }

                async fn issue_tickets(&self, order_no: &str, tickets: &[TicketRecord], now_ms: i64) -> Result<bool> {
                    let moved = self.write_tx((vec![(order_no.to_string(), tickets.to_vec())], now_ms), tx_issue).await?;
                    Ok(!moved.is_empty())
                }

                async fn issue_tickets_many(
                    &self,
                    batch: &[(String, Vec<TicketRecord>)],
                    now_ms: i64,
                ) -> Result<Vec<String>> {
                    if batch.is_empty() {
                        return Ok(Vec::new());
                    }
                    self.write_tx((batch.to_vec(), now_ms), tx_issue).await
                }

                async fn orders_in(&self, order_nos: &[String]) -> Result<Vec<OrderRecord>> {
                    let mut out = Vec::with_capacity(order_nos.len());
                    for chunk in order_nos.chunks(IN_LIST_MAX) {
                        let sql =
                            format!("SELECT {ORDER_COLS} FROM orders WHERE order_no IN ({})", placeholders(1, chunk.len()));
                        let mut q = sqlx::query(&sql);
                        for no in chunk {
                            q = q.bind(no);
                        }
                        for r in q.fetch_all(self.reader()).await.map_err(db)? {
                            out.push(order_row(&r).map_err(db)?);
                        }
                    }
                    Ok(out)
                }

                async fn refund_unticketable(&self, order_no: &str, reason: &str, now_ms: i64) -> Result<bool> {
                    self.write_tx((order_no.to_string(), reason.to_string(), now_ms), tx_unticketable).await
                }

                async fn complete_refund(&self, payment_no: &str, refund_id: &str, now_ms: i64) -> Result<bool> {
                    self.write_tx((payment_no.to_string(), refund_id.to_string(), now_ms), tx_complete_refund).await
                }

                async fn tickets_of(&self, order_no: &str) -> Result<Vec<TicketRecord>> {
                    let sql = format!("SELECT {TICKET_COLS} FROM tickets WHERE order_no = $1 ORDER BY leg, passenger_idx");
                    let rows = sqlx::query(&sql).bind(order_no).fetch_all(self.reader()).await.map_err(db)?;
                    rows.iter().map(ticket_row).collect::<sqlx::Result<_>>().map_err(db)
                }

                async fn ticket(&self, ticket_sn: &str) -> Result<Option<TicketRecord>> {
                    let sql = format!("SELECT {TICKET_COLS} FROM tickets WHERE ticket_sn = $1");
                    let row = sqlx::query(&sql).bind(ticket_sn).fetch_optional(self.reader()).await.map_err(db)?;
                    row.as_ref().map(ticket_row).transpose().map_err(db)
                }

                async fn tickets_after(&self, after_sn: &str, limit: u32) -> Result<Vec<TicketRecord>> {
                    let sql = format!("SELECT {TICKET_COLS} FROM tickets WHERE ticket_sn > $1 ORDER BY ticket_sn LIMIT $2");
                    let rows = sqlx::query(&sql)
                        .bind(after_sn)
                        .bind(i64::from(limit.min(PAGE_SIZE_MAX * 100)))
                        .fetch_all(self.reader())
                        .await
                        .map_err(db)?;
                    rows.iter().map(ticket_row).collect::<sqlx::Result<_>>().map_err(db)
                }

                async fn check_in(&self, ticket_sn: &str, gate_id: &str, station: &str, at_ms: i64) -> Result<CheckIn> {
                    let args = (ticket_sn.to_string(), gate_id.to_string(), station.to_string(), at_ms);
                    self.write_tx(args, tx_check_in).await
                }

                async fn refund_ticket(&self, r: &TicketRefundRecord) -> Result<RefundTicket> {
                    self.write_tx(r.clone(), tx_refund_ticket).await
                }

                async fn ticket_refund(&self, refund_no: &str) -> Result<Option<TicketRefundRecord>> {
                    let sql = format!("SELECT {REFUND_COLS} FROM ticket_refunds WHERE refund_no = $1");
                    let row = sqlx::query(&sql).bind(refund_no).fetch_optional(self.reader()).await.map_err(db)?;
                    row.as_ref().map(refund_row).transpose().map_err(db)
                }

                async fn complete_ticket_refund(&self, refund_no: &str, channel_refund_id: &str, now_ms: i64) -> Result<bool> {
                    let args = (refund_no.to_string(), channel_refund_id.to_string(), now_ms);
                    self.write_tx(args, tx_complete_ticket_refund).await
                }

                async fn revocations(&self, after_seq: i64, limit: u32) -> Result<Vec<Revocation>> {
                    let rows = sqlx::query(
                        "SELECT seq, ticket_sn, revoked_at_ms FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after_seq)
                    .bind(i64::from(limit.min(PAGE_SIZE_MAX * 100)))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db)?;
                    rows.iter()
                        .map(|r| {
                            Ok(Revocation {
                                seq: r.try_get("seq")?,
                                ticket_sn: r.try_get("ticket_sn")?,
                                revoked_at_ms: r.try_get("revoked_at_ms")?,
                            })
                        })
                        .collect::<sqlx::Result<_>>()
                        .map_err(db)
                }

                async fn payment_audit(&self) -> Result<PaymentAudit> {
                    let rows = sqlx::query(
                        "SELECT p.payment_no, p.status, o.status AS order_status FROM payments p
                         JOIN orders o ON o.order_no = p.order_no
                         WHERE p.status IN ('SUCCESS', 'REFUND_PENDING', 'REFUNDED')",
                    )
                    .fetch_all(self.reader())
                    .await
                    .map_err(db)?;
                    let mut audit = PaymentAudit::default();
                    for r in &rows {
                        let (payment_no, status, order_status): (String, String, String) = (
                            r.try_get("payment_no").map_err(db)?,
                            r.try_get("status").map_err(db)?,
                            r.try_get("order_status").map_err(db)?,
                        );
                        audit.count(&payment_no, &status, &order_status);
                    }
                    Ok(audit)
                }

                async fn audit_append(&self, e: &AuditEntry) -> Result<i64> {
                    self.write_tx(e.clone(), tx_audit).await
                }

                async fn audit_range(&self, after_seq: i64, limit: u32) -> Result<Vec<AuditRecord>> {
                    let rows = sqlx::query(
                        "SELECT seq, at_ms, kind, subject, detail, prev_hash, hash FROM audit_log
                         WHERE seq > $1 ORDER BY seq LIMIT $2",
                    )
                    .bind(after_seq)
                    .bind(i64::from(limit.min(PAGE_SIZE_MAX * 100)))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db)?;
                    rows.iter().map(audit_row).collect::<sqlx::Result<_>>().map_err(db)
                }
            }

            $crate::impl_after_sale_store!($store, $conn, $row);
        };
    };
}

//! The after-sale SQL (rebooking, the waitlist), shared by both backends like `flow_sql`.
//!
//! [`impl_after_sale_store!`] expands inside `impl_flow_store!`'s scope, so it uses that
//! macro's helpers (`db`, `order_row`, `insert_outbox`, `append_audit`, `write_tx`, ...)
//! rather than repeating them.

/// The columns of a wish, in the order `wish_row` reads them.
pub const WISH_COLS: &str = "seq, wish_id, user_id, order_no, run_id, class, from_station, to_station, \
     passenger_ids, deadline_ms, status, created_at_ms, updated_at_ms";

#[macro_export]
#[doc(hidden)]
macro_rules! impl_after_sale_store {
    ($store:ty, $conn:ty, $row:ty) => {
        use $crate::after_sale::*;
        use $crate::after_sale_sql::WISH_COLS;

        fn wish_row(r: &$row) -> sqlx::Result<WishRecord> {
            let status: String = r.try_get("status")?;
            let ids: String = r.try_get("passenger_ids")?;
            Ok(WishRecord {
                seq: r.try_get("seq")?,
                wish_id: r.try_get("wish_id")?,
                user_id: r.try_get("user_id")?,
                order_no: r.try_get("order_no")?,
                run_id: r.try_get("run_id")?,
                class: r.try_get("class")?,
                from_station: r.try_get("from_station")?,
                to_station: r.try_get("to_station")?,
                passenger_ids: ids
                    .split(',')
                    .map(|p| p.parse().map_err(|_| decode_error("wishes", &ids)))
                    .collect::<sqlx::Result<_>>()?,
                deadline_ms: r.try_get("deadline_ms")?,
                status: WishStatus::parse(&status).ok_or_else(|| decode_error("wishes", &status))?,
                created_at_ms: r.try_get("created_at_ms")?,
                updated_at_ms: r.try_get("updated_at_ms")?,
            })
        }

        async fn wish_by(c: &mut $conn, column: &str, value: &str) -> sqlx::Result<Option<WishRecord>> {
            let sql = format!("SELECT {WISH_COLS} FROM wishes WHERE {column} = $1");
            let row = sqlx::query(&sql).bind(value).fetch_optional(&mut *c).await?;
            row.as_ref().map(wish_row).transpose()
        }

        async fn notify_user(c: &mut $conn, n: &Notification) -> sqlx::Result<()> {
            sqlx::query(
                "INSERT INTO notifications (user_id, kind, subject, body, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(n.user_id)
            .bind(&n.kind)
            .bind(&n.subject)
            .bind(&n.body)
            .bind(n.created_at_ms)
            .execute(&mut *c)
            .await?;
            Ok(())
        }

        fn tx_create_wish<'c>(c: &'c mut $conn, a: &'c (NewWish, NewOrder)) -> TxFuture<'c, CreateWish> {
            Box::pin(async move {
                let (w, o) = a;
                let created = tx_create_orders(c, &vec![o.clone()]).await?.pop().expect("one answer per order");
                let order = match created {
                    CreateOrder::Created(order) => order,
                    CreateOrder::Existing(order) => {
                        return Ok(match wish_by(c, "order_no", &order.order_no).await? {
                            Some(w) => CreateWish::Existing(w),
                            None => CreateWish::KeyTaken(order),
                        });
                    }
                };
                let ids: Vec<String> = w.passenger_ids.iter().map(i64::to_string).collect();
                let sql = format!(
                    "INSERT INTO wishes (wish_id, user_id, order_no, run_id, class, from_station, to_station,
                       passenger_ids, deadline_ms, status, created_at_ms, updated_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'ACTIVE', $10, $10) RETURNING {WISH_COLS}"
                );
                let row = sqlx::query(&sql)
                    .bind(&w.wish_id)
                    .bind(w.user_id)
                    .bind(&order.order_no)
                    .bind(&w.run_id)
                    .bind(&w.class)
                    .bind(&w.from_station)
                    .bind(&w.to_station)
                    .bind(ids.join(","))
                    .bind(w.deadline_ms)
                    .bind(w.created_at_ms)
                    .fetch_one(&mut *c)
                    .await?;
                Ok(CreateWish::Created(wish_row(&row)?))
            })
        }

        /// (wish_id, legs_json, now_ms)
        fn tx_fulfil_wish<'c>(c: &'c mut $conn, a: &'c (String, String, i64)) -> TxFuture<'c, bool> {
            Box::pin(async move {
                let (wish_id, legs_json, now_ms) = a;
                let row = sqlx::query(
                    "UPDATE wishes SET status = 'FULFILLED', updated_at_ms = $2
                     WHERE wish_id = $1 AND status = 'ACTIVE'
                       AND EXISTS (SELECT 1 FROM orders o WHERE o.order_no = wishes.order_no AND o.status = 'PAID')
                     RETURNING order_no, user_id",
                )
                .bind(wish_id)
                .bind(now_ms)
                .fetch_optional(&mut *c)
                .await?;
                let Some(row) = row else { return Ok(false) };
                let (order_no, user_id): (String, i64) = (row.try_get("order_no")?, row.try_get("user_id")?);
                let moved = sqlx::query(
                    "UPDATE orders SET legs_json = $2, version = version + 1, updated_at_ms = $3
                     WHERE order_no = $1 AND status = 'PAID'",
                )
                .bind(&order_no)
                .bind(legs_json)
                .bind(now_ms)
                .execute(&mut *c)
                .await?;
                assert_eq!(moved.rows_affected(), 1, "the wish's order was checked PAID in this transaction");
                insert_outbox(c, &[OutboxEvent::Ticket { order_no: order_no.clone() }], *now_ms).await?;
                let body = format!("seats found: order {order_no} is being ticketed");
                let n = Notification {
                    id: 0,
                    user_id,
                    kind: "wish.fulfilled".into(),
                    subject: wish_id.clone(),
                    body: body.clone(),
                    created_at_ms: *now_ms,
                };
                notify_user(c, &n).await?;
                let entry = AuditEntry { at_ms: *now_ms, kind: "wish.fulfil".into(), subject: wish_id.clone(), detail: body };
                audit_if(c, true, entry).await
            })
        }

        /// End one wish inside a transaction (see `AfterSaleStore::end_wish`).
        async fn end_wish_in(c: &mut $conn, wish_id: &str, to: WishStatus, now_ms: i64) -> sqlx::Result<EndWish> {
            assert!(matches!(to, WishStatus::Expired | WishStatus::Cancelled), "a wish ends expired or cancelled");
            let sql = format!(
                "UPDATE wishes SET status = $2, updated_at_ms = $3 WHERE wish_id = $1 AND status = 'ACTIVE'
                 RETURNING {WISH_COLS}"
            );
            let row = sqlx::query(&sql).bind(wish_id).bind(to.as_str()).bind(now_ms).fetch_optional(&mut *c).await?;
            let Some(row) = row else {
                return Ok(match wish_by(c, "wish_id", wish_id).await? {
                    Some(w) => EndWish::NotActive(w),
                    None => EndWish::Unknown,
                });
            };
            let wish = wish_row(&row)?;
            // Unpaid: the order dies (no seats to give back). Paid: it is refunded in full.
            let dead = if to == WishStatus::Expired { "EXPIRED" } else { "CANCELLED" };
            sqlx::query(
                "UPDATE orders SET status = CASE status WHEN 'PAID' THEN 'REFUNDED' ELSE $2 END,
                   version = version + 1, updated_at_ms = $3, seats_released = 1
                 WHERE order_no = $1 AND status IN ('PAID', 'PENDING_PAYMENT')",
            )
            .bind(&wish.order_no)
            .bind(dead)
            .bind(now_ms)
            .execute(&mut *c)
            .await?;
            let rows = sqlx::query(
                "UPDATE payments SET status = 'REFUND_PENDING', updated_at_ms = $1
                 WHERE order_no = $2 AND status = 'SUCCESS' RETURNING payment_no",
            )
            .bind(now_ms)
            .bind(&wish.order_no)
            .fetch_all(&mut *c)
            .await?;
            let mut events = Vec::new();
            for r in &rows {
                events.push(OutboxEvent::Refund { payment_no: r.try_get("payment_no")? });
            }
            insert_outbox(c, &events, now_ms).await?;
            let kind = format!("wish.{}", to.as_str().to_lowercase());
            let body = format!("wish {wish_id} {}: {} payment(s) refunded in full", to.as_str().to_lowercase(), rows.len());
            let n = Notification {
                id: 0,
                user_id: wish.user_id,
                kind: kind.clone(),
                subject: wish_id.to_string(),
                body: body.clone(),
                created_at_ms: now_ms,
            };
            notify_user(c, &n).await?;
            append_audit(c, &[AuditEntry { at_ms: now_ms, kind, subject: wish_id.to_string(), detail: body }]).await?;
            Ok(EndWish::Ended(wish))
        }

        fn tx_end_wish<'c>(c: &'c mut $conn, a: &'c (String, WishStatus, i64)) -> TxFuture<'c, EndWish> {
            Box::pin(end_wish_in(c, &a.0, a.1, a.2))
        }

        fn tx_expire_wishes<'c>(c: &'c mut $conn, a: &'c (i64, u32)) -> TxFuture<'c, Vec<WishRecord>> {
            Box::pin(async move {
                let (now_ms, limit) = *a;
                let rows = sqlx::query(
                    "SELECT wish_id FROM wishes WHERE status = 'ACTIVE' AND deadline_ms <= $1
                     ORDER BY deadline_ms LIMIT $2",
                )
                .bind(now_ms)
                .bind(i64::from(limit.min(WISH_BATCH_MAX)))
                .fetch_all(&mut *c)
                .await?;
                let mut ended = Vec::new();
                for r in &rows {
                    let wish_id: String = r.try_get("wish_id")?;
                    if let EndWish::Ended(w) = end_wish_in(c, &wish_id, WishStatus::Expired, now_ms).await? {
                        ended.push(w);
                    }
                }
                Ok(ended)
            })
        }

        fn tx_settle_free<'c>(c: &'c mut $conn, a: &'c (String, i64)) -> TxFuture<'c, bool> {
            Box::pin(async move {
                let (order_no, now_ms) = a;
                let done = sqlx::query(
                    "UPDATE orders SET status = 'PAID', version = version + 1, updated_at_ms = $2
                     WHERE order_no = $1 AND status = 'PENDING_PAYMENT' AND amount_fen = 0",
                )
                .bind(order_no)
                .bind(now_ms)
                .execute(&mut *c)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                insert_outbox(c, &[OutboxEvent::Ticket { order_no: order_no.clone() }], *now_ms).await?;
                let entry = AuditEntry {
                    at_ms: *now_ms,
                    kind: "order.settled_free".into(),
                    subject: order_no.clone(),
                    detail: "nothing to pay (rebooked to a fare no dearer)".into(),
                };
                audit_if(c, true, entry).await
            })
        }

        fn tx_rebook_swap<'c>(c: &'c mut $conn, a: &'c (String, TicketRefundRecord)) -> TxFuture<'c, RebookSwap> {
            Box::pin(async move {
                let (new_order_no, r) = a;
                let done = sqlx::query("UPDATE tickets SET status = 'REBOOKED' WHERE ticket_sn = $1 AND status = 'ISSUED'")
                    .bind(&r.ticket_sn)
                    .execute(&mut *c)
                    .await?;
                if done.rows_affected() == 0 {
                    let ours = sqlx::query("SELECT new_order_no FROM rebooks WHERE old_ticket_sn = $1")
                        .bind(&r.ticket_sn)
                        .fetch_optional(&mut *c)
                        .await?;
                    if let Some(row) = ours
                        && row.try_get::<String, _>("new_order_no")? == *new_order_no
                    {
                        return Ok(RebookSwap::AlreadyOurs);
                    }
                    let row = sqlx::query("SELECT status FROM tickets WHERE ticket_sn = $1")
                        .bind(&r.ticket_sn)
                        .fetch_optional(&mut *c)
                        .await?;
                    let Some(row) = row else { return Ok(RebookSwap::Unknown) };
                    let status: String = row.try_get("status")?;
                    return Ok(RebookSwap::Lost(TicketStatus::parse(&status).ok_or_else(|| decode_error("tickets", &status))?));
                }
                sqlx::query("INSERT INTO rebooks (old_ticket_sn, new_order_no, at_ms) VALUES ($1, $2, $3)")
                    .bind(&r.ticket_sn)
                    .bind(new_order_no)
                    .bind(r.created_at_ms)
                    .execute(&mut *c)
                    .await?;
                insert_ticket_refund(c, r, "REBOOKED").await?;
                let entry = AuditEntry {
                    at_ms: r.created_at_ms,
                    kind: "ticket.rebook".into(),
                    subject: r.ticket_sn.clone(),
                    detail: format!("to order {new_order_no}; {} payment {} refund {}", r.refund_no, r.payment_no, r.refund_fen),
                };
                append_audit(c, std::slice::from_ref(&entry)).await?;
                Ok(RebookSwap::Swapped)
            })
        }

        #[async_trait::async_trait]
        impl AfterSaleStore for $store {
            async fn create_wish(&self, w: &NewWish, order: &NewOrder) -> Result<CreateWish> {
                self.write_tx((w.clone(), order.clone()), tx_create_wish).await
            }

            async fn wish(&self, wish_id: &str) -> Result<Option<WishRecord>> {
                let sql = format!("SELECT {WISH_COLS} FROM wishes WHERE wish_id = $1");
                let row = sqlx::query(&sql).bind(wish_id).fetch_optional(self.reader()).await.map_err(db)?;
                row.as_ref().map(wish_row).transpose().map_err(db)
            }

            async fn waiting_wishes(&self, limit: u32) -> Result<Vec<WishRecord>> {
                let cols: Vec<String> = WISH_COLS.split(", ").map(|c| format!("w.{c}")).collect();
                let sql = format!(
                    "SELECT {} FROM wishes w JOIN orders o ON o.order_no = w.order_no
                     WHERE w.status = 'ACTIVE' AND o.status = 'PAID' ORDER BY w.seq LIMIT $1",
                    cols.join(", ")
                );
                let rows = sqlx::query(&sql)
                    .bind(i64::from(limit.min(WISH_BATCH_MAX)))
                    .fetch_all(self.reader())
                    .await
                    .map_err(db)?;
                rows.iter().map(wish_row).collect::<sqlx::Result<_>>().map_err(db)
            }

            async fn fulfil_wish(&self, wish_id: &str, legs_json: &str, now_ms: i64) -> Result<bool> {
                self.write_tx((wish_id.to_string(), legs_json.to_string(), now_ms), tx_fulfil_wish).await
            }

            async fn end_wish(&self, wish_id: &str, to: WishStatus, now_ms: i64) -> Result<EndWish> {
                self.write_tx((wish_id.to_string(), to, now_ms), tx_end_wish).await
            }

            async fn expire_wishes(&self, now_ms: i64, limit: u32) -> Result<Vec<WishRecord>> {
                self.write_tx((now_ms, limit), tx_expire_wishes).await
            }

            async fn notifications(&self, user_id: i64, limit: u32) -> Result<Vec<Notification>> {
                let rows = sqlx::query(
                    "SELECT id, user_id, kind, subject, body, created_at_ms FROM notifications
                     WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(user_id)
                .bind(i64::from(limit.min(NOTIFICATIONS_PAGE_MAX)))
                .fetch_all(self.reader())
                .await
                .map_err(db)?;
                rows.iter()
                    .map(|r| {
                        Ok(Notification {
                            id: r.try_get("id")?,
                            user_id: r.try_get("user_id")?,
                            kind: r.try_get("kind")?,
                            subject: r.try_get("subject")?,
                            body: r.try_get("body")?,
                            created_at_ms: r.try_get("created_at_ms")?,
                        })
                    })
                    .collect::<sqlx::Result<_>>()
                    .map_err(db)
            }

            async fn settle_free_order(&self, order_no: &str, now_ms: i64) -> Result<bool> {
                self.write_tx((order_no.to_string(), now_ms), tx_settle_free).await
            }

            async fn rebook_swap(&self, new_order_no: &str, refund: &TicketRefundRecord) -> Result<RebookSwap> {
                self.write_tx((new_order_no.to_string(), refund.clone()), tx_rebook_swap).await
            }

            async fn rebooked_to(&self, old_ticket_sn: &str) -> Result<Option<String>> {
                let row = sqlx::query("SELECT new_order_no FROM rebooks WHERE old_ticket_sn = $1")
                    .bind(old_ticket_sn)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(db)?;
                row.map(|r| r.try_get("new_order_no")).transpose().map_err(db)
            }
        }
    };
}

-- The purchase flow: orders (the order is the seat hold), payments, the outbox that carries
-- "issue these tickets" and "refund this payment" to the event bus, tickets, and the
-- append-only, hash-chained audit log.
CREATE TABLE orders (
    order_no       TEXT    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    idem_key       TEXT    NOT NULL,
    request_hash   BLOB    NOT NULL,
    status         TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    amount_fen     INTEGER NOT NULL,
    pay_before_ms  INTEGER NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    legs_json      TEXT    NOT NULL,
    seats_released INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, idem_key)
);
CREATE INDEX orders_by_user ON orders (user_id, created_at_ms);
CREATE INDEX orders_due ON orders (pay_before_ms) WHERE status = 'PENDING_PAYMENT';
CREATE INDEX orders_unreleased ON orders (order_no)
    WHERE seats_released = 0 AND status IN ('CANCELLED', 'EXPIRED');

CREATE TABLE payments (
    payment_no    TEXT    PRIMARY KEY,
    order_no      TEXT    NOT NULL REFERENCES orders (order_no),
    channel       TEXT    NOT NULL,
    amount_fen    INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    txn_id        TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_no);
CREATE INDEX payments_captured ON payments (status) WHERE status <> 'CREATED';

-- Nonces of payment notifies seen in the last minutes: a replayed message is refused.
CREATE TABLE notify_nonces (
    channel    TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    seen_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, nonce)
);
CREATE INDEX notify_nonces_by_age ON notify_nonces (seen_at_ms);

CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE tickets (
    ticket_sn     TEXT    PRIMARY KEY,
    order_no      TEXT    NOT NULL REFERENCES orders (order_no),
    user_id       INTEGER NOT NULL,
    leg           INTEGER NOT NULL,
    passenger_idx INTEGER NOT NULL,
    passenger_id  INTEGER NOT NULL,
    run_id        TEXT    NOT NULL,
    from_station  TEXT    NOT NULL,
    to_station    TEXT    NOT NULL,
    class         TEXT    NOT NULL,
    coach         INTEGER NOT NULL,
    seat          TEXT    NOT NULL,
    price_fen     INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    qr            TEXT    NOT NULL,
    issued_at_ms  INTEGER NOT NULL,
    UNIQUE (order_no, leg, passenger_idx)
);

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    at_ms     INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- The chain's end, one row: appends lock it, so the chain never forks.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

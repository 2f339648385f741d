-- The purchase flow: orders (the order is the seat hold), payments, the outbox that carries
-- "issue these tickets" and "refund this payment" to the event bus, tickets, and the
-- append-only, hash-chained audit log.
CREATE TABLE orders (
    order_no       TEXT    PRIMARY KEY,
    user_id        BIGINT  NOT NULL REFERENCES users (id),
    idem_key       TEXT    NOT NULL,
    request_hash   BYTEA   NOT NULL,
    status         TEXT    NOT NULL,
    version        BIGINT  NOT NULL,
    amount_fen     BIGINT  NOT NULL,
    pay_before_ms  BIGINT  NOT NULL,
    created_at_ms  BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL,
    legs_json      TEXT    NOT NULL,
    seats_released BIGINT  NOT NULL DEFAULT 0,
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
    amount_fen    BIGINT  NOT NULL,
    status        TEXT    NOT NULL,
    txn_id        TEXT,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_no);
CREATE INDEX payments_captured ON payments (status) WHERE status <> 'CREATED';

-- Nonces of payment notifies seen in the last minutes: a replayed message is refused.
CREATE TABLE notify_nonces (
    channel    TEXT    NOT NULL,
    nonce      TEXT    NOT NULL,
    seen_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (channel, nonce)
);
CREATE INDEX notify_nonces_by_age ON notify_nonces (seen_at_ms);

CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);

CREATE TABLE tickets (
    ticket_sn     TEXT    PRIMARY KEY,
    order_no      TEXT    NOT NULL REFERENCES orders (order_no),
    user_id       BIGINT  NOT NULL,
    leg           BIGINT  NOT NULL,
    passenger_idx BIGINT  NOT NULL,
    passenger_id  BIGINT  NOT NULL,
    run_id        TEXT    NOT NULL,
    from_station  TEXT    NOT NULL,
    to_station    TEXT    NOT NULL,
    class         TEXT    NOT NULL,
    coach         BIGINT  NOT NULL,
    seat          TEXT    NOT NULL,
    price_fen     BIGINT  NOT NULL,
    status        TEXT    NOT NULL,
    qr            TEXT    NOT NULL,
    issued_at_ms  BIGINT  NOT NULL,
    UNIQUE (order_no, leg, passenger_idx)
);

CREATE TABLE audit_log (
    seq       BIGINT  PRIMARY KEY,
    at_ms     BIGINT  NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash BYTEA   NOT NULL,
    hash      BYTEA   NOT NULL
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

-- The chain's end, one row: appends lock it, so the chain never forks.
CREATE TABLE audit_head (
    id   BIGINT  PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash BYTEA   NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

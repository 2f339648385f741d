-- Ticket refunds and the revocation list gates sync. A refund row is written with the ticket's
-- move to REFUNDED; the money and the seat go back when its outbox event is handled.
CREATE TABLE ticket_refunds (
    refund_no     TEXT    PRIMARY KEY,
    ticket_sn     TEXT    NOT NULL UNIQUE REFERENCES tickets (ticket_sn),
    order_no      TEXT    NOT NULL,
    payment_no    TEXT    NOT NULL,
    refund_fen    BIGINT NOT NULL,
    fee_fen       BIGINT NOT NULL,
    status        TEXT    NOT NULL,
    created_at_ms BIGINT NOT NULL
);

-- Tickets no gate may accept any more; `seq` is the cursor gates sync from.
CREATE TABLE revocations (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_sn     TEXT    NOT NULL UNIQUE,
    reason        TEXT    NOT NULL,
    revoked_at_ms BIGINT NOT NULL
);

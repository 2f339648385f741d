-- After the sale: rebooking, the waitlist (候补) and the notifications it sends.

-- A rebooked ticket and the order that replaced it (one per old ticket: a ticket is rebooked
-- once; the new ticket may be rebooked again).
CREATE TABLE rebooks (
    old_ticket_sn TEXT    PRIMARY KEY REFERENCES tickets (ticket_sn),
    new_order_no  TEXT    NOT NULL REFERENCES orders (order_no),
    at_ms         BIGINT  NOT NULL
);

-- A prepaid wish for seats on a sold-out run. Its money and, once fulfilled, its seats live in
-- the order `order_no` (whose legs carry no seats until then). `seq` is the join order.
CREATE TABLE wishes (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wish_id       TEXT    NOT NULL UNIQUE,
    user_id       BIGINT  NOT NULL REFERENCES users (id),
    order_no      TEXT    NOT NULL UNIQUE REFERENCES orders (order_no),
    run_id        TEXT    NOT NULL,
    class         TEXT    NOT NULL,
    from_station  TEXT    NOT NULL,
    to_station    TEXT    NOT NULL,
    passenger_ids TEXT    NOT NULL,
    deadline_ms   BIGINT  NOT NULL,
    status        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    updated_at_ms BIGINT  NOT NULL
);
CREATE INDEX wishes_active ON wishes (seq) WHERE status = 'ACTIVE';
CREATE INDEX wishes_deadline ON wishes (deadline_ms) WHERE status = 'ACTIVE';

-- What the system told a user (a wish fulfilled or expired).
CREATE TABLE notifications (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT  NOT NULL,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);
CREATE INDEX notifications_user ON notifications (user_id, id);

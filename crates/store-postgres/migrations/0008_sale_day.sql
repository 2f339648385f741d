-- A whole sale day: the holds each order carries, outbox rows that retry alone, and which seat
-- engine the database belongs to.

-- Each engine hold an order carries: reconciliation releases engine holds no order carries,
-- and a restart fences the engine's hold ids above the highest one here.
CREATE TABLE order_holds (
    hold_id  BIGINT PRIMARY KEY,
    order_no TEXT   NOT NULL REFERENCES orders (order_no)
);
INSERT INTO order_holds (hold_id, order_no)
    SELECT DISTINCT (l ->> 'hold')::bigint, o.order_no
    FROM orders o, jsonb_array_elements(o.legs_json::jsonb) l
    WHERE (l ->> 'hold')::bigint > 0
    ON CONFLICT DO NOTHING;

-- PENDING (due at next_at_ms), SENT (handed to the bus; due again at next_at_ms unless
-- handled), DEAD (out of attempts; an operator retries it).
ALTER TABLE outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'PENDING';
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
CREATE INDEX outbox_due ON outbox (next_at_ms) WHERE state <> 'DEAD';
CREATE INDEX outbox_by_state ON outbox (state, id);

CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    instance   TEXT   NOT NULL,
    since_ms   BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);

-- 12306's purchase rules and the contract's gaps: token versions (password change, logout),
-- resent notifies told apart from replays, what an order is and where it came from, and each
-- passenger's trips in time.
--
-- A trip names its person by the ID number's keyed hash (passengers.id_no_index), so the
-- overlap rule holds for one person whatever account books them.

ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;

-- A hash of the notify's exact bytes: the same bytes again are a provider's resend (answered as
-- a duplicate); other bytes reusing the nonce are a replay (refused).
ALTER TABLE notify_nonces ADD COLUMN body_hash BYTEA;

ALTER TABLE orders ADD COLUMN kind TEXT NOT NULL DEFAULT 'order';
ALTER TABLE orders ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
UPDATE orders SET kind = 'wish' WHERE idem_key LIKE 'wish:%';
UPDATE orders SET kind = 'rebook' WHERE idem_key LIKE 'rebook:%';
CREATE INDEX orders_unpaid ON orders (user_id) WHERE status = 'PENDING_PAYMENT';
CREATE INDEX orders_cancelled ON orders (user_id, updated_at_ms) WHERE status = 'CANCELLED';

CREATE TABLE trips (
    order_no      TEXT    NOT NULL REFERENCES orders (order_no),
    leg           BIGINT  NOT NULL,
    passenger_id  BIGINT  NOT NULL,
    person        BYTEA   NOT NULL,
    departs_at_ms BIGINT  NOT NULL,
    arrives_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (order_no, leg, passenger_id)
);
CREATE INDEX trips_by_person ON trips (person, departs_at_ms);

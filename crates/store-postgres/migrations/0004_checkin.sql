-- Online check-ins: one row per ticket, ever (I5). The ticket's status moves ISSUED → CHECKED_IN
-- in the same transaction; the row says which gate, where and when.
CREATE TABLE checkins (
    ticket_sn TEXT    PRIMARY KEY REFERENCES tickets (ticket_sn),
    gate_id   TEXT    NOT NULL,
    station   TEXT    NOT NULL,
    at_ms     BIGINT NOT NULL
);

-- Sales statistics: a line per order leg with what operators group by (the day the order was
-- placed in China time, the train, the class) and what they count (the order's status, source,
-- paying channel, seats, amount, refunds). The table is clustered on (day, train, class), so a
-- day's figures are one ordered pass and one train's a seek; triggers keep the copied facts in
-- step with `orders`, `payments` and `ticket_refunds`.
CREATE TABLE order_lines (
    day         TEXT    NOT NULL,
    train_code  TEXT    NOT NULL,
    class       TEXT    NOT NULL,
    order_no    TEXT    NOT NULL REFERENCES orders (order_no),
    leg         INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    channel     TEXT    NOT NULL DEFAULT '',
    seats       INTEGER NOT NULL,
    amount_fen  INTEGER NOT NULL,
    refunds_fen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, train_code, class, order_no, leg)
) WITHOUT ROWID;
CREATE INDEX order_lines_by_order ON order_lines (order_no);

CREATE TRIGGER order_lines_status AFTER UPDATE OF status ON orders
BEGIN UPDATE order_lines SET status = NEW.status WHERE order_no = NEW.order_no; END;
CREATE TRIGGER order_lines_channel AFTER UPDATE OF status ON payments WHEN NEW.status = 'SUCCESS'
BEGIN UPDATE order_lines SET channel = NEW.channel WHERE order_no = NEW.order_no; END;
CREATE TRIGGER order_lines_refund AFTER INSERT ON ticket_refunds
BEGIN
    UPDATE order_lines SET refunds_fen = refunds_fen + NEW.refund_fen
    WHERE order_no = NEW.order_no AND leg = (SELECT leg FROM tickets WHERE ticket_sn = NEW.ticket_sn);
END;

-- Lines of the orders placed before this migration, from their stored legs (the amount of a
-- leg: its seats' fares).
INSERT INTO order_lines (day, train_code, class, order_no, leg, status, source, channel, seats, amount_fen, refunds_fen)
    SELECT date(o.created_at_ms / 1000 + 28800, 'unixepoch'),
           json_extract(l.value, '$.train_code'), json_extract(l.value, '$.class'), o.order_no, l.key,
           o.status, o.source,
           coalesce((SELECT p.channel FROM payments p WHERE p.order_no = o.order_no AND p.status <> 'CREATED'
                     AND p.status <> 'FAILED' ORDER BY p.created_at_ms DESC LIMIT 1), ''),
           json_array_length(l.value, '$.seats'),
           (SELECT coalesce(sum(json_extract(s.value, '$.price_fen')), 0) FROM json_each(l.value, '$.seats') s),
           (SELECT coalesce(sum(r.refund_fen), 0) FROM ticket_refunds r JOIN tickets t ON t.ticket_sn = r.ticket_sn
            WHERE t.order_no = o.order_no AND t.leg = l.key)
    FROM orders o, json_each(o.legs_json) l;

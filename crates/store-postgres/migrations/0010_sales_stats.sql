-- Sales statistics: a line per order leg with what operators group by (the day the order was
-- placed in China time, the train, the class) and what they count (the order's status, source,
-- paying channel, seats, amount, refunds), indexed on (day, train, class) with the counted
-- columns included, so a day's figures are one index pass and one train's a seek; triggers
-- keep the copied facts in step with `orders`, `payments` and `ticket_refunds`.
CREATE TABLE order_lines (
    order_no    TEXT   NOT NULL REFERENCES orders (order_no),
    leg         BIGINT NOT NULL,
    day         TEXT   NOT NULL,
    train_code  TEXT   NOT NULL,
    class       TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    source      TEXT   NOT NULL,
    channel     TEXT   NOT NULL DEFAULT '',
    seats       BIGINT NOT NULL,
    amount_fen  BIGINT NOT NULL,
    refunds_fen BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (order_no, leg)
);
CREATE INDEX order_lines_by_day ON order_lines (day, train_code, class)
    INCLUDE (status, source, channel, leg, seats, amount_fen, refunds_fen);

CREATE FUNCTION order_lines_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE order_lines SET status = NEW.status WHERE order_no = NEW.order_no; RETURN NULL; END $$;
CREATE TRIGGER order_lines_status AFTER UPDATE OF status ON orders
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION order_lines_status();

CREATE FUNCTION order_lines_channel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE order_lines SET channel = NEW.channel WHERE order_no = NEW.order_no; RETURN NULL; END $$;
CREATE TRIGGER order_lines_channel AFTER UPDATE OF status ON payments
FOR EACH ROW WHEN (NEW.status = 'SUCCESS' AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION order_lines_channel();

CREATE FUNCTION order_lines_refund() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE order_lines SET refunds_fen = refunds_fen + NEW.refund_fen
    WHERE order_no = NEW.order_no AND leg = (SELECT leg FROM tickets WHERE ticket_sn = NEW.ticket_sn);
    RETURN NULL;
END $$;
CREATE TRIGGER order_lines_refund AFTER INSERT ON ticket_refunds
FOR EACH ROW EXECUTE FUNCTION order_lines_refund();

-- Lines of the orders placed before this migration, from their stored legs (the amount of a
-- leg: its seats' fares).
INSERT INTO order_lines (order_no, leg, day, train_code, class, status, source, channel, seats, amount_fen, refunds_fen)
    SELECT o.order_no, l.ord - 1,
           to_char(to_timestamp(o.created_at_ms / 1000.0) AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'),
           l.value ->> 'train_code', l.value ->> 'class', o.status, o.source,
           coalesce((SELECT p.channel FROM payments p WHERE p.order_no = o.order_no
                     AND p.status NOT IN ('CREATED', 'FAILED') ORDER BY p.created_at_ms DESC LIMIT 1), ''),
           jsonb_array_length(l.value -> 'seats'),
           (SELECT coalesce(sum((s ->> 'price_fen')::bigint), 0) FROM jsonb_array_elements(l.value -> 'seats') s),
           (SELECT coalesce(sum(r.refund_fen), 0) FROM ticket_refunds r JOIN tickets t ON t.ticket_sn = r.ticket_sn
            WHERE t.order_no = o.order_no AND t.leg = l.ord - 1)
    FROM orders o, jsonb_array_elements(o.legs_json::jsonb) WITH ORDINALITY AS l(value, ord);

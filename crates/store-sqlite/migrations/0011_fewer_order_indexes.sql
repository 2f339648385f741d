-- Fewer random pages written per order (issue 17). The SQLite writer writes every page a
-- batch changed, so an index whose new entries land at random places costs a page per order;
-- one whose entries grow with time (order numbers do, `new_number`) costs a page per batch.
--
-- 1. The purchase rules' two partial indexes were each one more B-tree written at a random
--    place per order (by user), and again when it is paid or cancelled. Their questions are
--    answered from `orders_by_user`: the rules read the user's orders created since a day and
--    one hold's time before today began (`PurchaseQuery::since_ms`); an order created earlier
--    is neither unpaid nor cancelled today.
DROP INDEX orders_unpaid;
DROP INDEX orders_cancelled;

-- 2. `order_lines` was clustered on (day, train, class): a line's insert, and the two updates
--    its status gets when the order is paid and ticketed, each wrote a random page of it (27%
--    of the pages a purchase wrote, measured from the WAL's frames). Clustered on (day, order
--    number), a new line lands at the end of today's lines, and its status updates find it
--    among the newest; one train's figures seek `order_lines_by_train` instead.
DROP TRIGGER order_lines_status;
DROP TRIGGER order_lines_channel;
DROP TRIGGER order_lines_refund;
CREATE TABLE order_lines_by_time (
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
    PRIMARY KEY (day, order_no, leg)
) WITHOUT ROWID;
INSERT INTO order_lines_by_time (day, train_code, class, order_no, leg, status, source, channel, seats, amount_fen,
                                 refunds_fen)
    SELECT day, train_code, class, order_no, leg, status, source, channel, seats, amount_fen, refunds_fen
    FROM order_lines;
DROP TABLE order_lines;
ALTER TABLE order_lines_by_time RENAME TO order_lines;
CREATE INDEX order_lines_by_order ON order_lines (order_no);
CREATE INDEX order_lines_by_train ON order_lines (day, train_code, class);

CREATE TRIGGER order_lines_status AFTER UPDATE OF status ON orders
BEGIN UPDATE order_lines SET status = NEW.status WHERE order_no = NEW.order_no; END;
CREATE TRIGGER order_lines_channel AFTER UPDATE OF status ON payments WHEN NEW.status = 'SUCCESS'
BEGIN UPDATE order_lines SET channel = NEW.channel WHERE order_no = NEW.order_no; END;
CREATE TRIGGER order_lines_refund AFTER INSERT ON ticket_refunds
BEGIN
    UPDATE order_lines SET refunds_fen = refunds_fen + NEW.refund_fen
    WHERE order_no = NEW.order_no AND leg = (SELECT leg FROM tickets WHERE ticket_sn = NEW.ticket_sn);
END;

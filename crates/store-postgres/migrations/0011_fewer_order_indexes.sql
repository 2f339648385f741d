-- Fewer indexes to keep up on every order (issue 17). The purchase rules' two partial indexes
-- were each one more B-tree written at a random place per order (by user), and again when it
-- is paid or cancelled. Their questions are answered from `orders_by_user`: the rules read the
-- user's orders created since a day and one hold's time before today began
-- (`PurchaseQuery::since_ms`); an order created earlier is neither unpaid nor cancelled today.
DROP INDEX orders_unpaid;
DROP INDEX orders_cancelled;

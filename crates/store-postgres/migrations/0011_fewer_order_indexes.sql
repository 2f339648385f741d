-- Fewer indexes to keep up on every order (issue 17). The purchase rules' two partial indexes
-- were each one more B-tree written at a random place per order (by user), and again when it
-- is paid or cancelled. Their questions are answered from `orders_by_user`: an order can be
-- unpaid, or cancelled today, only if it was created within one hold's time before today
-- began, so the rules read that short range of the user's orders (`PurchaseQuery::since_ms`).
DROP INDEX orders_unpaid;
DROP INDEX orders_cancelled;

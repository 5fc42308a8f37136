-- Schema version 8: indexes for a province's scale (docs/capacity.md).

-- The monthly rollover takes the due orders 500 per transaction in (end_at, order_id) order. With
-- the index on (status, end_at) alone each chunk had to sort every due order (they all end on the
-- same second), so rolling N orders over read about N²/1000 rows: hours at 3 million orders.
DROP INDEX orders_rollover;
CREATE INDEX orders_rollover ON orders(status, end_at, order_id);

-- Housekeeping deletes the messages delivered before the retention, 2,000 per transaction. Without
-- this index each chunk walked the delivered messages (tens of millions at a province: a CHARGE
-- record per charge for 90 days) in the writer's transaction to find the old ones.
CREATE INDEX outbox_delivered ON outbox(delivered_at) WHERE state = 'delivered';

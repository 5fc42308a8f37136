-- Schema version 7: tamper-evident charges (store/ledger.rs).
-- The chain link of each charge row: hex SHA-256 over the previous row's link and this row's
-- canonical content. Rows written before this version keep '' and are outside the chain.
ALTER TABLE charge ADD COLUMN link TEXT NOT NULL DEFAULT '';

-- The chain head at each day close: the last charge row then and its link.
CREATE TABLE ledger_head (
    ledger_date TEXT PRIMARY KEY,      -- yyyyMMdd, the day closed
    last_id     INTEGER NOT NULL,      -- the last charge row at the close (0: no charge yet)
    head        TEXT NOT NULL,         -- its link ('' when none or unchained)
    closed_at   INTEGER NOT NULL
);

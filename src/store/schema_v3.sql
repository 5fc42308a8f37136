-- vnetd schema, version 3: orders, charges, credit, jobs (issue 3). See docs/billing.md.

-- '' = this province, '00' = national (scope national), else a foreign province (roam-in).
ALTER TABLE sp ADD COLUMN province_id TEXT NOT NULL DEFAULT '';
UPDATE sp SET province_id = '00' WHERE scope = 'national';
-- Approved for this province's users by RoamServiceNotify (items of other provinces or the centre).
ALTER TABLE item ADD COLUMN roam_in INTEGER NOT NULL DEFAULT 0;

CREATE TABLE orders (
    order_id        TEXT PRIMARY KEY,
    vnet_user_id    TEXT NOT NULL,
    spid            TEXT NOT NULL,
    service_id      TEXT NOT NULL,
    service_item_id TEXT NOT NULL DEFAULT '',   -- '' for a package
    product_id      TEXT NOT NULL DEFAULT '',   -- '' for an item
    contract_id     TEXT NOT NULL DEFAULT '',
    if_extend       INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active','cancelled','expired')),
    start_at        INTEGER NOT NULL,           -- current (or last) period start
    end_at          INTEGER NOT NULL,           -- current (or last) period end: the EndTime answered
    usable_until    INTEGER NOT NULL,           -- last second of use (end_at, or an immediate stop)
    channel         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX orders_user ON orders(vnet_user_id, service_item_id, product_id, created_at);
CREATE INDEX orders_rollover ON orders(status, end_at);

CREATE TABLE charge (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    spid              TEXT NOT NULL,
    transaction_id    TEXT NOT NULL,
    operation         TEXT NOT NULL,            -- Charge, Order, ReOrder, OfflineCharge, Renewal
    vnet_user_id      TEXT NOT NULL,
    user_province_id  TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    service_item_id   TEXT NOT NULL DEFAULT '', -- '' for a package
    service_item_name TEXT NOT NULL,
    product_id        TEXT NOT NULL DEFAULT '',
    fee_type          TEXT NOT NULL,
    fee               INTEGER NOT NULL,
    batch_count       INTEGER NOT NULL,
    charge_at         INTEGER NOT NULL,
    ledger_date       TEXT NOT NULL,            -- yyyyMMdd
    bill_month        TEXT NOT NULL,            -- yyyyMM
    roam_type         TEXT NOT NULL DEFAULT '',
    order_id          TEXT NOT NULL DEFAULT '',
    UNIQUE (spid, transaction_id)
);
CREATE INDEX charge_recon ON charge(spid, ledger_date, charge_at, transaction_id);
CREATE INDEX charge_bill ON charge(vnet_user_id, bill_month);
CREATE INDEX charge_roam ON charge(ledger_date, roam_type);

-- Postpaid credit: total charged per user and bill month.
CREATE TABLE spend (
    vnet_user_id TEXT NOT NULL,
    bill_month   TEXT NOT NULL,
    total        INTEGER NOT NULL,
    PRIMARY KEY (vnet_user_id, bill_month)
) WITHOUT ROWID;

-- rolled_over_month (yyyyMM), closed_through (yyyyMMdd).
CREATE TABLE job_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

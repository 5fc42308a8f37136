-- vnetd schema, version 5: browser flows (issue 8): SSO sessions and tickets, /pay payments,
-- the node's own secrets. Session ids and tickets are stored only as SHA-1 digests.

-- A VNETSSO session. The user's profile is kept for users of other provinces (logged in through
-- the centre), who have no row in `user`; for local users `user` is authoritative.
CREATE TABLE sso_session (
    id_hash       TEXT PRIMARY KEY,            -- Base64(SHA1(cookie value))
    vnet_user_id  TEXT NOT NULL,
    local         INTEGER NOT NULL,            -- 1: a user of this province
    account_type  TEXT NOT NULL,
    account       TEXT NOT NULL,
    province_id   TEXT NOT NULL,
    city_code     TEXT NOT NULL,
    user_type     TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX sso_session_user ON sso_session(vnet_user_id);
CREATE INDEX sso_session_seen ON sso_session(last_seen_at);

-- A ticket for one SP, valid once until expires_at.
CREATE TABLE sso_ticket (
    ticket_hash   TEXT PRIMARY KEY,            -- Base64(SHA1(ticket))
    session_hash  TEXT NOT NULL,
    spid          TEXT NOT NULL,
    vnet_user_id  TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX sso_ticket_user ON sso_ticket(vnet_user_id);
CREATE INDEX sso_ticket_expiry ON sso_ticket(expires_at);

-- A browser payment (5.3) by the SP's OrderID. status: PaymentStatus (0 paid, 1 pending,
-- 2 cancelled by the user, 3 failed); only 0 is final.
CREATE TABLE payment (
    spid            TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('0','1','2','3')),
    result          INTEGER NOT NULL DEFAULT 0,
    transaction_id  TEXT NOT NULL DEFAULT '',  -- PY + 24 characters; '' unless paid
    service_id      TEXT NOT NULL,
    service_item_id TEXT NOT NULL,
    fee             INTEGER NOT NULL,
    vnet_user_id    TEXT NOT NULL DEFAULT '',
    pay_at          INTEGER,                   -- when the outcome (paid, cancelled, failed) was reached
    -- A confirmation charged through the centre (a user of another province, 6.9): the
    -- TransactionID it is sent under, kept until the centre's answer is known, so that a retry
    -- after a timeout or a crash asks again under the same id and is never charged twice.
    attempt_txid    TEXT NOT NULL DEFAULT '',
    attempt_at      INTEGER NOT NULL DEFAULT 0,  -- when the attempt in flight started; 0: none
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (spid, order_id)
);

-- Secrets the node makes for itself (the CSRF key). Never logged or shown.
CREATE TABLE node_secret (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

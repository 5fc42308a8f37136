-- vnetd schema, version 1: peers and keys, PassPort users, idempotency, outbox.
CREATE TABLE peer (
    id          TEXT PRIMARY KEY,              -- SPID (8 digits) or DeviceNo (16 digits)
    kind        TEXT NOT NULL CHECK (kind IN ('sp','centre','bss','aaa','p168')),
    name        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','disabled')),
    url         TEXT,
    return_urls TEXT NOT NULL DEFAULT '',      -- permitted ReturnURL prefixes, one per line
    ops         TEXT,                          -- NULL: every operation of its service; else comma list
    encoding    TEXT NOT NULL DEFAULT 'utf-8' CHECK (encoding IN ('utf-8','gb2312')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE peer_key (
    peer_id       TEXT NOT NULL REFERENCES peer(id),
    version       INTEGER NOT NULL,
    key_hex       TEXT NOT NULL,
    iv_hex        TEXT NOT NULL,
    effect_at     INTEGER NOT NULL,            -- unix seconds
    emergency     INTEGER NOT NULL DEFAULT 0,  -- 1: the previous key stops verifying at effect_at
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (peer_id, version)
);

CREATE TABLE counter (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

CREATE TABLE user (
    vnet_user_id      TEXT PRIMARY KEY,
    account_type      TEXT NOT NULL,
    account           TEXT NOT NULL,
    password_phc      TEXT,                    -- Argon2id PHC string; NULL: cannot log in
    city_code         TEXT NOT NULL,
    user_type         TEXT NOT NULL,
    credit_limit      INTEGER NOT NULL,
    balance           INTEGER NOT NULL DEFAULT 0,
    alias             TEXT NOT NULL DEFAULT '',
    binding_access_no TEXT NOT NULL DEFAULT '',
    contract_id       TEXT NOT NULL DEFAULT '',
    status            TEXT NOT NULL DEFAULT '00',
    status_at         INTEGER NOT NULL,        -- last applied status change (unix seconds)
    failed_logins     INTEGER NOT NULL DEFAULT 0,
    locked_until      INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
-- An account is held by at most one user who is not cancelled.
CREATE UNIQUE INDEX user_live_account ON user(account_type, account) WHERE status <> '03';
CREATE INDEX user_account ON user(account, account_type);

CREATE TABLE idempotency (
    caller      TEXT NOT NULL,
    operation   TEXT NOT NULL,
    txid        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,                 -- SHA-1 over the request fields but TimeStamp/Authenticator
    response    TEXT NOT NULL,                 -- the stored response values (JSON)
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (caller, operation, txid)
);
CREATE INDEX idempotency_age ON idempotency(created_at);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    destination     TEXT NOT NULL,             -- 'centre' or an SP's SPID
    operation       TEXT NOT NULL,             -- e.g. PUserInfoNotify
    order_key       TEXT NOT NULL,             -- delivery order is per key
    payload         TEXT NOT NULL,             -- field values (JSON); passwords only encrypted
    key_version     INTEGER,                   -- centre key version used for an encrypted field
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','delivered','dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX outbox_pending ON outbox(state, destination, order_key, id);

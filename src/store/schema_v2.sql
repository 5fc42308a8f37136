-- vnetd schema, version 2: the service catalogue (issue 3).
CREATE TABLE sp (
    spid            TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    scope           TEXT NOT NULL CHECK (scope IN ('province','national')),
    offline_payment INTEGER NOT NULL DEFAULT 0,
    roam_out        INTEGER NOT NULL DEFAULT 0,   -- seeds the roam-out state of its items
    updated_at      INTEGER NOT NULL
);

CREATE TABLE service (
    service_id TEXT PRIMARY KEY,
    spid       TEXT NOT NULL REFERENCES sp(spid),
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active','suspended')),
    updated_at INTEGER NOT NULL
);
CREATE INDEX service_sp ON service(spid);

CREATE TABLE item (
    service_item_id TEXT PRIMARY KEY,
    service_id      TEXT NOT NULL REFERENCES service(service_id),
    name            TEXT NOT NULL,
    fee_type        TEXT NOT NULL CHECK (fee_type IN ('1','2','3')),
    price           INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active','suspended')),
    roam_out        INTEGER NOT NULL DEFAULT 0,
    -- who set roam_out: 'import' (seeded from the SP; an import may re-seed it), or 'notify' /
    -- 'cli' (RoamServiceNotify, `vnetd roam`; an import never overwrites those)
    roam_out_source TEXT NOT NULL DEFAULT 'import' CHECK (roam_out_source IN ('import','notify','cli')),
    updated_at      INTEGER NOT NULL
);
CREATE INDEX item_service ON item(service_id);

CREATE TABLE product (
    product_id    TEXT PRIMARY KEY,
    spid          TEXT NOT NULL REFERENCES sp(spid),
    name          TEXT NOT NULL,
    package_price INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active','suspended')),
    updated_at    INTEGER NOT NULL
);

CREATE TABLE product_item (
    product_id      TEXT NOT NULL REFERENCES product(product_id),
    service_item_id TEXT NOT NULL REFERENCES item(service_item_id),
    PRIMARY KEY (product_id, service_item_id)
);

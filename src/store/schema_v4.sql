-- vnetd schema, version 4: the outbox relay (issue 4).

-- RecordSeq of a BatchSync record (NULL for every other message).
ALTER TABLE outbox ADD COLUMN seq INTEGER;
UPDATE outbox SET seq = CAST(json_extract(payload, '$[0][1]') AS INTEGER) WHERE operation = 'BatchSync';
CREATE INDEX outbox_stream ON outbox(order_key, seq) WHERE seq IS NOT NULL;
-- The relay's scan for the next message of each ordering key (BatchSync records excluded).
CREATE INDEX outbox_heads ON outbox(destination, id) WHERE state = 'pending' AND seq IS NULL;

-- Who set roam_in: '' never set (unknown), 'notify' (RoamServiceNotify approve/revoke).
ALTER TABLE item ADD COLUMN roam_in_source TEXT NOT NULL DEFAULT '';

-- vnetd schema, version 6: the access network (issue 8): broadband sessions reported by the AAA
-- (ProvinceForAAA OnlineNotify), read by IPAuth and the legacy getUserProduct. Only sessions that
-- are open are kept: a stop, a newer start on the same IP or staleness deletes the row.
CREATE TABLE online_session (
    aaa            TEXT NOT NULL,              -- DeviceNo of the reporting AAA peer
    session_id     TEXT NOT NULL,              -- the AAA's SessionID
    ip             TEXT NOT NULL,              -- canonical text of UserIP
    account        TEXT NOT NULL,              -- as reported; resolved to a user when read
    nas_ip         TEXT NOT NULL DEFAULT '',
    nas_port       TEXT NOT NULL DEFAULT '',
    started_at     INTEGER NOT NULL,           -- EventTime of the start (unix seconds)
    last_event_at  INTEGER NOT NULL,           -- node time of the last event (staleness)
    PRIMARY KEY (aaa, session_id)
);
-- One open session per IP address.
CREATE UNIQUE INDEX online_session_ip ON online_session(ip);
CREATE INDEX online_session_seen ON online_session(last_event_at);

-- The platform's own tables; see migrations/postgres/0002_platform.sql.

CREATE TABLE orgs
(
    code       TEXT PRIMARY KEY,
    name       TEXT    NOT NULL,
    parent     TEXT REFERENCES orgs (code),
    created_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE senders
(
    ei             TEXT PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('gateway', 'exit_entry', 'unit')),
    public_key_pem TEXT    NOT NULL,
    unit           TEXT,
    created_ms     INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens
(
    id         TEXT PRIMARY KEY,
    token_sm3  TEXT    NOT NULL UNIQUE,
    role       TEXT    NOT NULL CHECK (role IN ('reader', 'auditor', 'operator')),
    org        TEXT,
    scopes     TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
) STRICT;

CREATE TABLE seen_requests
(
    reqid   TEXT PRIMARY KEY,
    ei      TEXT    NOT NULL,
    seen_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX seen_requests_seen ON seen_requests (seen_ms);

CREATE TABLE rejected_reports
(
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms   INTEGER NOT NULL,
    mstype        TEXT    NOT NULL,
    ei            TEXT    NOT NULL,
    reqid         TEXT    NOT NULL,
    ywlsh         TEXT    NOT NULL,
    http_status   INTEGER NOT NULL,
    error_code    TEXT    NOT NULL,
    error_message TEXT    NOT NULL,
    authenticated INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    body_sm3      TEXT    NOT NULL
) STRICT;

CREATE TABLE device_status
(
    sbxlh       TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    status      TEXT    NOT NULL
) STRICT;

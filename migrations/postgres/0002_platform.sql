-- The platform's own tables, beside the event log: reference data (org tree, senders, tokens),
-- the anti-replay memory, the rejected-reports log and the devices' latest heartbeat.
-- Times are epoch milliseconds (UTC).

CREATE TABLE orgs
(
    code       text PRIMARY KEY,
    name       text   NOT NULL,
    parent     text REFERENCES orgs (code),
    created_ms bigint NOT NULL
);

CREATE TABLE senders
(
    ei             text PRIMARY KEY,
    kind           text   NOT NULL CHECK (kind IN ('gateway', 'exit_entry', 'unit')),
    public_key_pem text   NOT NULL,
    unit           text,
    created_ms     bigint NOT NULL
);

CREATE TABLE tokens
(
    id         text PRIMARY KEY,
    token_sm3  text   NOT NULL UNIQUE,
    role       text   NOT NULL CHECK (role IN ('reader', 'auditor', 'operator')),
    org        text,
    scopes     text   NOT NULL,
    created_ms bigint NOT NULL,
    revoked_ms bigint
);

-- Request ids seen within the freshness window (and a while longer): a restart does not reopen
-- the replay window.
CREATE TABLE seen_requests
(
    reqid   text PRIMARY KEY,
    ei      text   NOT NULL,
    seen_ms bigint NOT NULL
);
CREATE INDEX seen_requests_seen ON seen_requests (seen_ms);

-- Every refused report, with its whole body as received.
CREATE TABLE rejected_reports
(
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ms   bigint  NOT NULL,
    mstype        text    NOT NULL,
    ei            text    NOT NULL,
    reqid         text    NOT NULL,
    ywlsh         text    NOT NULL,
    http_status   bigint  NOT NULL,
    error_code    text    NOT NULL,
    error_message text    NOT NULL,
    authenticated bigint  NOT NULL CHECK (authenticated IN (0, 1)),
    body          text    NOT NULL,
    body_sm3      text    NOT NULL
);

CREATE TABLE device_status
(
    sbxlh       text PRIMARY KEY,
    received_ms bigint NOT NULL,
    status      text   NOT NULL
);

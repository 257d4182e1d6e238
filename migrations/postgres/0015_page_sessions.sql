-- The department page's sessions (docs/department-page.md), in the store so that every instance
-- behind a load balancer knows a browser's session. Keyed by the SM3 of the cookie value, which
-- itself is kept nowhere; `token_sm3` is the reader token's SM3 (as in `tokens`), looked up on
-- every request so that a revoked token ends the session at once. Times are epoch milliseconds
-- on the platform clock; a session ends after 30 minutes unused or 8 hours after sign-in.
CREATE TABLE page_sessions
(
    id_sm3     text PRIMARY KEY,
    token_sm3  text   NOT NULL,
    csrf       text   NOT NULL,
    started_ms bigint NOT NULL,
    seen_ms    bigint NOT NULL
);

CREATE INDEX page_sessions_seen ON page_sessions (seen_ms);

-- The rejected-reports log is bounded (docs/security.md, "Rejected reports"): an
-- unauthenticated refusal keeps only the first bytes of its body (its SM3 and size are of the
-- whole body), beyond a per-source cap a minute only a counter grows, and a retention prunes.
ALTER TABLE rejected_reports ADD COLUMN body_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rejected_reports ADD COLUMN body_whole INTEGER NOT NULL DEFAULT 1 CHECK (body_whole IN (0, 1));
ALTER TABLE rejected_reports ADD COLUMN source TEXT;
UPDATE rejected_reports SET body_size = length(CAST(body AS BLOB));
CREATE INDEX rejected_reports_received ON rejected_reports (received_ms);

-- Refusals over a source's cap: counted, not kept.
CREATE TABLE rejections_not_kept
(
    minute_ms  INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    error_code TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, source, error_code)
) STRICT;

-- Tokens may expire, and operators see when each was last used (docs/operations.md, "Tokens").
ALTER TABLE tokens ADD COLUMN expires_ms INTEGER;
ALTER TABLE tokens ADD COLUMN last_used_ms INTEGER;

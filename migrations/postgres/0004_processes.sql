-- The process managers (docs/processes.md): the return-date scheduler, reminders and the
-- revocation cascade. Each follows the event log in commit order from its own cursor, keeps the
-- little state it decides on in its own tables (never the read views, which may lag or be
-- mid-rebuild), and issues commands whose idempotency keys make a replay harmless.

-- Where each process manager is in the commit order (like `projections`).
CREATE TABLE process_cursors
(
    name            text PRIMARY KEY,
    cursor_tx       bigint NOT NULL,
    cursor_position bigint NOT NULL,
    handled         bigint NOT NULL,
    updated_ms      bigint NOT NULL
);

-- The last sequence of each aggregate a process manager has handled: nothing is handled twice.
CREATE TABLE process_positions
(
    process        text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (process, aggregate_type, aggregate_id)
);

-- The reminder process: documents (the Document aggregate as JSON, and what the scheduler asks).
-- `state_since` is the sequence of the event that put the document in its state.
CREATE TABLE process_documents
(
    zjbs           text PRIMARY KEY,
    aggregate      text   NOT NULL,
    state          text   NOT NULL,
    state_since    bigint NOT NULL,
    planned_return text,
    device         text,
    open_reminder  text
);
CREATE INDEX process_documents_due ON process_documents (state, planned_return);

-- The reminder process: cabinets, for their unit and administrators (the reminders' recipients).
CREATE TABLE process_cabinets
(
    sbxlh     text PRIMARY KEY,
    aggregate text NOT NULL,
    state     text NOT NULL,
    unit      text
);
CREATE INDEX process_cabinets_unit ON process_cabinets (unit);

-- The reminder process: every reminder (the Reminder aggregate as JSON); the open ones are the
-- overdue list (GET /api/v1/overdue, sjfk-cjxx).
CREATE TABLE process_reminders
(
    id             text PRIMARY KEY,
    aggregate      text NOT NULL,
    state          text NOT NULL,
    zjbs           text NOT NULL,
    unit           text,
    planned_return text
);
CREATE INDEX process_reminders_open ON process_reminders (state, unit);

-- The revocation cascade: who holds which document, and whether it is cancelled.
CREATE TABLE process_holdings
(
    zjbs   text PRIMARY KEY,
    holder text,
    state  text NOT NULL
);
CREATE INDEX process_holdings_holder ON process_holdings (holder);

-- Reminders to deliver: one row per Reminder `Sent` event, drained by the webhook adapter. Times
-- are epoch milliseconds of the platform clock.
CREATE TABLE notification_outbox
(
    id              text PRIMARY KEY,
    reminder        text   NOT NULL,
    unit            text,
    payload         text   NOT NULL,
    queued_ms       bigint NOT NULL,
    attempts        bigint NOT NULL,
    next_attempt_ms bigint NOT NULL,
    delivered_ms    bigint,
    last_error      text
);
CREATE INDEX notification_outbox_due ON notification_outbox (delivered_ms, next_attempt_ms);

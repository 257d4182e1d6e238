-- Each person's data key (docs/personal-data.md): every personal field of their events is
-- sealed under it. Stored only wrapped by the master key, which is kept outside the database.
-- Erasing a person (crypto-shredding) clears `wrapped`: every stored copy of their data is then
-- unreadable, while the events, their hashes and the checkpoints stay as they are.
CREATE TABLE person_keys
(
    person        text PRIMARY KEY,
    wrapped       text,
    master_key_id text   NOT NULL,
    created_ms    bigint NOT NULL,
    erased_ms     bigint
);

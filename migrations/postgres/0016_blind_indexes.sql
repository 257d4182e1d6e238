-- Keyed blind indexes (docs/personal-data.md, "Blind indexes"): a look-up by a personal value
-- (a citizen ID number, a document number) compares HMAC-SM3 values under a key of their own,
-- never a plain hash of a guessable value. The index keys are stored wrapped by the master key,
-- like the persons' data keys. `state`: 'current' (indexes are written under it) or 'previous'
-- (still looked up during a rotation, until every row is re-indexed).
CREATE TABLE index_keys
(
    id            text PRIMARY KEY,
    wrapped       text   NOT NULL,
    master_key_id text   NOT NULL,
    state         text   NOT NULL,
    created_ms    bigint NOT NULL
);

-- Each index cell is `<key id>:<hex HMAC>`, so a rotation can tell what is left to re-index.
ALTER TABLE view_documents ADD COLUMN zjhm_index text;
ALTER TABLE view_documents ADD COLUMN holder_gmsfhm_index text;
ALTER TABLE view_persons ADD COLUMN gmsfhm_index text;
CREATE INDEX view_documents_zjhm_index ON view_documents (generation, zjhm_index);
CREATE INDEX view_documents_holder_gmsfhm_index ON view_documents (generation, holder_gmsfhm_index);
CREATE INDEX view_persons_gmsfhm_index ON view_persons (generation, gmsfhm_index);

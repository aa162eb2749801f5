-- The tamper-evident audit log (issue #4). It replaces the unchained table of the tenancy
-- migration, which no release carried.
DROP TABLE audit_events;

-- One row per event. `line` holds the canonical event line byte for byte: the hash covers
-- exactly these bytes (hash = SHA-256(prev_hash || line)). The columns after `line` are
-- copies for filtering; `gatehouse audit verify` checks them against the line.
CREATE TABLE audit_log (
    chain      TEXT    NOT NULL,
    seq        BIGINT NOT NULL,
    prev_hash  BYTEA   NOT NULL,
    hash       BYTEA   NOT NULL,
    line       TEXT    NOT NULL,
    event_id   TEXT    NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_log_at ON audit_log (at);

-- The head of each chain: the row every appending writer locks, so replicas extend one
-- sequence per chain without interleaving.
CREATE TABLE audit_heads (
    chain          TEXT    PRIMARY KEY,
    seq            BIGINT NOT NULL,
    hash           BYTEA   NOT NULL,
    checkpoint_seq BIGINT NOT NULL
);

-- Signed notes (C2SP signed-note text) over (seq, hash) of a chain.
CREATE TABLE audit_checkpoints (
    chain  TEXT    NOT NULL,
    seq    BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    note   TEXT    NOT NULL,
    PRIMARY KEY (chain, seq)
);

-- How far a spool file's replay got, committed with each replayed chunk: a crash between
-- commit and the spool's removal resumes after the last committed line, never repeats one.
CREATE TABLE audit_spool_progress (
    spool_id    TEXT    PRIMARY KEY,
    lines_done  BIGINT NOT NULL
);

-- After retention pruned a chain's prefix: the signed state the remaining records link to.
CREATE TABLE audit_anchors (
    chain  TEXT    PRIMARY KEY,
    seq    BIGINT NOT NULL,
    hash   BYTEA   NOT NULL,
    note   TEXT    NOT NULL,
    at     BIGINT NOT NULL
);

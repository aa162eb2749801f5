-- The tamper-evident audit log (issue #4). It replaces the unchained table of the tenancy
-- migration, which no release carried.
DROP TABLE audit_events;

-- One row per appended batch of a chain (a segment): its canonical event lines, byte for
-- byte, each followed by a newline (a line never contains one), and their hashes, 32 bytes
-- each, in seq order. Line i of a segment is seq `first_seq + i`; its prev_hash is the hash
-- before it (`prev_hash` for the first line), and hash = SHA-256(prev_hash || line). Storing
-- a batch per row instead of an event per row is what keeps auditing every request cheap;
-- the chain is per event either way. `first_at`/`last_at` bound the events' times for
-- time-filtered reads only.
CREATE TABLE audit_log (
    chain      TEXT    NOT NULL,
    first_seq  BIGINT  NOT NULL,
    last_seq   BIGINT  NOT NULL,
    prev_hash  BYTEA   NOT NULL,
    hashes     BYTEA   NOT NULL,
    lines      TEXT    NOT NULL,
    first_at   BIGINT  NOT NULL,
    last_at    BIGINT  NOT NULL,
    PRIMARY KEY (chain, first_seq)
);
CREATE INDEX audit_log_last_at ON audit_log (last_at);

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

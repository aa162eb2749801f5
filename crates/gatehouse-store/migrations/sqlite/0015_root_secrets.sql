-- Keys that must outlive a master-key rotation (issue #19): the peppers stored key digests
-- are computed with and the audit checkpoint signing seed. First derived from the master key,
-- then pinned here sealed under it (associated data names the purpose), so a rotation
-- re-seals them instead of invalidating every stored digest and signed checkpoint.
CREATE TABLE root_secrets (
    purpose     TEXT    PRIMARY KEY,
    sealed      TEXT    NOT NULL
);

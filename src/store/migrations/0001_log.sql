-- trustpath schema version 1: the decision log of a fleet.
-- Applied by `trustpath store migrate`; never edited once released (a
-- change is a new numbered file).

-- The log's head: its size. Every append takes this row's lock first,
-- so seqs are assigned here, in batches, without gaps or forks.
CREATE TABLE log_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    size bigint  NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (id, size) VALUES (true, 0);

-- Entries, exactly the bytes hashed into the tree.
CREATE TABLE log_entries (
    seq         bigint PRIMARY KEY CHECK (seq >= 0),
    bytes       bytea  NOT NULL,
    -- The replica that wrote it (also inside the entry's bytes).
    node        text,
    time_micros bigint,
    decision_id text UNIQUE
);

-- Merkle subtree hashes (RFC 9162), by level and index.
CREATE TABLE log_hashes (
    level smallint NOT NULL,
    idx   bigint   NOT NULL,
    hash  bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- What entries are found by: field tag, value, entry.
CREATE TABLE log_postings (
    field smallint NOT NULL,
    value bytea    NOT NULL,
    seq   bigint   NOT NULL,
    data  bytea    NOT NULL,
    PRIMARY KEY (field, value, seq)
);

-- Signed checkpoints (C2SP signed notes), by tree size.
CREATE TABLE log_checkpoints (
    size bigint PRIMARY KEY,
    note text   NOT NULL
);

-- Client assertion jtis used, fleet-wide, until their assertion expires.
CREATE TABLE used_jtis (
    key   bytea  PRIMARY KEY,
    until bigint NOT NULL
);
CREATE INDEX used_jtis_until ON used_jtis (until);

-- The fleet's signing keys: every replica must hold the same ones.
CREATE TABLE fleet_keys (
    purpose    text PRIMARY KEY,
    key_id     text NOT NULL,
    node       text NOT NULL,
    recorded   timestamptz NOT NULL DEFAULT now()
);

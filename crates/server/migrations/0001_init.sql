-- Moderation records. Devices appear only as the hex of a hash of their secret id.
CREATE TABLE reports (
    id          INTEGER PRIMARY KEY,
    created_at  INTEGER NOT NULL,           -- unix seconds
    call_id     TEXT    NOT NULL,
    reporter    TEXT    NOT NULL,
    reported    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    note        TEXT
);
CREATE INDEX reports_reported ON reports (reported, created_at);

CREATE TABLE blocks (
    blocker     TEXT    NOT NULL,
    blocked     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (blocker, blocked)
) WITHOUT ROWID;

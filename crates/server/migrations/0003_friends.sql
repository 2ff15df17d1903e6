-- Friendships: both people of a call asked. Devices appear only as the hex of a hash of
-- their secret id; `id` is what both clients call the friendship.
CREATE TABLE friendships (
    id              TEXT    PRIMARY KEY,
    a               TEXT    NOT NULL,
    b               TEXT    NOT NULL,
    a_nickname      TEXT    NOT NULL,       -- a's nickname in the call, as b saw it
    b_nickname      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,       -- unix seconds
    last_call_at    INTEGER NOT NULL,
    CHECK (a <> b)
);
CREATE UNIQUE INDEX friendships_pair ON friendships (min(a, b), max(a, b));

-- Requests not (yet) returned; forgotten at `expires_at`, never shown to the other side.
CREATE TABLE friend_requests (
    call_id         TEXT    NOT NULL,
    requester       TEXT    NOT NULL,
    requested       TEXT    NOT NULL,
    requester_nickname TEXT NOT NULL,
    requested_nickname TEXT NOT NULL,
    expires_at      INTEGER NOT NULL,       -- unix seconds
    PRIMARY KEY (call_id, requester)
) WITHOUT ROWID;
CREATE INDEX friend_requests_expiry ON friend_requests (expires_at);

-- How each side rated a call, 1 to 5: call quality analysis. A second rating of the
-- same call by the same person replaces the first.
CREATE TABLE ratings (
    call_id     TEXT    NOT NULL,
    rater       TEXT    NOT NULL,
    stars       INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (call_id, rater)
) WITHOUT ROWID;

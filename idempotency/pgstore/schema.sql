-- The idempotency records of payonce's pgstore: one row per scope and key.
-- {{table}} and {{index}} are replaced by the quoted names the Store is
-- configured with; Store.Schema returns the result.
--
-- scope and key are bytea so that any Go string is kept exactly. headers
-- holds the replayed response headers in payonce's own binary encoding.
-- A row is in flight (finished = false) until its owner stores a response,
-- and claimable again once expires_at has passed.
CREATE TABLE IF NOT EXISTS {{table}} (
    scope       bytea       NOT NULL,
    key         bytea       NOT NULL,
    fingerprint text        NOT NULL,
    token       text        NOT NULL,
    finished    boolean     NOT NULL DEFAULT false,
    status      integer,
    headers     bytea,
    body        bytea,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

-- DeleteExpired walks this index, oldest first.
CREATE INDEX IF NOT EXISTS {{index}} ON {{table}} (expires_at);

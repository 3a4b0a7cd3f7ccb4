-- The per-token rate limit shared by every process (SCIMLEDGER_RATE_LIMIT_SHARED): one token bucket per API
-- token or console session, refilled and taken from by one statement (app/infrastructure/ratelimit.py).
-- Unlogged: a crash empties it, which only refills every bucket; nothing here is worth a WAL record per
-- request. Keyed by the token rather than an organization, as idempotency_keys is: a platform token has none.
CREATE UNLOGGED TABLE rate_limit_buckets (
    bucket_id  uuid             PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at timestamptz      NOT NULL,
    -- Whether the bucket's latest request was let through: what the statement that took it returns.
    allowed    boolean          NOT NULL
);

-- The management API's tokens and its idempotency keys.
--
-- Two more scopes: `admin` (one organization's management API) and `platform` (the host app's backend: every
-- organization, and creating them). A platform token belongs to no organization, so org_id becomes nullable
-- for it alone; the primary key, which cannot hold a null, gives way to token_id's unique index (already
-- there) and an index for listing an organization's tokens.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_pkey;
ALTER TABLE api_tokens ALTER COLUMN org_id DROP NOT NULL;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check
    CHECK (scope IN ('scim', 'auditor', 'admin', 'platform'));
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_org_unless_platform
    CHECK ((scope = 'platform') = (org_id IS NULL));
-- Touched by the token lookup at most once a minute per token (app/services/tenancy.py, Authenticator).
ALTER TABLE api_tokens ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_tokens_org_idx ON api_tokens (org_id, created_at, token_id);

-- Idempotency-Key of the management API's POSTs: the first request with a key claims it (status null while
-- it runs), its response is kept, and a retry with the same key and the same request gets that response
-- again. Keyed by the token that sent it: a platform token has no organization, and a retry comes from the
-- same client with the same credential. Keys older than 24 hours are treated as absent and purged.
CREATE TABLE idempotency_keys (
    token_id     uuid        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);

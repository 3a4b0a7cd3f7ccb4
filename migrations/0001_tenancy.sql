-- Organizations and their API tokens. Every table leads with org_id so it can be distributed by org later.
CREATE TABLE orgs (
    org_id     uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX orgs_name_key ON orgs (lower(name));

-- Only a SHA-256 of each bearer token is kept: tokens carry 256 random bits, so a fast hash suffices and
-- a lookup by hash never compares secrets byte by byte.
CREATE TABLE api_tokens (
    org_id      uuid        NOT NULL REFERENCES orgs (org_id),
    token_id    uuid        NOT NULL,
    secret_hash bytea       NOT NULL,
    scope       text        NOT NULL DEFAULT 'scim' CHECK (scope IN ('scim', 'auditor')),
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (org_id, token_id)
);
CREATE UNIQUE INDEX api_tokens_token_id_key ON api_tokens (token_id);
CREATE UNIQUE INDEX api_tokens_secret_hash_key ON api_tokens (secret_hash);

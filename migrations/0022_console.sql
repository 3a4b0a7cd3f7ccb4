-- The console's way in (issue 22): one-time sign-in links the host app asks for, and the server-side
-- sessions they start. Credentials, not domain facts: plain tables, not the log, and like api_tokens only a
-- SHA-256 of each secret is kept. Both are keyed by organization first, as every table is; the link's URL and
-- the session's cookie carry their organization's id, so each lookup is one primary-key probe.
CREATE TABLE console_links (
    org_id      uuid        NOT NULL REFERENCES orgs (org_id),
    link_id     uuid        NOT NULL,
    secret_hash bytea       NOT NULL,
    intent      text        NOT NULL CHECK (intent IN ('setup', 'admin', 'audit')),
    -- Who the link is for, as the host app names them ("Dana from IT"): the console's actions are recorded
    -- with the actor `console:<label>`.
    label       text        NOT NULL,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set once, by the sign-in that uses the link: a second use finds it set and is refused.
    used_at     timestamptz,
    PRIMARY KEY (org_id, link_id)
);

CREATE TABLE console_sessions (
    org_id       uuid        NOT NULL REFERENCES orgs (org_id),
    session_id   uuid        NOT NULL,
    secret_hash  bytea       NOT NULL,
    link_id      uuid        NOT NULL,
    intent       text        NOT NULL CHECK (intent IN ('setup', 'admin', 'audit')),
    label        text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Touched at most once a minute by the lookup (as api_tokens.last_used_at): the idle expiry's clock.
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    PRIMARY KEY (org_id, session_id)
);

-- Who issued and who revoked a token (an admin at the CLI, a token of the management API, a console session):
-- tokens are credentials, kept out of the log, but the console's people are named for what they did.
ALTER TABLE api_tokens ADD COLUMN created_by text;
ALTER TABLE api_tokens ADD COLUMN revoked_by text;

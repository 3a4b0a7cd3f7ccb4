-- What the identity provider's SCIM calls got wrong, per organization: the Setup page's connection status
-- (app/services/connection_status.py) and GET /api/v1/orgs/{org}/connection.
--
-- Operational data, not the log: rows are deleted (an organization keeps only its latest
-- SCIMLEDGER_SCIM_ERRORS_KEPT), and nothing here is sealed, replayed or exported to analytics. The event log
-- stays the record of what was changed; this says what was refused. Written by app/services/scim_call_errors.py,
-- which coalesces each process's errors in memory and writes them at most once a second per organization,
-- never on a request's path. Only requests whose SCIM token was known are here: a request with no token, or
-- with an unknown or revoked one, belongs to no organization that could be told.
CREATE TABLE scim_call_errors (
    org_id        uuid        NOT NULL,
    error_id      bigint      GENERATED ALWAYS AS IDENTITY,
    -- When the request was answered, by the clock of the process that answered it.
    recorded_at   timestamptz NOT NULL,
    token_id      uuid        NOT NULL,
    -- The token's label when the error was written; null for a token issued without one.
    token_label   text,
    method        text        NOT NULL,
    -- The route's template (/scim/v2/Users/{id}), never the path sent, which may hold a userName.
    route         text        NOT NULL,
    status        integer     NOT NULL CHECK (status BETWEEN 400 AND 599),
    scim_type     text,
    -- The SCIM error's detail as it was sent back (Okta shows it to its admin too).
    detail        text        NOT NULL,
    request_id    text,
    -- Who the request was about: 'user' (subject is a userName) or 'group' (a displayName); null when it
    -- named no one (a listing) or no one the service knows (an id that names nothing, a body without a name).
    subject_kind  text        CHECK (subject_kind IN ('user', 'group')),
    subject       text,
    -- The id in the path, when the route has one.
    resource_id   uuid,
    -- Members a group change named that are no user of the organization, as the request sent them.
    members       jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (org_id, error_id),
    CHECK ((subject_kind IS NULL) = (subject IS NULL))
);
-- The status's question: an organization's newest errors; and the writer's, which are past its latest N.
CREATE INDEX scim_call_errors_newest ON scim_call_errors (org_id, recorded_at, error_id);

-- How many errors each hour, by status: what the kept rows cannot say once a flood has pushed most of them
-- out. Upserted by the same statement that writes the rows; hours over two days old are deleted by it.
CREATE TABLE scim_call_error_counts (
    org_id uuid        NOT NULL,
    hour   timestamptz NOT NULL,
    status integer     NOT NULL,
    count  bigint      NOT NULL,
    PRIMARY KEY (org_id, hour, status)
);

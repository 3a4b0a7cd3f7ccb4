-- The SCIM view of users, written in the same transaction as the events that change it, so a 2xx write is
-- visible to the next GET, and so that the unique index below decides userName races.
CREATE TABLE scim_users (
    org_id        uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    user_name     text        NOT NULL,
    external_id   text,
    active        boolean     NOT NULL,
    resource      jsonb       NOT NULL,
    version       integer     NOT NULL,
    created       timestamptz NOT NULL,
    last_modified timestamptz NOT NULL,
    -- The log position of the UserProvisioned event: a stable, rebuildable order for paging.
    sort_key      bigint      NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
-- userName is caseExact false (RFC 7643 §4.1.1): unique and matched ignoring case.
CREATE UNIQUE INDEX scim_users_user_name_key ON scim_users (org_id, lower(user_name));
CREATE INDEX scim_users_order ON scim_users (org_id, sort_key);
CREATE INDEX scim_users_external_id ON scim_users (org_id, external_id);

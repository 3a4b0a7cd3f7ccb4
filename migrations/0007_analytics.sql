-- The analytics schema, kept by the runner's analytics.access projection (see docs/analytics.md).
CREATE TABLE analytics.users (
    org_id         uuid        NOT NULL,
    user_id        uuid        NOT NULL,
    user_name      text        NOT NULL,
    external_id    text,
    display_name   text,
    email          text,
    active         boolean     NOT NULL,
    member         boolean     NOT NULL,
    deleted        boolean     NOT NULL DEFAULT false,
    provisioned_at timestamptz NOT NULL,
    last_modified  timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE analytics.groups (
    org_id       uuid        NOT NULL,
    group_id     uuid        NOT NULL,
    project_id   uuid        NOT NULL,
    role_id      uuid        NOT NULL,
    project      text        NOT NULL,
    role         text        NOT NULL,
    linked       boolean     NOT NULL DEFAULT false,
    archived     boolean     NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (org_id, group_id)
);

CREATE TABLE analytics.memberships (
    org_id     uuid        NOT NULL,
    group_id   uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    since      timestamptz NOT NULL,
    granted_by text        NOT NULL,
    cause      text        NOT NULL,
    PRIMARY KEY (org_id, group_id, user_id)
);

-- One row per stretch of time a user held a group's Project × Role; valid_to is null while it lasts.
CREATE TABLE analytics.membership_intervals (
    org_id       uuid        NOT NULL,
    user_id      uuid        NOT NULL,
    group_id     uuid        NOT NULL,
    project      text        NOT NULL,
    role         text        NOT NULL,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz,
    granted_by   text        NOT NULL,
    revoked_by   text,
    cause        text        NOT NULL,
    revoke_cause text,
    PRIMARY KEY (org_id, user_id, group_id, valid_from)
);
CREATE INDEX membership_intervals_open ON analytics.membership_intervals (org_id, user_id, group_id)
    WHERE valid_to IS NULL;

-- Names the projection needs to label groups, as they are now.
CREATE TABLE analytics.catalog (
    org_id    uuid NOT NULL,
    entity_id uuid NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('project', 'role')),
    name      text NOT NULL,
    archived  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, entity_id)
);

-- Analysts read the analytics schema and nothing else. Roles belong to the whole cluster, so creating one
-- must tolerate another database (or a concurrent migration) having created it first.
DO $$
BEGIN
    CREATE ROLE scimledger_analyst NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA analytics TO scimledger_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO scimledger_analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO scimledger_analyst;

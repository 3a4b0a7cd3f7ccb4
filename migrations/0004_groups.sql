-- The app's catalog, as the CLI lists it. Names are unique among an org's live projects (and roles),
-- ignoring case; an archived project's name may be used again.
CREATE TABLE catalog_projects (
    org_id     uuid        NOT NULL,
    project_id uuid        NOT NULL,
    name       text        NOT NULL,
    archived   boolean     NOT NULL DEFAULT false,
    created    timestamptz NOT NULL,
    PRIMARY KEY (org_id, project_id)
);
CREATE UNIQUE INDEX catalog_projects_name_key ON catalog_projects (org_id, lower(name)) WHERE NOT archived;

CREATE TABLE catalog_roles (
    org_id   uuid        NOT NULL,
    role_id  uuid        NOT NULL,
    name     text        NOT NULL,
    archived boolean     NOT NULL DEFAULT false,
    created  timestamptz NOT NULL,
    PRIMARY KEY (org_id, role_id)
);
CREATE UNIQUE INDEX catalog_roles_name_key ON catalog_roles (org_id, lower(name)) WHERE NOT archived;

-- The SCIM view of the groups of live Project × Role pairs. display_name is "<prefix>-<project>-<role>";
-- its unique index refuses a second group that Okta could not tell apart when it links by name
-- (project "A-B" with role "C" against project "A" with role "B-C").
CREATE TABLE scim_groups (
    org_id        uuid        NOT NULL,
    group_id      uuid        NOT NULL,
    project_id    uuid        NOT NULL,
    role_id       uuid        NOT NULL,
    display_name  text        NOT NULL,
    linked        boolean     NOT NULL DEFAULT false,
    created       timestamptz NOT NULL,
    last_modified timestamptz NOT NULL,
    -- The log position of the last event that changed the group: its meta.version, and rebuildable.
    version       bigint      NOT NULL,
    sort_key      bigint      NOT NULL,
    PRIMARY KEY (org_id, group_id)
);
CREATE UNIQUE INDEX scim_groups_display_name_key ON scim_groups (org_id, lower(display_name));
CREATE INDEX scim_groups_order ON scim_groups (org_id, sort_key);
CREATE INDEX scim_groups_project ON scim_groups (org_id, project_id);
CREATE INDEX scim_groups_role ON scim_groups (org_id, role_id);

-- One row per membership: a change touches one row, whatever the group's size.
CREATE TABLE group_members (
    org_id   uuid        NOT NULL,
    group_id uuid        NOT NULL,
    user_id  uuid        NOT NULL,
    added    timestamptz NOT NULL,
    PRIMARY KEY (org_id, group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (org_id, user_id);

-- Each organization's own extension schemas of the User resource, as last declared by its admin: the current
-- state of the OrgSchema streams, written in the transaction that appends their events (app/org_schemas.py).
-- The log keeps every earlier declaration.
CREATE TABLE org_schemas (
    org_id uuid NOT NULL,
    schema_id uuid NOT NULL,
    urn text NOT NULL,
    declaration jsonb NOT NULL,
    version integer NOT NULL,
    declared_at timestamptz NOT NULL,
    declared_by text NOT NULL,
    PRIMARY KEY (org_id, schema_id)
);
-- Schema URNs compare ignoring case.
CREATE UNIQUE INDEX org_schemas_urn_key ON org_schemas (org_id, lower(urn));

-- The access check of now reads whether the user is still in the organization: the latest of their
-- leavings and joinings, among their stream's events. Read through the log's primary key, that walks back
-- over every group change of a user never removed, a cost that grows with their history on the host app's
-- hot path. This index holds those two event types alone (a few rows per user at most), so the read is one
-- probe. Its type list matches app/services/access.py's query, which the planner needs to use it.
CREATE INDEX events_organization_membership ON events (org_id, stream_id, version)
    WHERE type IN ('UserRemovedFromOrganization', 'UserJoinedOrganization');

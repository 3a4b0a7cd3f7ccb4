-- The auditors' reads walk one organization's log in log order, a page at a time from a cursor: this index
-- starts each page at its cursor without scanning other organizations' events or sorting. The partial one
-- holds only the catalog's events, which a history page replays up to its cursor to name groups as they
-- were named then (projections/audit_history.py spells out the same list of types).
CREATE INDEX events_org_log_order ON events (org_id, tx, position);
CREATE INDEX events_org_catalog ON events (org_id, tx, position)
    WHERE type IN ('ProjectCreated', 'ProjectRenamed', 'ProjectArchived', 'RoleCreated', 'RoleRenamed',
                   'RoleArchived', 'GroupCreated', 'GroupLinked', 'GroupUnlinked');

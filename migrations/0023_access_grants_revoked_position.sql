-- The access timeline (projections/access_timeline.py) links each bar to the two events that bound it: the
-- grant's is granted_position; the revocation's log position is added here, so that a bar names the event
-- that closed it without a search of the log. Null while the grant is open. Written inline and rebuilt by
-- projections/access_grants.py, as the other columns are.
ALTER TABLE access_grants ADD COLUMN revoked_position bigint;

-- The timeline of a group reads its grants by this key (the primary key leads with the user), from the
-- window's end backwards: a group of 10,000 members over a year is one range of one index.
CREATE INDEX access_grants_group ON access_grants (org_id, group_id, granted_at, granted_position);

-- backfill: the position of the removal that closed each closed grant, found as migration 0019 found its
-- time: the next membership event of the grant's user and group, in log order, when that is a removal.
UPDATE access_grants AS held
SET revoked_position = change.next_position
FROM (
    SELECT membership.org_id, membership.stream_id AS user_id, (membership.payload->>'group_id')::uuid AS group_id,
           membership.position,
           lead(type) OVER later AS next_type,
           lead(position) OVER later AS next_position
    FROM events AS membership
    WHERE membership.type IN ('GroupMemberAdded', 'GroupMemberRemoved')
      AND membership.tx < (SELECT pg_snapshot_xmax(pg_current_snapshot()))
    WINDOW later AS (PARTITION BY org_id, stream_id, payload->>'group_id' ORDER BY tx, position)
) AS change
WHERE held.org_id = change.org_id AND held.user_id = change.user_id AND held.group_id = change.group_id
  AND held.granted_position = change.position
  AND held.revoked_at IS NOT NULL AND change.next_type = 'GroupMemberRemoved';

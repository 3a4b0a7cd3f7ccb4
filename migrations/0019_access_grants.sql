-- Who held which Project × Role, from when to when, granted and revoked by whom: one row per grant, so that
-- the host app's access check ("may user U act as Role R in Project P, at T?") is one indexed read instead
-- of a replay of the log. The rows are exactly the intervals `audit access` replays (projections/audit.py):
-- a grant opens at a GroupMemberAdded and closes at the next GroupMemberRemoved of the same user and group;
-- every other way out (deactivation, leaving the organization, unlink, archive) reaches access through
-- such a removal. Times are the events' recorded_at, as the audit's are. Written inline with the events
-- (projections/access_grants.py) and rebuilt by `scimledger projections rebuild scim`.
CREATE TABLE access_grants (
    org_id             uuid        NOT NULL,
    user_id            uuid        NOT NULL,
    project_id         uuid        NOT NULL,
    role_id            uuid        NOT NULL,
    granted_at         timestamptz NOT NULL,
    -- The grant's log position: tells apart two grants recorded at the same instant, and orders them.
    granted_position   bigint      NOT NULL,
    group_id           uuid        NOT NULL,
    granted_by         text        NOT NULL,
    granted_request_id text,
    grant_cause        text        NOT NULL,
    revoked_at         timestamptz,
    revoked_by         text,
    revoked_request_id text,
    revoke_cause       text,
    -- The access check reads this key backwards from its instant: the latest grant at or before T, whose
    -- revocation (if any) says whether it still held at T. An org's key comes first, as everywhere.
    PRIMARY KEY (org_id, user_id, project_id, role_id, granted_at, granted_position)
);
-- The one open grant of a membership, which its revocation closes; unique because a member cannot join a
-- group twice (User.join_group records nothing then), so a second open grant would be a projection bug.
CREATE UNIQUE INDEX access_grants_open ON access_grants (org_id, user_id, group_id) WHERE revoked_at IS NULL;

-- backfill: the intervals of the log as it stands, computed as `audit access` computes them. Each grant is
-- closed by the next membership event of its user and group when that is a removal; a grant followed by
-- another grant (which the domain never records) is dropped, as the audit's replay overwrites it. The pair
-- comes from the group's creation event (a group's id is derived from its pair, which never changes).
INSERT INTO access_grants (
    org_id, user_id, project_id, role_id, granted_at, granted_position, group_id, granted_by,
    granted_request_id, grant_cause, revoked_at, revoked_by, revoked_request_id, revoke_cause
)
SELECT change.org_id, change.stream_id, (created.payload->>'project_id')::uuid,
       (created.payload->>'role_id')::uuid, change.recorded_at, change.position, change.group_id, change.actor,
       change.request_id, change.payload->>'cause', change.next_recorded_at, change.next_actor,
       change.next_request_id, change.next_cause
FROM (
    SELECT membership.*, (membership.payload->>'group_id')::uuid AS group_id,
           lead(type) OVER later AS next_type,
           lead(recorded_at) OVER later AS next_recorded_at,
           lead(actor) OVER later AS next_actor,
           lead(request_id) OVER later AS next_request_id,
           lead(payload->>'cause') OVER later AS next_cause
    FROM events AS membership
    WHERE membership.type IN ('GroupMemberAdded', 'GroupMemberRemoved')
      -- As every reader of the log: a row whose tx was chosen by hand (a forgery) grants nothing.
      AND membership.tx < (SELECT pg_snapshot_xmax(pg_current_snapshot()))
    WINDOW later AS (PARTITION BY org_id, stream_id, payload->>'group_id' ORDER BY tx, position)
) AS change
JOIN events AS created
  ON created.org_id = change.org_id AND created.stream_id = change.group_id AND created.version = 1
 AND created.type = 'GroupCreated' AND created.tx < (SELECT pg_snapshot_xmax(pg_current_snapshot()))
WHERE change.type = 'GroupMemberAdded' AND change.next_type IS DISTINCT FROM 'GroupMemberAdded';

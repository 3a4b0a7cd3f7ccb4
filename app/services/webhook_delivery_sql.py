"""The statements of webhook delivery (app/services/webhook_delivery.py), beside the reasons for their shape."""

from __future__ import annotations

from eventstore.records import EVENT_COLUMNS

# What a task needs to know about its endpoint on each step; `wait` is how long until the next attempt is due.
ENDPOINT = """
SELECT state, url, event_types, updated_at, secret, tx, position, attempts,
       CASE WHEN previous_secret_until > now() THEN previous_secret END AS previous_secret,
       greatest(extract(epoch FROM next_attempt_at - now()), 0)::float8 AS wait
FROM webhook_endpoints WHERE org_id = $1 AND endpoint_id = $2
"""
# eventstore/log_reader.read_log's order and visibility rule, for one organization.
READ_ORG_LOG = f"""
SELECT {EVENT_COLUMNS} FROM events
WHERE org_id = $1 AND (tx, position) > ($2::xid8, $3::bigint)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx, position
LIMIT $4
"""
LOCK_ENDPOINT = """
SELECT tx, position, attempts, updated_at FROM webhook_endpoints WHERE org_id = $1 AND endpoint_id = $2 FOR UPDATE
"""
RECORD_ATTEMPT = """
INSERT INTO webhook_deliveries (org_id, endpoint_id, webhook_id, event_position, event_type, attempt,
                                attempted_at, duration_ms, status, error, succeeded)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
# A success: the attempt recorded and the position moved past the event, if it is still where the sender
# expected it (no replay meanwhile). The row lock taken first orders it with the owner's changes. The
# endpoint's state and settings come back, so that the sender stops a batch read under older ones; no row if
# it moved or was deleted.
RECORD_SUCCESS = """
WITH locked AS (
    SELECT tx, position, attempts FROM webhook_endpoints WHERE org_id = $1 AND endpoint_id = $2 FOR UPDATE
), recorded AS (
    INSERT INTO webhook_deliveries (org_id, endpoint_id, webhook_id, event_position, event_type, attempt,
                                    attempted_at, duration_ms, status, error, succeeded)
    SELECT $1, $2, $3, $4, $5, attempts + 1, $6, $7, $8, NULL, true FROM locked
), moved AS (
    UPDATE webhook_endpoints AS endpoint SET tx = $9, position = $10, attempts = 0, next_attempt_at = NULL
    FROM locked
    WHERE endpoint.org_id = $1 AND endpoint.endpoint_id = $2 AND (locked.tx, locked.position) = ($11::xid8, $12::bigint)
    RETURNING endpoint.state, endpoint.updated_at, endpoint.url, endpoint.event_types
)
SELECT state, updated_at, url, event_types FROM moved
"""
# Past the batch's last events, unwanted under the settings read at its start: not if they changed since
# (events the new types want would be skipped).
MOVE = """
UPDATE webhook_endpoints SET tx = $3, position = $4, attempts = 0, next_attempt_at = NULL
WHERE org_id = $1 AND endpoint_id = $2 AND (tx, position) = ($5::xid8, $6::bigint) AND updated_at = $7
"""
RETRY_LATER = """
UPDATE webhook_endpoints SET tx = $3, position = $4, attempts = $5,
       next_attempt_at = now() + make_interval(secs => $6)
WHERE org_id = $1 AND endpoint_id = $2
"""
DISABLE = """
UPDATE webhook_endpoints SET tx = $3, position = $4, attempts = $5, next_attempt_at = NULL,
       state = 'disabled', disabled_reason = $6, updated_at = now()
WHERE org_id = $1 AND endpoint_id = $2
"""

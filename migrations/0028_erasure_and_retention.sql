-- Erasure and retention of personal data (issue 23).
--
-- How many days after a user was deleted or removed from the organization their personal data is kept
-- before the runner erases it by itself (app/services/retention.py); null, the default: kept until an admin
-- erases it. Days, since a retention policy is stated in days, and a shorter one would race the identity
-- provider's own deprovisioning.
ALTER TABLE orgs ADD COLUMN personal_data_retention_days integer
    CHECK (personal_data_retention_days BETWEEN 1 AND 36500);

-- The retention sweep's two questions, one probe each: which users of an organization left before a moment,
-- and which of them were erased already. Each holds a few rows per user at most; their type lists match the
-- sweep's query, which the planner needs to use them.
CREATE INDEX events_departures ON events (org_id, recorded_at)
    WHERE type IN ('UserDeleted', 'UserRemovedFromOrganization');
CREATE INDEX events_erasures ON events (org_id, stream_id) WHERE type = 'UserErased';

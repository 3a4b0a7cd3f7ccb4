-- Analysts want each user's department and manager, from the Enterprise User extension (RFC 7643 §4.3).
-- manager_id is the manager's id as the identity provider sent it (manager.value): the id of the manager's
-- own row in analytics.users when the manager is provisioned in the same organization.
ALTER TABLE analytics.users ADD COLUMN department text, ADD COLUMN manager_id text;

-- The rows already there take the values the SCIM projection holds now, so that they are right without a
-- rebuild; a rebuild (scimledger projections rebuild analytics.access) derives them from the events alone,
-- users deleted since included. Events the runner has yet to apply set them again, in order, as it goes.
UPDATE analytics.users AS u
SET department = s.resource #>> '{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,department}',
    manager_id = s.resource #>> '{urn:ietf:params:scim:schemas:extension:enterprise:2.0:User,manager,value}'
FROM scim_users AS s
WHERE s.org_id = u.org_id AND s.user_id = u.user_id
  AND s.resource ? 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

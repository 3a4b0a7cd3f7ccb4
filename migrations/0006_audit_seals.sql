-- The tamper-evidence chain: per organization, in log order, each seal is a hash over the previous seal and
-- one event's stored content. Kept by the runner; checked by `scimledger audit verify`, which recomputes the
-- chain from the events themselves and trusts nothing stored here but as a record of what was sealed.
CREATE TABLE audit_seals (
    org_id   uuid   NOT NULL,
    position bigint NOT NULL,
    tx       xid8   NOT NULL,
    seal     bytea  NOT NULL,
    PRIMARY KEY (org_id, position)
);
CREATE INDEX audit_seals_chain ON audit_seals (org_id, tx, position);

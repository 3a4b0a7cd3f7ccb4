-- One data key per person (crypto-shredding, issue 23): the personal attributes of a user's events are
-- stored encrypted with it, and erasing the person deletes this row, which leaves those payloads
-- unreadable for ever while the log itself, and the seals over it, stay as they were. Not append-only, unlike
-- events: deleting from it is its purpose. The key is stored wrapped by the key-encryption key from the
-- settings (rotatable: `wrapped_key` is a Fernet token of whichever KEK was current when it was last wrapped).
-- Never readable by the analytics role, whose grants cover the analytics schema only.
CREATE TABLE personal_data_keys (
    org_id      uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

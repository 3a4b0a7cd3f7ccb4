-- The append-only event log. (org_id, stream_id, version) is the optimistic-concurrency key: a second
-- writer with the same expected version collides on it. `tx` is the writing transaction's id, which makes
-- the order (tx, position) safe for tailing readers (see eventstore/store.py).
CREATE TABLE events (
    position       bigint      GENERATED ALWAYS AS IDENTITY,
    tx             xid8        NOT NULL DEFAULT pg_current_xact_id(),
    org_id         uuid        NOT NULL,
    stream_id      uuid        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    type           text        NOT NULL,
    schema_version integer     NOT NULL DEFAULT 1,
    payload        jsonb       NOT NULL,
    occurred_at    timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor          text        NOT NULL,
    request_id     text,
    PRIMARY KEY (org_id, stream_id, version)
);
CREATE UNIQUE INDEX events_log_order ON events (tx, position);
CREATE INDEX events_org_position ON events (org_id, position);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

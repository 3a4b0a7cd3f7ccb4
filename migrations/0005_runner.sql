-- Where each asynchronous projection and reactor stands in the log. A consumer's effects and its new
-- position are written in one transaction, which is what makes processing exactly-once in effect.
CREATE TABLE consumer_positions (
    name       text        PRIMARY KEY,
    tx         xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a consumer failed on repeatedly, set aside with the error so that the rest of the log goes on.
CREATE TABLE parked_events (
    name      text        NOT NULL,
    position  bigint      NOT NULL,
    tx        xid8        NOT NULL,
    error     text        NOT NULL,
    attempts  integer     NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);

-- Wake consumers when events commit. Notifications are delivered at commit, and one per statement is
-- enough: a woken consumer reads everything that is new.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('scimledger_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION events_notify();

-- The analytics schema, read by analysts; kept by the runner.
CREATE SCHEMA analytics;
CREATE TABLE analytics.provisioning_activity (
    org_id     uuid    NOT NULL,
    day        date    NOT NULL,
    event_type text    NOT NULL,
    events     bigint  NOT NULL,
    PRIMARY KEY (org_id, day, event_type)
);

-- Webhook endpoints: where an organization wants its events delivered, each with its own position in the
-- log. The position and the state of the attempts at the event after it are the delivery's whole state:
-- the dispatcher (app/services/webhook_delivery.py) moves them in the transaction that records an attempt,
-- so a crash between sending and recording costs a redelivery (same webhook-id), never a lost event.
CREATE TABLE webhook_endpoints (
    org_id          uuid        NOT NULL REFERENCES orgs (org_id),
    endpoint_id     uuid        NOT NULL,
    url             text        NOT NULL,
    -- Public event types it receives ('user.created', or 'user.*'); empty: every type.
    event_types     text[]      NOT NULL DEFAULT '{}',
    description     text        NOT NULL DEFAULT '',
    -- The signing secret ('whsec_' + base64), encrypted (Fernet) under SCIMLEDGER_WEBHOOK_SECRET_KEY. After a
    -- rotation the previous one also signs until previous_secret_until, so receivers can switch over.
    secret          bytea       NOT NULL,
    previous_secret bytea,
    previous_secret_until timestamptz,
    state           text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
    disabled_reason text,
    -- The last event of the log (in the commit-safe order (tx, position)) that this endpoint is done with:
    -- delivered, or not of its types.
    tx              xid8        NOT NULL,
    position        bigint      NOT NULL,
    -- Failed attempts at the next event to deliver, and when the next attempt is due.
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, endpoint_id),
    CHECK ((state = 'disabled') = (disabled_reason IS NOT NULL))
);
CREATE UNIQUE INDEX webhook_endpoints_endpoint_id_key ON webhook_endpoints (endpoint_id);
-- The dispatcher's question on every wake-up: which endpoints have work.
CREATE INDEX webhook_endpoints_active ON webhook_endpoints (state) WHERE state = 'active';

-- Every attempt at a delivery, as its owner sees it in the delivery log.
CREATE TABLE webhook_deliveries (
    org_id         uuid        NOT NULL,
    endpoint_id    uuid        NOT NULL,
    attempt_id     bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id     text        NOT NULL,
    event_position bigint      NOT NULL,
    event_type     text        NOT NULL,
    -- Which attempt at this event since it became the endpoint's next (1 the first).
    attempt        integer     NOT NULL,
    attempted_at   timestamptz NOT NULL,
    duration_ms    integer     NOT NULL,
    -- The HTTP status when the receiver answered at all; the error otherwise (timeout, refused address).
    status         integer,
    error          text,
    succeeded      boolean     NOT NULL,
    PRIMARY KEY (org_id, endpoint_id, attempt_id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES webhook_endpoints (org_id, endpoint_id) ON DELETE CASCADE
);
-- A replay from a webhook-id (the event's feed id) finds the event through the delivery log.
CREATE INDEX webhook_deliveries_webhook_id ON webhook_deliveries (org_id, webhook_id);

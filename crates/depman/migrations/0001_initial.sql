-- depman's schema: users, their requests, the deployments those requests
-- manage, and the outbox the relay publishes from. See docs/schema.md.

CREATE TABLE users (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_external_id text        NOT NULL UNIQUE,
    created_on       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_on       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE deployments (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The Deployment's name in Kubernetes; unique across all users.
    identifier          text        NOT NULL UNIQUE,
    name                text        NOT NULL,
    namespace           text        NOT NULL,
    image               text        NOT NULL,
    status              text        NOT NULL
        CHECK (status IN ('INITIATED', 'UPDATING', 'CREATED', 'DELETED', 'FAILED')),
    health              text        NOT NULL DEFAULT 'MISSING'
        CHECK (health IN ('HEALTHY', 'PROGRESSING', 'DEGRADED', 'MISSING')),
    user_id             uuid        NOT NULL REFERENCES users (id),
    -- The desired spec of the newest accepted CREATE or UPDATE: what a PATCH
    -- merges into.
    spec                jsonb       NOT NULL,
    -- Requests accepted for this identifier so far; each request takes the
    -- next number, which orders them for the worker.
    last_sequence       bigint      NOT NULL DEFAULT 0,
    -- Live fields, written by the sync from the object in Kubernetes.
    resource_version    text,
    replicas            integer,
    ready_replicas      integer,
    available_replicas  integer,
    updated_replicas    integer,
    generation          bigint,
    observed_generation bigint,
    conditions          jsonb       NOT NULL DEFAULT '[]',
    metadata            jsonb       NOT NULL DEFAULT '{}',
    created_on          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_on          timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX deployments_user_status ON deployments (user_id, status);
CREATE INDEX deployments_user_newest ON deployments (user_id, created_on DESC, id DESC);

CREATE TABLE deployment_requests (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The caller's idempotency key (X-Request-ID), unique per user.
    request_id     text        NOT NULL,
    identifier     text        NOT NULL,
    name           text        NOT NULL,
    namespace      text        NOT NULL,
    request_type   text        NOT NULL CHECK (request_type IN ('CREATE', 'UPDATE', 'DELETE')),
    user_id        uuid        NOT NULL REFERENCES users (id),
    status         text        NOT NULL DEFAULT 'CREATED'
        CHECK (status IN ('CREATED', 'SUCCESS', 'FAILURE')),
    failure_reason text,
    image          text        NOT NULL,
    spec           jsonb       NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    -- Position among the requests of this identifier, in acceptance order.
    sequence       bigint      NOT NULL,
    -- Hash of what the key was first used for (route and body): a replay
    -- must match it.
    fingerprint    text        NOT NULL,
    created_on     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_on     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT deployment_requests_user_request_id UNIQUE (user_id, request_id),
    CONSTRAINT deployment_requests_identifier_sequence UNIQUE (identifier, sequence)
);

CREATE INDEX deployment_requests_namespace_name ON deployment_requests (namespace, name);
CREATE INDEX deployment_requests_user_status ON deployment_requests (user_id, status);
CREATE INDEX deployment_requests_user_newest ON deployment_requests (user_id, created_on DESC, id DESC);

-- Written in the transaction that accepts a request; the relay publishes each
-- row to JetStream (Nats-Msg-Id = the row's id) and then removes it.
CREATE TABLE outbox (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    request_id uuid        NOT NULL REFERENCES deployment_requests (id),
    created_on timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX outbox_oldest ON outbox (created_on);

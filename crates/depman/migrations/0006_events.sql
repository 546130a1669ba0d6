-- The event log: one row per change depman records or observes, written by
-- triggers in the transaction of the change itself, so that no code path
-- can change a request or a deployment without its event.
--
-- Position: (xid, seq), the writing transaction's id and a sequence number.
-- Readers read only below the oldest transaction still in flight
-- (pg_snapshot_xmin): no event can appear there later, so a reader that
-- saw position p never misses an event before p. See
-- docs/design-decisions.md, "A gap-free event log".
CREATE TABLE events (
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    type        text        NOT NULL,
    occurred_on timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The owner of the deployment: who may read the event.
    user_id     uuid        NOT NULL,
    identifier  text        NOT NULL,
    -- deployment_requests.id of the request the event is about, if any.
    request_id  uuid,
    -- The owner's X-User-ID, or 'kubernetes' for a change made outside depman.
    actor       text        NOT NULL,
    -- The row (a request or a deployment) as it was after the change; the
    -- API shows it in its own shape.
    data        jsonb       NOT NULL,
    -- deployment.changed: [{field, before, after}].
    changes     jsonb,
    PRIMARY KEY (xid, seq)
);

CREATE INDEX events_user_position ON events (user_id, xid, seq);

-- The newest position pruned: a cursor before it may have missed events,
-- and is answered 410.
CREATE TABLE events_pruned (
    -- Always true: the table holds one row.
    only_row boolean PRIMARY KEY DEFAULT true,
    xid      xid8    NOT NULL,
    seq      bigint  NOT NULL
);

CREATE FUNCTION record_event(
    kind text, owner uuid, ident text, request uuid, who text, row_data jsonb, diff jsonb
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO events (type, user_id, identifier, request_id, actor, data, changes)
    VALUES (kind, owner, ident, request, who, row_data, diff);
$$;

CREATE FUNCTION owner_name(owner uuid) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT user_external_id FROM users WHERE id = owner;
$$;

-- request.accepted, request.succeeded, request.failed and rollout.*.
CREATE FUNCTION request_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    before_state text := OLD.rollout->>'state';
    after_state text := NEW.rollout->>'state';
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'request.accepted';
    ELSIF OLD.status = 'CREATED' AND NEW.status = 'SUCCESS' THEN
        kind := 'request.succeeded';
    ELSIF OLD.status = 'CREATED' AND NEW.status = 'FAILURE' THEN
        kind := 'request.failed';
    ELSIF OLD.status = 'FAILURE' AND NEW.status = 'CREATED' THEN
        -- Put back in the queue (depman dlq replay): accepted again.
        kind := 'request.accepted';
    ELSIF after_state IS DISTINCT FROM before_state AND before_state = 'PROGRESSING' THEN
        kind := CASE after_state
            WHEN 'COMPLETE' THEN 'rollout.completed'
            WHEN 'FAILED' THEN 'rollout.failed'
            WHEN 'SUPERSEDED' THEN 'rollout.superseded'
        END;
        IF kind IS NULL THEN
            RETURN NULL;
        END IF;
    ELSIF after_state = 'PROGRESSING' AND before_state = 'PROGRESSING' AND (
            OLD.rollout->'desired_replicas', OLD.rollout->'updated_replicas',
            OLD.rollout->'ready_replicas', OLD.rollout->'available_replicas')
        IS DISTINCT FROM (
            NEW.rollout->'desired_replicas', NEW.rollout->'updated_replicas',
            NEW.rollout->'ready_replicas', NEW.rollout->'available_replicas') THEN
        kind := 'rollout.progressed';
    ELSE
        RETURN NULL;
    END IF;
    PERFORM record_event(kind, NEW.user_id, NEW.identifier, NEW.id,
                         owner_name(NEW.user_id), to_jsonb(NEW), NULL);
    RETURN NULL;
END;
$$;

CREATE TRIGGER request_events
    AFTER INSERT OR UPDATE OF status, rollout ON deployment_requests
    FOR EACH ROW EXECUTE FUNCTION request_events();

-- deployment.deleted, and deployment.changed: a change the sync saw in the
-- cluster that no request made.
CREATE FUNCTION deployment_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deleter record;
    diff jsonb;
BEGIN
    IF NEW.status = 'DELETED' AND OLD.status <> 'DELETED' THEN
        -- A DELETE request made it so: one finished in this very
        -- transaction, or one still waiting (the worker deleted the object,
        -- and the sync saw it gone before the request was recorded).
        -- Otherwise it went from the cluster.
        SELECT id, owner_name(user_id) AS actor INTO deleter
        FROM deployment_requests
        WHERE identifier = NEW.identifier AND request_type = 'DELETE'
          AND (status = 'CREATED' OR (status = 'SUCCESS' AND updated_on >= now()))
        ORDER BY sequence DESC LIMIT 1;
        PERFORM record_event('deployment.deleted', NEW.user_id, NEW.identifier, deleter.id,
                             coalesce(deleter.actor, 'kubernetes'), to_jsonb(NEW), NULL);
        RETURN NULL;
    END IF;
    -- Only the sync writes a new resource version; the first one after a
    -- (re)create, and one applied by a request (its id is annotated on the
    -- object), are the request's rollout, not an outside change.
    IF OLD.resource_version IS NULL
       OR NEW.resource_version IS NOT DISTINCT FROM OLD.resource_version
       OR NEW.status = 'INITIATED'
       OR (NEW.metadata->'annotations'->>'depman.io/request-id')
          IS DISTINCT FROM (OLD.metadata->'annotations'->>'depman.io/request-id') THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_agg(jsonb_build_object('field', field, 'before', before, 'after', after))
    INTO diff
    FROM (VALUES
            ('image', to_jsonb(OLD.image), to_jsonb(NEW.image), true),
            ('replicas', to_jsonb(OLD.replicas), to_jsonb(NEW.replicas), true),
            ('ready_replicas', to_jsonb(OLD.ready_replicas), to_jsonb(NEW.ready_replicas), false),
            ('health', to_jsonb(OLD.health), to_jsonb(NEW.health), false),
            ('health_reason', to_jsonb(OLD.health_reason), to_jsonb(NEW.health_reason), false)
         ) AS fields (field, before, after, spec)
    WHERE before IS DISTINCT FROM after
      -- While a request's rollout is followed, its counts and health are
      -- that rollout's events.
      AND (spec OR NOT EXISTS (
          SELECT 1 FROM deployment_requests
          WHERE identifier = NEW.identifier AND rollout->>'state' = 'PROGRESSING'));
    IF diff IS NOT NULL THEN
        PERFORM record_event('deployment.changed', NEW.user_id, NEW.identifier, NULL,
                             'kubernetes', to_jsonb(NEW), diff);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER deployment_events
    AFTER UPDATE ON deployments
    FOR EACH ROW
    WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION deployment_events();

-- Wakes the API's event feeds and the webhook deliveries, once per
-- statement, when the transaction commits.
CREATE FUNCTION notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('depman_event', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER event_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_event();

-- Webhooks: each follows the events of its owner with a cursor of its own,
-- delivered one at a time in order.
CREATE TABLE webhooks (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES users (id),
    url           text        NOT NULL,
    types         text[],
    identifier    text,
    -- The signing secret, encrypted (ChaCha20-Poly1305) with DEPMAN_WEBHOOK_KEY.
    secret        bytea       NOT NULL,
    -- The position of the last event delivered (or skipped as not matching).
    cursor_xid    xid8        NOT NULL,
    cursor_seq    bigint      NOT NULL,
    -- The next delivery is not tried before this.
    next_attempt_on timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Since when deliveries fail without a success in between.
    failing_since timestamptz,
    disabled_on   timestamptz,
    disabled_reason text,
    -- Held by the worker delivering it; another takes it over when it lapses.
    leased_until  timestamptz NOT NULL DEFAULT 'epoch',
    created_on    timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX webhooks_user ON webhooks (user_id, created_on DESC, id DESC);
CREATE INDEX webhooks_due ON webhooks (next_attempt_on) WHERE disabled_on IS NULL;

CREATE TABLE webhook_deliveries (
    webhook_id       uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_xid        xid8        NOT NULL,
    event_seq        bigint      NOT NULL,
    event_type       text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    -- PENDING (retried at next_attempt_on), DELIVERED, or ABANDONED (the
    -- webhook was disabled).
    state            text        NOT NULL DEFAULT 'PENDING'
        CHECK (state IN ('PENDING', 'DELIVERED', 'ABANDONED')),
    last_status_code integer,
    last_error       text,
    next_attempt_on  timestamptz,
    created_on       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_on       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (webhook_id, event_xid, event_seq)
);

CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (webhook_id, created_on DESC);

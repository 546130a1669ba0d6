-- A Deployment's counts and health that move while its request is being
-- applied are that request's rollout, not a change made outside depman.
-- Between the apply and the transaction that records the request (and
-- starts following its rollout), the sync may already record the object
-- twice: its creation, then its controller's first status. The second was
-- logged as a `deployment.changed` by `kubernetes` inside the request's own
-- rollout (seen as a rare failure of the worker suite's events and webhook
-- tests).
CREATE OR REPLACE FUNCTION deployment_events() RETURNS trigger LANGUAGE plpgsql AS $$
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
      -- While a request is applied or its rollout followed, its counts and
      -- health are that rollout's events.
      AND (spec OR NOT EXISTS (
          SELECT 1 FROM deployment_requests
          WHERE identifier = NEW.identifier
            AND (rollout->>'state' = 'PROGRESSING'
                 OR (status = 'CREATED' AND applying_since IS NOT NULL))));
    IF diff IS NOT NULL THEN
        PERFORM record_event('deployment.changed', NEW.user_id, NEW.identifier, NULL,
                             'kubernetes', to_jsonb(NEW), diff);
    END IF;
    RETURN NULL;
END;
$$;

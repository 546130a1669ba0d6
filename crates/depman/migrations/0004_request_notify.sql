-- Wakes the API's waiters (GET /api/v1/deployments/requests/{id}?wait=):
-- one notification, naming the request, whenever its status or rollout
-- changes; delivered when the transaction commits.
CREATE FUNCTION notify_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('depman_request', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER request_notify
    AFTER UPDATE OF status, rollout ON deployment_requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.rollout IS DISTINCT FROM NEW.rollout)
    EXECUTE FUNCTION notify_request();

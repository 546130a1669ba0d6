-- Wakes the relay as soon as a request is accepted: one notification per
-- inserting statement, delivered when its transaction commits.
CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('depman_outbox', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- The worker looks up the requests of one identifier still waiting, in order.
CREATE INDEX deployment_requests_waiting
    ON deployment_requests (identifier, sequence)
    WHERE status = 'CREATED';

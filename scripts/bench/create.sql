-- pgbench: the SQL the API runs to record a CREATE (requests::insert_create:
-- one statement that reserves the identifier, inserts the request and queues
-- it in the outbox), with a new identifier and idempotency key each time.
-- Run with -M prepared, as sqlx does, and -D user_id=<uuid of a user>.
\set n random(1, 9000000000000000)
WITH reserved AS (
    INSERT INTO deployments (identifier, name, namespace, image, status, user_id, spec, last_sequence)
    VALUES ('web-' || :client_id || '-' || :n, 'web', 'bench', 'nginx:1.27', 'INITIATED', :user_id::uuid,
            '{"name": "web", "namespace": "bench", "image": "nginx:1.27", "replicas": 2}', 1)
    ON CONFLICT (identifier) DO UPDATE SET status = 'INITIATED', last_sequence = deployments.last_sequence + 1
    WHERE deployments.user_id = EXCLUDED.user_id AND deployments.status IN ('DELETED', 'FAILED')
    RETURNING last_sequence
), request AS (
    INSERT INTO deployment_requests
        (request_id, user_id, identifier, name, namespace, request_type, image, spec, sequence, fingerprint)
    SELECT 'pgbench-' || :client_id || '-' || :n, :user_id::uuid, 'web-' || :client_id || '-' || :n, 'web', 'bench',
           'CREATE', 'nginx:1.27', '{"name": "web", "namespace": "bench", "image": "nginx:1.27", "replicas": 2}',
           last_sequence, md5(:n::text)
    FROM reserved
    RETURNING id, request_id, identifier, name, namespace, request_type, status, failure_reason, attempts, image,
              spec, created_on, updated_on, fingerprint
), queued AS (INSERT INTO outbox (request_id) SELECT id FROM request)
SELECT * FROM request;

-- make bench-list: the history of a busy user, written straight into a fresh
-- database (the triggers run as for any insert, so the event log fills too).
-- 10,000 deployments d-00000 .. d-09999 over namespaces ns-0 .. ns-9, each
-- with one CREATE and nine UPDATEs: 100,000 requests, one in a hundred a
-- FAILURE, 10 ms apart. Another user has 10,000 of their own, so that every
-- list filters by user as in a shared installation.
INSERT INTO users (user_external_id) VALUES ('bench'), ('other');

-- A spec as the API stores it.
CREATE FUNCTION pg_temp.spec(namespace text, identifier text, image text) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'name', 'web', 'namespace', namespace, 'identifier', identifier, 'image', image,
        'replicas', 2, 'env', '{"LOG_LEVEL": "info"}'::jsonb,
        'ports', '[{"container_port": 8080, "name": "http"}]'::jsonb,
        'resources', '{"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}'::jsonb,
        'labels', '{"tier": "web"}'::jsonb, 'annotations', '{}'::jsonb, 'command', '[]'::jsonb,
        'args', '[]'::jsonb, 'progress_deadline_seconds', 600)
$$;

INSERT INTO deployments (identifier, name, namespace, image, status, health, user_id, spec,
                         last_sequence, resource_version, replicas, ready_replicas,
                         available_replicas, updated_replicas, generation, observed_generation,
                         created_on)
SELECT owner.prefix || lpad(d::text, 5, '0'), 'web', 'ns-' || (d % 10), 'nginx:1.27', 'CREATED', 'HEALTHY',
       owner.id,
       pg_temp.spec('ns-' || (d % 10), owner.prefix || lpad(d::text, 5, '0'), 'nginx:1.9'),
       owner.requests / owner.deployments, (1000 + d)::text, 2, 2, 2, 2, 10, 10,
       timestamptz '2026-01-01' + d * interval '10 ms'
FROM (SELECT id, CASE user_external_id WHEN 'bench' THEN 'd-' ELSE 'o-' END AS prefix,
             CASE user_external_id WHEN 'bench' THEN 10000 ELSE 1000 END AS deployments,
             CASE user_external_id WHEN 'bench' THEN 100000 ELSE 10000 END AS requests
      FROM users) owner,
     generate_series(0, owner.deployments - 1) d;

INSERT INTO deployment_requests (request_id, identifier, name, namespace, request_type, user_id,
                                 status, failure_reason, image, spec, attempts, sequence,
                                 fingerprint, rollout, created_on, updated_on)
SELECT 'seed-' || k, owner.prefix || lpad(((k - 1) % owner.deployments)::text, 5, '0'), 'web',
       'ns-' || ((k - 1) % owner.deployments % 10),
       CASE WHEN (k - 1) / owner.deployments = 0 THEN 'CREATE' ELSE 'UPDATE' END, owner.id,
       CASE WHEN k % 100 = 0 THEN 'FAILURE' ELSE 'SUCCESS' END,
       CASE WHEN k % 100 = 0 THEN 'the API server refused it' END,
       'nginx:1.' || ((k - 1) / owner.deployments),
       pg_temp.spec('ns-' || ((k - 1) % owner.deployments % 10),
            owner.prefix || lpad(((k - 1) % owner.deployments)::text, 5, '0'),
            'nginx:1.' || ((k - 1) / owner.deployments)),
       1, (k - 1) / owner.deployments + 1, md5(k::text),
       CASE WHEN k % 100 <> 0 THEN jsonb_build_object(
           'state', 'COMPLETE', 'reason', NULL, 'message', NULL,
           'generation', (k - 1) / owner.deployments + 1, 'desired_replicas', 2, 'updated_replicas', 2,
           'ready_replicas', 2, 'available_replicas', 2,
           'started_on', timestamptz '2026-01-01' + k * interval '10 ms',
           'finished_on', timestamptz '2026-01-01' + k * interval '10 ms' + interval '2 s') END,
       timestamptz '2026-01-01' + k * interval '10 ms', timestamptz '2026-01-01' + k * interval '10 ms'
FROM (SELECT id, CASE user_external_id WHEN 'bench' THEN 'd-' ELSE 'o-' END AS prefix,
             CASE user_external_id WHEN 'bench' THEN 10000 ELSE 1000 END AS deployments,
             CASE user_external_id WHEN 'bench' THEN 100000 ELSE 10000 END AS requests
      FROM users) owner,
     generate_series(1, owner.requests) k;

-- As after a quiet night: statistics fresh, visibility maps set, and no
-- autovacuum woken by the seeding in the middle of a measurement.
VACUUM (ANALYZE) users, deployments, deployment_requests, events;

-- The rollout each applied CREATE or UPDATE started: its state (PROGRESSING,
-- COMPLETE, FAILED, SUPERSEDED), reason, the Deployment generation it
-- produced and the replica counts last seen. NULL until applied, and for
-- DELETE. See docs/schema.md.
ALTER TABLE deployment_requests ADD COLUMN rollout jsonb;

-- The sync looks up the rollouts still followed, per identifier.
CREATE INDEX deployment_requests_rollout_progressing
    ON deployment_requests (identifier)
    WHERE rollout->>'state' = 'PROGRESSING';

-- The relay claims outbox rows with a lease instead of holding a row lock
-- across its JetStream publish: a transaction open across a network call
-- would hold the event log's horizon back (docs/design-decisions.md, "A
-- gap-free event log"). A relay that dies leaves its rows to another once
-- the lease runs out; JetStream drops the duplicates by Nats-Msg-Id.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz NOT NULL DEFAULT 'epoch';

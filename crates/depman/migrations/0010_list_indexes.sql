-- Indexes for the lists' filters, each in the lists' order, so that a page
-- of a rare status reads its 50 rows and not every row of the user
-- (make bench-list: 100,000 requests, 1 in 100 a FAILURE).
DROP INDEX deployment_requests_user_status;
CREATE INDEX deployment_requests_user_status_newest
    ON deployment_requests (user_id, status, created_on DESC, id DESC);
DROP INDEX deployments_user_status;
CREATE INDEX deployments_user_status_newest
    ON deployments (user_id, status, created_on DESC, id DESC);

-- The deployments list's search: part of an identifier. pg_trgm is a
-- trusted extension: the database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX deployments_identifier_trigrams ON deployments USING gin (identifier gin_trgm_ops);

-- A stable code beside each request's human failure_reason: cancelled,
-- invalid-object, namespace-missing, forbidden, rejected, gave-up,
-- superseded, create-failed. NULL unless FAILURE.
ALTER TABLE deployment_requests ADD COLUMN failure_code text;

-- Set by the worker right before it applies a request, cleared when the
-- attempt is to be retried: a request being carried out cannot be
-- cancelled, one waiting (even behind another) can.
ALTER TABLE deployment_requests ADD COLUMN applying_since timestamptz;

-- An UPDATE recorded by POST /api/v1/deployments/{identifier}/rollback: the
-- revision whose spec it re-applies. NULL for every other request.
ALTER TABLE deployment_requests ADD COLUMN rolled_back_to integer;

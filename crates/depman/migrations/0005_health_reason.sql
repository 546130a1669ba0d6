-- Why a deployment is DEGRADED: the same reason codes as a failed rollout
-- (ErrImagePull, CrashLoopBackOff, QuotaExceeded, ProgressDeadlineExceeded,
-- ...) and Kubernetes' own words. NULL while it is not.
ALTER TABLE deployments ADD COLUMN health_reason text, ADD COLUMN health_message text;

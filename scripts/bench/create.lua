-- wrk: POST a valid CREATE as one user. Without X-Request-ID the server
-- makes a key up, and without identifier it makes one up: every request is
-- a new deployment request.
wrk.method = "POST"
wrk.path = "/api/v1/deployments/requests/create"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-User-ID"] = "bench"
wrk.body = [[{"name":"web","namespace":"bench","image":"nginx:1.27","replicas":2,"env":{"LOG_LEVEL":"info"},"ports":[{"container_port":8080,"name":"http"}],"resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"500m","memory":"128Mi"}},"labels":{"tier":"web"}}]]

-- The last line wrk prints: the status codes seen, to catch a run of errors.
local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

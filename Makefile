# depman: the two set-up commands are `make dev` and `make test` (see README).

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Heavy builds live outside the checkout, so a fresh clone reuses them.
export CARGO_TARGET_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/depman/target

ENV_FILE := .devenv/env.sh
WITH_ENV := set -a && . ./$(ENV_FILE) && set +a &&

# The image docker-build makes, and the overlay k8s-deploy applies.
IMAGE ?= depman:dev
OVERLAY ?= dev

.PHONY: help env env-down env-status dev run run-worker run-watcher test build build-tests lint fmt \
	docker-build k8s-deploy k8s-delete bench-api bench-e2e bench-sync bench-outcome bench-events bench-dry-run bench-scale bench-list profile-api fuzz

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

env: ## build what is missing and start PostgreSQL, NATS JetStream and Kubernetes
	@scripts/env/main.sh up

env-down: ## stop the local environment (data is kept)
	@scripts/env/main.sh down

env-status: ## say what runs where
	@scripts/env/main.sh status

dev: env ## run depman against the local environment
	@$(WITH_ENV) cargo run --locked --bin depman -- all

run: env ## run the api role alone against the local environment
	@$(WITH_ENV) cargo run --locked --bin depman -- api

run-worker: env ## run the worker role alone (metrics on 127.0.0.1:9090)
	@$(WITH_ENV) cargo run --locked --bin depman -- worker

run-watcher: env ## run the watcher role alone (metrics on 127.0.0.1:9091, beside a worker)
	@$(WITH_ENV) DEPMAN_METRICS_ADDR=$${DEPMAN_METRICS_ADDR:-127.0.0.1:9091} cargo run --locked --bin depman -- watcher

test: env ## run every test against the local environment, then a short fuzz of the API
	@$(WITH_ENV) cargo test --locked --workspace
	@FUZZ_QUICK=1 FUZZ_PROFILE=debug scripts/fuzz.sh

build: ## build the depman and depmanctl binaries
	cargo build --locked --release --bin depman --bin depmanctl

build-tests: ## compile everything the tests need, without running them
	cargo test --locked --workspace --no-run

lint: ## formatting and clippy, as CI checks them
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

fmt: ## format the code
	cargo fmt --all

docker-build: ## build the container image (IMAGE=depman:dev; needs a Docker engine)
	@command -v docker >/dev/null || { echo "make docker-build: no docker command here; build the Dockerfile where a Docker engine runs" >&2; exit 1; }
	docker build -t $(IMAGE) .

k8s-deploy: ## install depman into the current kubectl context (OVERLAY=dev or prod)
	kubectl apply -k deploy/overlays/$(OVERLAY)

k8s-delete: ## remove what k8s-deploy installed, but the namespace (its volumes and Secrets stay)
	kubectl delete -k deploy/overlays/$(OVERLAY) -l 'app.kubernetes.io/component!=namespace' --ignore-not-found

bench-api: env ## POST create throughput and latency against a pgbench baseline
	@scripts/bench/api.sh

bench-list: env ## list routes with 100,000 requests in the table, each next to pgbench running its query
	@scripts/bench/list.sh

profile-api: env ## where a POST create's time goes: pg_stat_statements and a perf profile of the api under wrk
	@scripts/bench/profile-api.sh

bench-e2e: env ## 500 CREATEs end to end against a kube-rs server-side-apply baseline
	@cargo build --locked --release --bin depman --example bench_e2e -q
	@$(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_e2e

bench-sync: env ## sync lag at idle and under churn, resync of 10,000, memory of watcher and worker
	@cargo build --locked --release --bin depman --example bench_sync -q
	@$(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_sync

bench-outcome: env ## POST to a truthful rollout outcome, per chaos image, against when Kubernetes showed it
	@cargo build --locked --release --bin depman --example bench_outcome -q
	@$(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_outcome

bench-events: env ## SSE subscribers and a webhook under 200 CREATEs/s: commit-to-arrival p50/p99, api CPU and memory per subscriber
	@cargo build --locked --release --bin depman --example bench_events -q
	@ulimit -n 8192 2>/dev/null; $(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_events

bench-dry-run: env ## dry runs through depman at 16 clients next to kube-rs dry-run applies straight to the API server
	@cargo build --locked --release --bin depman --example bench_dry_run -q
	@$(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_dry_run

bench-scale: env ## the same 1,000 requests carried out by 1, 2 and 4 worker processes: throughput and its ratio to one worker
	@cargo build --locked --release --bin depman --example bench_scale -q
	@$(WITH_ENV) DEPMAN_BIN=$(CARGO_TARGET_DIR)/release/depman $(CARGO_TARGET_DIR)/release/examples/bench_scale

fuzz: env ## schemathesis over the served OpenAPI document, all checks (FUZZ_SECONDS=240)
	@scripts/fuzz.sh

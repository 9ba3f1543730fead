# flusso — the commands that matter. `make help` lists them.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin

.PHONY: help build test demo demo-stop services services-down proto bench chaos chaos-cluster demo-cluster faults lint

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

build: ## build bin/flusso and bin/nats-server
	$(GO) build -o bin/flusso ./cmd/flusso

demo: ## the demo: dev Postgres + OpenSearch, a sample shop, flusso run, a search, live changes
	@deploy/demo/demo.sh up

demo-stop: ## stop the demo's flusso (the dev services keep running)
	@deploy/demo/demo.sh stop

demo-cluster: ## the docker-compose topology natively on the dev cluster (3 NATS, 2 OpenSearch): capture + standby, 3 assemblers, a writer; prints nats stream/consumer info
	@deploy/dev/services.sh up --cluster >/dev/null
	@deploy/demo/cluster.sh up

proto: ## regenerate proto/flussopb from proto/flusso.proto
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	cd proto && PATH="$(GOBIN):$$PATH" protoc --go_out=flussopb --go_opt=paths=source_relative flusso.proto

# --- dev services and tests (deploy/dev/services.sh, internal/testenv) ---
.PHONY: test-short

# Two packages at a time: each may drive Postgres, OpenSearch and NATS at once, and the
# machines have 2 cores.
TEST_FLAGS ?= -count=1 -timeout 25m -p 2

services: ## start dev PostgreSQL 15, OpenSearch 2.19 and NATS (idempotent; state in .dev/); CLUSTER=1 adds a 3-node NATS and a 2-node OpenSearch cluster
	@deploy/dev/services.sh up $(if $(filter 1,$(CLUSTER)),--cluster)

services-down: ## stop the dev services
	@deploy/dev/services.sh down

test: services ## run every test against the real services (started if needed)
	@source .dev/env && set -x && $(GO) test $(TEST_FLAGS) ./... ./query/...

chaos: services ## the chaos test at length: 5 minutes of kills and restarts, then a full diff
	@source .dev/env && FLUSSO_CHAOS_SECS=$${FLUSSO_CHAOS_SECS:-300} $(GO) test -count=1 -timeout 60m -run 'TestChaos$$' -v ./test/system/ | grep -E 'chaos report|did not converge|^(--- |ok|FAIL|PASS)'

chaos-cluster: ## the cluster chaos test: 3 NATS nodes (R3 streams), 2 OpenSearch nodes, node and role kills for 2 minutes, then a full diff
	@deploy/dev/services.sh up --cluster >/dev/null
	@set -o pipefail && source .dev/env && source .dev/cluster.env && FLUSSO_CHAOS_SECS=$${FLUSSO_CHAOS_SECS:-120} $(GO) test -count=1 -timeout 60m -run 'TestChaosCluster$$' -v ./test/cluster/ | grep -E 'cluster chaos report|did not converge|handed out|^(--- |ok|FAIL|PASS)'

faults: services ## the fault suite at length: longer faults, bigger volumes; one "fault report" line per scenario
	@set -o pipefail && source .dev/env && FLUSSO_FAULTS_LONG=1 $(GO) test -count=1 -timeout 90m -p 1 -v ./test/faults/ | grep -E 'fault report|_test\.go:[0-9]+: expected|^(--- |ok|FAIL|PASS)'

test-short: ## run the tests that need no services (go test -short)
	$(GO) test -short -count=1 ./... ./query/...

# --- benchmarks (bench/, results in bench/results/, write-up in docs/benchmarks.md) ---
.PHONY: bench-full bench-sink bench-3 bench-scale

# Extra harness flags, e.g. BENCH_FLAGS="-skip-pgsync -scale ''"; go run ./bench/cmd/harness -help lists them.
BENCH_FLAGS ?=

# The quick benchmark's settings, shared by bench and bench-3.
BENCH_QUICK = -users 50000 -live-secs 20 -drain-secs 60 -ceiling-concurrency 2 -scale-rate 1000

bench: services ## quick benchmark (50,000 users): flusso vs the bulk ceiling, the Rust flusso and PGSync, in one run
	@bench/pgsync/setup.sh
	@source .dev/env && $(GO) run ./bench/cmd/harness $(BENCH_QUICK) $(BENCH_FLAGS)

bench-3: services ## make bench three times and the medians of its figures (what docs/benchmarks.md reports), in bench/results/medians
	@bench/pgsync/setup.sh
	@source .dev/env && for i in 1 2 3; do \
		$(GO) run ./bench/cmd/harness $(BENCH_QUICK) -out bench/results/medians/run$$i $(BENCH_FLAGS) || exit 1; done
	@$(GO) run ./bench/cmd/harness -out bench/results/medians \
		-medians $$(ls bench/results/medians/run1/*.json bench/results/medians/run2/*.json bench/results/medians/run3/*.json | paste -sd,)

bench-scale: services ## assemblers 1-4, then 2 writers, with the assemblers' Postgres 5 ms away each way (latency proxy); results in bench/results/scale/
	@source .dev/env && $(GO) run ./bench/cmd/harness -users 50000 -skip-pgsync -skip-rust -skip-ceiling -skip-single -mix=false -rates '' \
		-scale 1,2,3,4 -scale-writers 2 -scale-backfill -scale-rate 1500 -live-secs 15 -drain-secs 90 -scale-pg-latency 5ms \
		-out bench/results/scale $(BENCH_FLAGS)

bench-sink: services ## the OpenSearch sink vs a minimal direct bulk loop, same documents, same node
	@source .dev/env && $(GO) test -run '^$$' -bench WriteVsRawBulk -benchtime=1x -count=3 ./pkg/sink/opensearch/ | grep -E '^Benchmark|^ok'

bench-render: services ## Postgres and flusso CPU of building documents: the builder vs other renderings of the same bytes (seeds database bench_render)
	@source .dev/env && $(GO) run ./bench/cmd/benchgen -db bench_render && \
		FLUSSO_BENCH_RENDER_DB="$${FLUSSO_TEST_PG_URL/\/postgres?//bench_render?}" $(GO) test -count=1 -run TestRenderCost -v ./pkg/sqlbuild/

bench-full: services ## full benchmark (1,000,000 users; takes hours on 2 cores)
	@bench/pgsync/setup.sh
	@source .dev/env && $(GO) run ./bench/cmd/harness -users 1000000 -live-secs 60 -drain-secs 300 \
		-scale-backfill -scale-rate 1000 $(BENCH_FLAGS)

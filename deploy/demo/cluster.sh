#!/usr/bin/env bash
# The demo as separate processes on the dev cluster: the topology of docker-compose.yml,
# run natively (no Docker needed).
#
#   deploy/demo/cluster.sh [up]   reset and run it (make demo-cluster); the processes keep running
#   deploy/demo/cluster.sh stop   stop the processes and drop their idle slot
#   deploy/demo/cluster.sh info   nats stream info / consumer info of the running pipeline
#
# It needs the dev services and the dev cluster (deploy/dev/services.sh up --cluster,
# which make demo-cluster runs): Postgres (the single node), a 3-node NATS cluster and a
# 2-node OpenSearch cluster. It loads deploy/demo/seed.sql into a fresh database
# flusso_demo_cluster, starts the processes below with deploy/demo/flusso.toml (logs in
# .dev/demo-cluster/), waits for the backfill, makes a change, and once it landed prints
# `nats stream info` and `nats consumer info` (the nats CLI is built from its Go module
# into bin/). deploy/deploy_test.go checks that PROCS and the environment below name the
# same roles, streams and variables as docker-compose.yml and the Helm chart.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.dev/demo-cluster"
FLUSSO="$ROOT/bin/flusso"
NATS="$ROOT/bin/nats"
NATSCLI_VERSION=v0.5.1

DB=flusso_demo_cluster
WAIT="${DEMO_WAIT_SECS:-180}" # seconds for the backfill, and for the change to land

# The topology: a process per line, its name then its `flusso run` arguments.
PROCS=(
	"capture --role capture"
	"capture-standby --role capture"
	"assembler-1 --role assembler"
	"assembler-2 --role assembler"
	"assembler-3 --role assembler"
	"writer-primary --role writer --sink primary"
)

step() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
	printf '[demo-cluster] ERROR: %s\n' "$*" >&2
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
over() { awk -v a="$1" -v b="$EPOCHREALTIME" -v m="$2" 'BEGIN { exit !(b - a > m) }'; }

# environment sets what every process shares, as docker-compose.yml and the chart do.
environment() {
	[[ -f "$ROOT/.dev/env" && -f "$ROOT/.dev/cluster.env" ]] ||
		die "no .dev/env or .dev/cluster.env: run deploy/dev/services.sh up --cluster (make demo-cluster does)"
	# shellcheck source=/dev/null
	source "$ROOT/.dev/env"
	# shellcheck source=/dev/null
	source "$ROOT/.dev/cluster.env"
	export FLUSSO_CONFIG="$ROOT/deploy/demo/flusso.toml"
	export FLUSSO_NATS_URL="$FLUSSO_TEST_CLUSTER_NATS_URL"
	export FLUSSO_NATS_REPLICAS=3
	export FLUSSO_SLOT=flusso_demo_cluster
	export FLUSSO_PUBLICATION=flusso_demo_cluster
	export DATABASE_URL="${FLUSSO_TEST_PG_URL/\/postgres\?/\/$DB?}"
	export PRIMARY_OPENSEARCH_URL="$FLUSSO_TEST_CLUSTER_OPENSEARCH_URL"
	export FLUSSO_ADMIN_USER=admin
	export FLUSSO_ADMIN_PASSWORD=flusso
	OS_URL="${PRIMARY_OPENSEARCH_URL%%,*}"
}

psql_db() {
	local bin
	bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
	[[ -x "$bin/psql" ]] || die "psql not found under /usr/lib/postgresql (make services installs it)"
	"$bin/psql" -X -q -v ON_ERROR_STOP=1 "$@"
}

tools() {
	(cd "$ROOT" && go build -o "$FLUSSO" ./cmd/flusso) || die "go build ./cmd/flusso failed"
	if [[ ! -x "$NATS" ]]; then
		info "building the nats CLI ($NATSCLI_VERSION) into bin/"
		GOBIN="$ROOT/bin" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" || die "go install natscli failed"
	fi
}

nats_cli() { "$NATS" --server "$FLUSSO_NATS_URL" "$@"; }

stop() {
	local p name
	for p in "${PROCS[@]}"; do
		name="${p%% *}"
		[[ -s "$STATE/$name.pid" ]] || continue
		kill -TERM "$(<"$STATE/$name.pid")" 2>/dev/null || true
	done
	for p in "${PROCS[@]}"; do
		name="${p%% *}"
		[[ -s "$STATE/$name.pid" ]] || continue
		for _ in $(seq 100); do kill -0 "$(<"$STATE/$name.pid")" 2>/dev/null || break; sleep 0.1; done
		rm -f "$STATE/$name.pid"
	done
	psql_db "$FLUSSO_TEST_PG_URL" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$FLUSSO_SLOT' AND NOT active" >/dev/null || true
}

reset() {
	stop
	psql_db "$FLUSSO_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
	psql_db "$DATABASE_URL" -f "$ROOT/deploy/demo/seed.sql"
	# The streams and buckets of a previous run, and its indexes on the cluster.
	local s
	for s in FLUSSO_CHANGES FLUSSO_DOCS FLUSSO_QUARANTINE KV_flusso_state KV_flusso_lease; do
		nats_cli stream rm -f "$s" >/dev/null 2>&1 || true
	done
	curl -sf -X DELETE "$OS_URL/demo_*?expand_wildcards=all" >/dev/null || true
	rm -rf "$STATE"
	mkdir -p "$STATE"
}

start() {
	local i=0 p name
	for p in "${PROCS[@]}"; do
		name="${p%% *}"
		# Each process its own HTTP surfaces: 9470 + its place in PROCS.
		# shellcheck disable=SC2086 # the arguments are words
		FLUSSO_PUBLIC_ADDRESS="127.0.0.1:$((9470 + i))" setsid "$FLUSSO" run ${p#* } \
			--private-address "127.0.0.1:$((9480 + i))" --lock "$STATE/$name.lock" \
			>>"$STATE/$name.log" 2>&1 </dev/null &
		echo "$!" >"$STATE/$name.pid"
		info "$name (pid $!): flusso run ${p#* }"
		i=$((i + 1))
	done
}

count() { curl -s "$OS_URL/$1/_count" | sed -nE 's/.*"count":([0-9]+).*/\1/p'; }

wait_backfill() {
	local t0 want_users want_products
	t0="$(now)"
	want_users="$(psql_db "$DATABASE_URL" -tAc "SELECT count(*) FROM users WHERE deleted_at IS NULL")"
	want_products="$(psql_db "$DATABASE_URL" -tAc "SELECT count(*) FROM products")"
	until [[ "$(count demo_users)" == "$want_users" && "$(count demo_products)" == "$want_products" ]]; do
		over "$t0" "$WAIT" && die "the backfill did not finish in ${WAIT}s (logs: $STATE/*.log)"
		sleep 0.5
	done
	info "backfill done in $(since "$t0"): demo_users $want_users documents, demo_products $want_products documents"
}

change() {
	local t0
	step "A change: product 14 is renamed; every customer who ordered it is rebuilt"
	info "sql> UPDATE products SET name = 'Espresso Maker Mk II' WHERE id = 14;"
	psql_db "$DATABASE_URL" -c "UPDATE products SET name = 'Espresso Maker Mk II' WHERE id = 14"
	t0="$(now)"
	until curl -s "$OS_URL/demo_products/_doc/14" | grep -q 'Mk II'; do
		over "$t0" "$WAIT" && die "the change did not land in ${WAIT}s (logs: $STATE/*.log)"
		sleep 0.1
	done
	info "product 14: landed in $(since "$t0")"
	local fans
	fans="$(psql_db "$DATABASE_URL" -tAc "SELECT count(DISTINCT u.id) FROM users u JOIN orders o ON o.user_id = u.id
		JOIN order_items i ON i.order_id = o.id WHERE i.product_id = 14 AND u.deleted_at IS NULL")"
	until [[ "$(curl -s -H 'Content-Type: application/json' "$OS_URL/demo_users/_count" -d \
		'{"query": {"nested": {"path": "orders.items", "query": {"match_phrase": {"orders.items.product.name": "mk ii"}}}}}' |
		sed -nE 's/.*"count":([0-9]+).*/\1/p')" == "$fans" ]]; do
		over "$t0" "$WAIT" && die "the customers were not rebuilt in ${WAIT}s (logs: $STATE/*.log)"
		sleep 0.1
	done
	info "$fans customer documents with the new name: landed in $(since "$t0")"
}

show_info() {
	step "nats stream info / consumer info (every stream at $FLUSSO_NATS_REPLICAS replicas)"
	local c
	for c in "stream info FLUSSO_CHANGES" "consumer info FLUSSO_CHANGES assembler" \
		"stream info FLUSSO_DOCS" "consumer info FLUSSO_DOCS writer_primary"; do
		printf '\n    $ nats %s\n' "$c"
		# shellcheck disable=SC2086 # the arguments are words
		nats_cli $c | sed 's/^/    /'
	done
}

up() {
	local t0
	t0="$(now)"
	environment
	step "Building flusso and the nats CLI"
	tools
	step "Resetting the demo database $DB, the streams and the demo_* indexes on the cluster"
	reset
	step "Starting the pipeline: ${#PROCS[@]} processes over NATS $FLUSSO_NATS_URL"
	start
	step "Waiting for the backfill (OpenSearch $PRIMARY_OPENSEARCH_URL)"
	wait_backfill
	change
	show_info
	step "Done in $(since "$t0"); the processes keep running (logs in $STATE/)"
	info "curl -s localhost:9470/status        # a capture (9471 the other; one is active, one stands by)"
	info "deploy/demo/cluster.sh info          # stream and consumer info again"
	info "deploy/demo/cluster.sh stop"
}

case "${1:-up}" in
up) up ;;
stop)
	environment
	stop
	info "stopped"
	;;
info)
	environment
	show_info
	;;
*)
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac

#!/usr/bin/env bash
# The flusso demo: a small shop database kept in sync with OpenSearch by `flusso run`
# in its embedded mode (one process, in-process NATS JetStream).
#
#   deploy/demo/demo.sh [up]    reset and run the demo (make demo); flusso keeps running
#   deploy/demo/demo.sh stop    stop the demo's flusso and drop its idle slot (make demo-stop)
#   deploy/demo/demo.sh status  is it running, and its /status
#   deploy/demo/demo.sh clean   stop, then drop the demo database, slot and indexes
#
# It starts the dev services (deploy/dev/services.sh up; never stops them: other work
# uses them), loads deploy/demo/seed.sql into a fresh database flusso_demo, runs flusso
# with deploy/demo/flusso.toml (data in .dev/demo/, log in .dev/demo/flusso.log), waits
# for the backfill, searches, applies a few changes and shows each land in OpenSearch.
# Rerunning resets the database, the replication slot and the demo_* indexes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEMO="$ROOT/deploy/demo"
STATE="$ROOT/.dev/demo"
BIN="$STATE/flusso"
PIDFILE="$STATE/flusso.pid"
LOG="$STATE/flusso.log"

DB=flusso_demo
SLOT=flusso_demo
PUBLICATION=flusso_demo
PREFIX=demo_ # flusso.toml's prefix
PUBLIC_ADDRESS="${DEMO_PUBLIC_ADDRESS:-127.0.0.1:9464}"
PRIVATE_ADDRESS="${DEMO_PRIVATE_ADDRESS:-127.0.0.1:9465}"
WAIT="${DEMO_WAIT_SECS:-120}" # seconds for the backfill, and for each change to land

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
	B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' R=$'\e[31m' N=$'\e[0m'
else
	B="" D="" G="" R="" N=""
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
info() { printf '    %s\n' "$*"; }
ok() { printf '    %s✓ %s%s\n' "$G" "$*" "$N"; }
die() {
	printf '%s[demo] ERROR: %s%s\n' "$R" "$*" "$N" >&2
	exit 1
}
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1fs", b - a }'; }
over() { awk -v a="$1" -v b="$EPOCHREALTIME" -v m="$2" 'BEGIN { exit !(b - a > m) }'; }

# ---------------------------------------------------------------- services and tools

services_env() {
	[[ -f "$ROOT/.dev/env" ]] || die "no .dev/env: run make demo first"
	# shellcheck source=/dev/null
	source "$ROOT/.dev/env"
	OS_URL="$FLUSSO_TEST_OPENSEARCH_URL"
	ADMIN_URL="$FLUSSO_TEST_PG_URL"
	DEMO_URL="$(sed -E "s#/postgres(\?|$)#/$DB\1#" <<<"$ADMIN_URL")"
}

find_psql() {
	local d
	if ! command -v psql >/dev/null; then
		for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
			[[ -x "$d/psql" ]] && PATH="$d:$PATH" && break
		done
	fi
	command -v psql >/dev/null || die "psql not found (deploy/dev/services.sh up installs PostgreSQL)"
}

ensure_tools() {
	find_psql
	if ! command -v jq >/dev/null; then
		[[ "$(id -u)" == 0 ]] || die "jq is missing: run 'sudo apt-get install -y jq' and retry"
		info "installing jq with apt-get"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null 2>&1 ||
			{ DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null; } ||
			die "apt-get install jq failed"
	fi
	command -v go >/dev/null || die "go is not on PATH"
}

sql() { psql "$DEMO_URL" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
admin_sql() { psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# show_sql SQL: print it, then run it against the demo database.
show_sql() {
	printf '%s' "$1" | sed "s/^/    ${D}sql>${N} /"
	echo
	sql -c "$1" >/dev/null
}

os() { curl -sS --max-time 10 "$@"; }

# ---------------------------------------------------------------- the demo's flusso

running() {
	local pid
	[[ -s "$PIDFILE" ]] || return 1
	pid="$(<"$PIDFILE")"
	[[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$BIN run"
}

stop_flusso() {
	local pid i
	if ! running; then
		rm -f "$PIDFILE"
		return 0
	fi
	pid="$(<"$PIDFILE")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		info "flusso (pid $pid) did not stop in 30s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$PIDFILE"
	info "stopped flusso (pid $pid)"
}

# start_flusso runs the demo's flusso in the background, appending to its log. The
# environment overrides point it at the dev services wherever they listen.
start_flusso() {
	(
		cd "$ROOT"
		export DATABASE_URL="$DEMO_URL" PRIMARY_OPENSEARCH_URL="$OS_URL"
		exec setsid "$BIN" run --config deploy/demo/flusso.toml --lock "$STATE/flusso.lock" \
			--data-dir "$STATE/data" --slot "$SLOT" --publication "$PUBLICATION" \
			--public-address "$PUBLIC_ADDRESS" --private-address "$PRIVATE_ADDRESS" --lag-poll-secs 2
	) >>"$LOG" 2>&1 </dev/null &
	echo "$!" >"$PIDFILE"
}

port_busy() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# reset drops what a previous run left: the slot, the database, the indexes, the
# embedded broker's data.
reset() {
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -z "$(admin_sql -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE (slot_name = '$SLOT' OR database = '$DB') AND active_pid IS NOT NULL")" ]] && break
		sleep 0.2
	done
	admin_sql -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT' OR database = '$DB'" >/dev/null
	admin_sql -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
	local idx
	idx="$(os "$OS_URL/_cat/indices/$PREFIX*?h=index&expand_wildcards=all" | tr '\n' ' ')"
	for i in $idx; do
		os -X DELETE "$OS_URL/$i" >/dev/null
	done
	rm -rf "$STATE/data" "$STATE/flusso.lock"
}

# ---------------------------------------------------------------- OpenSearch helpers

doc() { os "$OS_URL/${PREFIX}$1/_doc/$2"; }
# count INDEX: its searchable documents, after a refresh (deletes included).
count() {
	os -X POST "$OS_URL/${PREFIX}$1/_refresh" >/dev/null 2>&1 || true
	os "$OS_URL/${PREFIX}$1/_count" | jq -r '.count // empty'
}
search() { os -H 'Content-Type: application/json' "$OS_URL/${PREFIX}$1/_search" -d "$2"; }

status_json() { curl -sf --max-time 2 "http://$PUBLIC_ADDRESS/status" 2>/dev/null; }

alive_or_die() {
	running && return 0
	echo
	tail -30 "$LOG" | sed 's/^/    | /' >&2
	die "flusso exited (log: $LOG)"
}

# wait_doc WHAT INDEX ID JQ: poll the document until JQ (over GET _doc) is true.
wait_doc() {
	local what="$1" index="$2" id="$3" expr="$4" t0 last
	t0="$(now)"
	while :; do
		alive_or_die
		last="$(doc "$index" "$id")"
		if jq -e "$expr" <<<"$last" >/dev/null 2>&1; then
			ok "$what: landed in $(since "$t0")"
			return 0
		fi
		if over "$t0" "$WAIT"; then
			info "last document: $(jq -c '._source // .' <<<"$last" | cut -c1-600)"
			die "$what did not land within ${WAIT}s (log: $LOG)"
		fi
		sleep 0.2
	done
}

# wait_search WHAT INDEX QUERY JQ: poll a search until JQ (over its response) is true.
wait_search() {
	local what="$1" index="$2" query="$3" expr="$4" t0 last
	t0="$(now)"
	while :; do
		alive_or_die
		os -X POST "$OS_URL/${PREFIX}$index/_refresh" >/dev/null
		last="$(search "$index" "$query")"
		if jq -e "$expr" <<<"$last" >/dev/null 2>&1; then
			ok "$what: landed in $(since "$t0")"
			return 0
		fi
		if over "$t0" "$WAIT"; then
			info "last response: $(jq -c . <<<"$last" | cut -c1-600)"
			die "$what did not land within ${WAIT}s (log: $LOG)"
		fi
		sleep 0.3
	done
}

# A customer as one line.
user_line='._source | "#\(.id) \(.name) <\(.email)> \(.profile.city // "-") | orders \(.order_count), spent \(.total_spent // 0 | . * 100 | round / 100), items \([.orders[].items[]] | length) | tags \([.tags[].name] | join(","))"'

# ---------------------------------------------------------------- commands

cmd_up() {
	local t0 t1 users products pid
	t0="$(now)"
	mkdir -p "$STATE"

	step "Starting PostgreSQL and OpenSearch (deploy/dev/services.sh up)"
	"$ROOT/deploy/dev/services.sh" up 2>&1 | sed 's/^/    /'
	services_env
	ensure_tools

	step "Resetting the demo (database $DB, slot $SLOT, indexes ${PREFIX}*)"
	stop_flusso
	port_busy "$PUBLIC_ADDRESS" && die "$PUBLIC_ADDRESS is taken by another process (set DEMO_PUBLIC_ADDRESS to use another)"
	port_busy "$PRIVATE_ADDRESS" && die "$PRIVATE_ADDRESS is taken by another process (set DEMO_PRIVATE_ADDRESS to use another)"
	reset
	admin_sql -c "CREATE DATABASE $DB"
	sql -f "$DEMO/seed.sql"
	info "loaded deploy/demo/seed.sql:"
	sql -F ' ' -c "SELECT format('%s categories, %s products, %s tags, %s users (%s soft deleted), %s profiles, %s orders, %s order items',
		(SELECT count(*) FROM categories), (SELECT count(*) FROM products), (SELECT count(*) FROM tags),
		(SELECT count(*) FROM users), (SELECT count(*) FROM users WHERE deleted_at IS NOT NULL),
		(SELECT count(*) FROM profiles), (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items))" | sed 's/^/    /'

	step "Building flusso (go build -o .dev/demo/flusso ./cmd/flusso)"
	t1="$(now)"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/flusso)
	info "built in $(since "$t1")"

	step "Starting flusso run in the embedded mode (log: .dev/demo/flusso.log)"
	: >"$LOG"
	start_flusso
	info "\$ flusso run --config deploy/demo/flusso.toml --data-dir .dev/demo/data --slot $SLOT --publication $PUBLICATION"
	info "pid $(<"$PIDFILE")"

	step "Waiting for the backfill"
	users="$(sql -c "SELECT count(*) FROM users WHERE deleted_at IS NULL")"
	products="$(sql -c "SELECT count(*) FROM products")"
	t1="$(now)"
	local st have_status=0 cu cp
	while :; do
		alive_or_die
		st="$(status_json || true)"
		[[ -n "$st" ]] && have_status=1
		cu="$(count users 2>/dev/null || true)"
		cp="$(count products 2>/dev/null || true)"
		if [[ "$cu" == "$users" && "$cp" == "$products" ]] &&
			{ [[ -z "$st" ]] || jq -e '[.indexes[].state] | all(. == "seeded")' <<<"$st" >/dev/null 2>&1; }; then
			break
		fi
		over "$t1" "$WAIT" && die "backfill not done after ${WAIT}s: ${PREFIX}users has ${cu:-no index} of $users, ${PREFIX}products ${cp:-no index} of $products (log: $LOG)"
		sleep 0.5
	done
	ok "backfill done in $(since "$t1"): ${PREFIX}users $cu documents, ${PREFIX}products $cp documents"
	if ((have_status)); then
		info "/status: $(status_json | jq -c '{phase, indexes: [.indexes[] | {name, state, documents_built}], confirmed_lsn}')"
	else
		info "(no /status on $PUBLIC_ADDRESS yet: polled the OpenSearch counts instead)"
	fi

	step "Search: customers who ordered an espresso maker, biggest spenders first"
	local q='{"size": 5, "sort": [{"total_spent": "desc"}],
	  "query": {"nested": {"path": "orders", "query": {"nested": {"path": "orders.items",
	    "query": {"match": {"orders.items.product.name": "espresso maker"}}}}}}}'
	info "\$ curl $OS_URL/${PREFIX}users/_search -d '{\"query\": {\"nested\": {\"path\": \"orders\", ... \"match\": {\"orders.items.product.name\": \"espresso maker\"}}}}'"
	search users "$q" | jq -r "\"    \(.hits.total.value) hits\", (.hits.hits[] | \"    \" + ($user_line))"

	step "Search: the kitchen catalog by units ordered"
	search products '{"size": 4, "sort": [{"units_ordered": "desc"}, {"id": "asc"}], "query": {"term": {"category.slug": "kitchen"}}}' |
		jq -r '.hits.hits[]._source | "    \(.sku)  \(.name)  \(.price) EUR  \(.units_ordered // 0) ordered  [\(.category.name)] \([.tags[].name] | join(","))"'

	step "Search from Go: deploy/demo/search, through the types flusso gen go wrote"
	(cd "$ROOT/deploy/demo/search" && PRIMARY_OPENSEARCH_URL="$OS_URL" FLUSSO_INDEX_PREFIX="$PREFIX" go run .) | sed 's/^/    /'

	step "One document: customer #1 in ${PREFIX}users"
	doc users 1 | jq '._source' | sed 's/^/    /'

	step "Change 1: a customer updates their email (the schema trims and lowercases it)"
	show_sql "UPDATE users SET email = '  Ada.Lovelace@Example.COM ' WHERE id = 1;"
	wait_doc "customer #1's email" users 1 '._source.email == "ada.lovelace@example.com"'
	doc users 1 | jq -r "\"    \" + ($user_line)"

	step "Change 2: customer #2 places an order (order and items in one transaction)"
	local before
	before="$(doc users 2)"
	info "before: $(jq -r "$user_line" <<<"$before")"
	show_sql "BEGIN;
WITH o AS (INSERT INTO orders (user_id, status, placed_at) VALUES (2, 'paid', now()) RETURNING id)
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
  SELECT o.id, p.id, 2, p.price FROM o, products p WHERE p.id IN (14, 40);
UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items WHERE order_id = orders.id)
  WHERE id = currval(pg_get_serial_sequence('orders', 'id'));
COMMIT;"
	local n
	n="$(jq '._source.order_count' <<<"$before")"
	wait_doc "customer #2's new order" users 2 "._source.order_count == $((n + 1)) and ([._source.orders[].items[]] | length) == $(($(jq '[._source.orders[].items[]] | length' <<<"$before") + 2))"
	doc users 2 | jq -r "\"    after:  \" + ($user_line)"

	step "Change 3: an item moves from customer #4's latest order to customer #6's"
	local item from to
	from="$(sql -c "SELECT id FROM orders WHERE user_id = 4 ORDER BY placed_at DESC LIMIT 1")"
	to="$(sql -c "SELECT id FROM orders WHERE user_id = 6 ORDER BY placed_at DESC LIMIT 1")"
	item="$(sql -c "SELECT min(id) FROM order_items WHERE order_id = $from")"
	info "before: $(doc users 4 | jq -r "$user_line")"
	info "        $(doc users 6 | jq -r "$user_line")"
	local i4 i6
	i4="$(doc users 4 | jq '[._source.orders[].items[]] | length')"
	i6="$(doc users 6 | jq '[._source.orders[].items[]] | length')"
	show_sql "BEGIN;
UPDATE order_items SET order_id = $to WHERE id = $item;
UPDATE orders SET total = (SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = orders.id)
  WHERE id IN ($from, $to);
COMMIT;"
	wait_doc "the item left customer #4" users 4 "[._source.orders[].items[]] | length == $((i4 - 1))"
	wait_doc "the item reached customer #6" users 6 "([._source.orders[].items[]] | length == $((i6 + 1))) and any(._source.orders[].items[].id; . == $item)"
	info "after:  $(doc users 4 | jq -r "$user_line")"
	info "        $(doc users 6 | jq -r "$user_line")"

	step "Change 4: a product is renamed: every customer who ordered it is rebuilt"
	local fans
	fans="$(sql -c "SELECT count(DISTINCT u.id) FROM users u JOIN orders o ON o.user_id = u.id JOIN order_items i ON i.order_id = o.id WHERE i.product_id = 14 AND u.deleted_at IS NULL")"
	show_sql "UPDATE products SET name = 'Espresso Maker Mk II' WHERE id = 14;"
	wait_doc "product 14" products 14 '._source.name == "Espresso Maker Mk II"'
	wait_search "$fans customer documents with the new name" users \
		'{"size": 0, "query": {"nested": {"path": "orders.items", "query": {"match_phrase": {"orders.items.product.name": "mk ii"}}}}}' \
		".hits.total.value == $fans"

	step "Change 5: customer #3 closes their account (soft delete: deleted_at is set)"
	show_sql "UPDATE users SET deleted_at = now() WHERE id = 3;"
	wait_doc "customer #3 removed from the index" users 3 '.found == false'
	info "${PREFIX}users now has $(count users) documents (was $users)"

	step "Change 6: while flusso is stopped, a customer moves; restarted, flusso resumes from its slot"
	stop_flusso
	show_sql "UPDATE profiles SET city = 'Torino', country = 'IT' WHERE user_id = 5;"
	local backfills
	backfills="$(grep -c 'backfill started' "$LOG" || true)"
	start_flusso
	info "restarted flusso (pid $(<"$PIDFILE")) with the same data dir and slot"
	wait_doc "customer #5's new city" users 5 '._source.profile.city == "Torino"'
	if [[ "$(grep -c 'backfill started' "$LOG" || true)" == "$backfills" ]]; then
		ok "no new backfill: the change came from the replication slot"
	else
		info "note: the restart ran a backfill again (log: $LOG)"
	fi
	pid="$(<"$PIDFILE")"

	step "Done in $(since "$t0"). flusso keeps running and following changes:"
	if status_json >/dev/null; then
		info "status      http://$PUBLIC_ADDRESS/status   (also /metrics, /healthz)"
	else
		info "status      http://$PUBLIC_ADDRESS/status   (not served by this build yet)"
	fi
	info "opensearch  $OS_URL/${PREFIX}users/_search?q=name:ada&pretty"
	info "            $OS_URL/${PREFIX}products/_search?pretty"
	info "postgres    psql '$DEMO_URL'"
	info "log         $LOG"
	info "stop        make demo-stop   (or: kill $pid)"
}

cmd_stop() {
	if running; then
		stop_flusso
	else
		info "the demo's flusso is not running"
	fi
	# An idle slot would hold back WAL on the shared dev cluster for as long as it exists.
	if [[ -f "$ROOT/.dev/env" ]]; then
		services_env
		find_psql
		if [[ "$(admin_sql -c "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND NOT active" 2>/dev/null)" == 1 ]]; then
			info "dropped the replication slot $SLOT (make demo starts over)"
		fi
	fi
	info "kept: database $DB and indexes ${PREFIX}* (deploy/demo/demo.sh clean drops them);"
	info "the dev services keep running (make services-down stops them for everyone)"
}

cmd_status() {
	if running; then
		info "flusso running, pid $(<"$PIDFILE"), log $LOG"
		status_json | jq . 2>/dev/null | sed 's/^/    /' || info "(no /status on $PUBLIC_ADDRESS)"
	else
		info "flusso not running"
		return 3
	fi
}

cmd_clean() {
	stop_flusso
	services_env
	ensure_tools
	reset
	rm -rf "$STATE"
	info "dropped database $DB, slot $SLOT, indexes ${PREFIX}*, and .dev/demo"
}

case "${1:-up}" in
up) cmd_up ;;
stop) cmd_stop ;;
status) cmd_status ;;
clean) cmd_clean ;;
*)
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
